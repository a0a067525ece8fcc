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

The file rotates by size (:class:`RotatingJsonl`): before a line would take it past
``max_bytes`` it is renamed ``<file>.1`` (``.1`` to ``.2`` and so on, keeping ``keep``
of them) and a new file is started, so no event is lost or split across files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import orjson

from aarm_pdp.observability.events import SEVERITY_ID
from aarm_pdp.observability.metrics import Metrics

log = logging.getLogger("aarm_pdp.telemetry")

MAX_BUFFER = 10_000
MAX_BATCH = 500
URGENT_SECONDS = 0.05
DEFAULT_MAX_BYTES = 64 << 20
"""The telemetry file rotates before it would grow past this (64 MiB)."""
DEFAULT_KEEP = 5
"""Rotated telemetry files kept (``.1`` newest … ``.5`` oldest)."""


class RotatingJsonl:
    """Appends whole lines to ``path`` and rotates it by size; safe across threads.

    Before a line would take the file past ``max_bytes`` (and the file is not empty),
    the file is closed and renamed ``path.1`` (an older ``path.1`` to ``path.2``, …,
    up to ``path.<keep>``; the oldest beyond that is deleted; ``keep=0`` deletes the
    file instead) and a new one is started. A line is never split: a single line
    longer than ``max_bytes`` gets a file of its own. One lock serialises writers of
    this object, so lines of concurrent writes never interleave or cross a rotation.
    A file moved or deleted behind our back (logrotate) is noticed and reopened.
    Several processes must not share one file (each would rotate on its own count).
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = DEFAULT_KEEP,
        on_rotate: Callable[[], None] | None = None,
    ) -> None:
        if max_bytes < 1 or keep < 0:
            raise ValueError("max_bytes must be >= 1 and keep >= 0")
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._on_rotate = on_rotate
        self._lock = threading.Lock()
        self._fh: BinaryIO | None = None
        self._size = 0
        self.rotations = 0

    def write_lines(self, lines: Sequence[bytes]) -> None:
        """Append ``lines`` (each ending in ``b"\\n"``), rotating between lines as needed.

        Raises:
            OSError: the file could not be written (lines before the failure may be in).
        """
        with self._lock:
            fh = self._current()
            pending: list[bytes] = []
            size = self._size
            for line in lines:
                if size > 0 and size + len(line) > self.max_bytes:
                    self._write(fh, pending)
                    pending = []
                    fh = self._rotate()
                    size = 0
                pending.append(line)
                size += len(line)
            self._write(fh, pending)

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def _write(self, fh: BinaryIO, lines: list[bytes]) -> None:
        if not lines:
            return
        data = b"".join(lines)
        fh.write(data)
        fh.flush()
        self._size += len(data)

    def _current(self) -> BinaryIO:
        if self._fh is not None:
            try:
                same = os.stat(self.path).st_ino == os.fstat(self._fh.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return self._fh
            self._fh.close()  # moved or deleted by someone else: start a new file
            self._fh = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("ab")
        self._fh = fh
        self._size = os.fstat(fh.fileno()).st_size
        return fh

    def _rotated(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def _rotate(self) -> BinaryIO:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
        else:
            # Shift .1 .. .n up by one (n: the rotated files there are, at most keep - 1;
            # the move onto .keep replaces the oldest), then the live file to .1.
            n = 0
            while n < self.keep - 1 and self._rotated(n + 1).exists():
                n += 1
            for i in range(n, 0, -1):
                os.replace(self._rotated(i), self._rotated(i + 1))
            os.replace(self.path, self._rotated(1))
        self.rotations += 1
        if self._on_rotate is not None:
            self._on_rotate()
        return self._current()


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
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        self._metrics = metrics
        self._file = (
            RotatingJsonl(
                file, max_bytes=max_bytes, keep=keep, on_rotate=metrics.telemetry_rotations.inc
            )
            if file is not None
            else None
        )
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
        if self._file is not None:
            lines = [orjson.dumps(ev) + b"\n" for ev in batch]
            await asyncio.to_thread(self._file.write_lines, lines)
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
        if self._file is not None:
            self._file.close()
