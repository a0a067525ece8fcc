"""The steady load every fault runs under: Decides that are ALLOW when all is healthy.

Each of :data:`WORKERS` asyncio workers sends one Decide at a time (a read of a catalogued
tool, ``db.query`` of ``customers`` with a small limit: ALLOW ``catalogued`` under the
reference pack), each with a :data:`DEADLINE` deadline, and records one :class:`Sample`
per call: when it was sent and answered (``time.monotonic()``), the verdict and reason
codes or the gRPC error, the decision and receipt ids. After an error a worker waits
:data:`ERROR_BACKOFF` (a client's back-off, so a dead server is not a busy loop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from aarm.v1 import decision_pb2

from faults.probe import CHANNEL_OPTIONS
from tests.support.grpc_clients import Clients, aio_channel
from tests.support.messages import IDENTITY, decide_request

WORKERS = 8
DEADLINE = 5.0
ERROR_BACKOFF = 0.02
SESSIONS_PER_WORKER = 16
ALLOW = "DECISION_ALLOW"


def request(worker: str, i: int) -> Any:
    """The healthy-ALLOW Decide: worker ``worker``'s ``i``-th, in one of its sessions."""
    ident = {**IDENTITY, "session_id": f"{worker}-{i % SESSIONS_PER_WORKER}"}
    return decide_request("db", "query", {"table": "customers", "limit": 10}, identity=ident)


@dataclass(slots=True)
class Sample:
    sent: float
    answered: float
    outcome: str
    """The verdict name (``DECISION_ALLOW``...) or ``grpc:<CODE>``."""
    codes: tuple[str, ...] = ()
    decision_id: str = ""
    receipt_id: str = ""
    details: str = ""

    @property
    def ok(self) -> bool:
        return not self.outcome.startswith("grpc:")


class Load:
    """:data:`WORKERS` closed-loop Decide workers on one channel; :attr:`samples` grows."""

    def __init__(self, target: str, workers: int = WORKERS) -> None:
        self.target = target
        self.workers = workers
        self.samples: list[Sample] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._channel: grpc.aio.Channel | None = None
        self._answered = asyncio.Condition()

    async def start(self) -> None:
        self._channel = aio_channel(self.target, options=CHANNEL_OPTIONS)
        stub = Clients(self._channel).decide
        self._tasks = [asyncio.create_task(self._work(stub, w)) for w in range(self.workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)  # each call ends by its deadline at the latest
        if self._channel is not None:
            await self._channel.close(None)

    async def _work(self, stub: Any, w: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            sent = time.monotonic()
            try:
                resp = await stub.Decide(request(f"load{w}", i), timeout=DEADLINE)
            except grpc.aio.AioRpcError as exc:
                s = Sample(sent, time.monotonic(), f"grpc:{exc.code().name}")
                s.details = exc.details() or ""
                await self._record(s)
                await asyncio.sleep(ERROR_BACKOFF)
                continue
            await self._record(
                Sample(
                    sent,
                    time.monotonic(),
                    decision_pb2.Decision.Name(resp.decision),
                    tuple(r.code for r in resp.reasons),
                    resp.decision_id,
                    resp.receipt.receipt_id,
                )
            )

    async def _record(self, s: Sample) -> None:
        async with self._answered:
            self.samples.append(s)
            self._answered.notify_all()

    async def until(self, predicate: Callable[[Sample], bool], timeout: float) -> Sample | None:
        """The first sample (already recorded or yet to come) for which ``predicate`` holds,
        or None after ``timeout`` seconds."""
        seen = 0

        def found() -> Sample | None:
            nonlocal seen
            for s in self.samples[seen:]:
                if predicate(s):
                    return s
            seen = len(self.samples)
            return None

        try:
            async with asyncio.timeout(timeout):
                async with self._answered:
                    while (hit := found()) is None:
                        await self._answered.wait()
                    return hit
        except TimeoutError:
            return None

    async def first_allow(self, sent_after: float, timeout: float) -> Sample | None:
        """The first ALLOW to a request sent at or after ``sent_after``."""
        return await self.until(lambda s: s.sent >= sent_after and s.outcome == ALLOW, timeout)

    async def answers_since(self, since: float, n: int, timeout: float) -> int:
        """Wait (at most ``timeout``) until ``n`` calls sent at or after ``since`` are
        answered; returns how many were."""
        count = 0

        def enough(s: Sample) -> bool:
            nonlocal count
            if s.sent >= since:
                count += 1
            return count >= n

        await self.until(enough, timeout)
        return count
