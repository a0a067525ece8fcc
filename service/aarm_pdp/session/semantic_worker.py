"""Semantic drift off the hot path: score each decided action in the background.

Embedding one action text costs ~10 ms on a CPU, far over the Decide budget, so the
semantic distance of action n is computed after its decision and folded into the
session; the decision for action n+1 sees it in ``input.drift.semantic`` (``last``,
``max``, ``ema``). Lagging by one action is the documented price of a fast path. The
queue is bounded: when it is full, scores are dropped (counted), never waited for.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.session import state as st
from aarm_pdp.session.store import SessionStore

log = logging.getLogger("aarm_pdp.session.semantic")

QUEUE_SIZE = 1024
ALPHA = 0.5


class SemanticWorker:
    """Consumes (session key, original request, action text) and updates the session."""

    def __init__(self, store: SessionStore, metrics: Metrics, scorer: Any = None) -> None:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        if scorer is None:
            from aarm_pdp.drift.semantic import SemanticScorer

            scorer = SemanticScorer()
            scorer.load()  # fail at start-up, not later, if the extra is missing
        self._scorer = scorer
        self._store = store
        self._metrics = metrics
        self._queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue(QUEUE_SIZE)
        self.scored = 0

    def submit(self, key: str, original: str, action: str) -> None:
        """Queue one action for scoring; drop it if the queue is full."""
        try:
            self._queue.put_nowait((key, original, action))
        except asyncio.QueueFull:
            self._metrics.semantic_dropped.inc()

    async def run(self) -> None:
        """Score forever (a background task)."""
        while True:
            key, original, action = await self._queue.get()
            try:
                distance = await asyncio.to_thread(self._scorer.distance, original, action)
                self._metrics.semantic_drift.observe(distance)
                await self._store.update(key, _fold(distance), lambda _: [])
                self.scored += 1
            except Exception:
                log.exception("semantic drift scoring failed")
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Wait until everything queued has been scored (tests, shutdown)."""
        await self._queue.join()


def _fold(distance: float) -> Any:
    def apply(raw: bytes | None) -> tuple[bytes | None, None]:
        if raw is None:
            return None, None
        state = st.SessionState.from_bytes(raw)
        first = state.sem_last < 0
        state.sem_last = round(distance, 6)
        state.sem_max = round(max(state.sem_max, distance), 6)
        state.sem_ema = round(
            distance if first else ALPHA * distance + (1 - ALPHA) * state.sem_ema, 6
        )
        return state.to_bytes(), None

    return apply
