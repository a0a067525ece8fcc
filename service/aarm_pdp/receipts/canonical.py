"""RFC 8785 (JSON Canonicalization Scheme) bytes for a JSON value.

JCS sorts object members by the UTF-16 code units of their names, writes numbers the
way ECMAScript ``Number.prototype.toString`` does (``1e+30``, ``0.002``, ``4.5``),
escapes only what JSON requires and emits UTF-8 with no whitespace. NaN, infinities,
lone surrogates and non-string keys have no canonical form and are refused.

Numbers are IEEE 754 doubles (RFC 8785 §3.2.2.3, I-JSON). An integral double of
2**53 or more is written in full below 1e21 (``1e20`` -> ``100000000000000000000``),
so a receipt's text holds integers that JSON parsers (ours included) read back as
ints beyond +/-(2**53 - 1). Such an int is written as the double nearest to it when
nothing is lost: the double equals it (``2**53``, ``2**63``, written
``9007199254740992``, ``9223372036854776000``) or is written with exactly its digits
(``100000000000000000000``, ``1152921504606847000``, which is how 2**60 is written).
So parsing a canonical text and canonicalising it again gives the same bytes, and an
int computed elsewhere (OPA's modified parameters) keeps its value. An int no double
holds (``2**53 + 1``, most nanosecond timestamps, ``10**400``) is refused rather than
silently rounded.

The ``rfc8785`` package is the reference; its errors are translated into
:class:`~aarm_pdp.errors.ReceiptInvalid` here, at the boundary. It is pure Python
and costs ~0.5 ms per receipt, so values in a subset where orjson's sorted, compact
output is byte-identical to RFC 8785 take a fast path: every object key is ASCII
(code-point order = UTF-16 order), every number is an int or an integral double
below 1e21 in magnitude (written as the int whose digits ECMAScript writes, within
the 64 bits orjson writes; an int beyond +/-(2**53 - 1) only when its double loses
nothing, as below) or a float whose shortest representation needs no exponent
(1e-5 <= |x| < 1e15, where ECMAScript and orjson print the same digits), and strings
are valid Unicode (orjson refuses lone surrogates, and escapes exactly what JCS
escapes). Anything else, and any doubt, goes to ``rfc8785``.
``tests/unit/test_receipts_canonical.py`` checks the two agree.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
import rfc8785

from aarm_pdp.errors import ReceiptInvalid

__all__ = ["canonicalize", "canonicalize_nearest", "parse"]


_MAX_INT = 2**53 - 1
_ORJSON_MIN, _ORJSON_MAX = -(2**63), 2**64 - 1
"""The ints orjson serialises."""


class _Slow(Exception):
    """The value is outside the fast path's subset."""


def _fast(value: Any, depth: int = 0, nearest: bool = False) -> Any:
    """``value`` with integral floats as ints, or _Slow when outside the subset.

    ``nearest``: an int beyond +/-(2**53 - 1) is the double nearest to it, even when
    that loses digits (:func:`canonicalize_nearest`). Plain dicts, lists and leaves are
    checked inline (a receipt body has ~100 nodes; a call per leaf is most of the walk).
    """
    t = type(value)
    if t is dict:
        if depth > 64:
            raise _Slow
        out = {}
        for k, v in value.items():
            if (type(k) is not str and not isinstance(k, str)) or not k.isascii():
                raise _Slow
            tv = type(v)
            if tv is str or v is None or tv is bool or (tv is int and -_MAX_INT <= v <= _MAX_INT):
                out[k] = v
            else:
                out[k] = _fast(v, depth + 1, nearest)
        return out
    if t is list or t is tuple:
        if depth > 64:
            raise _Slow
        return [v if type(v) is str or v is None else _fast(v, depth + 1, nearest) for v in value]
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -_MAX_INT <= value <= _MAX_INT:
            return value
        return _nearest_int(value) if nearest else _big_int(value)
    if isinstance(value, float):
        if value.is_integer():
            return int(value) if abs(value) <= _MAX_INT else _integral_double(value)
        if 1e-5 <= abs(value) < 1e15:
            return value
        raise _Slow
    if isinstance(value, dict):  # a subclass: as a plain dict
        return _fast(dict(value), depth, nearest)
    if isinstance(value, list | tuple):
        return _fast(list(value), depth, nearest)
    raise _Slow


def _integral_double(value: float) -> int:
    """An integral double beyond +/-(2**53 - 1) as the int orjson writes with exactly the
    digits ECMAScript writes for it (the shortest round-trip digits, then zeros: 2**60 is
    ``1152921504606847000``), or _Slow: from 1e21 on ECMAScript uses an exponent, and
    orjson writes no int beyond 64 bits. The decision record's ``now_ns`` is one."""
    if abs(value) >= 1e21:
        raise _Slow
    as_int = int(Decimal(repr(value)))
    if not _ORJSON_MIN <= as_int <= _ORJSON_MAX:
        raise _Slow
    return as_int


def _big_int(value: int) -> int:
    """An int beyond +/-(2**53 - 1) as :func:`_integral_double` writes its double, when
    that loses nothing (as :func:`_big_int_as_double` decides); else _Slow, and the slow
    path refuses it."""
    if value.bit_length() > 70:
        raise _Slow
    as_float = float(value)
    written = _integral_double(as_float)
    if int(as_float) != value and written != value:
        raise _Slow
    return written


def _nearest_int(value: int) -> int:
    """An int beyond +/-(2**53 - 1) as :func:`_integral_double` writes its nearest double."""
    if value.bit_length() > 70:
        raise _Slow
    return _integral_double(float(value))


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value`` (dicts, lists, str, int, float, bool, None).

    Raises:
        ReceiptInvalid: ``value`` has no canonical form.
    """
    try:
        return orjson.dumps(_fast(value), option=orjson.OPT_SORT_KEYS)
    except (_Slow, orjson.JSONEncodeError, TypeError):
        pass
    try:
        try:
            return rfc8785.dumps(value)
        except rfc8785.IntegerDomainError:  # rare: walk the value only then
            return rfc8785.dumps(_as_doubles(value))
    except (ValueError, RecursionError) as exc:
        # ValueError: rfc8785's CanonicalizationError, and also the UnicodeEncodeError
        # its UTF-16 key sort raises on a lone surrogate in a nested key.
        raise ReceiptInvalid(f"not canonicalisable: {exc}") from exc


def canonicalize_nearest(value: Any) -> bytes:
    """:func:`canonicalize`, every int beyond +/-(2**53 - 1) taken as the double nearest
    to it, even when that loses digits: a JSON number is a double (RFC 8785), and this is
    the value OPA read (the decision record's ``now_ns``).

    Raises:
        ReceiptInvalid: ``value`` has no canonical form (an int beyond any double too).
    """
    try:
        return orjson.dumps(_fast(value, 0, True), option=orjson.OPT_SORT_KEYS)
    except (_Slow, orjson.JSONEncodeError, TypeError):
        pass
    try:
        doubled = _nearest_doubles(value)
    except (OverflowError, RecursionError) as exc:
        raise ReceiptInvalid(f"not canonicalisable: {exc}") from exc
    return canonicalize(doubled)


def _nearest_doubles(value: Any) -> Any:
    """``value`` with every int beyond +/-(2**53 - 1) replaced by its nearest double."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_MAX_INT <= value <= _MAX_INT else float(value)
    if isinstance(value, dict):
        return {k: _nearest_doubles(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nearest_doubles(v) for v in value]
    return value


_BIG_INT = "an integer beyond +/-(2**53 - 1) that no double holds"


def _big_int_as_double(value: int) -> float:
    """``value`` (beyond +/-(2**53 - 1)) as its double, if that loses nothing."""
    if value.bit_length() > 1024:  # beyond any double (and str() may refuse it)
        raise rfc8785.CanonicalizationError(_BIG_INT)
    as_float = float(value)
    if int(as_float) != value and rfc8785.dumps(as_float) != str(value).encode("ascii"):
        raise rfc8785.CanonicalizationError(_BIG_INT)
    return as_float


def _as_doubles(value: Any) -> Any:
    """``value`` with every int beyond +/-(2**53 - 1) replaced by its double, or refused."""
    if isinstance(value, bool) or not isinstance(value, int | dict | list | tuple):
        return value
    if isinstance(value, int):
        return value if -_MAX_INT <= value <= _MAX_INT else _big_int_as_double(value)
    if isinstance(value, dict):
        return {k: _as_doubles(v) for k, v in value.items()}
    return [_as_doubles(v) for v in value]


def parse(text: str | bytes) -> Any:
    """Parse JSON text, refusing ``NaN``/``Infinity`` literals and duplicate member names.

    Raises:
        ReceiptInvalid: the text is not JSON.
    """

    def _reject(literal: str) -> Any:
        raise ValueError(f"non-standard JSON literal {literal}")

    def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ValueError("duplicate member name")
        return out

    try:
        return json.loads(text, parse_constant=_reject, object_pairs_hook=_object)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ReceiptInvalid(f"not JSON: {exc}") from exc
