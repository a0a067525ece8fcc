"""authenticate(metadata, auth_context): bearer tokens, JWTs and mTLS, without a server."""

from __future__ import annotations

from typing import Any

import pytest
from aarm_pdp.auth.credentials import (
    Authenticator,
    Method,
    authenticate,
    bearer_token,
    certificate_identity,
)
from aarm_pdp.auth.jwks import KeySet, TrustedIssuer
from aarm_pdp.auth.principals import (
    Principal,
    PrincipalDirectory,
    PrincipalKind,
    PrincipalRecord,
    Role,
    token_hash,
)
from aarm_pdp.errors import ErrorCode, Unauthenticated

from tests.support.pki import CertificateAuthority, Issued, SigningKey, jwks_document

ISS = "https://login.example.test/"
AUD = "aarm-pdp"
NOW = 1_800_000_000.0
TOKEN = "static-" + "Q" * 40
SPIFFE = "spiffe://acme.test/agent-platform"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("ES256", kid="k1")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


def _p(pid: str, roles: dict[str, set[Role]]) -> Principal:
    return Principal(pid, PrincipalKind.SERVICE, {t: frozenset(r) for t, r in roles.items()})


@pytest.fixture(scope="module")
def directory(key: SigningKey) -> PrincipalDirectory:
    platform = _p("agent-platform", {"acme": {Role.ENFORCER}})
    auditor = _p("auditor", {"acme": {Role.AUDITOR}})
    ops = _p("ops", {"acme": {Role.ADMIN}})
    return PrincipalDirectory.build(
        [
            PrincipalRecord(platform, token_hashes=(token_hash(TOKEN),), spiffe_ids=(SPIFFE,)),
            PrincipalRecord(auditor, subjects=("CN=auditor,O=Acme",)),
            PrincipalRecord(ops, jwt_subjects=((ISS, "ops-bot"),), subjects=("CN=ops",)),
        ],
        issuers=[TrustedIssuer(ISS, AUD, KeySet.from_document(jwks_document(key)))],
    )


def md(value: str | None) -> list[tuple[str, str | bytes]]:
    out: list[tuple[str, str | bytes]] = [("user-agent", "grpc-python")]
    if value is not None:
        out.append(("authorization", value))
    return out


def tls_context(issued: Issued | None) -> dict[str, list[bytes]]:
    ctx: dict[str, list[bytes]] = {"transport_security_type": [b"ssl"]}
    if issued is not None:
        ctx["x509_pem_cert"] = [issued.cert_pem]
        ctx["x509_common_name"] = [b"ignored"]
    return ctx


def auth(directory, metadata, ctx=None, *, mtls: bool = True, now: float = NOW):
    return authenticate(metadata, ctx or {}, directory, now=now, client_certificates=mtls)


def refused(*args: Any, **kw: Any) -> str:
    with pytest.raises(Unauthenticated) as info:
        auth(*args, **kw)
    assert info.value.code is ErrorCode.UNAUTHENTICATED
    return info.value.detail


def jwt_claims(**over: Any) -> dict[str, Any]:
    c = {"iss": ISS, "aud": AUD, "sub": "ops-bot", "exp": int(NOW) + 60, "iat": int(NOW)}
    c.update(over)
    return c


# ---------------------------------------------------------------- static tokens


def test_static_token(directory):
    got = auth(directory, md(f"Bearer {TOKEN}"))
    assert got.principal.id == "agent-platform"
    assert got.method is Method.TOKEN
    assert TOKEN not in got.credential
    assert got.credential.startswith("sha256:")


def test_scheme_is_case_insensitive(directory):
    assert auth(directory, md(f"bearer {TOKEN}")).principal.id == "agent-platform"


def test_token_hash_mismatch_is_refused(directory):
    assert "unknown bearer token" in refused(directory, md(f"Bearer {TOKEN}x"))
    detail = refused(directory, md(f"Bearer {token_hash(TOKEN)[7:]}"))
    assert "unknown bearer token" in detail


def test_no_credential_is_refused(directory):
    assert "no credential" in refused(directory, md(None))
    assert "no credential" in refused(directory, md(None), {"transport_security_type": [b"ssl"]})


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "Bearer tok\x00en", "Token abc"],
)
def test_malformed_authorization_is_refused(directory, header):
    refused(directory, md(header))


def test_two_authorization_headers_are_refused(directory):
    m = [("authorization", f"Bearer {TOKEN}"), ("authorization", "Bearer other")]
    assert "more than one" in refused(directory, m)


def test_binary_authorization_is_refused():
    with pytest.raises(Unauthenticated, match="binary"):
        bearer_token([("authorization", b"Bearer x")])


def test_bad_token_is_not_rescued_by_a_good_certificate(directory, ca):
    cert = ca.issue_client(spiffe_id=SPIFFE)
    refused(directory, md("Bearer wrong-token-value"), tls_context(cert))


# ---------------------------------------------------------------- JWT


def test_jwt_names_its_principal(directory, key):
    got = auth(directory, md(f"Bearer {key.sign(jwt_claims())}"))
    assert got.principal.id == "ops"
    assert got.method is Method.JWT
    assert got.credential == f"{ISS} ops-bot"


def test_jwt_for_an_unknown_subject_is_refused(directory, key):
    token = key.sign(jwt_claims(sub="nobody"))
    assert "no principal for subject 'nobody'" in refused(directory, md(f"Bearer {token}"))


def test_expired_jwt_is_refused_with_the_injected_clock(directory, key):
    token = key.sign(jwt_claims(exp=int(NOW) + 60))
    assert auth(directory, md(f"Bearer {token}"), now=NOW + 60).principal.id == "ops"
    assert "expired" in refused(directory, md(f"Bearer {token}"), now=NOW + 91)


def test_authenticator_uses_its_clock(directory, key):
    clock = iter([NOW, NOW + 1000]).__next__
    a = Authenticator(directory, client_certificates=False, clock=clock)
    token = key.sign(jwt_claims())
    assert a(md(f"Bearer {token}"), {}).principal.id == "ops"
    with pytest.raises(Unauthenticated, match="expired"):
        a(md(f"Bearer {token}"), {})


def test_jwt_without_configured_issuers_is_refused(key):
    empty = PrincipalDirectory.build([])
    detail = refused(empty, md(f"Bearer {key.sign(jwt_claims())}"))
    assert "no jwt_issuers" in detail


# ---------------------------------------------------------------- mTLS


def test_spiffe_certificate(directory, ca):
    got = auth(directory, md(None), tls_context(ca.issue_client(spiffe_id=SPIFFE)))
    assert got.principal.id == "agent-platform"
    assert got.method is Method.MTLS
    assert got.credential == SPIFFE


def test_subject_certificate(directory, ca):
    cert = ca.issue_client(common_name="auditor", organization="Acme")
    got = auth(directory, md(None), tls_context(cert))
    assert got.principal.id == "auditor"
    assert got.credential == "CN=auditor,O=Acme"


def test_certificate_ignored_without_mtls(directory, ca):
    ctx = tls_context(ca.issue_client(spiffe_id=SPIFFE))
    assert "no credential" in refused(directory, md(None), ctx, mtls=False)


def test_certificate_ignored_on_insecure_transport(directory, ca):
    ctx = tls_context(ca.issue_client(spiffe_id=SPIFFE))
    ctx["transport_security_type"] = [b"insecure"]
    assert "no credential" in refused(directory, md(None), ctx)


def test_unknown_certificate_is_refused(directory, ca):
    cert = ca.issue_client(spiffe_id="spiffe://acme.test/stranger", common_name="stranger")
    assert "no principal for certificate" in refused(directory, md(None), tls_context(cert))


def test_common_name_alone_is_not_a_subject_match(directory, ca):
    # "CN=auditor" without O=Acme is a different subject.
    cert = ca.issue_client(common_name="auditor")
    refused(directory, md(None), tls_context(cert))


def test_spiffe_and_subject_naming_two_principals_is_refused(directory, ca):
    cert = ca.issue_client(spiffe_id=SPIFFE, common_name="ops")
    assert "names two principals" in refused(directory, md(None), tls_context(cert))


def test_two_spiffe_ids_are_refused(directory, ca):
    cert = ca.issue_client(spiffe_id=SPIFFE, extra_uris=["spiffe://acme.test/other"])
    assert "2 SPIFFE IDs" in refused(directory, md(None), tls_context(cert))


def test_non_spiffe_uri_sans_are_ignored(ca):
    cert = ca.issue_client(spiffe_id=SPIFFE, extra_uris=["https://example.test/x"])
    assert certificate_identity(cert.cert) == (SPIFFE, "CN=aarm-test-client")


def test_unparsable_peer_certificate_is_refused(directory):
    ctx = {"transport_security_type": [b"ssl"], "x509_pem_cert": [b"-----BEGIN junk"]}
    assert "unparsable" in refused(directory, md(None), ctx)


def test_token_takes_precedence_over_certificate(directory, ca):
    cert = ca.issue_client(common_name="auditor", organization="Acme")
    got = auth(directory, md(f"Bearer {TOKEN}"), tls_context(cert))
    assert got.principal.id == "agent-platform"
    assert got.method is Method.TOKEN
