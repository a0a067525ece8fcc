"""RFC 8785 (JSON Canonicalization Scheme) bytes for a JSON value.

JCS sorts object members by the UTF-16 code units of their names, writes numbers the
way ECMAScript ``Number.prototype.toString`` does (``1e+30``, ``0.002``, ``4.5``),
escapes only what JSON requires and emits UTF-8 with no whitespace. Values outside
I-JSON (integers beyond +/-(2**53 - 1), NaN, infinities, lone surrogates, non-string
keys) have no canonical form and are refused.

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
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, RecursionError) as exc:
        raise ReceiptInvalid(f"not canonicalisable: {exc}") from exc


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
