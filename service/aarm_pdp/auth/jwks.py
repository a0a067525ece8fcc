"""JWKS files and JWT verification: the only module that talks to the JOSE library.

Used for two kinds of token, with the same rules:

- service credentials (``authorization: Bearer <jwt>``, :mod:`aarm_pdp.auth.credentials`);
- end-user identity tokens forwarded by the enforcement point (:mod:`aarm_pdp.auth.idp`).

Verification, in order (any failure raises :class:`~aarm_pdp.errors.Unauthenticated`
with a log-only detail; the token itself never appears in a message):

1. Compact JWS shape, at most :data:`MAX_TOKEN_BYTES`; no ``crit`` header.
2. ``alg`` is in :data:`SUPPORTED_ALGORITHMS` (asymmetric only: ``none`` and every
   ``HS*`` are refused before any key is looked at) and in the issuer's allow-list.
3. ``iss`` (read unverified only to choose the issuer) names a trusted issuer.
4. The key comes from that issuer's JWKS file, never from the token (``jwk``,
   ``jku``, ``x5u`` headers are ignored): the one with the header's ``kid`` (every
   key when there is none), whose key type fits ``alg`` (RSA: RS*/PS*, EC: ES* on
   its curve, OKP: EdDSA) and whose JWK ``alg``, if set, equals it. The library
   binds each key object to one algorithm, so an RSA public key can never be used
   as an HMAC secret.
5. Signature, then ``iss`` and ``aud`` (PyJWT), then ``exp`` (required), ``nbf`` and
   ``iat`` against the injected clock with the issuer's leeway (default 30 s).

JWKS files hold public keys only: a file with ``oct`` (symmetric) keys, private key
members (``d``, ``p``, ...), or RSA keys under 2048 bits does not load. A JWKS file is
re-read when its modification time changes (key rotation without restart); a
rotated file that does not parse is logged and the previous keys stay in use.

The library is PyJWT (``PyJWT[crypto]``, on ``cryptography``, which receipts already
use): maintained, typed (``py.typed``), small, and its ``PyJWK`` is bound to one
algorithm: a token whose ``alg`` differs from the key's is rejected by the library
too, under our own checks above.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.types import Options

from aarm_pdp.auth._problems import AuthConfigError, Problems, check_keys, read_json, string
from aarm_pdp.errors import Unauthenticated

log = logging.getLogger("aarm_pdp.auth")

MAX_TOKEN_BYTES = 16 * 1024
DEFAULT_LEEWAY_SECONDS = 30.0
MAX_LEEWAY_SECONDS = 300.0
MIN_RSA_BITS = 2048

# Asymmetric signature algorithms only, and which key type/curve each needs.
_ALG_KEYS: Mapping[str, tuple[str, frozenset[str]]] = {
    **{a: ("RSA", frozenset()) for a in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset(_ALG_KEYS)
"""Every algorithm a token may use; an issuer's ``algorithms`` narrows this."""

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_TIME_CLAIMS = ("exp", "nbf", "iat")


# ---------------------------------------------------------------- keys


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    by_alg: Mapping[str, jwt.PyJWK]


@dataclass(frozen=True, slots=True)
class KeySet:
    """Parsed public verification keys from one JWKS document."""

    keys: tuple[_Key, ...]

    def current(self) -> KeySet:
        return self

    def candidates(self, alg: str, kid: str | None) -> list[jwt.PyJWK]:
        """Keys that may verify a token with this header ``alg`` and ``kid``."""
        return [
            k.by_alg[alg] for k in self.keys if alg in k.by_alg and (kid is None or k.kid == kid)
        ]

    @classmethod
    def parse(cls, doc: Any, problems: Problems, where: str = "") -> KeySet:
        """Validate a JWKS document, reporting every bad key to ``problems``."""
        prefix = f"{where}: " if where else ""
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            problems.add(where, 'a JWKS must be an object {"keys": [...]}')
            return cls(())
        if not doc["keys"]:
            problems.add(where, "the JWKS holds no keys")
        keys: list[_Key] = []
        seen: set[str] = set()
        for i, jwk in enumerate(doc["keys"]):
            at = f"{prefix}keys[{i}]"
            key = _parse_key(jwk, at, problems)
            if key is None:
                continue
            if key.kid is not None:
                if key.kid in seen:
                    problems.add(at, f"duplicate kid {key.kid!r}")
                seen.add(key.kid)
            keys.append(key)
        return cls(tuple(keys))

    @classmethod
    def from_document(cls, doc: Any, source: str = "<jwks>") -> KeySet:
        """Parse a JWKS document or raise :class:`AuthConfigError` listing every problem."""
        problems = Problems(source)
        keys = cls.parse(doc, problems)
        problems.raise_if_any()
        return keys


def _parse_key(jwk: Any, at: str, problems: Problems) -> _Key | None:
    if not isinstance(jwk, dict):
        problems.add(at, "a JWK must be an object")
        return None
    kty = jwk.get("kty")
    if kty == "oct":
        problems.add(at, "symmetric (oct) keys are not accepted; use asymmetric keys")
        return None
    if kty not in ("RSA", "EC", "OKP"):
        problems.add(at, f"unsupported kty {kty!r} (RSA, EC or OKP)")
        return None
    private = sorted(_PRIVATE_MEMBERS & set(jwk))
    if private:
        problems.add(at, f"holds private key members {private}: publish public keys only")
        return None
    kid = jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        problems.add(at, "kid must be a non-empty string")
        return None
    if jwk.get("use", "sig") != "sig":
        problems.add(at, f"use {jwk.get('use')!r} is not 'sig'")
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        problems.add(at, "key_ops does not include 'verify'")
        return None
    declared = jwk.get("alg")
    if declared is not None and declared not in SUPPORTED_ALGORITHMS:
        problems.add(at, f"alg {declared!r} is not an accepted asymmetric algorithm")
        return None
    crv = jwk.get("crv")
    algs = [
        a
        for a, (ktype, curves) in _ALG_KEYS.items()
        if ktype == kty and (not curves or crv in curves) and declared in (None, a)
    ]
    if not algs:
        problems.add(at, f"no accepted algorithm for kty {kty!r} crv {crv!r}")
        return None
    by_alg: dict[str, jwt.PyJWK] = {}
    for alg in algs:
        try:
            by_alg[alg] = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError as exc:
            problems.add(at, f"not a valid {kty} key: {exc}")
            return None
    sample = next(iter(by_alg.values())).key
    if isinstance(sample, rsa.RSAPublicKey) and sample.key_size < MIN_RSA_BITS:
        problems.add(at, f"RSA key of {sample.key_size} bits; at least {MIN_RSA_BITS} required")
        return None
    return _Key(kid, by_alg)


class KeySource(Protocol):
    """Where an issuer's keys come from: a fixed :class:`KeySet` or a :class:`JwksFile`."""

    def current(self) -> KeySet: ...


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class JwksFile:
    """A JWKS file, re-read when its modification time (or size, inode) changes."""

    def __init__(self, path: Path, keys: KeySet, stamp: tuple[int, int, int]) -> None:
        self.path = path
        self._keys = keys
        self._stamp = stamp
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> JwksFile:
        """Read and validate; raises :class:`AuthConfigError` with every problem."""
        try:
            stamp = _stamp(path)
        except OSError as exc:
            raise AuthConfigError(str(path), [f"cannot read: {exc}"]) from exc
        keys = KeySet.from_document(read_json(path), str(path))
        return cls(path, keys, stamp)

    def current(self) -> KeySet:
        try:
            stamp = _stamp(self.path)
        except OSError as exc:
            log.warning("jwks %s unreadable, keeping previous keys: %s", self.path, exc)
            return self._keys
        if stamp == self._stamp:
            return self._keys
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._keys = KeySet.from_document(read_json(self.path), str(self.path))
                    log.info("jwks %s reloaded (%d keys)", self.path, len(self._keys.keys))
                except AuthConfigError as exc:
                    log.warning(
                        "jwks %s changed but is invalid, keeping previous keys: %s", self.path, exc
                    )
                self._stamp = stamp
        return self._keys


# ---------------------------------------------------------------- issuers


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    """An issuer whose tokens are accepted: its keys, audience and algorithm allow-list."""

    issuer: str
    audience: str
    keys: KeySource
    algorithms: frozenset[str] = field(default=SUPPORTED_ALGORITHMS)
    leeway_seconds: float = DEFAULT_LEEWAY_SECONDS


_ISSUER_KEYS = frozenset({"issuer", "audience", "jwks_file"})
_ISSUER_OPTIONAL = frozenset({"algorithms", "leeway_seconds"})


def parse_issuer(
    entry: Any,
    where: str,
    problems: Problems,
    base_dir: Path,
    *,
    extra_keys: frozenset[str] = frozenset(),
) -> TrustedIssuer | None:
    """Read ``{"issuer", "audience", "jwks_file", "algorithms"?, "leeway_seconds"?}``.

    ``jwks_file`` is relative to ``base_dir`` (the directory of the file being read).
    ``extra_keys`` are tolerated for the caller to read (the IdP section's own keys).
    """
    if not isinstance(entry, dict):
        problems.add(where, "must be an object")
        return None
    check_keys(
        entry, where, problems, required=_ISSUER_KEYS, optional=_ISSUER_OPTIONAL | extra_keys
    )
    issuer = string(entry, "issuer", where, problems)
    audience = string(entry, "audience", where, problems)
    jwks_name = string(entry, "jwks_file", where, problems)
    algorithms = SUPPORTED_ALGORITHMS
    if "algorithms" in entry:
        algs = entry["algorithms"]
        if not isinstance(algs, list) or not algs or not all(isinstance(a, str) for a in algs):
            problems.add(where, "algorithms must be a non-empty list of names")
        else:
            bad = sorted(set(algs) - SUPPORTED_ALGORITHMS)
            if bad:
                problems.add(
                    where,
                    f"algorithms {bad} not accepted (asymmetric only: "
                    f"{', '.join(sorted(SUPPORTED_ALGORITHMS))}; never none or HS*)",
                )
            algorithms = frozenset(algs) & SUPPORTED_ALGORITHMS
    leeway = DEFAULT_LEEWAY_SECONDS
    if "leeway_seconds" in entry:
        value = entry["leeway_seconds"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= MAX_LEEWAY_SECONDS
        ):
            problems.add(where, f"leeway_seconds must be a number from 0 to {MAX_LEEWAY_SECONDS:g}")
        else:
            leeway = float(value)
    keys: KeySource | None = None
    if jwks_name is not None:
        path = Path(jwks_name)
        path = path if path.is_absolute() else base_dir / path
        try:
            keys = JwksFile.load(path)
        except AuthConfigError as exc:
            for p in exc.problems:
                problems.add(where, f"jwks_file {str(path)!r}: {p}")
    if issuer is None or audience is None or keys is None or not algorithms:
        return None
    return TrustedIssuer(issuer, audience, keys, algorithms, leeway)


# ---------------------------------------------------------------- verification


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated segments: worth handing to :func:`verify_jwt`."""
    return token.count(".") == 2


def _time_claim(claims: Mapping[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unauthenticated(f"jwt: {name} is not a number")
    return float(value)


def verify_jwt(
    token: str,
    issuers: Mapping[str, TrustedIssuer],
    *,
    now: float,
    required_claims: tuple[str, ...] = ("sub",),
) -> dict[str, Any]:
    """The verified claims of ``token``, or :class:`Unauthenticated` saying why not.

    ``issuers`` maps each trusted ``iss`` value to its configuration; ``now`` is the
    injected clock (Unix seconds). ``iss``, ``aud``, ``exp`` and ``required_claims``
    must be present.
    """
    if len(token) > MAX_TOKEN_BYTES or not looks_like_jwt(token):
        raise Unauthenticated("jwt: not a compact JWS token")
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"jwt: malformed: {exc}") from exc
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in SUPPORTED_ALGORITHMS:
        raise Unauthenticated(f"jwt: algorithm {alg!r} not accepted")
    if "crit" in header:
        raise Unauthenticated("jwt: critical header extensions are not supported")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise Unauthenticated("jwt: kid is not a string")
    iss = unverified.get("iss")
    trusted = issuers.get(iss) if isinstance(iss, str) else None
    if trusted is None:
        raise Unauthenticated(f"jwt: issuer {iss!r} is not trusted")
    if alg not in trusted.algorithms:
        raise Unauthenticated(f"jwt: algorithm {alg} not allowed for issuer {iss!r}")
    candidates = trusted.keys.current().candidates(alg, kid)
    if not candidates:
        raise Unauthenticated(f"jwt: no {alg} key with kid {kid!r} for issuer {iss!r}")
    require = sorted({"iss", "aud", "exp", *required_claims})
    options: Options = {
        "verify_exp": False,  # checked below against the injected clock
        "verify_nbf": False,
        "verify_iat": False,
        "require": require,
        "enforce_minimum_key_length": True,
    }
    claims: dict[str, Any] | None = None
    for key in candidates:
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=trusted.audience,
                issuer=trusted.issuer,
                options=options,
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"jwt from {iss!r}: {type(exc).__name__}: {exc}") from exc
    if claims is None:
        raise Unauthenticated(f"jwt from {iss!r}: signature verification failed (kid {kid!r})")
    leeway = trusted.leeway_seconds
    exp, nbf, iat = (_time_claim(claims, n) for n in _TIME_CLAIMS)
    if exp is None or exp <= now - leeway:
        raise Unauthenticated(f"jwt from {iss!r}: expired")
    if nbf is not None and nbf > now + leeway:
        raise Unauthenticated(f"jwt from {iss!r}: not valid yet (nbf)")
    if iat is not None and iat > now + leeway:
        raise Unauthenticated(f"jwt from {iss!r}: issued in the future (iat)")
    return claims


__all__ = [
    "DEFAULT_LEEWAY_SECONDS",
    "SUPPORTED_ALGORITHMS",
    "JwksFile",
    "KeySet",
    "KeySource",
    "TrustedIssuer",
    "looks_like_jwt",
    "parse_issuer",
    "verify_jwt",
]
