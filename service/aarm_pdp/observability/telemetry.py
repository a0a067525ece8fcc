"""Security telemetry export (AARM R8): every decision as an event, within seconds.

Schema ``aarm.telemetry.v1``: OCSF-1.1-shaped JSON objects, documented in
``docs/telemetry.md``. ``aarm.action`` (OCSF API Activity, class_uid 6003) for every
decided action; ``aarm.decision`` (Security Finding, 2001) for denials, escalations
and deferrals; ``aarm.approval`` (Authorization, 3003) for approval outcomes.
Parameters are exported only as a sha256 (AARM T9, side-channel leakage): no value
of any argument, no SQL, no output ever leaves in an event. The events themselves are
built in :mod:`aarm_pdp.observability.events`; this module only ships them.

Events are queued without blocking (bounded; overflow is counted and dropped) and
flushed by a background task every ``flush_seconds``, and within
``URGENT_SECONDS`` of a HIGH or CRITICAL event (which collects the urgent events of a
burst into one export instead of one per event), to a JSONL file and/or a webhook.
After three consecutive failed exports the exporter logs an error each time and keeps
the batch for the next try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from aarm_pdp.observability.events import SEVERITY_ID
from aarm_pdp.observability.metrics import Metrics

log = logging.getLogger("aarm_pdp.telemetry")

MAX_BUFFER = 10_000
MAX_BATCH = 500
URGENT_SECONDS = 0.05


class TelemetryExporter:
    """Buffers events and ships them to a JSONL file and/or a webhook."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        file: Path | None = None,
        webhook_url: str = "",
        flush_seconds: float = 1.0,
        decisions: frozenset[str] | None = None,
    ) -> None:
        self._metrics = metrics
        self._file = file
        self._url = webhook_url
        self._flush_seconds = flush_seconds
        self.decisions = decisions
        self._buffer: deque[dict[str, Any]] = deque()
        self._urgent = asyncio.Event()
        self._failures = 0
        self._session: aiohttp.ClientSession | None = None
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, ev: dict[str, Any]) -> None:
        """Queue an event; never blocks the caller."""
        decision = ev.get("decision")
        if self.decisions is not None and decision is not None and decision not in self.decisions:
            return
        if len(self._buffer) >= MAX_BUFFER:
            self._metrics.telemetry_dropped.inc()
            return
        self._buffer.append(ev)
        self._metrics.telemetry_buffer.set(len(self._buffer))
        if ev.get("severity_id", 0) >= SEVERITY_ID["HIGH"]:
            self._urgent.set()

    async def run(self) -> None:
        """Flush forever (a background task)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._urgent.wait(), self._flush_seconds)
                await asyncio.sleep(URGENT_SECONDS)  # let the rest of a burst join
            self._urgent.clear()
            await self.flush()

    async def flush(self) -> None:
        """Export what is buffered; on failure keep it for the next attempt."""
        while self._buffer:
            batch = [self._buffer[i] for i in range(min(MAX_BATCH, len(self._buffer)))]
            try:
                await self._export(batch)
            except (OSError, aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
                self._failures += 1
                self._metrics.telemetry_failures.inc()
                level = logging.ERROR if self._failures > 3 else logging.WARNING
                log.log(level, "telemetry export failed (%d in a row): %s", self._failures, exc)
                return
            for _ in batch:
                self._buffer.popleft()
            self._failures = 0
            self._metrics.telemetry_emitted.inc(len(batch))
            self._metrics.telemetry_buffer.set(len(self._buffer))

    async def _export(self, batch: list[dict[str, Any]]) -> None:
        lines = b"".join(orjson.dumps(ev) + b"\n" for ev in batch)
        if self._file is not None:
            await asyncio.to_thread(_append, self._file, lines)
        if self._url:
            if self._session is None:
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
            async with self._session.post(
                self._url,
                data=b"[" + b",".join(orjson.dumps(e) for e in batch) + b"]",
                headers={"content-type": "application/json"},
            ) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"telemetry webhook answered {resp.status}")

    async def aclose(self) -> None:
        """Flush what is left, then close."""
        await self.flush()
        if self._session is not None:
            await self._session.close()


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)
        fh.flush()
