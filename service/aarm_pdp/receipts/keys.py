"""Ed25519 receipt-signing keys: a key directory, rotation, and the published JWKS.

Key directory layout::

    <dir>/                      mode 0700
        <key_id>.pem            PKCS#8 PEM Ed25519 private key, mode 0600, one per key
        active                  the active key id (one line)

Rotation writes a new key and repoints ``active``; old keys stay, so their public
halves stay in the JWKS and historical receipts keep verifying. Key material is never
logged, printed or put in a ``repr``; only key ids are.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from aarm_pdp.errors import AarmError, ErrorCode
from aarm_pdp.receipts.verify import PublicKeys, public_jwk

__all__ = [
    "ACTIVE_FILE",
    "DEFAULT_KEY_DIR",
    "KeyRing",
    "SigningKey",
    "init_key_dir",
    "jwks",
    "rotate",
]

log = logging.getLogger(__name__)

DEFAULT_KEY_DIR: Final = Path("var/keys")
ACTIVE_FILE: Final = "active"
_KEY_SUFFIX: Final = ".pem"
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _key_error(detail: str) -> AarmError:
    return AarmError(f"receipt keys: {detail}", code=ErrorCode.INTERNAL)


@dataclass(frozen=True)
class SigningKey:
    """One Ed25519 private key and its id. The ``repr`` shows the id only."""

    key_id: str
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self.private_key.sign(data)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        """The public half as a JWK (kty OKP, crv Ed25519, alg EdDSA, use sig)."""
        return public_jwk(self.key_id, self.public_key)


class KeyRing:
    """The signing keys of one key directory; :attr:`active` signs new receipts."""

    def __init__(self, keys: Mapping[str, SigningKey], active: str) -> None:
        if active not in keys:
            raise _key_error(f"active key {active!r} is not in the key ring")
        self._keys = dict(keys)
        self._active = keys[active]

    def __repr__(self) -> str:
        return f"KeyRing(active={self._active.key_id!r}, keys={sorted(self._keys)!r})"

    @classmethod
    def generate(cls, key_id: str | None = None) -> KeyRing:
        """An in-memory ring with one fresh key (tests and tools; nothing is written)."""
        kid = key_id or new_key_id()
        return cls({kid: SigningKey(kid, Ed25519PrivateKey.generate())}, kid)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> KeyRing:
        """Load every ``*.pem`` key of ``directory`` and the ``active`` pointer.

        Raises:
            AarmError: the directory, a key file or the pointer is missing or invalid.
        """
        path = Path(directory)
        try:
            active = (path / ACTIVE_FILE).read_text(encoding="utf-8").strip()
            files = sorted(p for p in path.iterdir() if p.name.endswith(_KEY_SUFFIX))
        except OSError as exc:
            raise _key_error(f"cannot read key directory {path}: {exc.strerror}") from exc
        keys: dict[str, SigningKey] = {}
        for file in files:
            kid = file.name[: -len(_KEY_SUFFIX)]
            if not _KEY_ID.match(kid):
                raise _key_error(f"bad key id in file name {file.name!r}")
            keys[kid] = SigningKey(kid, _read_private_key(file))
        if not _KEY_ID.match(active):
            raise _key_error(f"{path / ACTIVE_FILE} does not name a key id")
        if active not in keys:
            raise _key_error(f"active key {active!r} has no {active}{_KEY_SUFFIX} in {path}")
        return cls(keys, active)

    @classmethod
    def open(cls, directory: str | os.PathLike[str] = DEFAULT_KEY_DIR) -> KeyRing:
        """Load ``directory``, first creating it with one key if it holds no key yet."""
        init_key_dir(directory)
        return cls.load(directory)

    @property
    def active(self) -> SigningKey:
        return self._active

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def get(self, key_id: str) -> SigningKey | None:
        return self._keys.get(key_id)

    def jwks(self) -> dict[str, Any]:
        """The JWKS of every key in the ring, active first, then by key id."""
        order = [self._active.key_id] + [k for k in sorted(self._keys) if k != self._active.key_id]
        return {"keys": [self._keys[k].public_jwk() for k in order]}

    def public_keys(self) -> PublicKeys:
        """The verifier's view of this ring."""
        return PublicKeys({k: v.public_key for k, v in self._keys.items()})


def new_key_id(now: datetime | None = None) -> str:
    """``ed25519-YYYYMMDDTHHMMSSZ-<8 hex>``: sortable by creation time, unique."""
    when = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"ed25519-{when}-{secrets.token_hex(4)}"


def _read_private_key(file: Path) -> Ed25519PrivateKey:
    try:
        mode = file.stat().st_mode
        data = file.read_bytes()
    except OSError as exc:
        raise _key_error(f"cannot read {file}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("receipt key file %s is readable by group or others; chmod 600 it", file)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # The library's message never contains key bytes; still, keep it generic.
        raise _key_error(f"{file} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise _key_error(f"{file} is not an Ed25519 key")
    return key


def _write_private_key(directory: Path, key_id: str) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    target = directory / f"{key_id}{_KEY_SUFFIX}"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_active(directory: Path, key_id: str) -> None:
    """Repoint ``active`` atomically (write a temp file, fsync, rename, fsync the dir)."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".active-")
    try:
        os.write(fd, f"{key_id}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / ACTIVE_FILE)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def init_key_dir(directory: str | os.PathLike[str] = DEFAULT_KEY_DIR) -> str:
    """Create ``directory`` (0700) with a first key if it has no ``active`` key yet.

    Returns the active key id. Idempotent.
    """
    path = Path(directory)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        active = path / ACTIVE_FILE
        if active.exists():
            return active.read_text(encoding="utf-8").strip()
        kid = new_key_id()
        _write_private_key(path, kid)
        _write_active(path, kid)
    except OSError as exc:
        raise _key_error(f"cannot initialise key directory {path}: {exc.strerror}") from exc
    log.info("created receipt signing key %s in %s", kid, path)
    return kid


def rotate(directory: str | os.PathLike[str] = DEFAULT_KEY_DIR) -> str:
    """Add a new key to ``directory`` and make it active; old keys are kept.

    Returns the new key id. Running services sign with the new key once they reload
    the ring (``KeyRing.load``); receipts signed with older keys keep verifying
    because their public keys stay in the JWKS.
    """
    path = Path(directory)
    init_key_dir(path)
    kid = new_key_id()
    try:
        _write_private_key(path, kid)
        _write_active(path, kid)
    except OSError as exc:
        raise _key_error(f"cannot rotate keys in {path}: {exc.strerror}") from exc
    log.info("rotated receipt signing key: %s is now active in %s", kid, path)
    return kid


def jwks(directory: str | os.PathLike[str] = DEFAULT_KEY_DIR) -> dict[str, Any]:
    """The JWKS document publishing the public keys of ``directory``."""
    return KeyRing.load(directory).jwks()
