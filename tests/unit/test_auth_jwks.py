"""JWKS parsing and JWT verification: every forgery the verifier must refuse."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aarm_pdp.auth._problems import AuthConfigError, Problems
from aarm_pdp.auth.jwks import (
    JwksFile,
    KeySet,
    TrustedIssuer,
    parse_issuer,
    verify_jwt,
)
from aarm_pdp.errors import ErrorCode, Unauthenticated

from tests.support.pki import (
    SigningKey,
    hs256_jwt,
    jwks_document,
    tamper_payload,
    unsigned_jwt,
    write_jwks,
)

ISS = "https://login.example.test/"
AUD = "aarm-pdp"
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def es() -> SigningKey:
    return SigningKey.generate("ES256", kid="es-1")


@pytest.fixture(scope="module")
def rs() -> SigningKey:
    return SigningKey.generate("RS256", kid="rs-1")


@pytest.fixture(scope="module")
def ed() -> SigningKey:
    return SigningKey.generate("EdDSA", kid="ed-1")


@pytest.fixture(scope="module")
def issuers(es: SigningKey, rs: SigningKey, ed: SigningKey) -> dict[str, TrustedIssuer]:
    keys = KeySet.from_document(jwks_document(es, rs, ed))
    return {ISS: TrustedIssuer(ISS, AUD, keys)}


def claims(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "agent-platform",
        "iat": int(NOW) - 10,
        "exp": int(NOW) + 300,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def refused(token: str, issuers: dict[str, TrustedIssuer], now: float = NOW) -> str:
    with pytest.raises(Unauthenticated) as info:
        verify_jwt(token, issuers, now=now)
    assert info.value.code is ErrorCode.UNAUTHENTICATED
    if len(token) > 8:
        assert token not in str(info.value)  # the detail never carries the token
    return info.value.detail


@pytest.mark.parametrize("which", ["es", "rs", "ed"])
def test_valid_token_of_each_key_type(which: str, request: pytest.FixtureRequest, issuers):
    key: SigningKey = request.getfixturevalue(which)
    got = verify_jwt(key.sign(claims()), issuers, now=NOW)
    assert got["sub"] == "agent-platform"
    assert got["iss"] == ISS


def test_audience_may_be_a_list(es, issuers):
    assert verify_jwt(es.sign(claims(aud=["other", AUD])), issuers, now=NOW)["sub"]


def test_alg_none_is_refused(issuers):
    assert "algorithm 'none'" in refused(unsigned_jwt(claims(), kid="es-1"), issuers)


def test_hs256_with_the_public_key_as_secret_is_refused(rs, es, issuers):
    for key in (rs, es):
        token = hs256_jwt(claims(), key.public_pem(), kid=key.kid)
        assert "HS256" in refused(token, issuers)


def test_hs256_refused_even_if_the_issuer_lists_it():
    with pytest.raises(AuthConfigError):
        KeySet.from_document({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]})
    problems = Problems("t")
    parse_issuer(
        {"issuer": ISS, "audience": AUD, "jwks_file": "x.json", "algorithms": ["HS256", "none"]},
        "jwt_issuers[0]",
        problems,
        Path("/nonexistent"),
    )
    assert any("['HS256', 'none'] not accepted" in p for p in problems.items)


def test_forged_payload_is_refused(es, issuers):
    token = tamper_payload(es.sign(claims()), sub="admin")
    assert "signature verification failed" in refused(token, issuers)


def test_token_signed_by_an_unknown_key_with_a_known_kid(issuers):
    attacker = SigningKey.generate("ES256", kid="es-1")
    assert "signature verification failed" in refused(attacker.sign(claims()), issuers)


def test_unknown_kid_is_refused(es, issuers):
    assert "no ES256 key with kid 'nope'" in refused(es.sign(claims(), kid="nope"), issuers)


def test_no_kid_tries_every_fitting_key(es, issuers):
    assert verify_jwt(es.sign(claims(), kid=""), issuers, now=NOW)["sub"] == "agent-platform"


def test_alg_must_fit_the_key_type(rs):
    # A JWK without "alg": an RSA key verifies RS*/PS*, never ES* or EdDSA.
    keys = KeySet.from_document(jwks_document(rs, include_alg=False))
    trusted = {ISS: TrustedIssuer(ISS, AUD, keys)}
    assert verify_jwt(rs.sign(claims(), alg="PS256"), trusted, now=NOW)
    ec_token = SigningKey.generate("ES256", kid="rs-1").sign(claims())
    assert "no ES256 key with kid 'rs-1'" in refused(ec_token, trusted)


def test_jwk_alg_binds_the_key(rs):
    # The JWK says RS256: a PS256 token under the same kid is refused.
    keys = KeySet.from_document(jwks_document(rs))
    trusted = {ISS: TrustedIssuer(ISS, AUD, keys)}
    assert "no PS256 key" in refused(rs.sign(claims(), alg="PS256"), trusted)


def test_issuer_allow_list_narrows_algorithms(es, rs):
    keys = KeySet.from_document(jwks_document(es, rs))
    trusted = {ISS: TrustedIssuer(ISS, AUD, keys, algorithms=frozenset({"RS256"}))}
    assert verify_jwt(rs.sign(claims()), trusted, now=NOW)
    assert "not allowed for issuer" in refused(es.sign(claims()), trusted)


def test_expired_is_refused_with_leeway(es, issuers):
    token = es.sign(claims(exp=int(NOW) - 10))
    assert verify_jwt(token, issuers, now=NOW)  # within the 30 s leeway
    assert "expired" in refused(token, issuers, now=NOW + 25)


def test_not_yet_valid_and_future_iat(es, issuers):
    assert "nbf" in refused(es.sign(claims(nbf=int(NOW) + 120)), issuers)
    assert "iat" in refused(es.sign(claims(iat=int(NOW) + 120)), issuers)
    assert verify_jwt(es.sign(claims(nbf=int(NOW) + 20)), issuers, now=NOW)


def test_exp_is_required_and_numeric(es, issuers):
    assert "exp" in refused(es.sign(claims(exp=None)), issuers)


def test_wrong_audience_is_refused(es, issuers):
    assert "InvalidAudienceError" in refused(es.sign(claims(aud="someone-else")), issuers)
    assert "aud" in refused(es.sign(claims(aud=None)), issuers)


def test_wrong_issuer_is_refused(es, issuers):
    assert "not trusted" in refused(es.sign(claims(iss="https://evil.test/")), issuers)
    assert "not trusted" in refused(es.sign(claims(iss=None)), issuers)


def test_issuer_keys_do_not_cross(es):
    """A key trusted for issuer A cannot sign for issuer B."""
    other = SigningKey.generate("ES256", kid="b-1")
    trusted = {
        ISS: TrustedIssuer(ISS, AUD, KeySet.from_document(jwks_document(es))),
        "https://b.test/": TrustedIssuer(
            "https://b.test/", AUD, KeySet.from_document(jwks_document(other))
        ),
    }
    forged = es.sign(claims(iss="https://b.test/"), kid="b-1")
    assert "signature verification failed" in refused(forged, trusted)


def test_subject_is_required(es, issuers):
    assert "sub" in refused(es.sign(claims(sub=None)), issuers)


def test_crit_header_is_refused(es, issuers):
    token = es.sign(claims(), headers={"crit": ["exp"], "exp": 1})
    detail = refused(token, issuers)
    assert "crit" in detail or "malformed" in detail


def test_embedded_jwk_header_is_ignored(issuers):
    attacker = SigningKey.generate("ES256", kid="es-1")
    token = attacker.sign(claims(), headers={"jwk": attacker.jwk()})
    assert "signature verification failed" in refused(token, issuers)


@pytest.mark.parametrize("junk", ["", "abc", "a.b", "a.b.c", "x" * 20000, "e30.e30.e30"])
def test_garbage_is_refused(junk, issuers):
    refused(junk, issuers)


# ---------------------------------------------------------------- JWKS files


def test_jwks_rejects_private_and_symmetric_keys_all_at_once(es):
    doc = {
        "keys": [
            es.private_jwk(),
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "tiny"},
            {"kty": "EC", "crv": "P-256", "x": "bad", "y": "bad"},
            {"kty": "XYZ"},
            {**es.jwk(), "use": "enc"},
            {**es.jwk(), "alg": "HS256"},
        ]
    }
    with pytest.raises(AuthConfigError) as info:
        KeySet.from_document(doc, "jwks.json")
    text = str(info.value)
    assert "keys[0]: holds private key members ['d']" in text
    assert "keys[1]: symmetric (oct) keys are not accepted" in text
    assert "keys[2]" in text
    assert "keys[3]: not a valid EC key" in text
    assert "keys[4]: unsupported kty 'XYZ'" in text
    assert "keys[5]: use 'enc'" in text
    assert "keys[6]: alg 'HS256'" in text
    assert len(info.value.problems) == 7


def test_jwks_rejects_short_rsa_keys():
    from cryptography.hazmat.primitives.asymmetric import rsa

    short = SigningKey("RS256", "short", rsa.generate_private_key(65537, 1024))
    with pytest.raises(AuthConfigError, match="1024 bits"):
        KeySet.from_document(jwks_document(short))


def test_jwks_duplicate_kid_and_empty_set(es):
    with pytest.raises(AuthConfigError, match="duplicate kid"):
        KeySet.from_document({"keys": [es.jwk(), es.jwk()]})
    with pytest.raises(AuthConfigError, match="holds no keys"):
        KeySet.from_document({"keys": []})
    with pytest.raises(AuthConfigError, match="must be an object"):
        KeySet.from_document([es.jwk()])


def test_jwks_file_reloads_when_it_changes(tmp_path, es):
    new = SigningKey.generate("ES256", kid="es-2")
    path = write_jwks(tmp_path / "jwks.json", es)
    source = JwksFile.load(path)
    trusted = {ISS: TrustedIssuer(ISS, AUD, source)}
    assert verify_jwt(es.sign(claims()), trusted, now=NOW)
    refused(new.sign(claims()), trusted)

    write_jwks(path, new)
    os.utime(path, ns=(1, 1_000_000_000))  # a different mtime, even on coarse clocks
    assert verify_jwt(new.sign(claims()), trusted, now=NOW)
    refused(es.sign(claims()), trusted)  # rotated out

    path.write_text("{not json")
    os.utime(path, ns=(2, 2_000_000_000))
    assert verify_jwt(new.sign(claims()), trusted, now=NOW)  # a bad rotation keeps the old keys


def test_jwks_file_errors_name_the_file(tmp_path):
    with pytest.raises(AuthConfigError, match="cannot read"):
        JwksFile.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"keys": [\n  {"kty": "EC",}\n]}')
    with pytest.raises(AuthConfigError, match="line 2 column"):
        JwksFile.load(bad)


def test_parse_issuer_reports_every_problem(tmp_path):
    problems = Problems("p.json")
    got = parse_issuer(
        {
            "issuer": " https://x/",
            "audience": "",
            "jwks_file": "nope.json",
            "leeway_seconds": 9999,
            "algorithms": [],
            "extra": 1,
        },
        "jwt_issuers[0]",
        problems,
        tmp_path,
    )
    assert got is None
    text = "\n".join(problems.items)
    for needle in (
        "unknown key 'extra'",
        "issuer ' https://x/' has leading or trailing whitespace",
        "audience must be a non-empty string",
        "algorithms must be a non-empty list",
        "leeway_seconds must be a number from 0 to 300",
        "nope.json",
    ):
        assert needle in text, needle


def test_parse_issuer_resolves_relative_jwks(tmp_path, es):
    write_jwks(tmp_path / "keys" / "idp.json", es)
    problems = Problems("p.json")
    got = parse_issuer(
        {"issuer": ISS, "audience": AUD, "jwks_file": "keys/idp.json", "leeway_seconds": 5},
        "jwt_issuers[0]",
        problems,
        tmp_path,
    )
    assert problems.items == []
    assert got is not None
    assert got.leeway_seconds == 5.0
    assert verify_jwt(es.sign(claims()), {ISS: got}, now=NOW)


def test_key_set_ignores_non_signature_members(es):
    doc = jwks_document(es)
    doc["keys"][0]["key_ops"] = ["verify"]
    assert KeySet.from_document(json.loads(json.dumps(doc))).candidates("ES256", "es-1")
