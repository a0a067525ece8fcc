"""The receipt envelope: what the log adds to a body, what it signs, and how chains link.

A caller hands the log a *body*, a JSON object with at least::

    {"receipt_id": "...", "kind": "...", "issued_at": "<RFC 3339>",
     "chain": {"tenant": "...", "session_id": "..."}}

The log completes it into a *receipt* by adding ``chain.seq`` (1-based per
(tenant, session_id)), ``chain.prev`` (sha256 hex of the previous receipt's canonical
signed form, :data:`GENESIS` for the first), ``version`` and ``canonicalization``,
then signs the RFC 8785 bytes of everything except ``signature`` with Ed25519 and
adds ``signature: {algorithm, key_id, value}`` (``value`` is standard base64).

The *canonical signed form* of a receipt is the RFC 8785 bytes of the whole receipt,
signature included. Stores keep exactly those bytes; their sha256 is the receipt's
hash and the next receipt's ``chain.prev``. A receipt of kind :data:`TERMINAL_KIND`
ends its chain, so a verifier can tell a complete chain from a truncated one.

Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from aarm_pdp.errors import ReceiptInvalid
from aarm_pdp.receipts.canonical import canonicalize

__all__ = [
    "ALGORITHM",
    "CANONICALIZATION",
    "CHECKPOINT_KIND",
    "GENESIS",
    "TERMINAL_KIND",
    "VERSION",
    "IndexFields",
    "PreparedBody",
    "Receipt",
    "SignedReceipt",
    "assemble",
    "complete",
    "index_fields",
    "receipt_hash",
    "signed_bytes",
    "signing_payload",
    "validate_body",
]

Receipt = dict[str, Any]
"""A receipt (or body) as a JSON object."""


class SignedReceipt(dict[str, Any]):
    """A receipt the log signed, carrying its exact canonical signed form (``canonical``)."""

    canonical: str = ""


VERSION: Final = "aarm.receipt.v1"
CANONICALIZATION: Final = "RFC8785"
ALGORITHM: Final = "Ed25519"
GENESIS: Final = "0" * 64
"""``chain.prev`` of the first receipt of a chain."""
TERMINAL_KIND: Final = "session_end"
"""The ``kind`` of the receipt that ends a chain."""
CHECKPOINT_KIND: Final = "checkpoint"
"""The ``kind`` of a checkpoint record (an archived prefix's signed summary); reserved:
no receipt body may use it."""

MAX_ID_LEN: Final = 256
_ENVELOPE_FIELDS: Final = ("version", "canonicalization", "signature")
_VERSION_BYTES: Final = b'"' + VERSION.encode() + b'"'
_CANONICALIZATION_BYTES: Final = b'"' + CANONICALIZATION.encode() + b'"'
_ALGORITHM_BYTES: Final = b'"' + ALGORITHM.encode() + b'"'


def signing_payload(receipt: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: RFC 8785 of the receipt without ``signature``."""
    return canonicalize({k: v for k, v in receipt.items() if k != "signature"})


def signed_bytes(receipt: Mapping[str, Any]) -> bytes:
    """The canonical signed form: RFC 8785 of the whole receipt, signature included."""
    return canonicalize(receipt)


def receipt_hash(canonical: bytes | str) -> str:
    """sha256 hex of a receipt's canonical signed form; the next receipt's ``chain.prev``."""
    data = canonical.encode() if isinstance(canonical, str) else canonical
    return hashlib.sha256(data).hexdigest()


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict standard base64; raises ValueError on anything else."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(str(exc)) from exc


def _text(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LEN:
        raise ReceiptInvalid(f"{where}{key} must be a non-empty string of at most {MAX_ID_LEN}")
    return value


@dataclass(frozen=True, slots=True)
class PreparedBody:
    """A validated body, its top-level members already in canonical form.

    Encoding the members once at ``append`` time both validates the body and lets
    the log build the signing payload and the signed form without canonicalising
    the whole receipt twice (see :func:`assemble`). Later changes by the caller to
    its dict do not reach the receipt.
    """

    receipt_id: str
    tenant: str
    session_id: str
    kind: str
    members: dict[str, bytes]
    """Every top-level member except ``chain``, as RFC 8785 bytes."""
    issued_at: str = ""
    """The body's ``issued_at`` (checked against the signing key's validity window)."""


@functools.lru_cache(maxsize=1024)
def _name(name: str) -> bytes:
    """A member name's canonical bytes (receipts reuse a few dozen names)."""
    return canonicalize(name)


@functools.lru_cache(maxsize=1024)
def _utf16_key(name: str) -> bytes:
    return name.encode("utf-16-be", "surrogatepass")


@functools.lru_cache(maxsize=256)
def _layout(names: tuple[str, ...]) -> tuple[tuple[str, bytes], ...]:
    """Member names in JCS order, each with its canonical bytes and ``:`` (receipts of
    one kind have the same names in the same order, so this is a cache hit)."""
    return tuple((name, _name(name) + b":") for name in sorted(names, key=_utf16_key))


def assemble(members: Mapping[str, bytes]) -> bytes:
    """The RFC 8785 bytes of an object from its members' canonical bytes.

    Equal to ``canonicalize(obj)`` when ``members[k] == canonicalize(obj[k])``: JCS
    orders members by the UTF-16 code units of their names, which is the byte order
    of their UTF-16-BE encoding.
    """
    return b"{" + b",".join([head + members[name] for name, head in _layout(tuple(members))]) + b"}"


def _member(value: Any) -> bytes:
    """A member's canonical bytes; the scalars a body is mostly made of without a walk."""
    if value is None:
        return b"null"
    if type(value) is str and value.isascii():
        return orjson.dumps(value)  # ASCII: escapes exactly what JCS escapes
    return canonicalize(value)


def validate_body(body: Mapping[str, Any]) -> PreparedBody:
    """Check a caller's body and encode its members canonically.

    Raises:
        ReceiptInvalid: a required field is missing or wrong, an envelope field is
            already present, or the body has no canonical form.
    """
    if not isinstance(body, Mapping):
        raise ReceiptInvalid("receipt body must be a JSON object")
    for key in _ENVELOPE_FIELDS:
        if key in body:
            raise ReceiptInvalid(f"receipt body must not set {key!r}: the log adds it")
    receipt_id = _text(body, "receipt_id", "")
    kind = _text(body, "kind", "")
    if kind == CHECKPOINT_KIND:
        raise ReceiptInvalid(f"kind {CHECKPOINT_KIND!r} is reserved for archive checkpoints")
    issued_at = _text(body, "issued_at", "")
    try:
        when = datetime.fromisoformat(issued_at)
    except ValueError as exc:
        raise ReceiptInvalid("issued_at must be an RFC 3339 timestamp") from exc
    if when.tzinfo is None:
        raise ReceiptInvalid("issued_at must carry a UTC offset")
    chain = body.get("chain")
    if not isinstance(chain, Mapping):
        raise ReceiptInvalid("chain must be an object with tenant and session_id")
    if set(chain) != {"tenant", "session_id"}:
        raise ReceiptInvalid("chain must hold exactly tenant and session_id: the log adds the rest")
    tenant = chain.get("tenant")
    if not isinstance(tenant, str) or len(tenant) > MAX_ID_LEN:
        raise ReceiptInvalid(f"chain.tenant must be a string of at most {MAX_ID_LEN}")
    session_id = _text(chain, "session_id", "chain.")
    members: dict[str, bytes] = {}
    for name, value in body.items():
        if not isinstance(name, str):
            raise ReceiptInvalid("receipt member names must be strings")
        _name(name)  # names too must be valid Unicode
        if name != "chain":
            members[name] = _member(value)
    return PreparedBody(receipt_id, tenant, session_id, kind, members, issued_at)


def complete(
    body: PreparedBody, seq: int, prev: str, sign: Callable[[bytes], tuple[str, bytes]]
) -> tuple[bytes, Receipt]:
    """Chain and sign a prepared body.

    ``sign(payload) -> (key_id, signature)``. Returns the canonical signed form and
    the receipt parsed from it.
    """
    members = dict(body.members)
    # {"prev", "seq", "session_id", "tenant"} in JCS order, written directly.
    members["chain"] = b"".join(
        (
            b'{"prev":',
            _member(prev),
            b',"seq":',
            b"%d" % seq,
            b',"session_id":',
            _member(body.session_id),
            b',"tenant":',
            _member(body.tenant),
            b"}",
        )
    )
    members["version"] = _VERSION_BYTES
    members["canonicalization"] = _CANONICALIZATION_BYTES
    key_id, signature = sign(assemble(members))
    members["signature"] = b"".join(
        (
            b'{"algorithm":',
            _ALGORITHM_BYTES,
            b',"key_id":',
            _member(key_id),
            b',"value":"',
            b64encode(signature).encode("ascii"),
            b'"}',
        )
    )
    canonical = assemble(members)
    receipt = SignedReceipt(orjson.loads(canonical))
    receipt.canonical = canonical.decode("utf-8")
    return canonical, receipt


@dataclass(frozen=True, slots=True)
class IndexFields:
    """The columns a store indexes, taken from a receipt.

    ``decision_id``: top-level ``decision_id``, else ``decision.decision_id``.
    ``principal``: ``identity.human``, else ``requester_context.human``, else a
    top-level ``principal`` string. ``decision``: ``decision.result`` when
    ``decision`` is an object, else ``decision`` when it is a string.
    """

    receipt_id: str
    tenant: str
    session_id: str
    seq: int
    kind: str
    issued_at: str
    decision_id: str | None
    principal: str | None
    decision: str | None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _lookup(receipt: Mapping[str, Any], *paths: tuple[str, ...]) -> str | None:
    for path in paths:
        node: Any = receipt
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        found = _str_or_none(node)
        if found is not None:
            return found
    return None


def index_fields(receipt: Mapping[str, Any]) -> IndexFields:
    """The indexed columns of a completed receipt (see :class:`IndexFields`)."""
    chain = receipt["chain"]
    return IndexFields(
        receipt_id=receipt["receipt_id"],
        tenant=chain["tenant"],
        session_id=chain["session_id"],
        seq=chain["seq"],
        kind=receipt["kind"],
        issued_at=receipt["issued_at"],
        decision_id=_lookup(receipt, ("decision_id",), ("decision", "decision_id")),
        principal=_lookup(
            receipt, ("identity", "human"), ("requester_context", "human"), ("principal",)
        ),
        decision=_lookup(receipt, ("decision", "result"), ("decision",)),
    )
