"""RFC 8785 (JSON Canonicalization Scheme) bytes for a JSON value.

JCS sorts object members by the UTF-16 code units of their names, writes numbers the
way ECMAScript ``Number.prototype.toString`` does (``1e+30``, ``0.002``, ``4.5``),
escapes only what JSON requires and emits UTF-8 with no whitespace. Values outside
I-JSON (integers beyond +/-(2**53 - 1), NaN, infinities, lone surrogates, non-string
keys) have no canonical form and are refused.

The ``rfc8785`` package does the work; its errors are translated into
:class:`~aarm_pdp.errors.ReceiptInvalid` here, at the boundary.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from aarm_pdp.errors import ReceiptInvalid

__all__ = ["canonicalize", "parse"]


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value`` (dicts, lists, str, int, float, bool, None).

    Raises:
        ReceiptInvalid: ``value`` has no canonical form.
    """
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
