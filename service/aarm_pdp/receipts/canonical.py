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
(code-point order = UTF-16 order), every number is an int within I-JSON's range or a
float whose shortest representation needs no exponent (1e-5 <= |x| < 1e15, where
ECMAScript and orjson print the same digits; integral floats are written as ints,
as ECMAScript does), and strings are valid Unicode (orjson refuses lone surrogates,
and escapes exactly what JCS escapes). Anything else, and any doubt, goes to
``rfc8785``. ``tests/unit/test_receipts_canonical.py`` checks the two agree.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import rfc8785

from aarm_pdp.errors import ReceiptInvalid

__all__ = ["canonicalize", "parse"]


_MAX_INT = 2**53 - 1


class _Slow(Exception):
    """The value is outside the fast path's subset."""


def _fast(value: Any, depth: int = 0) -> Any:
    """``value`` with integral floats as ints, or _Slow when outside the subset."""
    if depth > 64:
        raise _Slow
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -_MAX_INT <= value <= _MAX_INT:
            return value
        raise _Slow
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= _MAX_INT:
            return int(value)
        if 1e-5 <= abs(value) < 1e15:
            return value
        raise _Slow
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not k.isascii():
                raise _Slow
            out[k] = _fast(v, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_fast(v, depth + 1) for v in value]
    raise _Slow


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
