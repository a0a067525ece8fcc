"""TLS and mutual TLS to a real ``opa run --server`` over https, certificates made here.

Three OPA processes serve the reference policy on loopback: one with a certificate for
127.0.0.1/localhost, one whose certificate names another host, and one that requires a
client certificate (``--tls-ca-cert-file`` + ``--authentication=tls``). A TLS failure of
any kind is ``OpaUnavailable``, and through the decision engine DENY ``opa_unavailable``.
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aarm.v1 import decision_pb2
from aarm_pdp import server
from aarm_pdp.api.validation import to_action_request
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.engine import DecisionEngine
from aarm_pdp.decision.input import build_input
from aarm_pdp.errors import OpaBadResponse, OpaUnavailable
from aarm_pdp.model.decision import Decision
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.opa.client import OpaClient

from tests.support.messages import decide_request
from tests.support.paths import REGO
from tests.support.pki import CertificateAuthority
from tests.support.ports import free_port
from tests.support.processes import opa_command, wait_until
from tests.support.service import running, service_config

pytestmark = pytest.mark.integration

ALLOWED = ("db", "query", {"table": "customers", "limit": 10})
NOW = 1_795_658_400_000_000_000


@dataclass(frozen=True)
class Files:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    elsewhere_cert: Path
    """Issued by the trusted CA for opa.elsewhere.test only."""
    elsewhere_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    """A client certificate from a CA OPA does not trust."""
    stranger_key: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    d = tmp_path_factory.mktemp("opa-tls")
    ca, other = CertificateAuthority.create("opa-ca"), CertificateAuthority.create("other-ca")
    return Files(
        ca.write(d, "ca"),
        other.write(d, "other-ca"),
        *ca.issue_server(("localhost", "127.0.0.1")).write(d, "server"),
        *ca.issue_server(("opa.elsewhere.test",), cn="127.0.0.1").write(d, "elsewhere"),
        *ca.issue_client(common_name="aarm-pdp").write(d, "client"),
        *other.issue_client(common_name="aarm-pdp").write(d, "stranger"),
    )


def _https_healthy(url: str, ctx: ssl.SSLContext) -> bool:
    with urllib.request.urlopen(f"{url}/health?bundles=true", timeout=1, context=ctx) as r:
        return bool(r.status == 200)


@contextlib.contextmanager
def _opa(opa_binary: str, cert: Path, key: Path, *tls: str, probe: ssl.SSLContext) -> Iterator[str]:
    """``opa run --server`` over TLS on a free port; yields ``https://127.0.0.1:<port>``."""
    port = free_port()
    argv = opa_command(opa_binary, port, REGO)
    argv += ["--tls-cert-file", str(cert), "--tls-private-key-file", str(key), *tls]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"https://127.0.0.1:{port}"
    try:
        wait_until("opa over TLS", lambda: _https_healthy(url, probe), proc=proc)
        yield url
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _probe(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture(scope="module")
def tls_opa(opa_binary: str, files: Files) -> Iterator[str]:
    with _opa(opa_binary, files.server_cert, files.server_key, probe=_probe(files.ca)) as url:
        yield url


@pytest.fixture(scope="module")
def elsewhere_opa(opa_binary: str, files: Files) -> Iterator[str]:
    probe = _probe(files.ca)
    probe.check_hostname = False  # the probe only waits for it; the test checks the name
    with _opa(opa_binary, files.elsewhere_cert, files.elsewhere_key, probe=probe) as url:
        yield url


@pytest.fixture(scope="module")
def mtls_opa(opa_binary: str, files: Files) -> Iterator[str]:
    with _opa(
        opa_binary,
        files.server_cert,
        files.server_key,
        "--tls-ca-cert-file",
        str(files.ca),
        "--authentication=tls",
        probe=_probe(files.ca, files.client_cert, files.client_key),
    ) as url:
        yield url


def _input() -> dict[str, object]:
    return build_input(to_action_request(decide_request(*ALLOWED), LimitsConfig()), now_ns=NOW)


async def _decision(client: OpaClient) -> object:
    try:
        answer = await client.evaluate(_input(), timeout=5.0)
    finally:
        await client.aclose()
    return answer["result"]["decision"]


async def test_decision_over_https(tls_opa: str, files: Files) -> None:
    client = OpaClient(tls_opa, ca_file=files.ca)
    assert await client.healthy()
    version = await client.policy_version()
    assert version.revision
    assert len(version.hash) == 64
    assert await _decision(client) == "ALLOW"


async def test_decision_over_https_by_host_name(tls_opa: str, files: Files) -> None:
    url = tls_opa.replace("127.0.0.1", "localhost")
    assert await _decision(OpaClient(url, ca_file=files.ca)) == "ALLOW"


async def test_wrong_ca_is_opa_unavailable(tls_opa: str, files: Files) -> None:
    client = OpaClient(tls_opa, ca_file=files.other_ca)
    assert not await client.healthy()
    with pytest.raises(OpaUnavailable, match="certificate verify failed"):
        await _decision(client)


async def test_system_trust_store_does_not_trust_a_test_ca(tls_opa: str) -> None:
    with pytest.raises(OpaUnavailable, match="certificate verify failed"):
        await _decision(OpaClient(tls_opa))


async def test_host_name_mismatch_is_opa_unavailable(elsewhere_opa: str, files: Files) -> None:
    with pytest.raises(OpaUnavailable, match="mismatch"):
        await _decision(OpaClient(elsewhere_opa, ca_file=files.ca))


async def test_plain_http_to_a_tls_opa_gets_no_decision(tls_opa: str) -> None:
    # OPA answers plaintext on its TLS port with HTTP 400; never a decision.
    with pytest.raises((OpaBadResponse, OpaUnavailable)):
        await _decision(OpaClient(tls_opa.replace("https://", "http://")))


async def test_mutual_tls_with_the_client_certificate(mtls_opa: str, files: Files) -> None:
    client = OpaClient(
        mtls_opa, ca_file=files.ca, client_cert=files.client_cert, client_key=files.client_key
    )
    assert await client.healthy()
    assert await _decision(client) == "ALLOW"


@pytest.mark.parametrize("who", ["no certificate", "untrusted certificate"])
async def test_mutual_tls_refuses_the_client(mtls_opa: str, files: Files, who: str) -> None:
    cert = files.stranger_cert if who == "untrusted certificate" else None
    key = files.stranger_key if cert else None
    client = OpaClient(mtls_opa, ca_file=files.ca, client_cert=cert, client_key=key)
    assert not await client.healthy()
    with pytest.raises(OpaUnavailable):
        await _decision(client)


async def test_tls_failure_is_deny_opa_unavailable(tls_opa: str, files: Files) -> None:
    """Fail closed: the engine turns a TLS failure into DENY opa_unavailable."""
    client = OpaClient(tls_opa, ca_file=files.other_ca)
    engine = DecisionEngine(client, Metrics(), clock_ns=lambda: NOW, new_id=lambda: "d-tls")
    try:
        rec = await engine.decide(to_action_request(decide_request(*ALLOWED), LimitsConfig()))
    finally:
        await client.aclose()
    assert rec.result.decision is Decision.DENY
    assert rec.result.fail_closed
    assert rec.result.reasons[0].code == "opa_unavailable"


async def test_service_decides_through_an_https_opa(
    opa_binary: str, tls_opa: str, files: Files
) -> None:
    cfg = service_config(opa_binary, url=tls_opa, ca_file=files.ca)
    async with running(cfg) as (app, clients):
        assert app.sidecar is None
        resp = await clients.decide.Decide(decide_request(*ALLOWED))
        assert resp.decision == decision_pb2.DECISION_ALLOW
        assert len(resp.policy.hash) == 64


async def test_service_with_an_untrusted_opa_refuses_to_start(
    opa_binary: str, tls_opa: str, files: Files
) -> None:
    cfg = service_config(
        opa_binary, url=tls_opa, ca_file=files.other_ca, startup_timeout_seconds=0.5
    )
    with pytest.raises(server.StartupError, match="not healthy"):
        await server.start(cfg)
