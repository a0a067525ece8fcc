"""gRPC TLS credentials: server (TLS, mTLS, reload without restart) and client.

:func:`server_credentials` turns ``--tls-cert``/``--tls-key`` (and, for mutual TLS,
``--tls-client-ca``) into ``grpc.ServerCredentials``. The files are validated at
start (PEM parses, the key matches the leaf certificate, the CA file holds
certificates) with every problem reported at once.

Reload: with ``reload=True`` (the default) the credentials are
``grpc.dynamic_ssl_server_credentials`` with a fetcher that gRPC calls at each new
TLS handshake. The fetcher stats the files (a few microseconds) and, when a
modification time, size or inode changed, reads and validates them again: a good set
is served to the next handshakes (existing connections keep theirs); a bad or
half-written set is logged and the previous certificates stay in use. Rotation is
therefore "write the new files" (cert-manager, SPIRE helper, certbot hooks), no
restart. With a client CA, client certificates are required and verified
(``require_client_authentication=True``); the reloaded CA applies to new handshakes.

:func:`channel_credentials` builds client credentials for tests and the SDK.
:func:`is_loopback_listen` tells whether a listen address stays on this host (the
server refuses a non-loopback listener without TLS unless told ``--insecure-listen``).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from aarm_pdp.auth._problems import AuthConfigError

log = logging.getLogger("aarm_pdp.auth.tls")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The server's certificate chain and key, and optionally the client CA (mTLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    @property
    def mutual(self) -> bool:
        """Client certificates are required and verified."""
        return self.client_ca is not None

    def paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())


@dataclass(frozen=True, slots=True)
class _Material:
    cert_chain: bytes
    key: bytes
    client_ca: bytes | None

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key, self.cert_chain)], root_certificates=self.client_ca
        )


def _read(path: Path, what: str, problems: list[str]) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as exc:
        problems.append(f"{what} {str(path)!r}: cannot read: {exc}")
        return None


def load_material(files: TlsFiles) -> _Material:
    """Read and check the files; :class:`AuthConfigError` lists every problem."""
    problems: list[str] = []
    chain = _read(files.cert, "tls cert", problems)
    key = _read(files.key, "tls key", problems)
    ca = _read(files.client_ca, "tls client CA", problems) if files.client_ca else None
    leaf: x509.Certificate | None = None
    if chain is not None:
        try:
            leaf = x509.load_pem_x509_certificates(chain)[0]
        except ValueError as exc:
            problems.append(f"tls cert {str(files.cert)!r}: not a PEM certificate chain: {exc}")
    if key is not None:
        try:
            private = serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError) as exc:
            problems.append(
                f"tls key {str(files.key)!r}: not an unencrypted PEM private key: {exc}"
            )
        else:
            if leaf is not None and private.public_key() != leaf.public_key():
                problems.append(
                    f"tls key {str(files.key)!r} does not match the certificate {str(files.cert)!r}"
                )
    if ca is not None and files.client_ca is not None:
        try:
            x509.load_pem_x509_certificates(ca)
        except ValueError as exc:
            problems.append(f"tls client CA {str(files.client_ca)!r}: not PEM certificates: {exc}")
    if problems or chain is None or key is None:
        raise AuthConfigError("tls", problems)
    return _Material(chain, key, ca)


def _stamps(files: TlsFiles) -> tuple[tuple[int, int, int], ...]:
    out = []
    for p in files.paths():
        st = p.stat()
        out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class CertificateReloader:
    """The fetcher for ``grpc.dynamic_ssl_server_credentials``: new files, new config.

    Called by gRPC at each handshake; returns ``None`` ("keep the current
    configuration") unless the files changed and still validate.
    """

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.reloads = 0
        self._lock = threading.Lock()
        self._stamps = _stamps(files)
        self.initial = load_material(files).configuration()

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            with self._lock:
                try:
                    stamps = _stamps(self.files)
                except OSError as exc:
                    log.warning("tls files unreadable, keeping current certificates: %s", exc)
                    return None
                if stamps == self._stamps:
                    return None
                self._stamps = stamps
                try:
                    material = load_material(self.files)
                except AuthConfigError as exc:
                    log.warning("tls files changed but invalid, keeping current: %s", exc)
                    return None
                self.reloads += 1
                log.info("tls certificates reloaded from %s", self.files.cert)
                return material.configuration()
        except Exception:  # never let an exception into gRPC's handshake path
            log.exception("tls certificate reload failed; keeping current certificates")
            return None


def _fetcher(
    reloader: CertificateReloader,
) -> Callable[[], grpc.ServerCertificateConfiguration]:
    # gRPC accepts None from the fetcher ("no change"); grpc-stubs types it without.
    return cast("Callable[[], grpc.ServerCertificateConfiguration]", reloader)


def server_credentials(files: TlsFiles, *, reload: bool = True) -> grpc.ServerCredentials:
    """Server credentials for TLS (mTLS when ``files.client_ca`` is set).

    Raises:
        AuthConfigError: a file is unreadable or invalid, or the key does not match.
    """
    if not reload:
        m = load_material(files)
        return grpc.ssl_server_credentials(
            [(m.key, m.cert_chain)], root_certificates=m.client_ca, require_client_auth=files.mutual
        )
    reloader = CertificateReloader(files)
    return grpc.dynamic_ssl_server_credentials(
        reloader.initial,
        _fetcher(reloader),
        require_client_authentication=files.mutual,
    )


def channel_credentials(
    ca: bytes | Path | None = None,
    *,
    cert: bytes | Path | None = None,
    key: bytes | Path | None = None,
) -> grpc.ChannelCredentials:
    """Client credentials: trust ``ca`` (system roots if None); present ``cert``+``key``.

    Raises:
        ValueError: only one of ``cert`` and ``key`` given.
    """
    if (cert is None) != (key is None):
        raise ValueError("give both cert and key for a client certificate, or neither")

    def data(v: bytes | Path | None) -> bytes | None:
        return v.read_bytes() if isinstance(v, Path) else v

    return grpc.ssl_channel_credentials(data(ca), data(key), data(cert))


def is_loopback_listen(listen: str) -> bool:
    """Whether ``host:port`` binds only loopback (``localhost``, 127.0.0.0/8, ``[::1]``)."""
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = [
    "CertificateReloader",
    "TlsFiles",
    "channel_credentials",
    "is_loopback_listen",
    "load_material",
    "server_credentials",
]
