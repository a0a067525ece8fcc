"""End-user identity (AARM R6): the human comes from a verified IdP token."""

from __future__ import annotations

from typing import Any

import pytest
from aarm_pdp.auth.idp import EndUserIdentity, verify_end_user
from aarm_pdp.auth.jwks import KeySet, TrustedIssuer
from aarm_pdp.errors import ErrorCode, IdentityUnverified

from tests.support.pki import SigningKey, jwks_document, tamper_payload, unsigned_jwt

IDP = "https://idp.acme.test/"
AUD = "agent-platform"
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("RS256", kid="idp-1")


@pytest.fixture(scope="module")
def config(key: SigningKey) -> dict[str, EndUserIdentity]:
    issuer = TrustedIssuer(IDP, AUD, KeySet.from_document(jwks_document(key)))
    return {
        "acme": EndUserIdentity(issuer, human_claim="email", required=True),
        "globex": EndUserIdentity(issuer, required=False),
    }


def claims(**over: Any) -> dict[str, Any]:
    c = {
        "iss": IDP,
        "aud": AUD,
        "sub": "00u1",
        "email": "alice@acme.test",
        "exp": int(NOW) + 600,
        "iat": int(NOW),
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def unverified(*args: Any, **kw: Any) -> str:
    with pytest.raises(IdentityUnverified) as info:
        verify_end_user(*args, **kw)
    assert info.value.code is ErrorCode.IDENTITY_UNVERIFIED
    return info.value.detail


def test_verified_human_from_the_configured_claim(key, config):
    got = verify_end_user("acme", key.sign(claims()), config, now=NOW)
    assert got is not None
    assert got.human == "alice@acme.test"
    assert got.issuer == IDP
    assert got.expires_at == NOW + 600


def test_default_claim_is_sub(key, config):
    got = verify_end_user("globex", key.sign(claims()), config, now=NOW)
    assert got is not None
    assert got.human == "00u1"


def test_required_and_missing(config):
    assert "requires a verified end-user token" in unverified("acme", "", config, now=NOW)


def test_optional_and_missing(config):
    assert verify_end_user("globex", "", config, now=NOW) is None


def test_unconfigured_tenant(key, config):
    assert verify_end_user("initech", "", config, now=NOW) is None
    assert "no IdP is configured" in unverified("initech", key.sign(claims()), config, now=NOW)


def test_an_invalid_token_is_refused_even_when_optional(key, config):
    forged = tamper_payload(key.sign(claims()), sub="root")
    assert "signature" in unverified("globex", forged, config, now=NOW)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"exp": int(NOW) - 60}, "expired"),
        ({"aud": "someone-else"}, "Audience"),
        ({"iss": "https://evil.test/"}, "not trusted"),
        ({"email": None}, "email"),
        ({"email": ""}, "not a non-empty string"),
        ({"email": ["a", "b"]}, "not a non-empty string"),
    ],
)
def test_invalid_tokens(key, config, change, needle):
    assert needle in unverified("acme", key.sign(claims(**change)), config, now=NOW)


def test_alg_none_and_key_confusion(key, config):
    assert "algorithm 'none'" in unverified("acme", unsigned_jwt(claims()), config, now=NOW)
    other = SigningKey.generate("RS256", kid="idp-1")
    assert "signature" in unverified("acme", other.sign(claims()), config, now=NOW)


def test_claimed_human_must_match(key, config):
    token = key.sign(claims())
    got = verify_end_user("acme", token, config, now=NOW, claimed_human="alice@acme.test")
    assert got is not None
    detail = unverified("acme", token, config, now=NOW, claimed_human="bob@acme.test")
    assert "token proves 'alice@acme.test'" in detail
