"""Establish the principal behind a call from its metadata and its TLS peer.

:func:`authenticate` is a function over what a gRPC servicer sees
(``context.invocation_metadata()`` and ``context.auth_context()``), so it is tested
without a server. Precedence:

1. A bearer token (``authorization: Bearer <token>``), when present, decides: a static
   token is looked up by its SHA-256 digest; otherwise a token shaped like a JWT is
   verified against the trusted issuers' JWKS files (:mod:`aarm_pdp.auth.jwks`) and
   its verified ``(iss, sub)`` names the principal. A bad token is refused even if
   the connection also carries a good client certificate: a caller that sends a
   credential is told when it is wrong.
2. Otherwise the mTLS client certificate, only when the server requires and verifies
   client certificates (``client_certificates=True``: ``--tls-client-ca`` is set, so
   gRPC has already checked the chain and validity in the handshake). The PEM in
   ``x509_pem_cert`` is parsed with ``cryptography``: a SPIFFE URI SAN (at most one,
   as an X.509-SVID has) or the subject (RFC 4514) names the principal; if both name
   principals they must be the same one.
3. Neither: :class:`~aarm_pdp.errors.Unauthenticated`.

Every refusal is :class:`~aarm_pdp.errors.Unauthenticated`; the client sees the
generic message of the error table, the detail (never the token) goes to the log.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cryptography import x509

from aarm_pdp.auth.jwks import looks_like_jwt, verify_jwt
from aarm_pdp.auth.principals import Principal, PrincipalDirectory, token_hash
from aarm_pdp.errors import Unauthenticated

Metadata = Iterable[tuple[str, str | bytes]]
"""``context.invocation_metadata()``: (key, value) pairs, keys lower case."""
AuthContext = Mapping[str, Iterable[bytes]]
"""``context.auth_context()``: property name to values."""

# RFC 6750 b64token.
_BEARER_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_SPIFFE_SCHEME = "spiffe://"
MAX_AUTHORIZATION_BYTES = 16 * 1024


class Method(enum.StrEnum):
    """How a principal was established."""

    TOKEN = "token"  # noqa: S105 - a method name, not a secret
    JWT = "jwt"
    MTLS = "mtls"


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A principal and how it was established; ``credential`` is a non-secret label."""

    principal: Principal
    method: Method
    credential: str
    expires_at: float | None = None
    """When the credential stops being valid (Unix seconds; a JWT's ``exp``), None: it
    does not expire by itself. A long-lived stream checks it (api/handlers.py)."""


def bearer_token(metadata: Metadata) -> str | None:
    """The token of the one ``authorization: Bearer`` header, or None when there is none.

    Raises:
        Unauthenticated: several authorization headers, another scheme, or a malformed token.
    """
    values = [v for k, v in metadata if k.lower() == "authorization"]
    if not values:
        return None
    if len(values) > 1:
        raise Unauthenticated("more than one authorization header")
    value = values[0]
    if isinstance(value, bytes):
        raise Unauthenticated("authorization header is binary")
    if len(value) > MAX_AUTHORIZATION_BYTES:
        raise Unauthenticated("authorization header too long")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated(f"authorization scheme {scheme[:16]!r} is not Bearer")
    token = token.strip()
    if not token or not _BEARER_RE.fullmatch(token):
        raise Unauthenticated("malformed bearer token")
    return token


def peer_certificate(auth_context: AuthContext) -> x509.Certificate | None:
    """The peer's verified leaf certificate from a TLS auth context, or None."""
    security = list(auth_context.get("transport_security_type", ()))
    if security != [b"ssl"]:
        return None
    pems = list(auth_context.get("x509_pem_cert", ()))
    if not pems:
        return None
    try:
        return x509.load_pem_x509_certificate(pems[0])
    except ValueError as exc:
        raise Unauthenticated(f"peer certificate unparsable: {exc}") from exc


def certificate_identity(cert: x509.Certificate) -> tuple[str | None, str]:
    """The SPIFFE ID (or None) and the normalised RFC 4514 subject of a certificate.

    Raises:
        Unauthenticated: more than one SPIFFE URI SAN (not a valid X.509-SVID).
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    spiffe = [u for u in uris if u.startswith(_SPIFFE_SCHEME)]
    if len(spiffe) > 1:
        raise Unauthenticated(f"certificate carries {len(spiffe)} SPIFFE IDs")
    return (spiffe[0] if spiffe else None), cert.subject.rfc4514_string()


def _from_certificate(cert: x509.Certificate, directory: PrincipalDirectory) -> Authenticated:
    spiffe_id, subject = certificate_identity(cert)
    by_spiffe = directory.by_spiffe_id(spiffe_id) if spiffe_id else None
    by_subject = directory.by_subject(cert.subject)
    if by_spiffe and by_subject and by_spiffe.id != by_subject.id:
        raise Unauthenticated(
            f"certificate {spiffe_id!r} / {subject!r} names two principals "
            f"({by_spiffe.id!r}, {by_subject.id!r})"
        )
    if by_spiffe:
        return Authenticated(by_spiffe, Method.MTLS, spiffe_id or "")
    if by_subject:
        return Authenticated(by_subject, Method.MTLS, subject)
    raise Unauthenticated(f"no principal for certificate {spiffe_id or subject!r}")


def _from_token(token: str, directory: PrincipalDirectory, now: float) -> Authenticated:
    principal = directory.by_token(token)
    if principal is not None:
        return Authenticated(principal, Method.TOKEN, token_hash(token)[:19])
    if not looks_like_jwt(token):
        raise Unauthenticated(f"unknown bearer token {token_hash(token)[:19]}")
    if not directory.issuers:
        raise Unauthenticated("bearer JWT given but no jwt_issuers are configured")
    claims = verify_jwt(token, directory.issuers, now=now)
    iss, sub = claims["iss"], claims["sub"]
    if not isinstance(sub, str):
        raise Unauthenticated(f"jwt from {iss!r}: sub is not a string")
    principal = directory.by_jwt_subject(iss, sub)
    if principal is None:
        raise Unauthenticated(f"jwt from {iss!r}: no principal for subject {sub!r}")
    exp = claims.get("exp")  # present and current: verify_jwt checked it, with leeway
    expires_at = (
        float(exp) + directory.issuers[iss].leeway_seconds
        if isinstance(exp, int | float) and not isinstance(exp, bool)
        else None
    )
    return Authenticated(principal, Method.JWT, f"{iss} {sub}", expires_at)


def authenticate(
    metadata: Metadata,
    auth_context: AuthContext,
    directory: PrincipalDirectory,
    *,
    now: float,
    client_certificates: bool,
) -> Authenticated:
    """The principal behind a call (see the module docstring for the precedence).

    ``client_certificates`` says the server requires and verifies client certificates;
    without it a peer certificate is ignored. ``now`` is the injected clock.

    Raises:
        Unauthenticated: no credential, or one that does not establish a principal.
    """
    token = bearer_token(metadata)
    if token is not None:
        return _from_token(token, directory, now)
    if client_certificates:
        cert = peer_certificate(auth_context)
        if cert is not None:
            return _from_certificate(cert, directory)
    raise Unauthenticated("no credential: no bearer token and no client certificate")


class Authenticator:
    """:func:`authenticate` bound to a directory, the TLS mode and a clock."""

    def __init__(
        self,
        directory: PrincipalDirectory,
        *,
        client_certificates: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.client_certificates = client_certificates
        self._clock = clock

    def __call__(self, metadata: Metadata, auth_context: AuthContext) -> Authenticated:
        return authenticate(
            metadata,
            auth_context,
            self.directory,
            now=self._clock(),
            client_certificates=self.client_certificates,
        )


__all__ = [
    "AuthContext",
    "Authenticated",
    "Authenticator",
    "Metadata",
    "Method",
    "authenticate",
    "bearer_token",
    "certificate_identity",
    "peer_certificate",
]
