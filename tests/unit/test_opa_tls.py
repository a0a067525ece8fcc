"""TLS to an ``https://`` OPA against scripted TLS servers on real loopback sockets.

Certificates are made in the test (:mod:`tests.support.pki`). Every TLS failure is
:class:`HttpUnavailable` (``OpaUnavailable`` at the client), and an https pool never
sends a plaintext byte. The config and flag checks for the TLS files are here too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import uvloop
from aarm_pdp import cli
from aarm_pdp.config import Config, ConfigError, OpaConfig
from aarm_pdp.errors import OpaUnavailable
from aarm_pdp.opa.client import OpaClient
from aarm_pdp.opa.http import HttpPool, HttpUnavailable, tls_context
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.pki import CertificateAuthority, Issued
from tests.unit.test_opa_http import fixed, post, server

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: CertificateAuthority
    ca_file: Path
    other_ca_file: Path
    server: Issued
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    """A client certificate from a CA the server does not trust."""
    stranger_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("opa-tls")
    ca, other = CertificateAuthority.create("opa-ca"), CertificateAuthority.create("other-ca")
    client = ca.issue_client(common_name="aarm-pdp")
    stranger = other.issue_client(common_name="aarm-pdp")
    return Pki(
        d,
        ca,
        ca.write(d, "ca"),
        other.write(d, "other-ca"),
        ca.issue_server(),
        *client.write(d, "client"),
        *stranger.write(d, "stranger"),
    )


def _expired_server(ca: CertificateAuthority) -> Issued:
    """A server certificate for 127.0.0.1 and localhost that expired yesterday."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=2))
        .not_valid_after(now - dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem, cert)


def server_tls(
    pki: Pki, issued: Issued | None = None, *, client_ca: Path | None = None
) -> ssl.SSLContext:
    """The scripted server's context; with ``client_ca`` it requires a client certificate."""
    cert, key = (issued or pki.server).write(pki.dir / "srv", "server")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(client_ca))
    return ctx


def https_pool(port: int, ctx: ssl.SSLContext, host: str = "127.0.0.1") -> HttpPool:
    return HttpPool(host=host, port=port, tls=ctx)


# --------------------------------------------------------------------------- the pool


async def test_requests_over_tls_are_exact_and_kept_alive(pki: Pki) -> None:
    seen: list[bytes] = []

    def answer(req: bytes) -> list[bytes]:
        seen.append(req)
        return [OK[:20], OK[20:]]

    async with server(answer, tls=server_tls(pki)) as st:
        pool = https_pool(st[0], tls_context(pki.ca_file))
        for _ in range(3):
            assert await post(pool, b'{"input":1}') == (200, b"{}")
        idle = list(pool._idle)
        await pool.aclose()
        assert idle
        assert all(conn.lost.done() for conn in idle)  # closed, not left to the GC
    assert st[1] == 1  # one TLS connection, reused
    assert seen[0] == (
        b"POST /v1/data/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b'Content-Length: 11\r\n\r\n{"input":1}' % st[0]
    )


async def test_localhost_name_is_checked_and_accepted(pki: Pki) -> None:
    async with server(fixed(OK), tls=server_tls(pki)) as st:
        pool = https_pool(st[0], tls_context(pki.ca_file), host="localhost")
        assert await post(pool) == (200, b"{}")
        await pool.aclose()


async def test_idle_tls_connection_closed_by_peer_is_retried_once(pki: Pki) -> None:
    calls = [0]

    def answer(_req: bytes) -> list[bytes] | None:
        calls[0] += 1
        return [OK] if calls[0] != 2 else None  # the 2nd request: close, no answer

    async with server(answer, tls=server_tls(pki)) as st:
        pool = https_pool(st[0], tls_context(pki.ca_file))
        assert await post(pool) == (200, b"{}")
        assert await post(pool) == (200, b"{}")
        assert st[1] == 2
        await pool.aclose()


async def _refused(pool: HttpPool, match: str | None = None) -> str:
    with pytest.raises(HttpUnavailable, match=match) as err:
        await post(pool)
    await pool.aclose()
    return str(err.value)


async def test_untrusted_ca_is_unavailable(pki: Pki) -> None:
    async with server(fixed(OK), tls=server_tls(pki)) as st:
        await _refused(https_pool(st[0], tls_context(pki.other_ca_file)), "TLS handshake")
        assert st[1] == 0  # never reached the request


async def test_system_trust_store_does_not_trust_a_private_ca(pki: Pki) -> None:
    async with server(fixed(OK), tls=server_tls(pki)) as st:
        await _refused(https_pool(st[0], tls_context()), "certificate verify failed")


@pytest.mark.parametrize("hosts", [("opa.elsewhere.test",), ("localhost",)])
async def test_host_name_mismatch_is_unavailable(pki: Pki, hosts: tuple[str, ...]) -> None:
    # A certificate from the trusted CA, but not for 127.0.0.1.
    wrong = server_tls(pki, pki.ca.issue_server(hosts, cn="127.0.0.1"))
    async with server(fixed(OK), tls=wrong) as st:
        await _refused(https_pool(st[0], tls_context(pki.ca_file)), "mismatch")
        assert st[1] == 0


async def test_expired_certificate_is_unavailable(pki: Pki) -> None:
    async with server(fixed(OK), tls=server_tls(pki, _expired_server(pki.ca))) as st:
        await _refused(https_pool(st[0], tls_context(pki.ca_file)), "expired")


async def test_plaintext_server_is_unavailable_and_never_sees_the_request(pki: Pki) -> None:
    got = bytearray()

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.extend(await reader.read(5))
        writer.write(OK)  # an http:// OPA answering whatever it was sent
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(plain, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        await _refused(https_pool(port, tls_context(pki.ca_file)), "TLS handshake")
    finally:
        srv.close()
        await srv.wait_closed()
    assert got[:1] == b"\x16"  # a TLS handshake record, never "POST "


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_older_than_1_2_is_refused(pki: Pki) -> None:
    old = server_tls(pki)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot serve TLS 1.1")
    async with server(fixed(OK), tls=old) as st:
        # Refused by either side: a protocol alert or a reset during the handshake.
        await _refused(https_pool(st[0], tls_context(pki.ca_file)), "TLS handshake|Reset")
        assert st[1] == 0


async def test_client_certificate_when_the_server_requires_one(pki: Pki) -> None:
    mtls = server_tls(pki, client_ca=pki.ca_file)
    async with server(fixed(OK), tls=mtls) as st:
        pool = https_pool(st[0], tls_context(pki.ca_file, pki.client_cert, pki.client_key))
        assert await post(pool) == (200, b"{}")
        await pool.aclose()
        # No certificate, or one from a CA the server does not trust: refused. Under
        # TLS 1.3 the server decides after our handshake is done, so this may surface
        # as the connection closing before the answer rather than as a handshake error.
        await _refused(https_pool(st[0], tls_context(pki.ca_file)))
        stranger = tls_context(pki.ca_file, pki.stranger_cert, pki.stranger_key)
        await _refused(https_pool(st[0], stranger))


def test_under_uvloop_too(pki: Pki) -> None:
    """The service runs on uvloop: its TLS transport fails the same way."""

    async def main() -> None:
        async with server(fixed(OK), tls=server_tls(pki)) as st:
            pool = https_pool(st[0], tls_context(pki.ca_file))
            assert await post(pool) == (200, b"{}")
            await pool.aclose()
            await _refused(https_pool(st[0], tls_context(pki.other_ca_file)), "TLS handshake")
        async with server(fixed(OK), tls=server_tls(pki, client_ca=pki.ca_file)) as st:
            await _refused(https_pool(st[0], tls_context(pki.ca_file)))

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


# --------------------------------------------------------------------------- the context


def test_context_verifies_checks_names_and_needs_tls_1_2(pki: Pki) -> None:
    ctx = tls_context(pki.ca_file)
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "opa-ca"),),)]


def test_context_refuses_bad_files(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not pem")
    with pytest.raises(ValueError, match="needs its key"):
        tls_context(pki.ca_file, pki.client_cert)
    with pytest.raises(ssl.SSLError):
        tls_context(junk)
    with pytest.raises(ssl.SSLError):
        tls_context(pki.ca_file, pki.client_cert, pki.stranger_key)  # key of another cert
    with pytest.raises(FileNotFoundError):
        tls_context(tmp_path / "missing.pem")


def test_tls_is_not_for_unix_sockets(pki: Pki) -> None:
    with pytest.raises(ValueError, match="unix"):
        HttpPool(unix_path="/tmp/opa.sock", tls=tls_context(pki.ca_file))


# --------------------------------------------------------------------------- OpaClient


@pytest.fixture
async def tls_opa(pki: Pki) -> AsyncIterator[int]:
    answer = b'{"result":{"decision":"ALLOW"}}'
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer)
    async with server(fixed(head + answer), tls=server_tls(pki)) as st:
        yield st[0]


async def test_opa_client_over_https(pki: Pki, tls_opa: int) -> None:
    client = OpaClient(f"https://127.0.0.1:{tls_opa}", ca_file=pki.ca_file)
    assert await client.evaluate({}, timeout=2.0) == {"result": {"decision": "ALLOW"}}
    assert await client.healthy()
    await client.aclose()


async def test_opa_client_tls_failure_is_opa_unavailable(pki: Pki, tls_opa: int) -> None:
    client = OpaClient(f"https://127.0.0.1:{tls_opa}", ca_file=pki.other_ca_file)
    with pytest.raises(OpaUnavailable, match="TLS handshake"):
        await client.evaluate({}, timeout=2.0)
    assert not await client.healthy()
    await client.aclose()


def test_opa_client_refuses_tls_files_it_cannot_use(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not pem")
    with pytest.raises(ValueError, match="https"):
        OpaClient("http://127.0.0.1:8181", ca_file=pki.ca_file)
    with pytest.raises(ValueError, match="https"):
        OpaClient("unix:///tmp/opa.sock", client_cert=pki.client_cert, client_key=pki.client_key)
    with pytest.raises(ValueError, match="unusable"):
        OpaClient("https://127.0.0.1:8181", ca_file=junk)
    with pytest.raises(ValueError, match="needs its key"):
        OpaClient("https://127.0.0.1:8181", client_cert=pki.client_cert)


def test_https_without_port_is_443() -> None:
    client = OpaClient("https://opa.example.test")
    assert client._pool.head("GET", "/health", None) == (
        b"GET /health HTTP/1.1\r\nHost: opa.example.test:443\r\n\r\n"
    )


# --------------------------------------------------------------------------- config and flags


def _problems(**opa: object) -> str:
    base = OpaConfig(url="https://opa.example.test:8181")
    cfg = Config(opa=replace(base, **opa))  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    return str(err.value)


def test_config_accepts_https_with_its_files(pki: Pki) -> None:
    opa = OpaConfig(
        url="https://opa.example.test:8181",
        ca_file=pki.ca_file,
        client_cert=pki.client_cert,
        client_key=pki.client_key,
    )
    Config(opa=opa).validate()
    Config(opa=OpaConfig(url="https://opa.example.test")).validate()  # system trust store


def test_config_tls_problems_are_reported_with_the_others(pki: Pki, tmp_path: Path) -> None:
    msg = _problems(
        ca_file=tmp_path / "missing-ca.pem", client_cert=pki.client_cert, timeout_seconds=0
    )
    assert "opa.client_cert and opa.client_key must be given together" in msg
    assert "opa.ca_file" in msg
    assert "missing-ca.pem is not readable" in msg
    assert "opa.timeout_seconds must be > 0" in msg


def test_config_refuses_unloadable_tls_files(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not pem")
    assert "holds no PEM CA certificate" in _problems(ca_file=junk)
    mismatch = _problems(client_cert=pki.client_cert, client_key=pki.stranger_key)
    assert "opa.client_cert/client_key" in mismatch
    assert "opa.client_key must be given together" in _problems(client_key=pki.client_key)
    assert "is not readable" in _problems(ca_file=tmp_path)  # a directory


@pytest.mark.parametrize("url", ["http://127.0.0.1:8181", "unix:///run/opa.sock", None])
def test_config_tls_files_need_an_https_url(pki: Pki, url: str | None) -> None:
    msg = _problems(url=url, ca_file=pki.ca_file, client_key=pki.client_key)
    assert "opa.ca_file, opa.client_key: only for an https:// opa.url" in msg


def test_flags_and_environment(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AARM_PDP_OPA_CA_FILE", str(pki.ca_file))
    args = cli._parser().parse_args(
        [
            "serve",
            "--opa-url",
            "https://localhost:8181",
            "--opa-client-cert",
            str(pki.client_cert),
            "--opa-client-key",
            str(pki.client_key),
        ]
    )
    opa = cli.config_from_args(args).opa
    assert (opa.ca_file, opa.client_cert, opa.client_key) == (
        pki.ca_file,
        pki.client_cert,
        pki.client_key,
    )
    monkeypatch.setenv("AARM_PDP_OPA_CA_FILE", str(pki.other_ca_file))
    flag = cli._parser().parse_args(
        ["serve", "--opa-url", "https://localhost:8181", "--opa-ca-file", str(pki.ca_file)]
    )
    assert cli.config_from_args(flag).opa.ca_file == pki.ca_file  # the flag wins
    with pytest.raises(ConfigError, match="only for an https"):
        cli.config_from_args(cli._parser().parse_args(["serve", "--opa-url", "http://x:1"]))
