"""Timestamps as the service writes them. PURE: the time comes in as an argument."""

from __future__ import annotations

import functools
from datetime import UTC, datetime


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def rfc3339(ns: int) -> str:
    """Format nanoseconds since the epoch as RFC 3339 UTC with microseconds (exact)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return f"{_second(seconds)}.{rest // 1000:06d}Z"
