"""Ed25519 receipt-signing keys: a key directory, rotation, and the published JWKS.

Key directory layout::

    <dir>/                      mode 0700
        <key_id>.pem            PKCS#8 PEM Ed25519 private key, mode 0600, one per key
        active                  the active key id (one line)
        windows.json            validity windows: {"keys": {"<key_id>":
                                {"not_before": "<RFC 3339>", "not_after": "<RFC 3339>"}}}

Rotation writes a new key, repoints ``active`` and records windows: the new key is
valid from the rotation on (``not_before``), every older key that is not retired yet
is retired ``retire_after`` later (``not_after``, default
:data:`DEFAULT_RETIRE_AFTER`: the overlap in which services still signing with the
old key switch over). Old keys stay, so their public halves stay in the JWKS, with
their windows (``aarm_not_before``/``aarm_not_after``, see
:mod:`aarm_pdp.receipts.verify`), and historical receipts keep verifying while a
receipt dated after a key's retirement does not. A key without a recorded window
(the first key of a directory, and every key of a directory from before windows
existed) is valid from its creation with no end until a rotation retires it.

A running service picks a rotation up without a restart: :meth:`KeyRing.refresh`
re-reads the directory when ``active`` or ``windows.json`` changed (the receipt log
asks at most once a second). Key material is never logged, printed or put in a
``repr``; only key ids are.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from aarm_pdp.errors import AarmError, ErrorCode
from aarm_pdp.receipts.verify import (
    OPEN,
    KeyWindow,
    PublicKeys,
    format_timestamp,
    parse_timestamp,
    public_jwk,
)

__all__ = [
    "ACTIVE_FILE",
    "DEFAULT_KEY_DIR",
    "DEFAULT_RETIRE_AFTER",
    "WINDOWS_FILE",
    "KeyRing",
    "SigningKey",
    "init_key_dir",
    "jwks",
    "rotate",
]

log = logging.getLogger(__name__)

DEFAULT_KEY_DIR: Final = Path("var/keys")
ACTIVE_FILE: Final = "active"
WINDOWS_FILE: Final = "windows.json"
DEFAULT_RETIRE_AFTER: Final = timedelta(hours=1)
"""How long a rotated-out key stays valid: time for every signer to switch keys."""
REFRESH_INTERVAL_SECONDS: Final = 1.0
_KEY_SUFFIX: Final = ".pem"
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _key_error(detail: str) -> AarmError:
    return AarmError(f"receipt keys: {detail}", code=ErrorCode.INTERNAL)


@dataclass(frozen=True)
class SigningKey:
    """One Ed25519 private key, its id and validity window. The ``repr`` shows no key."""

    key_id: str
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)
    window: KeyWindow = field(default=OPEN, compare=False)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self.private_key.sign(data)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        """The public half as a JWK (kty OKP, crv Ed25519, alg EdDSA, use sig, window)."""
        return public_jwk(self.key_id, self.public_key, self.window)


_Stamp = tuple[tuple[int, int, int] | None, ...]


def _stamp(directory: Path) -> _Stamp:
    """What changes when ``active`` or ``windows.json`` is replaced (both are renamed in)."""
    out: list[tuple[int, int, int] | None] = []
    for name in (ACTIVE_FILE, WINDOWS_FILE):
        try:
            st = (directory / name).stat()
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


class KeyRing:
    """The signing keys of one key directory; :attr:`active` signs new receipts."""

    def __init__(self, keys: Mapping[str, SigningKey], active: str) -> None:
        if active not in keys:
            raise _key_error(f"active key {active!r} is not in the key ring")
        self._keys = dict(keys)
        self._active = keys[active]
        self._directory: Path | None = None
        self._stamp: _Stamp = ()
        self._checked = time.monotonic()

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
        stamp = _stamp(path)
        try:
            active = (path / ACTIVE_FILE).read_text(encoding="utf-8").strip()
            files = sorted(p for p in path.iterdir() if p.name.endswith(_KEY_SUFFIX))
        except OSError as exc:
            raise _key_error(f"cannot read key directory {path}: {exc.strerror}") from exc
        windows = _read_windows(path)
        keys: dict[str, SigningKey] = {}
        for file in files:
            kid = file.name[: -len(_KEY_SUFFIX)]
            if not _KEY_ID.match(kid):
                raise _key_error(f"bad key id in file name {file.name!r}")
            keys[kid] = SigningKey(kid, _read_private_key(file), windows.get(kid, OPEN))
        if not _KEY_ID.match(active):
            raise _key_error(f"{path / ACTIVE_FILE} does not name a key id")
        if active not in keys:
            raise _key_error(f"active key {active!r} has no {active}{_KEY_SUFFIX} in {path}")
        ring = cls(keys, active)
        ring._directory = path
        ring._stamp = stamp
        return ring

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
        return PublicKeys(
            {k: v.public_key for k, v in self._keys.items()},
            {k: v.window for k, v in self._keys.items()},
        )

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the key directory if ``active`` or ``windows.json`` changed.

        Checks at most once per :data:`REFRESH_INTERVAL_SECONDS` unless ``force``
        (two ``stat`` calls). Returns True when the ring changed. A directory that no
        longer loads is logged and the current keys stay. Rings not loaded from a
        directory (:meth:`generate`) never change.
        """
        if self._directory is None:
            return False
        now = time.monotonic()
        if not force and now - self._checked < REFRESH_INTERVAL_SECONDS:
            return False
        self._checked = now
        if _stamp(self._directory) == self._stamp:
            return False
        try:
            fresh = KeyRing.load(self._directory)
        except AarmError as exc:
            log.warning("receipt key directory changed but does not load: %s", exc.detail)
            return False
        changed = fresh._active.key_id != self._active.key_id
        self._keys, self._active, self._stamp = fresh._keys, fresh._active, fresh._stamp
        log.info(
            "receipt keys reloaded from %s: %s active%s",
            self._directory,
            self._active.key_id,
            " (rotated)" if changed else "",
        )
        return True


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


def _write_atomic(directory: Path, name: str, data: bytes) -> None:
    """Replace ``name`` atomically (write a temp file, fsync, rename, fsync the dir)."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}-")
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / name)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_active(directory: Path, key_id: str) -> None:
    """Repoint ``active`` atomically."""
    _write_atomic(directory, ACTIVE_FILE, f"{key_id}\n".encode())


def _read_windows(directory: Path) -> dict[str, KeyWindow]:
    """The recorded windows (none when ``windows.json`` does not exist).

    Raises:
        AarmError: the file exists but cannot be read or is not a windows document.
    """
    path = directory / WINDOWS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _key_error(f"cannot read {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(data)
        entries = doc["keys"]
        if not isinstance(entries, dict):
            raise TypeError("keys is not an object")
        return {
            str(kid): KeyWindow(
                *(
                    parse_timestamp(entry[name]) if name in entry else None
                    for name in ("not_before", "not_after")
                )
            )
            for kid, entry in entries.items()
        }
    except (ValueError, TypeError, KeyError) as exc:
        raise _key_error(f"{path} is not a key windows document: {exc}") from exc


def _write_windows(directory: Path, windows: Mapping[str, KeyWindow]) -> None:
    entries: dict[str, dict[str, str]] = {}
    for kid in sorted(windows):
        w = windows[kid]
        entry = {}
        if w.not_before is not None:
            entry["not_before"] = format_timestamp(w.not_before)
        if w.not_after is not None:
            entry["not_after"] = format_timestamp(w.not_after)
        if entry:
            entries[kid] = entry
    data = json.dumps({"keys": entries}, indent=2, sort_keys=True) + "\n"
    _write_atomic(directory, WINDOWS_FILE, data.encode())


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


def _microseconds(when: datetime) -> int:
    """``when`` as nanoseconds since the epoch, at the microsecond receipts carry."""
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def rotate(
    directory: str | os.PathLike[str] = DEFAULT_KEY_DIR,
    *,
    retire_after: timedelta = DEFAULT_RETIRE_AFTER,
    now: datetime | None = None,
) -> str:
    """Add a new key to ``directory``, make it active and retire the older keys.

    The new key is valid from ``now``; every other key not retired yet is retired at
    ``now + retire_after`` (one that is already retired earlier keeps its date). Old
    keys are kept: receipts they signed before their retirement keep verifying.
    Returns the new key id. Running services sign with the new key once their ring
    refreshes (:meth:`KeyRing.refresh`, within a second for a service reading this
    directory); ``retire_after`` is the time every signer has to switch.

    Raises:
        AarmError: the directory cannot be read or written, or ``retire_after`` < 0.
    """
    if retire_after < timedelta(0):
        raise _key_error("retire_after must not be negative")
    path = Path(directory)
    init_key_dir(path)
    start = _microseconds(now or datetime.now(UTC))
    end = start + retire_after // timedelta(microseconds=1) * 1000
    kid = new_key_id(now)
    try:
        windows = _read_windows(path)
        pems = [p.name for p in path.iterdir() if p.name.endswith(_KEY_SUFFIX)]
        others = [name[: -len(_KEY_SUFFIX)] for name in pems]
        for other in others:
            w = windows.get(other, OPEN)
            if w.not_after is not None and w.not_after <= end:
                continue  # retired already, no later than this would
            if w.not_before is not None and w.not_before >= end:
                raise _key_error(
                    f"key {other!r} is valid only from {format_timestamp(w.not_before)}, "
                    "not before the retirement time: is this clock behind?"
                )
            windows[other] = KeyWindow(w.not_before, end)
        windows[kid] = KeyWindow(start, None)
        _write_private_key(path, kid)
        _write_active(path, kid)
        _write_windows(path, windows)
    except OSError as exc:
        raise _key_error(f"cannot rotate keys in {path}: {exc.strerror}") from exc
    log.info(
        "rotated receipt signing key: %s is now active in %s; %d older key(s) retire at %s",
        kid,
        path,
        len(others),
        format_timestamp(end),
    )
    return kid


def jwks(directory: str | os.PathLike[str] = DEFAULT_KEY_DIR) -> dict[str, Any]:
    """The JWKS document publishing the public keys of ``directory``."""
    return KeyRing.load(directory).jwks()
