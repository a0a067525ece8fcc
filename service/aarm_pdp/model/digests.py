"""Digests of plain values. PURE."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def parameters_hash(value: Any) -> str:
    """sha256 of the canonical (sorted-key) JSON of some parameters.

    Receipts bind parameters by it and telemetry exports parameters only as it (T9).
    """
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()
