"""Load generator: a separate process driving grpc.aio and aiohttp, steered over stdio.

The orchestrator (``bench/run.py``) writes one JSON command per line on stdin and reads
one JSON answer per line on stdout. Keeping one long-lived process keeps its channels
and keep-alive connections warm across lanes, so the lanes differ only in the target.

Commands::

  {"op": "setup", "targets": {lane: url}, "cases": [name, ...], "pids": {role: pid}}
  {"op": "verify"}                      -> {lane: [verdict per case]}
  {"op": "closed", "lane": L, "concurrency": C, "duration": S}
  {"op": "open", "lane": L, "rate": R, "duration": S}
  {"op": "quit"}

A lane URL is ``grpc://host:port`` (aarm.v1.DecisionService/Decide with the serialized
DecideRequest) or ``http://host:port/v1/data/...`` (the OPA Data API with the exact body
Decide would send). Request bodies are encoded once up front, so neither lane pays
client-side encoding in the timed loop. ``closed`` and ``open`` answer with the
latencies in microseconds plus the CPU ticks (/proc/<pid>/stat utime+stime) every
watched process used inside the timed window, read right at its edges.

Open loop: send i is scheduled at ``start + i/rate`` whatever happened before, and its
latency is measured from that intended time, so a backlog shows up as latency
(no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
from aarm.v1 import decision_pb2

from bench.corpus import CORPUS, SESSION_PLACEHOLDER_BYTES, session_id

DECIDE_METHOD = "/aarm.v1.DecisionService/Decide"
CALL_TIMEOUT = 5.0
# Marker of a fail-closed DENY (opa_timeout, opa_unavailable, ...): counted apart, so an
# overloaded service that answers fast DENYs does not look fast.
_FAIL_CLOSED_MARK = b"failing closed"

SYSTEM = "_system_busy"

Send = Callable[[int], Awaitable[bool]]


def proc_ticks(pid: int) -> tuple[int, int]:
    """utime and stime of ``pid`` (all threads) in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)


def system_busy_ticks() -> int:
    """Busy ticks of the whole machine (all CPUs) from /proc/stat."""
    with open("/proc/stat", "rb") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)  # idle + iowait
    return sum(parts[:8]) - idle  # user..steal; guest time is already in user


@dataclass
class Lane:
    """One target: how to send request ``i`` of the corpus."""

    name: str
    url: str
    send: Send
    close: Callable[[], Awaitable[None]]


@dataclass
class Generator:
    """Holds the clients and the pre-encoded corpus."""

    lanes: dict[str, Lane] = field(default_factory=dict)
    grpc_bodies: list[bytes] = field(default_factory=list)
    http_bodies: list[bytes] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    sessions: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def _ticks(self) -> dict[str, int]:
        out = {SYSTEM: system_busy_ticks()}
        for role, pid in self.pids.items():
            with contextlib.suppress(OSError):
                user, system = proc_ticks(pid)
                out[role] = user + system
                out[f"{role}.sys"] = system
        return out

    async def setup(self, cmd: dict[str, Any]) -> dict[str, Any]:
        by_name = {c.name: c for c in CORPUS}
        cases = [by_name[n] for n in cmd["cases"]]
        self.grpc_bodies = [c.request_bytes() for c in cases]
        self.http_bodies = [c.opa_body() for c in cases]
        self.pids = {k: int(v) for k, v in cmd.get("pids", {}).items()}
        for lane in self.lanes.values():
            await lane.close()
        self.lanes = {}
        for name, url in cmd["targets"].items():
            self.lanes[name] = (
                self._grpc_lane(name, url)
                if url.startswith("grpc://")
                else self._http_lane(name, url)
            )
        return {"ok": True, "cases": len(cases)}

    def _grpc_lane(self, name: str, url: str) -> Lane:
        channel = grpc.aio.insecure_channel(url[len("grpc://") :])
        call = channel.unary_unary(DECIDE_METHOD)  # bytes in, bytes out
        bodies = self.grpc_bodies
        sessions = self.sessions

        async def send(i: int) -> bool:
            body = bodies[i % len(bodies)].replace(
                SESSION_PLACEHOLDER_BYTES, session_id(next(sessions))
            )
            resp: bytes = await call(body, timeout=CALL_TIMEOUT)
            return _FAIL_CLOSED_MARK not in resp

        async def close() -> None:
            await channel.close()

        return Lane(name, url, send, close)

    def _http_lane(self, name: str, url: str) -> Lane:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=60),
            headers={"content-type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT),
            skip_auto_headers=("User-Agent",),
        )
        bodies = self.http_bodies

        async def send(i: int) -> bool:
            async with session.post(url, data=bodies[i % len(bodies)]) as resp:
                body = await resp.read()
                return resp.status == 200 and body.startswith(b'{"result":')

        async def close() -> None:
            await session.close()

        return Lane(name, url, send, close)

    async def verify(self) -> dict[str, Any]:
        """Each lane's verdict for each case (decoded; not timed)."""
        out: dict[str, list[str]] = {}
        for name, lane in self.lanes.items():
            verdicts = []
            if lane.url.startswith("grpc://"):
                async with grpc.aio.insecure_channel(lane.url[len("grpc://") :]) as ch:
                    call = ch.unary_unary(DECIDE_METHOD)
                    for body in self.grpc_bodies:
                        fresh = body.replace(
                            SESSION_PLACEHOLDER_BYTES, session_id(next(self.sessions))
                        )
                        resp = decision_pb2.DecideResponse.FromString(await call(fresh, timeout=5))
                        verdict = decision_pb2.Decision.Name(resp.decision).removeprefix(
                            "DECISION_"
                        )
                        codes = ",".join(r.code for r in resp.reasons)
                        verdicts.append(f"{verdict}:{codes}")
            else:
                async with aiohttp.ClientSession() as s:
                    for body in self.http_bodies:
                        async with s.post(lane.url, data=body) as resp:
                            doc = json.loads(await resp.read())
                        result = doc.get("result") or {}
                        codes = ",".join(r["code"] for r in result.get("reasons", []))
                        verdicts.append(f"{result.get('decision', 'UNDEFINED')}:{codes}")
            out[name] = verdicts
        return out

    async def closed(self, lane: Lane, concurrency: int, duration: float) -> dict[str, Any]:
        """``concurrency`` workers, each sending its next request when the last returns."""
        lat: list[float] = []
        errors = 0
        failed_closed = 0
        counter = itertools.count()
        perf = time.perf_counter
        end = 0.0

        async def worker() -> None:
            nonlocal errors, failed_closed
            while True:
                i = next(counter)
                t0 = perf()
                if t0 >= end:
                    return
                try:
                    ok = await lane.send(i)
                except Exception:
                    errors += 1
                    continue
                lat.append(perf() - t0)
                if not ok:
                    failed_closed += 1

        ticks0, cpu0 = self._ticks(), time.process_time()
        start = perf()
        end = start + duration
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = perf() - start
        return self._result(lat, errors, failed_closed, elapsed, ticks0, cpu0, {})

    async def open(self, lane: Lane, rate: float, duration: float) -> dict[str, Any]:
        """Constant arrival rate; latency from the intended send time."""
        loop = asyncio.get_running_loop()
        n = max(1, int(rate * duration))
        lat: list[float] = []
        lag: list[float] = []
        errors = 0
        failed_closed = 0
        tasks: set[asyncio.Task[None]] = set()

        async def one(i: int, intended: float) -> None:
            nonlocal errors, failed_closed
            lag.append(loop.time() - intended)
            try:
                ok = await lane.send(i)
            except Exception:
                errors += 1
                return
            lat.append(loop.time() - intended)
            if not ok:
                failed_closed += 1

        ticks0, cpu0 = self._ticks(), time.process_time()
        start = loop.time() + 0.005
        for i in range(n):
            intended = start + i / rate
            delay = intended - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = loop.create_task(one(i, intended))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=CALL_TIMEOUT + 1)
        elapsed = loop.time() - start
        lag.sort()
        extra = {
            "offered_rate": rate,
            "sent": n,
            "send_lag_p50_us": lag[len(lag) // 2] * 1e6 if lag else 0.0,
            "send_lag_p99_us": lag[int(len(lag) * 0.99)] * 1e6 if lag else 0.0,
        }
        return self._result(lat, errors, failed_closed, elapsed, ticks0, cpu0, extra)

    def _result(
        self,
        lat: list[float],
        errors: int,
        failed_closed: int,
        elapsed: float,
        ticks0: dict[str, int],
        cpu0: float,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        ticks1 = self._ticks()
        ticks = {k: ticks1[k] - ticks0[k] for k in ticks1 if k in ticks0}
        # CPU used by anything that is not a watched process (other jobs on the box).
        ours = sum(v for k, v in ticks.items() if k != SYSTEM and not k.endswith(".sys"))
        ticks["other"] = max(0, ticks.pop(SYSTEM) - ours)
        return {
            "lat_us": [round(x * 1e6, 1) for x in lat],
            "count": len(lat),
            "errors": errors,
            "failed_closed": failed_closed,
            "elapsed": elapsed,
            "ticks": ticks,
            "clk_tck": os.sysconf("SC_CLK_TCK"),
            "generator_cpu_s": time.process_time() - cpu0,
            **extra,
        }

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["op"]
        if op == "setup":
            return await self.setup(cmd)
        if op == "verify":
            return await self.verify()
        if op == "closed":
            return await self.closed(
                self.lanes[cmd["lane"]], int(cmd["concurrency"]), float(cmd["duration"])
            )
        if op == "open":
            return await self.open(
                self.lanes[cmd["lane"]], float(cmd["rate"]), float(cmd["duration"])
            )
        raise ValueError(f"unknown op {op!r}")


async def _serve() -> None:
    gen = Generator()
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or not line.strip():
                break
            cmd = json.loads(line)
            if cmd["op"] == "quit":
                break
            try:
                answer = await gen.handle(cmd)
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(answer, separators=(",", ":")) + "\n")
            sys.stdout.flush()
    finally:
        for lane in gen.lanes.values():
            await lane.close()


def main() -> int:
    asyncio.run(_serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
