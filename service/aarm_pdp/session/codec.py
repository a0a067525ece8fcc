"""Compact encodings: session state (blob version 2) and context-log records. PURE.

**State, version 2** (what :meth:`SessionState.to_bytes
<aarm_pdp.session.state.SessionState.to_bytes>` writes; the memory and Redis stores
hold it as it is). Byte 0 is the version (``2``; a version-1 blob is the JSON object
of every field and starts with ``{``, which is never a version byte). Then:

=========  =================================================================
header     ``<BBHHHHHH``: version, flags, then the number of counts, string
           references, 64-bit integers, doubles and decision ids, and the byte
           length of the id section
head       32 bytes: ``log_head`` as binary (flag ``HEAD_BIN``; else it is a string)
counts     one byte each (flag ``COUNTS_U8``) or ``uint32``: list lengths, tool and
           category counters, ``defer_depth * 2 + pointed`` per decision, and each
           recent action's decision id as an index into the id section
refs       one byte each (flag ``REFS_U8``) or ``uint16``: indexes into the strings
ints       ``int64``: ``started_ns``, ``action_count``, ``highest``, ``log_len``,
           ``pay_count``, every event time, every payment time
doubles    ``float64``: the drift maximum and average, payment totals and amounts
ids        decision ids, 16 bytes each when all are canonical UUIDs (flag ``IDS_UUID``:
           what the service mints), else NUL-separated UTF-8
strings    the distinct strings, NUL-separated UTF-8, to the end: identities, the
           original request, tool names, categories, labels, verdicts... each once
=========  =================================================================

Integers and doubles are little-endian. A state this layout cannot hold exactly (a
string with a NUL, a count past its width, a value of an unexpected type) is written
as version 1 instead, so encoding never loses anything; :func:`decode_state` reads
both, so a blob written by an older replica still decodes.

**Context-log windows** (:func:`log_append`): how the memory store keeps the window
of a session's context log, one ``bytes`` (a ``bytearray`` past :data:`SMALL_LOG`).
An entry the context made (a :class:`~aarm_pdp.session.store.LogRecord`: sorted-key
``orjson`` text of a dict whose ``hash`` is :func:`link` of its ``prev`` and the rest)
is a record of its dict in a tagged binary form (keys and frequent words by one byte,
64- and 32-hex digests and UUIDs as binary) without ``hash``, which is recomputed, nor
``prev`` when it is the hash before it; any other entry is kept as given. A trailer
holds the newest hash, the count and the JSON bytes. :func:`log_entries` gives back
the exact bytes appended. In-process only (the window lives and dies with the
process), so this form has no version.
"""

from __future__ import annotations

import binascii
import hashlib
import struct
import sys
from array import array
from collections.abc import Callable, Iterator
from itertools import islice
from operator import itemgetter
from typing import Any

import orjson

VERSION = 2
KNOWN = 0x01
UNTRUSTED = 0x02
ORIGINAL = 0x04
HEAD_BIN = 0x08
IDS_UUID = 0x10
COUNTS_U8 = 0x20
REFS_U8 = 0x40

_HEADER = struct.Struct("<BBHHHHHH")
STATE_FIELDS = (
    "session_id",
    "tenant",
    "human",
    "service",
    "agent",
    "principal",
    "started_ns",
    "known",
    "original",
    "action_count",
    "tools",
    "categories",
    "highest",
    "labels",
    "untrusted",
    "recent",
    "decisions",
    "events",
    "drift_max",
    "drift_ema",
    "drift_outside",
    "log_head",
    "log_len",
    "pay_count",
    "pay_totals",
    "payments",
)
""":class:`~aarm_pdp.session.state.SessionState`'s fields in order: decoding builds it
positionally (the state module checks the two agree; this module does not import it)."""
ORIGINAL_FIELDS = ("text", "intent_class", "expected_scope", "max_classification", "derived_scope")
_LITTLE = sys.byteorder == "little"
_NUL = "\x00"
_RECENT_VALUES = itemgetter("name", "category", "decision", "classification", "outcome")
_DECISION_ID = itemgetter("decision_id")
_NAME_CATEGORY_VERDICT = itemgetter(0, 1, 2)
_DEPTH = itemgetter(3)
_SIX = {6}
_FOUR = {4}
_FOUR_FIVE = {4, 5}
_INT = {int}
_FLOAT = {float}


COMPACT_MAX_DECISIONS = 12
"""Sessions with up to this many decisions (and tools) are written as version 2. Its
encoding costs about what version 1 cost the previous release (which deep-copied the
original request) up to here, and grows with each decision past it, while version 1
is one ``orjson`` call; a longer session's log window (up to 1 024 entries) is what
its memory is, not its state (docs/performance.md, "Compact sessions")."""


class Unencodable(Exception):
    """The state has something version 2 cannot hold exactly: write version 1."""


def _array(kind: str, values: list[Any]) -> bytes:
    a = array(kind, values)
    if not _LITTLE:
        a.byteswap()
    return a.tobytes()


def _unarray(kind: str, raw: bytes | memoryview) -> array[Any]:
    a = array(kind)
    a.frombytes(raw)
    if not _LITTLE:
        a.byteswap()
    return a


def uuids_to_bytes(ids: list[str]) -> bytes | None:
    """16 bytes per id when every id is a canonical (lower-case) UUID, else None."""
    n = len(ids)
    joined = "".join(ids)
    if (
        len(joined) != 36 * n
        or joined[8::36] != "-" * n
        or joined[13::36] != "-" * n
        or joined[18::36] != "-" * n
        or joined[23::36] != "-" * n
    ):
        return None
    hexed = joined.encode("ascii", "replace").translate(None, b"-")
    try:
        raw = binascii.unhexlify(hexed)
    except (binascii.Error, ValueError):
        return None
    # Lower case only, and no id of another length hiding among the others.
    if binascii.hexlify(raw) != hexed or len(raw) != 16 * n:
        return None
    return raw


def bytes_to_uuids(raw: bytes | memoryview) -> list[str]:
    h = bytes(raw).hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-"
        f"{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, len(h), 32)
    ]


def hex_to_bytes(text: str, size: int) -> bytes | None:
    """``size`` bytes when ``text`` is exactly ``2 * size`` lower-case hex digits."""
    if len(text) != 2 * size:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == size and raw.hex() == text else None


# -- state ------------------------------------------------------------------------


def encode_state(s: Any) -> bytes:
    """Version 2 of ``s``; raises :class:`Unencodable` when it cannot be exact, or when
    the session is past :data:`COMPACT_MAX_DECISIONS` (then its log window outweighs
    its state many times over, and JSON is the cheaper encoding to compute)."""
    if len(s.decisions) > COMPACT_MAX_DECISIONS or len(s.tools) > COMPACT_MAX_DECISIONS:
        raise Unencodable("a long session: version 1")
    try:
        return _encode(s)
    except (TypeError, ValueError, OverflowError, KeyError, IndexError, struct.error) as exc:
        raise Unencodable(str(exc)) from None


def _encode(s: Any) -> bytes:
    known, untrusted = s.known, s.untrusted
    if type(known) is not bool or type(untrusted) is not bool:
        raise TypeError("flags")
    flags = (KNOWN if known else 0) | (UNTRUSTED if untrusted else 0)
    # Strings said once (identity, original request): in order, no reference. Strings
    # that repeat (names, categories, verdicts...): each once, then by reference.
    literals = [s.session_id, s.tenant, s.human, s.service, s.agent, s.principal]
    index: dict[str, int] = {}
    ref = index.setdefault
    tools, categories, decisions, recent = s.tools, s.categories, s.decisions, s.recent
    o = s.original
    if o is not None:
        flags |= ORIGINAL
        literals += (o.text, o.intent_class, o.max_classification)
        counts = [len(o.expected_scope), len(o.derived_scope), len(tools)]
        # A scope names categories and tools, as the counters below do.
        refs = [ref(x, len(index)) for x in o.expected_scope]
        if o.derived_scope:
            refs += [ref(x, len(index)) for x in o.derived_scope]
    else:
        counts = [len(tools)]
        refs = []
    # (Each comprehension guarded: most of these are empty in a short session.)
    if tools:
        refs += [ref(x, len(index)) for x in tools]
        counts += tools.values()
    counts.append(len(categories))
    if categories:
        refs += [ref(x, len(index)) for x in categories]
        counts += categories.values()
    labels, outside = s.labels, s.drift_outside
    counts += (len(labels), len(outside))
    if labels:
        refs += [ref(x, len(index)) for x in labels]
    if outside:
        refs += [ref(x, len(index)) for x in outside]
    # Decision ids: those of the decisions, then any of a recent action not among them.
    ids = dict(zip(decisions, range(len(decisions)), strict=True))
    id_ref = ids.setdefault
    counts.append(len(recent))
    for r in recent:
        if len(r) != 6:
            raise ValueError("recent entry")
        counts.append(id_ref(r["decision_id"], len(ids)))
        refs += (
            ref(r["name"], len(index)),
            ref(r["category"], len(index)),
            ref(r["decision"], len(index)),
            ref(r["classification"], len(index)),
            ref(r["outcome"], len(index)),
        )
    counts.append(len(decisions))
    for rec in decisions.values():
        depth = rec[3]
        if type(depth) is not int or depth < 0:
            raise ValueError("defer depth")
        if len(rec) == 4:
            counts.append(depth + depth)
        elif len(rec) == 5 and type(rec[4]) is int and rec[4] == 1:
            counts.append(depth + depth + 1)  # a read the user pointed at
        else:
            raise ValueError("decision record")
        refs += (ref(rec[0], len(index)), ref(rec[1], len(index)), ref(rec[2], len(index)))
    events, totals, payments = s.events, s.pay_totals, s.payments
    counts.append(len(events))
    if events:
        refs += [ref(x, len(index)) for x in events]
    ints = [s.started_ns, s.action_count, s.highest, s.log_len, s.pay_count]
    for times in events.values():
        counts.append(len(times))
        ints += times
    counts += (len(totals), len(payments))
    if totals:
        refs += [ref(x, len(index)) for x in totals]
    doubles = [s.drift_max, s.drift_ema, *totals.values()]
    for at, currency, amount in payments:
        ints.append(at)
        refs.append(ref(currency, len(index)))
        doubles.append(amount)
    if {*map(type, doubles)} != _FLOAT or {*map(type, ints)} != _INT:
        raise TypeError("a number field holds another type")
    head = s.log_head
    head_bytes = hex_to_bytes(head, 32) if type(head) is str else None
    if head_bytes is not None:
        flags |= HEAD_BIN
    else:
        literals.append(head)
        head_bytes = b""
    id_list = list(ids)
    if id_list:
        id_bytes = _uuid_bytes(id_list[0]) if len(id_list) == 1 else uuids_to_bytes(id_list)
        if id_bytes is not None:
            flags |= IDS_UUID
        else:
            id_text = _NUL.join(id_list)
            if id_text.count(_NUL) != len(id_list) - 1:
                raise ValueError("NUL in a decision id")
            id_bytes = id_text.encode()
    else:
        id_bytes = b""
    strings = literals + list(index)
    text = _NUL.join(strings)
    if text.count(_NUL) != len(strings) - 1:
        raise ValueError("NUL in a string")
    if len(index) <= 256:
        flags |= REFS_U8
        ref_bytes = bytes(refs)
    else:
        ref_bytes = _array("H", refs)
    if max(counts) < 256:
        flags |= COUNTS_U8
        count_bytes = bytes(counts)
    else:
        count_bytes = _array("I", counts)
    ints_a = array("q", ints)
    doubles_a = array("d", doubles)
    if not _LITTLE:
        ints_a.byteswap()
        doubles_a.byteswap()
    return b"".join(
        (
            _HEADER.pack(
                VERSION,
                flags,
                len(counts),
                len(refs),
                len(ints),
                len(doubles),
                len(id_list),
                len(id_bytes),
            ),
            head_bytes,
            count_bytes,
            ref_bytes,
            ints_a,
            doubles_a,
            id_bytes,
            text.encode(),
        )
    )


def decode_state(raw: bytes, cls: Callable[..., Any], original: Callable[..., Any]) -> Any:
    """A version-2 blob back to ``cls(...)`` (``original`` builds the original request)."""
    version, flags, n_counts, n_refs, n_ints, n_doubles, n_ids, id_len = _HEADER.unpack_from(raw)
    if version != VERSION:
        raise ValueError(f"session state version {version} is not {VERSION}")
    pos = _HEADER.size
    if flags & HEAD_BIN:
        head: str | None = raw[pos : pos + 32].hex()
        pos += 32
    else:
        head = None
    if flags & COUNTS_U8:
        end = pos + n_counts
        counts: Any = raw[pos:end]
    else:
        end = pos + 4 * n_counts
        counts = _unarray("I", raw[pos:end])
    pos = end
    if flags & REFS_U8:
        end = pos + n_refs
        refs: Any = raw[pos:end]
    else:
        end = pos + 2 * n_refs
        refs = _unarray("H", raw[pos:end])
    pos = end
    end = pos + 8 * n_ints
    ints = _unarray("q", raw[pos:end])
    pos = end
    end = pos + 8 * n_doubles
    doubles = _unarray("d", raw[pos:end])
    pos = end
    end = pos + id_len
    if not n_ids:
        ids: list[str] = []
    elif flags & IDS_UUID:
        ids = bytes_to_uuids(raw[pos:end])
    else:
        ids = raw[pos:end].decode().split(_NUL)
    words = raw[end:].decode().split(_NUL)
    c = iter(counts)
    n = c.__next__
    sid, tenant, human, service, agent, principal = words[:6]
    at = 9 if flags & ORIGINAL else 6
    if head is None:
        head = words[at]
        at += 1
    strs = map(words[at:].__getitem__, refs)
    s = strs.__next__
    if flags & ORIGINAL:
        n_exp, n_der = n(), n()
        orig = original(
            words[6], words[7], list(islice(strs, n_exp)), words[8], list(islice(strs, n_der))
        )
    else:
        orig = None
    k = n()
    tools = dict(zip([s() for _ in range(k)], islice(c, k), strict=True))
    k = n()
    categories = dict(zip([s() for _ in range(k)], islice(c, k), strict=True))
    labels = list(islice(strs, n()))
    outside = list(islice(strs, n()))
    recent = [
        {
            "decision_id": ids[n()],
            "name": s(),
            "category": s(),
            "decision": s(),
            "classification": s(),
            "outcome": s(),
        }
        for _ in range(n())
    ]
    decisions: dict[str, list[Any]] = {}
    for did in ids[: n()]:
        code = n()
        decisions[did] = [s(), s(), s(), code >> 1, 1] if code & 1 else [s(), s(), s(), code >> 1]
    i = iter(ints)
    started, action_count, highest, log_len, pay_count = islice(i, 5)
    k = n()
    events = {cat: list(islice(i, n())) for cat in [s() for _ in range(k)]}
    k = n()
    totals = dict(zip([s() for _ in range(k)], doubles[2 : 2 + k], strict=True))
    payments: list[list[Any]] = [
        [when, cur, amount]
        for when, cur, amount in zip(i, islice(strs, n()), doubles[2 + len(totals) :], strict=True)
    ]
    return cls(
        sid,
        tenant,
        human,
        service,
        agent,
        principal,
        started,
        bool(flags & KNOWN),
        orig,
        action_count,
        tools,
        categories,
        highest,
        labels,
        bool(flags & UNTRUSTED),
        recent,
        decisions,
        events,
        doubles[0],
        doubles[1],
        outside,
        head,
        log_len,
        pay_count,
        totals,
        payments,
    )


# -- context-log records ------------------------------------------------------------

# Keys and words of the entries SessionContext writes: one byte each in a record.
_KEYS = (
    "kind",
    "at_ns",
    "decision_id",
    "name",
    "category",
    "decision",
    "classification",
    "outcome",
    "labels",
    "untrusted",
    "output_digest",
    "original_request_fingerprint",
    "intent_class",
    "expected_scope",
    "max_classification",
    "verdict",
    "context_hash",
    "action_count",
    "method",
    "approver",
    "prev",
    "hash",
)
_WORDS = (
    "",
    "decision",
    "outcome",
    "start",
    "ALLOW",
    "DENY",
    "STEP_UP",
    "DEFER",
    "MODIFY",
    "pending",
    "blocked",
    "executed",
    "failed",
    "NONE",
    "PUBLIC",
    "INTERNAL",
    "CONFIDENTIAL",
    "RESTRICTED",
    "read",
    "write",
    "external_communication",
    "financial",
    "approval",
    "resolution",
    "timeout",
    "expired",
    "code_execution",
    "destructive",
    "identity",
    "security_control",
    "deferral",
    "overturned",
)
_KEY_CODE = {k: i for i, k in enumerate(_KEYS)}
_WORD_CODE = {w: i for i, w in enumerate(_WORDS)}
_OTHER_KEY = 0xFF

(
    T_NONE,
    T_FALSE,
    T_TRUE,
    T_SMALL,
    T_INT,
    T_FLOAT,
    T_STR,
    T_WORD,
    T_HEX64,
    T_HEX32,
    T_UUID,
    T_LIST,
    T_DICT,
) = range(13)
R_RAW = 0x01
"""Record flag: the body is the entry's JSON as given (not an entry known to be chained)."""
R_PREV = 0x02
"""Record flag: ``prev`` is the hash before the record (the previous one's, or the base)."""
R_DECISION = 0x08
"""Record flag: the body is a decision entry's values in a fixed order (no keys)."""
R_HASH = 0x04
"""Record flag: the record's 32-byte hash follows its body (a raw entry with a 64-hex
``hash``); a chained entry's is recomputed, its ``hash`` being its link."""
_Q = struct.Struct("<q")
_MIN_Q, _MAX_Q = -(1 << 63), (1 << 63) - 1
_STR = {str}
_D = struct.Struct("<d")
HASH_BYTES = 32
_TRAILER = struct.Struct("<32sBIII")
"""After the records: the newest record's hash, whether it has one, the number of
records, the JSON bytes they stand for, and where the first starts (the bytes before it
are records let go, cut when they are half the window: cutting the front of a
``bytearray`` makes its next growth a copy)."""
SMALL_LOG = 4096
"""A window up to this size is an exact-size ``bytes`` (rewritten on append), a larger
one a ``bytearray`` (appended to in place, its oldest records cut in O(1))."""
Log = bytes | bytearray


def link(prev: str, entry: dict[str, Any]) -> str:
    """hash = sha256(prev || sorted-key JSON of the entry without ``prev``/``hash``)."""
    # orjson's sorted compact UTF-8 is the text json.dumps(sort_keys=True,
    # separators=(",", ":"), ensure_ascii=False) gave for the str/int/bool/list values
    # log entries hold (tests/unit/test_session_state.py checks), so chains written by
    # earlier versions still verify. Floats would differ; log entries have none.
    body = {k: v for k, v in entry.items() if k not in ("prev", "hash")}
    text = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev.encode() + text).hexdigest()


def _length(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)


def _read_length(buf: Any, pos: int) -> tuple[int, int]:
    n = buf[pos]
    if n < 0x80:
        return n, pos + 1
    value, shift = n & 0x7F, 7
    while True:
        pos += 1
        n = buf[pos]
        value |= (n & 0x7F) << shift
        if n < 0x80:
            return value, pos + 1
        shift += 7


def _str(out: bytearray, v: str) -> None:
    code = _WORD_CODE.get(v)
    if code is not None:
        out.append(T_WORD)
        out.append(code)
        return
    size = len(v)
    if size == 64 or size == 32:
        raw = hex_to_bytes(v, size // 2)
        if raw is not None:
            out.append(T_HEX64 if size == 64 else T_HEX32)
            out += raw
            return
    elif size == 36:
        raw = _uuid_bytes(v)
        if raw is not None:
            out.append(T_UUID)
            out += raw
            return
    data = v.encode()
    out.append(T_STR)
    _length(out, len(data))
    out += data


def _value(out: bytearray, v: Any) -> None:
    t = type(v)
    if t is str:
        _str(out, v)
    elif t is int:
        if 0 <= v < 256:
            out.append(T_SMALL)
            out.append(v)
        else:
            out.append(T_INT)
            out += _Q.pack(v)  # orjson writes no integer past 64 bits either
    elif v is None:
        out.append(T_NONE)
    elif t is bool:
        out.append(T_TRUE if v else T_FALSE)
    elif t is float:
        out.append(T_FLOAT)
        out += _D.pack(v)
    elif t is list:
        out.append(T_LIST)
        _length(out, len(v))
        for item in v:
            _value(out, item)
    elif t is dict:
        out.append(T_DICT)
        _dict(out, v)
    else:
        raise TypeError(f"no compact form for {t.__name__}")


def _dict(out: bytearray, doc: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    _length(out, len(doc) - sum(1 for k in skip if k in doc))
    for k, v in doc.items():
        if k in skip:
            continue
        code = _KEY_CODE.get(k)
        if code is not None:
            out.append(code)
        elif type(k) is str:
            data = k.encode()
            out.append(_OTHER_KEY)
            _length(out, len(data))
            out += data
        else:
            raise TypeError("a non-string key")
        _value(out, v)


def _read_str(buf: Any, pos: int) -> tuple[str, int]:
    n, pos = _read_length(buf, pos)
    return bytes(buf[pos : pos + n]).decode(), pos + n


def _read_value(buf: Any, pos: int) -> tuple[Any, int]:
    t = buf[pos]
    pos += 1
    if t == T_WORD:
        return _WORDS[buf[pos]], pos + 1
    if t == T_SMALL:
        return buf[pos], pos + 1
    if t == T_STR:
        return _read_str(buf, pos)
    if t == T_HEX64:
        return bytes(buf[pos : pos + 32]).hex(), pos + 32
    if t == T_HEX32:
        return bytes(buf[pos : pos + 16]).hex(), pos + 16
    if t == T_UUID:
        return bytes_to_uuids(buf[pos : pos + 16])[0], pos + 16
    if t == T_INT:
        return _Q.unpack_from(buf, pos)[0], pos + 8
    if t == T_FLOAT:
        return _D.unpack_from(buf, pos)[0], pos + 8
    if t == T_NONE:
        return None, pos
    if t == T_TRUE:
        return True, pos
    if t == T_FALSE:
        return False, pos
    if t == T_LIST:
        n, pos = _read_length(buf, pos)
        items = []
        for _ in range(n):
            item, pos = _read_value(buf, pos)
            items.append(item)
        return items, pos
    if t == T_DICT:
        return _read_dict(buf, pos)
    raise ValueError(f"bad record tag {t}")


def _read_dict(buf: Any, pos: int) -> tuple[dict[str, Any], int]:
    n, pos = _read_length(buf, pos)
    doc: dict[str, Any] = {}
    for _ in range(n):
        code = buf[pos]
        if code == _OTHER_KEY:
            key, pos = _read_str(buf, pos + 1)
        else:
            key, pos = _KEYS[code], pos + 1
        doc[key], pos = _read_value(buf, pos)
    return doc, pos


_DECISION_KEYS = frozenset(
    {"kind", "at_ns", "decision_id", "name", "category", "decision", "classification"}
    | {"outcome", "prev", "hash"}
)
_DECISION_FIELDS = itemgetter(
    "decision_id", "name", "category", "decision", "classification", "outcome"
)


def _uuid_bytes(v: str) -> bytes | None:
    """16 bytes of a canonical (lower-case) UUID, else None."""
    if len(v) != 36 or v[8] != "-" or v[13] != "-" or v[18] != "-" or v[23] != "-":
        return None
    h = v[:8] + v[9:13] + v[14:18] + v[19:23] + v[24:]
    try:
        raw = bytes.fromhex(h)
    except ValueError:
        return None
    return raw if raw.hex() == h else None


def _pack_decision(body: bytearray, entry: dict[str, Any], implicit: bool) -> bool:
    """A decision entry (what every Decide appends) as its values in a fixed order:
    time, id (16 bytes when a UUID), name, then category, verdict, classification and
    outcome as one byte each when they are frequent words."""
    at = entry["at_ns"]
    if entry["kind"] != "decision" or type(at) is not int or not _MIN_Q <= at <= _MAX_Q:
        return False
    did, name, *rest = _DECISION_FIELDS(entry)
    words = tuple(map(_WORD_CODE.get, rest))
    if type(did) is not str or type(name) is not str or None in words:
        return False
    body += _Q.pack(at)
    raw = _uuid_bytes(did)
    if raw is not None:
        body.append(T_UUID)
        body += raw
    else:
        _str(body, did)
    _str(body, name)
    body += bytes(words)  # type: ignore[arg-type]
    if not implicit:
        _str(body, entry["prev"])
    return True


def _read_decision(buf: Any, pos: int, implicit: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": "decision", "at_ns": _Q.unpack_from(buf, pos)[0]}
    did, pos = _read_value(buf, pos + 8)
    name, pos = _read_value(buf, pos)
    doc["decision_id"], doc["name"] = did, name
    w = _WORDS
    doc["category"], doc["decision"] = w[buf[pos]], w[buf[pos + 1]]
    doc["classification"], doc["outcome"] = w[buf[pos + 2]], w[buf[pos + 3]]
    if not implicit:
        doc["prev"], _ = _read_value(buf, pos + 4)
    return doc


def _pack(out: bytearray, raw: bytes, entry: dict[str, Any] | None, prev: bytes) -> bytes:
    """Append one record to ``out``; returns its hash (b"" when it has none).

    ``entry`` is the chained dict ``raw`` is the sorted-key ``orjson`` text of (its
    ``hash`` is :func:`link` of its ``prev`` and the rest), or None (kept as given).
    ``prev`` is the hash before it (b"": none).
    """
    if entry is not None:
        h, p = entry.get("hash"), entry.get("prev")
        hb = hex_to_bytes(h, HASH_BYTES) if type(h) is str else None
        if hb is not None and type(p) is str:
            implicit = bool(prev) and prev.hex() == p
            body = bytearray()
            flags = R_PREV if implicit else 0
            try:
                if entry.keys() == _DECISION_KEYS and _pack_decision(body, entry, implicit):
                    flags |= R_DECISION
                else:
                    body.clear()
                    _dict(body, entry, ("hash", "prev") if implicit else ("hash",))
            except (TypeError, ValueError, OverflowError, struct.error):
                pass
            else:
                out.append(flags)
                _length(out, len(body))
                _length(out, len(raw))
                out += body
                return hb
    hb = _raw_hash(raw)
    out.append(R_RAW | (R_HASH if hb else 0))
    _length(out, len(raw))
    _length(out, len(raw))
    out += raw
    if hb:
        out += hb
    return hb


def _raw_hash(raw: bytes) -> bytes:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return b""
    h = doc.get("hash") if isinstance(doc, dict) else None
    return (hex_to_bytes(h, HASH_BYTES) or b"") if type(h) is str else b""


def _span(buf: Any, pos: int) -> tuple[int, int, int, int, int]:
    """(flags, body start, body end, JSON length, next record) of the record at ``pos``."""
    flags = buf[pos]
    size, p = _read_length(buf, pos + 1)
    json_len, p = _read_length(buf, p)
    end = p + size
    return flags, p, end, json_len, end + (HASH_BYTES if flags & R_HASH else 0)


def _entry(buf: Any, pos: int, prev: str) -> tuple[bytes, str, int]:
    """(JSON, chain hash, next record) of the record at ``pos``; ``prev`` the hash
    before it. The hash of a raw entry without one is what its JSON says ("" if none)."""
    flags, start, end, _, nxt = _span(buf, pos)
    if flags & R_RAW:
        raw = bytes(buf[start:end])
        if flags & R_HASH:
            return raw, bytes(buf[end:nxt]).hex(), nxt
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw, "", nxt
        return raw, str(doc.get("hash", "")) if isinstance(doc, dict) else "", nxt
    doc = _read_body(buf, start, flags)
    if flags & R_PREV:
        doc["prev"] = prev
    h = doc["hash"] = link(doc["prev"], doc)
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS), h, nxt


def _read_body(buf: Any, start: int, flags: int) -> dict[str, Any]:
    if flags & R_DECISION:
        return _read_decision(buf, start, bool(flags & R_PREV))
    return _read_dict(buf, start)[0]


def log_append(buf: Log | None, base: str, entries: list[bytes]) -> Log:
    """``buf`` (a window, or None) with ``entries`` appended (JSON bytes; a
    :class:`~aarm_pdp.session.store.LogRecord` is kept compact)."""
    if buf:
        body_end = len(buf) - _TRAILER.size
        last, has_last, count, json_bytes, first = _TRAILER.unpack_from(buf, body_end)
        prev = last if has_last else b""
    else:
        body_end = count = json_bytes = first = 0
        prev = hex_to_bytes(base, HASH_BYTES) or b""
    out = bytearray()
    for raw in entries:
        prev = _pack(out, raw, getattr(raw, "entry", None), prev)
        json_bytes += len(raw)
    trailer = _TRAILER.pack(
        prev or bytes(HASH_BYTES), bool(prev), count + len(entries), json_bytes, first
    )
    if buf is not None and type(buf) is bytearray:
        del buf[body_end:]
        buf += out
        buf += trailer
        return buf
    size = body_end + len(out) + _TRAILER.size
    if size <= SMALL_LOG:
        return b"".join((buf[:body_end] if buf else b"", out, trailer))
    grown = bytearray(buf[:body_end] if buf else b"")
    grown += out
    grown += trailer
    return grown


def log_stats(buf: Log | None) -> tuple[int, int]:
    """(entries, JSON bytes) of a window."""
    if not buf:
        return 0, 0
    _, _, count, json_bytes, _ = _TRAILER.unpack_from(buf, len(buf) - _TRAILER.size)
    return count, json_bytes


def log_json_lengths(buf: Log | None) -> Iterator[int]:
    """The JSON length of each entry of a window, oldest first."""
    if not buf:
        return
    end = len(buf) - _TRAILER.size
    pos = _TRAILER.unpack_from(buf, end)[4]
    while pos < end:
        _, _, _, json_len, pos = _span(buf, pos)
        yield json_len


def log_entries(buf: Log | None, base: str) -> list[bytes]:
    """The window's entries as the JSON bytes appended; ``base`` the hash before them."""
    out: list[bytes] = []
    if not buf:
        return out
    end, prev = len(buf) - _TRAILER.size, base
    pos = _TRAILER.unpack_from(buf, end)[4]
    while pos < end:
        raw, prev, pos = _entry(buf, pos, prev)
        out.append(raw)
    return out


def log_drop(buf: Log, base: str, n: int) -> tuple[Log, str]:
    """The window without its ``n`` oldest entries (fewer than it holds), and the new
    base: the hash of the last entry dropped."""
    body_end = len(buf) - _TRAILER.size
    last, has_last, count, json_bytes, pos = _TRAILER.unpack_from(buf, body_end)
    prev, dropped_json = base, 0
    for _ in range(n):
        flags, start, _, json_len, nxt = _span(buf, pos)
        if flags & R_RAW:
            prev = _entry(buf, pos, prev)[1]
        else:
            doc = _read_body(buf, start, flags)
            if flags & R_PREV:
                doc["prev"] = prev
            prev = link(doc["prev"], doc)
        dropped_json += json_len
        pos = nxt
    count, json_bytes = count - n, json_bytes - dropped_json
    if type(buf) is not bytearray:
        return buf[pos:body_end] + _TRAILER.pack(last, has_last, count, json_bytes, 0), prev
    if 2 * pos < body_end:  # the records let go are under half: cut them later
        buf[body_end:] = _TRAILER.pack(last, has_last, count, json_bytes, pos)
        return buf, prev
    del buf[:pos]
    buf[-_TRAILER.size :] = _TRAILER.pack(last, has_last, count, json_bytes, 0)
    if len(buf) <= SMALL_LOG // 2:
        return bytes(buf), prev
    return buf, prev


def state_sections(raw: bytes) -> dict[str, int]:
    """Bytes of each section of a version-2 blob (what ``bench/session_memory.py``
    reports); a version-1 blob is one section."""
    if raw[:1] == b"{":
        return {"json (version 1)": len(raw)}
    _, flags, n_counts, n_refs, n_ints, n_doubles, _, id_len = _HEADER.unpack_from(raw)
    parts = {
        "header": _HEADER.size,
        "log_head": 32 if flags & HEAD_BIN else 0,
        "counts": n_counts * (1 if flags & COUNTS_U8 else 4),
        "string refs": n_refs * (1 if flags & REFS_U8 else 2),
        "int64s": 8 * n_ints,
        "doubles": 8 * n_doubles,
        "decision ids": id_len,
    }
    parts["strings"] = len(raw) - sum(parts.values())
    return parts
