"""Test PKI and JOSE helpers: a CA, server and client certificates, JWKS and signed JWTs.

Everything is generated in memory with ``cryptography`` (certificates) and PyJWT
(tokens), so tests need no fixtures on disk and no network::

    ca = CertificateAuthority.create("test-ca")
    server = ca.issue_server()                       # localhost, 127.0.0.1, ::1
    client = ca.issue_client(spiffe_id="spiffe://acme.test/agent-platform")
    paths = server.write(tmp_path, "server")         # server.crt, server.key

    key = SigningKey.generate("ES256", kid="k1")
    jwks = jwks_document(key)                        # {"keys": [public JWK]}
    token = key.sign({"iss": ..., "aud": ..., "sub": ..., "exp": ...})

Forgeries for negative tests: :func:`unsigned_jwt` (``alg: none``) and
:func:`hs256_jwt` (HMAC over any secret, e.g. the issuer's public key PEM).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ONE_DAY = dt.timedelta(days=1)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM encoded."""

    cert_pem: bytes
    key_pem: bytes
    cert: x509.Certificate

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write ``<stem>.crt`` and ``<stem>.key`` (0600) and return their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_path.write_bytes(self.cert_pem)
        key_path.write_bytes(self.key_pem)
        key_path.chmod(0o600)
        return cert_path, key_path


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA that issues server and client certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "aarm-test-ca") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, directory: Path, stem: str = "ca") -> Path:
        """Write ``<stem>.crt`` and return its path."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{stem}.crt"
        path.write_bytes(self.cert_pem)
        return path

    def _issue(
        self,
        subject: x509.Name,
        sans: Sequence[x509.GeneralName],
        usage: x509.ObjectIdentifier,
        *,
        not_after: dt.datetime | None = None,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after or now + _ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), cert)

    def issue_server(
        self, hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"), *, cn: str = "localhost"
    ) -> Issued:
        """A TLS server certificate for ``hosts`` (DNS names and IP addresses)."""
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        return self._issue(subject, sans, ExtendedKeyUsageOID.SERVER_AUTH)

    def issue_client(
        self,
        *,
        spiffe_id: str | None = None,
        common_name: str = "aarm-test-client",
        organization: str | None = None,
        extra_uris: Sequence[str] = (),
        not_after: dt.datetime | None = None,
    ) -> Issued:
        """A TLS client certificate, with a SPIFFE URI SAN when ``spiffe_id`` is given."""
        # Conventional order (O before CN), so RFC 4514 prints "CN=...,O=...".
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        uris = ([spiffe_id] if spiffe_id else []) + list(extra_uris)
        sans = [x509.UniformResourceIdentifier(u) for u in uris]
        return self._issue(
            x509.Name(attrs), sans, ExtendedKeyUsageOID.CLIENT_AUTH, not_after=not_after
        )


# ---------------------------------------------------------------- JOSE


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(obj: Mapping[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


@dataclass(frozen=True)
class SigningKey:
    """An asymmetric JWT signing key with its kid and algorithm."""

    alg: str
    kid: str
    private_key: PrivateKey

    @classmethod
    def generate(cls, alg: str = "ES256", *, kid: str = "test-key") -> SigningKey:
        key: PrivateKey
        if alg.startswith(("RS", "PS")):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        elif alg == "ES384":
            key = ec.generate_private_key(ec.SECP384R1())
        elif alg == "EdDSA":
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(f"unsupported alg {alg}")
        return cls(alg, kid, key)

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self, *, include_alg: bool = True) -> dict[str, Any]:
        """The public JWK (never the private part)."""
        algorithm = jwt.get_algorithm_by_name(self.alg)
        doc: dict[str, Any] = json.loads(algorithm.to_jwk(self.private_key.public_key()))
        doc["kid"] = self.kid
        doc["use"] = "sig"
        if include_alg:
            doc["alg"] = self.alg
        return doc

    def private_jwk(self) -> dict[str, Any]:
        """The private JWK (for the negative test that a JWKS file must hold public keys)."""
        algorithm = jwt.get_algorithm_by_name(self.alg)
        doc: dict[str, Any] = json.loads(algorithm.to_jwk(self.private_key))
        doc["kid"] = self.kid
        return doc

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        headers: Mapping[str, Any] | None = None,
        alg: str | None = None,
        kid: str | None = None,
    ) -> str:
        """A JWS compact token over ``claims``; ``kid`` defaults to this key's."""
        head = {"kid": self.kid if kid is None else kid, **(headers or {})}
        if head["kid"] == "":
            del head["kid"]
        return jwt.encode(dict(claims), self.private_key, algorithm=alg or self.alg, headers=head)


def jwks_document(*keys: SigningKey, include_alg: bool = True) -> dict[str, Any]:
    """A JWKS with the public halves of ``keys``."""
    return {"keys": [k.jwk(include_alg=include_alg) for k in keys]}


def write_jwks(path: Path, *keys: SigningKey) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jwks_document(*keys)))
    return path


def unsigned_jwt(claims: Mapping[str, Any], *, kid: str | None = None) -> str:
    """An ``alg: none`` token (empty signature)."""
    head: dict[str, Any] = {"alg": "none", "typ": "JWT"}
    if kid:
        head["kid"] = kid
    return f"{_segment(head)}.{_segment(claims)}."


def hs256_jwt(claims: Mapping[str, Any], secret: bytes, *, kid: str | None = None) -> str:
    """An HS256 token with ``secret`` as the HMAC key (e.g. a public key PEM: key confusion)."""
    head: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid:
        head["kid"] = kid
    signing_input = f"{_segment(head)}.{_segment(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def tamper_payload(token: str, **changes: Any) -> str:
    """The same header and signature over a modified payload (a forged token)."""
    head, body, sig = token.split(".")
    padded = body + "=" * (-len(body) % 4)
    claims = json.loads(base64.urlsafe_b64decode(padded))
    claims.update(changes)
    return f"{head}.{_segment(claims)}.{sig}"
