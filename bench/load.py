"""Load generator: a separate process driving grpc.aio and aiohttp, steered over stdio.

The orchestrator (``bench/run.py``) writes one JSON command per line on stdin and reads
one JSON answer per line on stdout. Keeping one long-lived process keeps its channels
and keep-alive connections warm across lanes, so the lanes differ only in the target.

Commands::

  {"op": "setup", "targets": {lane: url}, "cases": [name, ...], "pids": {role: pid},
   "bodies": {lane: path}}              (bodies: optional, HTTP lanes; see below)
  {"op": "verify"}                      -> {lane: [verdict per case]}
  {"op": "closed", "lane": L, "concurrency": C, "duration": S}
  {"op": "open", "lane": L, "rate": R, "duration": S}
  {"op": "populate", "lane": L, "sessions": [n, ...], "actions": N, "cases": [name, ...],
   "concurrency": C}                   -> {"count", "errors", "verdicts": {verdict: n}, ...}
  {"op": "in_sessions", "lane": L, "plan": [[[n or null, k], ...] per worker]}
  {"op": "verdicts_in", "lane": L, "session": n or null, "repeat": R} -> [verdict, ...]
  {"op": "quit"}

A lane URL is ``grpc://host:port`` (aarm.v1.DecisionService/Decide with the serialized
DecideRequest) or ``http://host:port/v1/data/...`` (the OPA Data API with the exact body
Decide would send). Request bodies are encoded once up front, so neither lane pays
client-side encoding in the timed loop. An HTTP lane named in ``bodies`` sends the
bodies of that JSON file (a list of strings, one per case) instead of the corpus' own
(``bench/opa_ab.py``: the same cases with another input). ``closed`` and ``open`` answer with the
latencies in microseconds plus the CPU ticks (/proc/<pid>/stat utime+stime) every
watched process used inside the timed window, read right at its edges.

Session history (gRPC lanes only): ``populate`` gives each listed session (``n`` is the
index passed to :func:`bench.corpus.session_id`) ``N`` decided actions, cycling through
the named corpus cases, each session sequential like an agent, ``C`` sessions at a
time; it answers how many of each verdict it got. ``in_sessions`` is a timed closed
loop with one worker per plan entry: worker w sends, in order, ``k`` requests into
session ``n`` for each ``[n, k]`` of its plan (``null``: a fresh session per request),
cycling through the setup cases; same answer shape as ``closed``. ``verdicts_in`` sends
the setup cases ``R`` times in a row into one session (not timed).

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
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from aarm.v1 import decision_pb2

from bench.corpus import CORPUS, SESSION_PLACEHOLDER_BYTES, session_id
from tests.support.principals import PLATFORM_TOKEN

DECIDE_METHOD = "/aarm.v1.DecisionService/Decide"
CALL_TIMEOUT = 5.0
# Marker of a fail-closed DENY (opa_timeout, opa_unavailable, ...): counted apart, so an
# overloaded service that answers fast DENYs does not look fast.
AUTH = (("authorization", f"Bearer {PLATFORM_TOKEN}"),)
"""Every lane's calls authenticate as the enforcement point (tests.support.principals)."""
_FAIL_CLOSED_MARK = b"failing closed"


def error_kind(exc: BaseException) -> str:
    """What a failed call ended with: the gRPC status (``grpc:RESOURCE_EXHAUSTED``), else
    the exception's type, so a run says what its errors were, not only how many."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"grpc:{exc.code().name}"
    return type(exc).__name__


SYSTEM = "_system_busy"

Send = Callable[[int], Awaitable[bool]]


def proc_ticks(pid: int) -> tuple[int, int]:
    """utime and stime of ``pid`` (all threads) in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)


def verdict_of(resp_bytes: bytes) -> str:
    """``VERDICT:code,code`` of a serialized DecideResponse."""
    resp = decision_pb2.DecideResponse.FromString(resp_bytes)
    verdict = decision_pb2.Decision.Name(resp.decision).removeprefix("DECISION_")
    return f"{verdict}:{','.join(r.code for r in resp.reasons)}"


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
    # gRPC lanes: one Decide with a ready body (bytes in, bytes out).
    raw: Callable[[bytes], Awaitable[bytes]] | None = None
    # HTTP lanes: the bodies it sends, one per case.
    bodies: list[bytes] = field(default_factory=list)


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
        files = cmd.get("bodies") or {}
        for name, url in cmd["targets"].items():
            if url.startswith("grpc://"):
                self.lanes[name] = self._grpc_lane(name, url)
                continue
            bodies = self.http_bodies
            if name in files:
                text = await asyncio.to_thread(Path(files[name]).read_text, "utf-8")
                bodies = [b.encode() for b in json.loads(text)]
                if len(bodies) != len(cases):
                    raise ValueError(f"{files[name]}: {len(bodies)} bodies, {len(cases)} cases")
            self.lanes[name] = self._http_lane(name, url, bodies)
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
            resp: bytes = await call(body, timeout=CALL_TIMEOUT, metadata=AUTH)
            return _FAIL_CLOSED_MARK not in resp

        async def close() -> None:
            await channel.close()

        async def raw(body: bytes) -> bytes:
            resp: bytes = await call(body, timeout=CALL_TIMEOUT, metadata=AUTH)
            return resp

        return Lane(name, url, send, close, raw)

    def _http_lane(self, name: str, url: str, bodies: list[bytes]) -> Lane:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=60),
            headers={"content-type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT),
            skip_auto_headers=("User-Agent",),
        )

        async def send(i: int) -> bool:
            async with session.post(url, data=bodies[i % len(bodies)]) as resp:
                body = await resp.read()
                return resp.status == 200 and body.startswith(b'{"result":')

        async def close() -> None:
            await session.close()

        return Lane(name, url, send, close, bodies=bodies)

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
                        verdicts.append(verdict_of(await call(fresh, timeout=5, metadata=AUTH)))
            else:
                async with aiohttp.ClientSession() as s:
                    for body in lane.bodies:
                        async with s.post(lane.url, data=body) as resp:
                            doc = json.loads(await resp.read())
                        result = doc.get("result") or {}
                        codes = ",".join(r["code"] for r in result.get("reasons", []))
                        verdicts.append(f"{result.get('decision', 'UNDEFINED')}:{codes}")
            out[name] = verdicts
        return out

    @staticmethod
    def _raw(lane: Lane) -> Callable[[bytes], Awaitable[bytes]]:
        if lane.raw is None:
            raise ValueError(f"lane {lane.name} is not a gRPC lane")
        return lane.raw

    async def populate(
        self, lane: Lane, sessions: list[int], actions: int, cases: list[str], concurrency: int
    ) -> dict[str, Any]:
        """``actions`` Decides into each session (sequential per session); verdict counts."""
        raw = self._raw(lane)
        by_name = {c.name: c for c in CORPUS}
        bodies = [by_name[n].request_bytes() for n in cases]
        todo = list(reversed(sessions))
        verdicts: Counter[str] = Counter()
        errors = 0
        kinds: Counter[str] = Counter()

        async def worker() -> None:
            nonlocal errors
            while todo:
                sid = session_id(todo.pop())
                for k in range(actions):
                    body = bodies[k % len(bodies)].replace(SESSION_PLACEHOLDER_BYTES, sid)
                    try:
                        verdicts[verdict_of(await raw(body))] += 1
                    except Exception as exc:
                        errors += 1
                        kinds[error_kind(exc)] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(todo))))))
        elapsed = time.perf_counter() - start
        count = sum(verdicts.values())
        return {
            "sessions": len(sessions),
            "count": count,
            "errors": errors,
            "error_kinds": dict(kinds),
            "elapsed": elapsed,
            "rps": round(count / elapsed, 1) if elapsed else 0.0,
            "verdicts": dict(verdicts),
        }

    async def verdicts_in(self, lane: Lane, session: int | None, repeat: int) -> list[str]:
        """The setup cases, ``repeat`` times in a row, in one session (None: fresh ones)."""
        raw = self._raw(lane)
        out = []
        for _ in range(repeat):
            for body in self.grpc_bodies:
                sid = session_id(next(self.sessions) if session is None else session)
                out.append(verdict_of(await raw(body.replace(SESSION_PLACEHOLDER_BYTES, sid))))
        return out

    async def in_sessions(self, lane: Lane, plan: list[list[list[int | None]]]) -> dict[str, Any]:
        """Closed loop, one worker per plan entry, each sending into its own sessions."""
        raw = self._raw(lane)
        bodies = self.grpc_bodies
        sessions = self.sessions
        lat: list[float] = []
        errors = 0
        kinds: Counter[str] = Counter()
        failed_closed = 0
        counter = itertools.count()
        perf = time.perf_counter

        async def worker(steps: list[list[int | None]]) -> None:
            nonlocal errors, failed_closed
            for sid, k in steps:
                assert k is not None
                fixed = None if sid is None else session_id(sid)
                for _ in range(k):
                    i = next(counter)
                    t0 = perf()
                    body = bodies[i % len(bodies)].replace(
                        SESSION_PLACEHOLDER_BYTES, fixed or session_id(next(sessions))
                    )
                    try:
                        resp = await raw(body)
                    except Exception as exc:
                        errors += 1
                        kinds[error_kind(exc)] += 1
                        continue
                    lat.append(perf() - t0)
                    if _FAIL_CLOSED_MARK in resp:
                        failed_closed += 1

        ticks0, cpu0 = self._ticks(), time.process_time()
        start = perf()
        await asyncio.gather(*(worker(steps) for steps in plan))
        elapsed = perf() - start
        return self._result(
            lat, errors, failed_closed, elapsed, ticks0, cpu0, {"error_kinds": dict(kinds)}
        )

    async def closed(self, lane: Lane, concurrency: int, duration: float) -> dict[str, Any]:
        """``concurrency`` workers, each sending its next request when the last returns."""
        lat: list[float] = []
        errors = 0
        kinds: Counter[str] = Counter()
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
                except Exception as exc:
                    errors += 1
                    kinds[error_kind(exc)] += 1
                    continue
                lat.append(perf() - t0)
                if not ok:
                    failed_closed += 1

        ticks0, cpu0 = self._ticks(), time.process_time()
        start = perf()
        end = start + duration
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = perf() - start
        return self._result(
            lat, errors, failed_closed, elapsed, ticks0, cpu0, {"error_kinds": dict(kinds)}
        )

    async def open(self, lane: Lane, rate: float, duration: float) -> dict[str, Any]:
        """Constant arrival rate; latency from the intended send time."""
        loop = asyncio.get_running_loop()
        n = max(1, int(rate * duration))
        lat: list[float] = []
        lag: list[float] = []
        errors = 0
        kinds: Counter[str] = Counter()
        failed_closed = 0
        tasks: set[asyncio.Task[None]] = set()

        async def one(i: int, intended: float) -> None:
            nonlocal errors, failed_closed
            lag.append(loop.time() - intended)
            try:
                ok = await lane.send(i)
            except Exception as exc:
                errors += 1
                kinds[error_kind(exc)] += 1
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
        return self._result(
            lat, errors, failed_closed, elapsed, ticks0, cpu0, {**extra, "error_kinds": dict(kinds)}
        )

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
        if op == "populate":
            return await self.populate(
                self.lanes[cmd["lane"]],
                [int(n) for n in cmd["sessions"]],
                int(cmd["actions"]),
                list(cmd["cases"]),
                int(cmd.get("concurrency", 8)),
            )
        if op == "in_sessions":
            return await self.in_sessions(self.lanes[cmd["lane"]], cmd["plan"])
        if op == "verdicts_in":
            return {
                "verdicts": await self.verdicts_in(
                    self.lanes[cmd["lane"]], cmd.get("session"), int(cmd.get("repeat", 1))
                )
            }
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
