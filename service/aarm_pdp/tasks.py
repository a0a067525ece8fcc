"""Background tasks that end when told: a bounded cancel-and-wait for the stop paths.

Plain asyncio, nothing of ours: any layer's ``aclose`` may use it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("aarm_pdp.tasks")


CANCEL_ROUNDS = 10
CANCEL_ROUND_SECONDS = 1.0


async def cancel_and_wait(
    tasks: Iterable[asyncio.Future[Any]],
    *,
    rounds: int = CANCEL_ROUNDS,
    round_seconds: float = CANCEL_ROUND_SECONDS,
) -> set[asyncio.Future[Any]]:
    """Cancel ``tasks`` and wait for them to end, bounded; the ones still running after
    ``rounds`` are returned (the caller logs them and goes on: a stop never hangs).

    A task still running ``round_seconds`` after its cancel is cancelled again: a library
    can swallow one cancellation (psycopg-pool's ``getconn`` and its workers catch
    ``CancelledError`` and carry on, psycopg/psycopg#1345), which left a health loop
    sleeping and a pool worker waiting forever after a single cancel. An exception a task
    ended with is retrieved (logged), never re-raised here.
    """
    every = list(tasks)
    pending = {t for t in every if not t.done()}
    for _ in range(rounds):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=round_seconds)
    for task in every:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("task ended with %r", task.exception())
    return pending
