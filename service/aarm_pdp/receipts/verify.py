"""Offline receipt verification: one receipt, a chain, an export file.

Pure: it needs the receipts and a JWKS, nothing else (no service, no store, no
clock). Every check returns a :class:`VerifyResult` naming the FIRST bad receipt
(its index in the list as given and its ``receipt_id``) and a :class:`Reason`.

What a chain check catches, and where it points:

========================  =====================  ======================================
tampering                 reason                 index
========================  =====================  ======================================
edited field              ``bad_signature``      the edited receipt
unknown key id            ``unknown_key``        the receipt signed by it
signed after key retired  ``key_retired``        that receipt
signed before key valid   ``key_not_yet_valid``  that receipt
deleted receipt           ``missing_receipt``    the receipt after the gap
two receipts swapped      ``reordered``          the first out-of-place receipt
duplicate seq             ``duplicate_seq``      the second copy
same seq, other content   ``prev_mismatch``      the receipt whose ``chain.prev`` breaks
receipt after the end     ``after_session_end``  the receipt after ``session_end``
other session's receipt   ``session_mismatch``   that receipt
truncated (no end)        ``incomplete``         ``len(receipts)``: the missing position
truncated (export count)  ``count_mismatch``     ``len(receipts)``
export last hash differs  ``last_hash_mismatch`` the last receipt
checkpoint not first      ``misplaced_checkpoint`` that checkpoint
========================  =====================  ======================================

A chain may begin with a **checkpoint** (``kind: "checkpoint"``, ``type``
:data:`CHECKPOINT_TYPE`): the signed record that replaced an archived prefix. It is
checked like a receipt (structure, key, signature, window on its ``issued_at``) and
then stands for the archived head: the next receipt must have ``seq`` =
``chain.seq`` + 1 and ``prev`` = ``head.hash``.

For the truncation reasons the index is one past the end, with ``receipt_id`` None:
the first bad receipt is the one that is missing.

Key validity windows: a JWKS entry may carry ``aarm_not_before`` and ``aarm_not_after``
(RFC 3339 timestamps, our extension; see :class:`KeyWindow` and ``docs/receipts.md``).
A receipt whose signature verifies under such a key but whose ``issued_at`` lies
outside ``[aarm_not_before, aarm_not_after)`` fails as ``key_not_yet_valid`` or
``key_retired``. A key without them is valid for every ``issued_at`` (keys published
before windows existed, and the first key of a key directory).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from aarm_pdp.errors import ReceiptInvalid
from aarm_pdp.receipts.canonical import canonicalize, parse
from aarm_pdp.receipts.envelope import (
    ALGORITHM,
    CANONICALIZATION,
    CHECKPOINT_KIND,
    GENESIS,
    TERMINAL_KIND,
    VERSION,
    b64decode,
    receipt_hash,
    signing_payload,
)

__all__ = [
    "CHECKPOINT_TYPE",
    "EXPORT_TYPE",
    "NOT_AFTER",
    "NOT_BEFORE",
    "KeyWindow",
    "PublicKeys",
    "Reason",
    "VerifyResult",
    "chain_head_hash",
    "export_header",
    "format_timestamp",
    "is_checkpoint",
    "parse_timestamp",
    "public_jwk",
    "split_export",
    "verify_chain",
    "verify_export",
    "verify_receipt",
]

EXPORT_TYPE: Final = "aarm.receipt.export.v1"
CHECKPOINT_TYPE: Final = "aarm.receipt.checkpoint.v1"
"""``type`` of a checkpoint: the signed record that replaces an archived chain prefix."""
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class Reason(enum.StrEnum):
    """Why verification failed."""

    MALFORMED = "malformed"
    UNSUPPORTED = "unsupported"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    KEY_NOT_YET_VALID = "key_not_yet_valid"
    KEY_RETIRED = "key_retired"
    SESSION_MISMATCH = "session_mismatch"
    DUPLICATE_SEQ = "duplicate_seq"
    MISSING_RECEIPT = "missing_receipt"
    REORDERED = "reordered"
    PREV_MISMATCH = "prev_mismatch"
    AFTER_SESSION_END = "after_session_end"
    INCOMPLETE = "incomplete"
    COUNT_MISMATCH = "count_mismatch"
    LAST_HASH_MISMATCH = "last_hash_mismatch"
    BAD_HEADER = "bad_header"
    MISPLACED_CHECKPOINT = "misplaced_checkpoint"
    ARCHIVE_MISMATCH = "archive_mismatch"


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of a verification; on failure, the first bad receipt and why."""

    ok: bool
    index: int | None = None
    receipt_id: str | None = None
    reason: Reason | None = None
    message: str = ""
    receipts: int = 0
    """How many receipts were checked (on success, all of them)."""

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.receipts} receipts"
        rid = f" ({self.receipt_id})" if self.receipt_id else ""
        return f"receipt #{self.index}{rid}: {self.reason}: {self.message}"


def _fail(
    index: int | None, receipt_id: str | None, reason: Reason, message: str, checked: int = 0
) -> VerifyResult:
    return VerifyResult(False, index, receipt_id, reason, message, checked)


# --- time ------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)


def parse_timestamp(text: object) -> int:
    """An RFC 3339 date-time (``2026-05-01T12:00:00.123456Z``, an offset allowed) as
    nanoseconds since the Unix epoch. Leap seconds (``:60``) and more than nine
    fraction digits are refused.

    Raises:
        ValueError: ``text`` is not such a timestamp.
    """
    m = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError("not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    seconds = (datetime(year, month, day, hour, minute, second, tzinfo=UTC) - _EPOCH) // _SECOND
    if m.group(8):
        hours, minutes = int(m.group(9)), int(m.group(10))
        if hours > 23 or minutes > 59:
            raise ValueError("bad UTC offset")
        offset = hours * 3600 + minutes * 60
        seconds -= offset if m.group(8) == "+" else -offset
    return seconds * 1_000_000_000 + int((m.group(7) or "").ljust(9, "0"))


def format_timestamp(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 UTC: microseconds, or nanoseconds if needed."""
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{rest // 1000:06d}" if rest % 1000 == 0 else f"{rest:09d}"
    return f"{stamp}.{fraction}Z"


# --- keys ------------------------------------------------------------------------------

NOT_BEFORE: Final = "aarm_not_before"
"""JWK member: the first instant (RFC 3339) at which the key may have signed."""
NOT_AFTER: Final = "aarm_not_after"
"""JWK member: the instant (RFC 3339) from which the key is retired (exclusive end)."""


@dataclass(frozen=True, slots=True)
class KeyWindow:
    """When a key may have signed: ``not_before <= issued_at < not_after`` (ns; None = open)."""

    not_before: int | None = None
    not_after: int | None = None

    def __post_init__(self) -> None:
        if (
            self.not_before is not None
            and self.not_after is not None
            and self.not_after <= self.not_before
        ):
            raise ValueError("a key's window must end after it starts")

    @property
    def bounded(self) -> bool:
        return self.not_before is not None or self.not_after is not None

    def check(self, issued_at_ns: int) -> Reason | None:
        """None when ``issued_at_ns`` is inside the window, else why not."""
        if self.not_before is not None and issued_at_ns < self.not_before:
            return Reason.KEY_NOT_YET_VALID
        if self.not_after is not None and issued_at_ns >= self.not_after:
            return Reason.KEY_RETIRED
        return None

    def jwk_members(self) -> dict[str, str]:
        """The window as JWK members (none for an open window)."""
        out: dict[str, str] = {}
        if self.not_before is not None:
            out[NOT_BEFORE] = format_timestamp(self.not_before)
        if self.not_after is not None:
            out[NOT_AFTER] = format_timestamp(self.not_after)
        return out

    @classmethod
    def from_jwk(cls, entry: Mapping[str, Any]) -> KeyWindow:
        """The window a JWK declares.

        Raises:
            ValueError: a member is present but not an RFC 3339 timestamp, or the
                window is empty.
        """
        bounds = [
            parse_timestamp(entry[name]) if name in entry else None
            for name in (NOT_BEFORE, NOT_AFTER)
        ]
        return cls(*bounds)


OPEN: Final = KeyWindow()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_jwk(key_id: str, key: Ed25519PublicKey, window: KeyWindow = OPEN) -> dict[str, str]:
    """An Ed25519 public key as a JWK (RFC 8037): kty OKP, crv Ed25519, x base64url,
    plus its validity window (``aarm_not_before``/``aarm_not_after``) when it has one."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(raw),
        "kid": key_id,
        "alg": "EdDSA",
        "use": "sig",
        **window.jwk_members(),
    }


class PublicKeys:
    """Verification keys by key id, usually read from a published JWKS, with their windows."""

    def __init__(
        self,
        keys: Mapping[str, Ed25519PublicKey],
        windows: Mapping[str, KeyWindow] | None = None,
    ) -> None:
        self._keys = dict(keys)
        self._windows = {k: w for k, w in (windows or {}).items() if w.bounded}

    def __repr__(self) -> str:
        return f"PublicKeys({sorted(self._keys)!r})"

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def get(self, key_id: str) -> Ed25519PublicKey | None:
        return self._keys.get(key_id)

    def window(self, key_id: str) -> KeyWindow:
        """When ``key_id`` may have signed (open when the JWKS gives no window)."""
        return self._windows.get(key_id, OPEN)

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any] | str | bytes) -> PublicKeys:
        """Parse a JWKS document (object or JSON text).

        Keys that are not Ed25519 signing keys are ignored, so a receipt naming one
        fails as ``unknown_key``. A structurally broken JWKS raises ReceiptInvalid, and
        so does a window member that is not an RFC 3339 timestamp or an empty window
        (refused, not ignored: ignoring it would trust the key for ever).
        """
        doc = parse(jwks) if isinstance(jwks, str | bytes) else jwks
        entries = doc.get("keys") if isinstance(doc, Mapping) else None
        if not isinstance(entries, list):
            raise ReceiptInvalid("JWKS must be an object with a 'keys' array")
        keys: dict[str, Ed25519PublicKey] = {}
        windows: dict[str, KeyWindow] = {}
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise ReceiptInvalid("JWKS keys must be objects")
            if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
                continue
            if entry.get("use", "sig") != "sig" or entry.get("alg", "EdDSA") != "EdDSA":
                continue
            kid = entry.get("kid")
            if not isinstance(kid, str) or not kid:
                raise ReceiptInvalid("JWKS Ed25519 key without a kid")
            try:
                raw = _b64url_decode(entry.get("x", ""))
                keys[kid] = Ed25519PublicKey.from_public_bytes(raw)
            except (ValueError, binascii.Error) as exc:
                raise ReceiptInvalid(f"JWKS key {kid!r}: bad x") from exc
            try:
                windows[kid] = KeyWindow.from_jwk(entry)
            except ValueError as exc:
                raise ReceiptInvalid(f"JWKS key {kid!r}: bad validity window: {exc}") from exc
        return cls(keys, windows)


KeysLike = PublicKeys | Mapping[str, Any]


def _as_keys(keys: KeysLike) -> PublicKeys:
    return keys if isinstance(keys, PublicKeys) else PublicKeys.from_jwks(keys)


# --- one receipt -----------------------------------------------------------------------


def _as_receipt(item: Mapping[str, Any] | str | bytes) -> Mapping[str, Any]:
    obj = parse(item) if isinstance(item, str | bytes) else item
    if not isinstance(obj, Mapping):
        raise ReceiptInvalid("a receipt must be a JSON object")
    return obj


def _rid(obj: Any) -> str | None:
    rid = obj.get("receipt_id") if isinstance(obj, Mapping) else None
    return rid if isinstance(rid, str) else None


def _structure_error(receipt: Mapping[str, Any]) -> str | None:
    if receipt.get("version") != VERSION:
        return f"version is not {VERSION!r}"
    if receipt.get("canonicalization") != CANONICALIZATION:
        return f"canonicalization is not {CANONICALIZATION!r}"
    for key in ("receipt_id", "kind", "issued_at"):
        if not isinstance(receipt.get(key), str) or not receipt[key]:
            return f"{key} missing"
    chain = receipt.get("chain")
    if not isinstance(chain, Mapping):
        return "chain missing"
    if not isinstance(chain.get("tenant"), str) or not isinstance(chain.get("session_id"), str):
        return "chain.tenant or chain.session_id missing"
    seq = chain.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return "chain.seq must be an integer >= 1"
    if not isinstance(chain.get("prev"), str) or not _HEX64.match(chain["prev"]):
        return "chain.prev must be 64 lowercase hex digits"
    sig = receipt.get("signature")
    if not isinstance(sig, Mapping):
        return "signature missing"
    if not isinstance(sig.get("key_id"), str) or not isinstance(sig.get("value"), str):
        return "signature.key_id or signature.value missing"
    return None


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _checkpoint_structure_error(cp: Mapping[str, Any]) -> str | None:
    """What is wrong with a checkpoint's members (docs/receipts.md §9), or None."""
    if cp.get("type") != CHECKPOINT_TYPE:
        return f"a checkpoint's type must be {CHECKPOINT_TYPE!r}"
    if cp.get("version") != VERSION:
        return f"version is not {VERSION!r}"
    if cp.get("canonicalization") != CANONICALIZATION:
        return f"canonicalization is not {CANONICALIZATION!r}"
    for key in ("receipt_id", "issued_at"):
        if not isinstance(cp.get(key), str) or not cp[key]:
            return f"{key} missing"
    chain = cp.get("chain")
    if not isinstance(chain, Mapping):
        return "chain missing"
    if not isinstance(chain.get("tenant"), str) or not isinstance(chain.get("session_id"), str):
        return "chain.tenant or chain.session_id missing"
    if not _is_int(chain.get("seq"), 1):
        return "chain.seq must be an integer >= 1"
    head = cp.get("head")
    if not isinstance(head, Mapping):
        return "head missing"
    if not isinstance(head.get("hash"), str) or not _HEX64.match(head["hash"]):
        return "head.hash must be 64 lowercase hex digits"
    if not isinstance(head.get("kind"), str) or not head["kind"]:
        return "head.kind missing"
    archive = cp.get("archive")
    if not isinstance(archive, Mapping):
        return "archive missing"
    first: Any = archive.get("first_seq")
    count: Any = archive.get("count")
    if not _is_int(first, 1) or not _is_int(count, 1):
        return "archive.first_seq and archive.count must be integers >= 1"
    if first + count - 1 != chain["seq"]:
        return "archive.first_seq + archive.count - 1 is not chain.seq"
    if not isinstance(archive.get("sha256"), str) or not _HEX64.match(archive["sha256"]):
        return "archive.sha256 must be 64 lowercase hex digits"
    previous = cp.get("previous_checkpoint", 0)
    if first == 1 and previous is not None:
        return "previous_checkpoint must be null when the archive starts at seq 1"
    if first > 1 and (not isinstance(previous, str) or not _HEX64.match(previous)):
        return "previous_checkpoint must be the hash of the checkpoint the archive starts with"
    sig = cp.get("signature")
    if not isinstance(sig, Mapping):
        return "signature missing"
    if not isinstance(sig.get("key_id"), str) or not isinstance(sig.get("value"), str):
        return "signature.key_id or signature.value missing"
    return None


def is_checkpoint(record: Mapping[str, Any]) -> bool:
    """Whether a parsed record is a checkpoint (its ``kind``), valid or not."""
    return record.get("kind") == CHECKPOINT_KIND


def _check_checkpoint(cp: Mapping[str, Any], keys: PublicKeys) -> tuple[Reason, str] | None:
    problem = _checkpoint_structure_error(cp)
    if problem is not None:
        return Reason.MALFORMED, problem
    return _check_signed(cp, keys)


def _check_signature(receipt: Mapping[str, Any], keys: PublicKeys) -> tuple[Reason, str] | None:
    problem = _structure_error(receipt)
    if problem is not None:
        return Reason.MALFORMED, problem
    return _check_signed(receipt, keys)


def _check_signed(receipt: Mapping[str, Any], keys: PublicKeys) -> tuple[Reason, str] | None:
    """Algorithm, key, Ed25519 signature, then the key's window (structure already checked)."""
    sig = receipt["signature"]
    if sig.get("algorithm") != ALGORITHM:
        return Reason.UNSUPPORTED, f"signature algorithm {sig.get('algorithm')!r} is not Ed25519"
    key = keys.get(sig["key_id"])
    if key is None:
        return Reason.UNKNOWN_KEY, f"key id {sig['key_id']!r} is not in the JWKS"
    try:
        value = b64decode(sig["value"])
        payload = signing_payload(receipt)
    except (ValueError, ReceiptInvalid) as exc:
        return Reason.MALFORMED, str(exc)
    try:
        key.verify(value, payload)
    except InvalidSignature:
        return Reason.BAD_SIGNATURE, f"signature does not verify under key {sig['key_id']!r}"
    return _check_window(receipt, sig["key_id"], keys.window(sig["key_id"]))


def _check_window(
    receipt: Mapping[str, Any], key_id: str, window: KeyWindow
) -> tuple[Reason, str] | None:
    """After the signature: ``issued_at`` (now known authentic) inside the key's window."""
    if not window.bounded:
        return None
    try:
        issued_at = parse_timestamp(receipt["issued_at"])
    except ValueError:
        return Reason.MALFORMED, f"issued_at is not RFC 3339 (key {key_id!r} has a window)"
    reason = window.check(issued_at)
    if reason is Reason.KEY_NOT_YET_VALID:
        since = window.jwk_members()[NOT_BEFORE]
        return reason, f"issued_at is before key {key_id!r} became valid ({since})"
    if reason is Reason.KEY_RETIRED:
        since = window.jwk_members()[NOT_AFTER]
        return reason, f"issued_at is after key {key_id!r} was retired ({since})"
    return None


def verify_receipt(receipt: Mapping[str, Any] | str | bytes, keys: KeysLike) -> VerifyResult:
    """Verify one receipt's structure and Ed25519 signature against a JWKS."""
    try:
        ring = _as_keys(keys)
        obj = _as_receipt(receipt)
    except ReceiptInvalid as exc:
        return _fail(0, None, Reason.MALFORMED, exc.detail)
    problem = _check_signature(obj, ring)
    if problem is not None:
        return _fail(0, _rid(obj), *problem)
    return VerifyResult(True, receipts=1)


# --- a chain ---------------------------------------------------------------------------


def verify_chain(
    receipts: Sequence[Mapping[str, Any] | str | bytes],
    keys: KeysLike,
    *,
    require_complete: bool = False,
    expected_count: int | None = None,
    expected_last_hash: str | None = None,
    session: tuple[str, str] | None = None,
) -> VerifyResult:
    """Verify the receipts of one session, in stored order, and name the first bad one.

    Checks, per receipt in order: structure and signature; same (tenant, session_id)
    as the first; nothing after a ``session_end``; ``chain.seq`` is previous + 1
    (else duplicate, reordered or missing); ``chain.prev`` is the hash of the previous
    receipt's canonical signed form (GENESIS for seq 1). Then, at the end: a
    ``session_end`` last when ``require_complete``; the declared count and last hash
    when given (an export header). ``session`` = (tenant, session_id) pins the chain
    to that session instead of the first receipt's.
    """
    try:
        ring = _as_keys(keys)
    except ReceiptInvalid as exc:
        return _fail(None, None, Reason.MALFORMED, f"JWKS: {exc.detail}")
    parsed: list[Mapping[str, Any]] = []
    for i, item in enumerate(receipts):
        try:
            parsed.append(_as_receipt(item))
        except ReceiptInvalid as exc:
            return _fail(i, None, Reason.MALFORMED, exc.detail, i)
    seqs_later: dict[int, int] = {}
    for r in parsed:
        r_chain = r.get("chain")
        r_seq = r_chain.get("seq") if isinstance(r_chain, Mapping) else None
        if isinstance(r_seq, int):
            seqs_later[r_seq] = seqs_later.get(r_seq, 0) + 1

    prev_hash = GENESIS
    prev_seq = 0
    prev_kind: str | None = None
    for i, r in enumerate(parsed):
        rid = _rid(r)
        if is_checkpoint(r):
            if i > 0:
                return _fail(
                    i, rid, Reason.MISPLACED_CHECKPOINT, "a checkpoint can only begin a chain", i
                )
            problem = _check_checkpoint(r, ring)
            if problem is not None:
                return _fail(i, rid, *problem, i)
            cp_chain = r["chain"]
            seqs_later[cp_chain["seq"]] -= 1
            this_session = (cp_chain["tenant"], cp_chain["session_id"])
            if session is not None and this_session != session:
                return _fail(
                    i, rid, Reason.SESSION_MISMATCH, f"belongs to {this_session}, not {session}", i
                )
            session = this_session
            # The checkpoint stands for the archived head: continue the chain from it.
            prev_hash, prev_seq, prev_kind = r["head"]["hash"], cp_chain["seq"], r["head"]["kind"]
            continue
        problem = _check_signature(r, ring)
        if problem is not None:
            return _fail(i, rid, *problem, i)
        chain = r["chain"]
        seq: int = chain["seq"]
        seqs_later[seq] -= 1
        this_session = (chain["tenant"], chain["session_id"])
        if session is None:
            session = this_session
        elif this_session != session:
            return _fail(
                i, rid, Reason.SESSION_MISMATCH, f"belongs to {this_session}, not {session}", i
            )
        if prev_kind == TERMINAL_KIND:
            return _fail(i, rid, Reason.AFTER_SESSION_END, "receipt after the session_end", i)
        expected = prev_seq + 1
        if seq != expected:
            if seq == prev_seq:
                return _fail(i, rid, Reason.DUPLICATE_SEQ, f"seq {seq} repeated", i)
            if seq < expected or seqs_later.get(expected, 0) > 0:
                return _fail(i, rid, Reason.REORDERED, f"seq {seq} where seq {expected} belongs", i)
            return _fail(
                i,
                rid,
                Reason.MISSING_RECEIPT,
                f"seq {seq} where seq {expected} belongs: receipt(s) deleted",
                i,
            )
        if chain["prev"] != prev_hash:
            return _fail(
                i, rid, Reason.PREV_MISMATCH, "chain.prev is not the previous receipt's hash", i
            )
        prev_hash = receipt_hash(canonicalize(r))
        prev_seq = seq
        prev_kind = r["kind"]

    n = len(parsed)
    if expected_count is not None and n != expected_count:
        extra = n > expected_count
        return _fail(
            expected_count if extra else n,
            _rid(parsed[expected_count]) if extra else None,
            Reason.COUNT_MISMATCH,
            f"{n} receipts, {expected_count} declared",
            n,
        )
    if expected_last_hash is not None and prev_hash != expected_last_hash:
        return _fail(
            max(n - 1, 0),
            _rid(parsed[-1]) if parsed else None,
            Reason.LAST_HASH_MISMATCH,
            "the last receipt's hash is not the declared last hash",
            n,
        )
    if require_complete and prev_kind != TERMINAL_KIND:
        return _fail(
            n, None, Reason.INCOMPLETE, f"chain ends at seq {prev_seq} without a {TERMINAL_KIND}", n
        )
    return VerifyResult(True, receipts=n)


# --- export files ----------------------------------------------------------------------


def chain_head_hash(last: str | bytes | None) -> str:
    """The hash the next receipt's ``chain.prev`` must hold after the record ``last``:
    its hash for a receipt, its ``head.hash`` for a checkpoint, GENESIS for none."""
    if last is None:
        return GENESIS
    obj = parse(last)
    if isinstance(obj, Mapping) and is_checkpoint(obj):
        head = obj.get("head")
        if isinstance(head, Mapping) and isinstance(head.get("hash"), str):
            return str(head["hash"])
    return receipt_hash(last)


def export_header(tenant: str, session_id: str, receipts: Sequence[str | bytes]) -> dict[str, Any]:
    """The header line of a JSONL export: it declares the count of records (a leading
    checkpoint included) and the chain's last hash (:func:`chain_head_hash`)."""
    return {
        "type": EXPORT_TYPE,
        "version": VERSION,
        "tenant": tenant,
        "session_id": session_id,
        "count": len(receipts),
        "last_hash": chain_head_hash(receipts[-1] if receipts else None),
    }


def _is_header(line: str | bytes) -> bool:
    try:
        obj = parse(line)
    except ReceiptInvalid:
        return False
    return isinstance(obj, Mapping) and obj.get("type") == EXPORT_TYPE


def split_export(lines: Iterable[str | bytes]) -> list[list[str | bytes]]:
    """The sections of an export or archive file: each starts at a header line.

    An export file has one section; an archive (``receipts archive``) one per chain.
    Blank lines are dropped; lines before the first header form a section of their
    own (which then fails as ``bad_header``).
    """
    sections: list[list[str | bytes]] = []
    for line in lines:
        if not line.strip():
            continue
        if not sections or _is_header(line):
            sections.append([])
        sections[-1].append(line)
    return sections


def verify_export(
    lines: Iterable[str | bytes], keys: KeysLike, *, require_complete: bool = False
) -> VerifyResult:
    """Verify a JSONL export: a header line, then one canonical receipt per line.

    Indexes in the result count receipts (the header is not one). A signed header is
    checked against the same JWKS.
    """
    rows = [line for line in lines if line.strip()]
    if not rows:
        return _fail(None, None, Reason.BAD_HEADER, "empty export: no header line")
    try:
        ring = _as_keys(keys)
        header = parse(rows[0])
    except ReceiptInvalid as exc:
        return _fail(None, None, Reason.BAD_HEADER, exc.detail)
    if not isinstance(header, Mapping) or header.get("type") != EXPORT_TYPE:
        return _fail(None, None, Reason.BAD_HEADER, f"first line is not a {EXPORT_TYPE} header")
    count, last = header.get("count"), header.get("last_hash")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        return _fail(None, None, Reason.BAD_HEADER, "header count missing")
    if not isinstance(last, str) or not _HEX64.match(last):
        return _fail(None, None, Reason.BAD_HEADER, "header last_hash missing")
    if "signature" in header:
        sig = header["signature"]
        key = ring.get(sig.get("key_id", "")) if isinstance(sig, Mapping) else None
        try:
            if key is None:
                raise ValueError("header signed with a key not in the JWKS")
            key.verify(b64decode(sig["value"]), signing_payload(header))
        except (ValueError, KeyError, TypeError, InvalidSignature, ReceiptInvalid) as exc:
            msg = str(exc) or "header signature does not verify"
            return _fail(None, None, Reason.BAD_HEADER, msg)
    tenant, session_id = header.get("tenant"), header.get("session_id")
    if not isinstance(tenant, str) or not isinstance(session_id, str):
        return _fail(None, None, Reason.BAD_HEADER, "header tenant or session_id missing")
    return verify_chain(
        rows[1:],
        ring,
        session=(tenant, session_id),
        require_complete=require_complete,
        expected_count=count,
        expected_last_hash=last,
    )
