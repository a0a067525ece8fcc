"""The auth core over real sockets: TLS and mTLS listeners, tokens, JWTs, cert reload.

A tiny grpc.aio server on 127.0.0.1 answers any aarm.v1 method path with an empty
body after running exactly what the servicers will run: ``required_role(method)``,
``Authenticator(metadata, auth_context)``, ``authorize(principal, tenant, role)``;
refusals map through the one error table. Certificates and JWTs are made in the test.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from aarm_pdp.auth.authorize import authorize, required_role
from aarm_pdp.auth.credentials import Authenticator
from aarm_pdp.auth.jwks import JwksFile, TrustedIssuer
from aarm_pdp.auth.principals import (
    Principal,
    PrincipalDirectory,
    PrincipalKind,
    PrincipalRecord,
    Role,
    token_hash,
)
from aarm_pdp.auth.tls import TlsFiles, channel_credentials, server_credentials
from aarm_pdp.errors import AarmError, grpc_status

from tests.support.pki import CertificateAuthority, SigningKey, write_jwks

pytestmark = pytest.mark.integration

ISS = "https://login.example.test/"
AUD = "aarm-pdp"
TOKEN = "static-token-" + "z" * 40
SPIFFE = "spiffe://acme.test/agent-platform"
DECIDE = "/aarm.v1.DecisionService/Decide"
LIST_RECEIPTS = "/aarm.v1.ReceiptService/ListReceipts"
PUBLIC_KEYS = "/aarm.v1.ReceiptService/GetPublicKeys"


class AuthProbe(grpc.GenericRpcHandler):
    """Serves every method path: authenticate, authorize, answer the tenant it bound."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticate = authenticator

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
        method = details.method

        async def handle(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            try:
                role = required_role(method)
                if role is None:
                    return b"open"
                caller = self.authenticate(
                    context.invocation_metadata() or (), context.auth_context()
                )
                tenant = authorize(caller.principal, request.decode(), role)
            except AarmError as exc:
                status, message = grpc_status(exc.code)
                await context.abort(status, message)
            return f"{caller.principal.id}@{tenant}".encode()

        return grpc.unary_unary_rpc_method_handler(handle)


@dataclass
class Pki:
    ca: CertificateAuthority
    files: TlsFiles
    client_ca_file: Path
    key: SigningKey
    directory: PrincipalDirectory
    dir: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = CertificateAuthority.create("aarm-it-ca")
    cert, key = ca.issue_server().write(tmp_path, "server")
    ca_file = ca.write(tmp_path, "ca")
    signing = SigningKey.generate("ES256", kid="it-1")
    jwks = JwksFile.load(write_jwks(tmp_path / "jwks.json", signing))

    def p(pid: str, roles: dict[str, set[Role]]) -> Principal:
        return Principal(pid, PrincipalKind.SERVICE, {t: frozenset(r) for t, r in roles.items()})

    directory = PrincipalDirectory.build(
        [
            PrincipalRecord(
                p("agent-platform", {"acme": {Role.ENFORCER}}),
                token_hashes=(token_hash(TOKEN),),
                spiffe_ids=(SPIFFE,),
            ),
            PrincipalRecord(
                p("auditor", {"acme": {Role.AUDITOR}, "globex": {Role.AUDITOR}}),
                jwt_subjects=((ISS, "audit-bot"),),
            ),
        ],
        issuers=[TrustedIssuer(ISS, AUD, jwks)],
    )
    return Pki(ca, TlsFiles(cert, key, ca_file), ca_file, signing, directory, tmp_path)


@dataclass
class Server:
    port: int


async def _serve(pki: Pki, *, mutual: bool) -> AsyncIterator[Server]:
    files = pki.files if mutual else TlsFiles(pki.files.cert, pki.files.key)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [AuthProbe(Authenticator(pki.directory, client_certificates=files.mutual))]
    )
    port = server.add_secure_port("127.0.0.1:0", server_credentials(files))
    await server.start()
    try:
        yield Server(port)
    finally:
        await server.stop(None)


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[Server]:
    async for s in _serve(pki, mutual=False):
        yield s


@pytest.fixture
async def mtls_server(pki: Pki) -> AsyncIterator[Server]:
    async for s in _serve(pki, mutual=True):
        yield s


async def call(
    port: int,
    creds: grpc.ChannelCredentials,
    method: str,
    tenant: str = "",
    token: str | None = None,
) -> tuple[grpc.StatusCode, bytes]:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    # "localhost" is in the server certificate; the socket still goes to 127.0.0.1.
    # A local subchannel pool: every call makes its own connection and handshake.
    options = [
        ("grpc.ssl_target_name_override", "localhost"),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds, options=options) as ch:
        rpc = ch.unary_unary(method)
        try:
            body = await rpc(tenant.encode(), metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), b""
        return grpc.StatusCode.OK, body


def jwt_for(pki: Pki, sub: str = "audit-bot", **over: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": sub, "iat": now, "exp": now + 120, **over}
    return pki.key.sign(claims)


# ---------------------------------------------------------------- TLS + bearer


async def test_tls_without_credential_is_unauthenticated(pki, tls_server):
    creds = channel_credentials(pki.client_ca_file)
    code, _ = await call(tls_server.port, creds, DECIDE, "acme")
    assert code is grpc.StatusCode.UNAUTHENTICATED


async def test_tls_static_token(pki, tls_server):
    creds = channel_credentials(pki.client_ca_file)
    assert await call(tls_server.port, creds, DECIDE, "acme", TOKEN) == (
        grpc.StatusCode.OK,
        b"agent-platform@acme",
    )
    assert (await call(tls_server.port, creds, DECIDE, "", TOKEN))[1] == b"agent-platform@acme"
    code, _ = await call(tls_server.port, creds, DECIDE, "acme", TOKEN[:-1] + "y")
    assert code is grpc.StatusCode.UNAUTHENTICATED


async def test_tls_jwt_signed_in_the_test(pki, tls_server):
    creds = channel_credentials(pki.client_ca_file)
    got = await call(tls_server.port, creds, LIST_RECEIPTS, "globex", jwt_for(pki))
    assert got == (grpc.StatusCode.OK, b"auditor@globex")
    expired = jwt_for(pki, exp=int(time.time()) - 120)
    code, _ = await call(tls_server.port, creds, LIST_RECEIPTS, "globex", expired)
    assert code is grpc.StatusCode.UNAUTHENTICATED
    wrong_aud = jwt_for(pki, aud="other")
    code, _ = await call(tls_server.port, creds, LIST_RECEIPTS, "globex", wrong_aud)
    assert code is grpc.StatusCode.UNAUTHENTICATED


async def test_tls_wrong_tenant_wrong_role_ambiguous(pki, tls_server):
    creds = channel_credentials(pki.client_ca_file)
    port = tls_server.port
    assert (await call(port, creds, DECIDE, "globex", TOKEN))[
        0
    ] is grpc.StatusCode.PERMISSION_DENIED
    assert (await call(port, creds, LIST_RECEIPTS, "acme", TOKEN))[0] is (
        grpc.StatusCode.PERMISSION_DENIED
    )
    # the auditor holds its role in two tenants: an empty tenant is ambiguous
    code, _ = await call(port, creds, LIST_RECEIPTS, "", jwt_for(pki))
    assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_public_keys_and_unknown_methods(pki, tls_server):
    creds = channel_credentials(pki.client_ca_file)
    assert await call(tls_server.port, creds, PUBLIC_KEYS) == (grpc.StatusCode.OK, b"open")
    code, _ = await call(tls_server.port, creds, "/aarm.v1.DecisionService/Unknown", "", TOKEN)
    assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_tls_ignores_client_certificates(pki, tls_server):
    client = pki.ca.issue_client(spiffe_id=SPIFFE)
    creds = channel_credentials(pki.client_ca_file, cert=client.cert_pem, key=client.key_pem)
    code, _ = await call(tls_server.port, creds, DECIDE, "acme")
    assert code is grpc.StatusCode.UNAUTHENTICATED


async def test_plaintext_client_cannot_talk_to_tls(tls_server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_server.port}") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ch.unary_unary(DECIDE)(b"", timeout=3)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE


# ---------------------------------------------------------------- mTLS


async def test_mtls_right_client_certificate(pki, mtls_server):
    client = pki.ca.issue_client(spiffe_id=SPIFFE)
    creds = channel_credentials(pki.client_ca_file, cert=client.cert_pem, key=client.key_pem)
    got = await call(mtls_server.port, creds, DECIDE, "acme")
    assert got == (grpc.StatusCode.OK, b"agent-platform@acme")
    code, _ = await call(mtls_server.port, creds, LIST_RECEIPTS, "acme")
    assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_mtls_unknown_identity_is_unauthenticated(pki, mtls_server):
    client = pki.ca.issue_client(spiffe_id="spiffe://acme.test/stranger")
    creds = channel_credentials(pki.client_ca_file, cert=client.cert_pem, key=client.key_pem)
    code, _ = await call(mtls_server.port, creds, DECIDE, "acme")
    assert code is grpc.StatusCode.UNAUTHENTICATED


async def test_mtls_bearer_jwt_over_a_client_certificate(pki, mtls_server):
    client = pki.ca.issue_client(spiffe_id=SPIFFE)
    creds = channel_credentials(pki.client_ca_file, cert=client.cert_pem, key=client.key_pem)
    got = await call(mtls_server.port, creds, LIST_RECEIPTS, "acme", jwt_for(pki))
    assert got == (grpc.StatusCode.OK, b"auditor@acme")


async def test_mtls_refuses_clients_without_a_trusted_certificate(pki, mtls_server):
    no_cert = channel_credentials(pki.client_ca_file)
    code, _ = await call(mtls_server.port, no_cert, DECIDE, "acme", TOKEN)
    assert code is grpc.StatusCode.UNAVAILABLE  # the handshake fails
    rogue = CertificateAuthority.create("rogue").issue_client(spiffe_id=SPIFFE)
    creds = channel_credentials(pki.client_ca_file, cert=rogue.cert_pem, key=rogue.key_pem)
    code, _ = await call(mtls_server.port, creds, DECIDE, "acme", TOKEN)
    assert code is grpc.StatusCode.UNAVAILABLE


async def test_server_certificate_reload_without_restart(pki, mtls_server):
    client = pki.ca.issue_client(spiffe_id=SPIFFE)
    old_trust = channel_credentials(pki.client_ca_file, cert=client.cert_pem, key=client.key_pem)
    assert (await call(mtls_server.port, old_trust, DECIDE, "acme"))[0] is grpc.StatusCode.OK

    # Rotate the server to a certificate from a new CA, which also signs new clients.
    new_ca = CertificateAuthority.create("aarm-it-ca-2")
    served = new_ca.issue_server()
    pki.files.cert.write_bytes(served.cert_pem)
    pki.files.key.write_bytes(served.key_pem)
    pki.files.client_ca.write_bytes(new_ca.cert_pem)  # type: ignore[union-attr]
    for i, path in enumerate(pki.files.paths()):
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000 + i))

    new_client = new_ca.issue_client(spiffe_id=SPIFFE)
    new_trust = channel_credentials(
        new_ca.cert_pem, cert=new_client.cert_pem, key=new_client.key_pem
    )
    assert await call(mtls_server.port, new_trust, DECIDE, "acme") == (
        grpc.StatusCode.OK,
        b"agent-platform@acme",
    )
    # clients that only trust the old CA no longer accept the server
    assert (await call(mtls_server.port, old_trust, DECIDE, "acme"))[0] is (
        grpc.StatusCode.UNAVAILABLE
    )
