"""Run the service's top-level coroutine on the configured event loop.

uvloop is the default: with the minimal OPA client it cut service CPU per Decide by
~10 % in the benchmark (docs/performance.md); ``asyncio`` stays available
(``--event-loop asyncio``) for debugging and for platforms without uvloop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T], kind: str = "uvloop") -> T:
    """``asyncio.run(main)`` on a new ``kind`` loop (``uvloop`` or ``asyncio``)."""
    if kind == "uvloop":
        import uvloop

        return uvloop.run(main)
    if kind != "asyncio":
        raise ValueError(f"unknown event loop {kind!r}")
    return asyncio.run(main)
