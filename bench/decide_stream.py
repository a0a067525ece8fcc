"""The ``decide-stream`` lane: the ``decide`` lane's requests over DecideStream, and the
service's CPU per decision for each way of sending them.

The same corpus bodies (``bench/corpus.py``, each in a fresh session) go to the same
service process two ways, interleaved round by round at each concurrency: ``decide``
(one unary call per request, as the ``decide`` lane of ``bench/run.py`` sends them) and
``decide-stream`` (one DecideStream carrying every request, ``c`` of them in flight, each
answered by ``message_id``). Bodies are wrapped once up front; the generator decodes only
each answer's ``message_id``. Before timing, every corpus case must get the same
verdict and reason codes both ways. CPU is the service process's utime + stime
(``/proc/<pid>/stat``) inside each timed window, per decision.

From ``bench/run.py`` (inside its process stack, after the closed loop)::

    res["decide_stream"] = decide_stream.lane(svc, svc_p.pid, mode.closed_seconds, mode.rounds)

adds the lane's table rows and its ratios (``ratio_service_cpu_decide_stream_vs_decide_c8``
and the like) under ``res["decide_stream"]["ratios"]``. Alone (its own OPA with the
reference pack, the real service against it and the stub-engine service)::

    python -m bench.decide_stream [--seconds 3] [--rounds 2]

The generator runs in a child process (``python -m bench.decide_stream generate ...``),
like ``bench/load.py``, so its CPU is not the service's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DECIDE = "/aarm.v1.DecisionService/Decide"
DECIDE_STREAM = "/aarm.v1.DecisionService/DecideStream"
CONCURRENCY = (1, 8, 32)
WAYS = ("decide", "decide-stream")
CALL_TIMEOUT = 5.0
_FAIL_CLOSED = b"failing closed"


# --- the generator (child process) ---------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def wrap(message_id: int, body: bytes) -> bytes:
    """A serialized DecideStreamRequest (message_id 1, request 2) around ``body``."""
    return b"\x08" + _varint(message_id) + b"\x12" + _varint(len(body)) + body


def message_id(answer: bytes) -> int:
    """The message_id of a serialized DecideStreamResponse (field 1, written first)."""
    if not answer or answer[0] != 0x08:
        return 0
    n, shift = 0, 0
    for byte in answer[1:11]:
        n |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return n
        shift += 7
    return 0


def _ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


class _Stream:
    """One DecideStream: a queue feeding it, a task matching answers to waiters."""

    def __init__(self, channel: Any, metadata: Any) -> None:
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.ids = itertools.count(1)
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._call = channel.stream_stream(DECIDE_STREAM)(self._requests(), metadata=metadata)
        self._reader = asyncio.ensure_future(self._read())

    async def _requests(self) -> Any:
        while (item := await self._queue.get()) is not None:
            yield item

    async def _read(self) -> None:
        try:
            async for raw in self._call:
                fut = self.pending.pop(message_id(raw), None)
                if fut is not None and not fut.done():
                    fut.set_result(raw)
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(RuntimeError("the stream ended"))

    async def send(self, body: bytes) -> bytes:
        mid = next(self.ids)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[mid] = fut
        self._queue.put_nowait(wrap(mid, body))
        return await asyncio.wait_for(fut, CALL_TIMEOUT)

    async def close(self) -> None:
        self._queue.put_nowait(None)
        await asyncio.wait_for(self._reader, CALL_TIMEOUT)


def _verdict(raw: bytes, streamed: bool) -> str:
    from aarm.v1 import decision_pb2

    if streamed:
        answer = decision_pb2.DecideStreamResponse.FromString(raw)
        resp = answer.response
    else:
        resp = decision_pb2.DecideResponse.FromString(raw)
    verdict = decision_pb2.Decision.Name(resp.decision).removeprefix("DECISION_")
    return f"{verdict}:{','.join(r.code for r in resp.reasons)}"


async def _generate(target: str, pid: int, seconds: float, rounds: int) -> dict[str, Any]:
    import grpc

    from bench.corpus import CORPUS, SESSION_PLACEHOLDER_BYTES, session_id
    from tests.support.principals import PLATFORM_TOKEN

    auth = (("authorization", f"Bearer {PLATFORM_TOKEN}"),)
    bodies = [c.request_bytes() for c in CORPUS]
    sessions = itertools.count(1)

    def body(i: int) -> bytes:
        return bodies[i % len(bodies)].replace(
            SESSION_PLACEHOLDER_BYTES, session_id(next(sessions))
        )

    clk = os.sysconf("SC_CLK_TCK")
    async with grpc.aio.insecure_channel(target) as channel:
        unary = channel.unary_unary(DECIDE)
        stream = _Stream(channel, auth)

        async def send_unary(i: int) -> bytes:
            raw: bytes = await unary(body(i), timeout=CALL_TIMEOUT, metadata=auth)
            return raw

        async def send_stream(i: int) -> bytes:
            return await stream.send(body(i))

        senders: dict[str, Callable[[int], Awaitable[bytes]]] = {
            "decide": send_unary,
            "decide-stream": send_stream,
        }
        # The same verdicts both ways, or nothing is timed.
        got = {
            way: [_verdict(await send(i), way != "decide") for i in range(len(bodies))]
            for way, send in senders.items()
        }
        if got["decide"] != got["decide-stream"]:
            diff = [
                (CORPUS[i].name, a, b)
                for i, (a, b) in enumerate(zip(got["decide"], got["decide-stream"], strict=True))
                if a != b
            ]
            return {"error": f"decide-stream verdicts differ from decide: {diff[:5]}"}
        for send in senders.values():  # warm up both ways
            await _closed(send, 8, min(1.0, seconds))

        points: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for r in range(rounds):
            for c in CONCURRENCY:
                order = WAYS if (r + c) % 2 == 0 else tuple(reversed(WAYS))
                for way in order:
                    t0 = _ticks(pid)
                    run = await _closed(senders[way], c, seconds)
                    run["service_ticks"] = _ticks(pid) - t0
                    points.setdefault(str(c), {}).setdefault(way, []).append(run)
        await stream.close()
    return {
        "verified_cases": len(bodies),
        "points": {
            c: {way: _summary(runs, clk) for way, runs in ways.items()}
            for c, ways in points.items()
        },
    }


async def _closed(
    send: Callable[[int], Awaitable[bytes]], concurrency: int, seconds: float
) -> dict[str, Any]:
    lat: list[float] = []
    errors = failed_closed = 0
    counter = itertools.count()
    perf = time.perf_counter
    end = perf() + seconds

    async def worker() -> None:
        nonlocal errors, failed_closed
        while (t0 := perf()) < end:
            try:
                raw = await send(next(counter))
            except Exception:
                errors += 1
                continue
            lat.append(perf() - t0)
            if _FAIL_CLOSED in raw:
                failed_closed += 1

    start = perf()
    cpu0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "lat": lat,
        "errors": errors,
        "failed_closed": failed_closed,
        "elapsed": perf() - start,
        "generator_cpu_s": time.process_time() - cpu0,
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))
    return values[k]


def _summary(runs: list[dict[str, Any]], clk: int) -> dict[str, Any]:
    lat = sorted(x for r in runs for x in r["lat"])
    count = len(lat)
    elapsed = sum(r["elapsed"] for r in runs)
    ticks = sum(r["service_ticks"] for r in runs)
    return {
        "count": count,
        "errors": sum(r["errors"] for r in runs),
        "failed_closed": sum(r["failed_closed"] for r in runs),
        "seconds": round(elapsed, 3),
        "throughput_rps": round(count / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(_pct(lat, 50) * 1e3, 3),
        "p99_ms": round(_pct(lat, 99) * 1e3, 3),
        "service_cpu_us_per_decision": round(ticks / clk / count * 1e6, 1) if count else None,
        "generator_cpu_us_per_decision": (
            round(sum(r["generator_cpu_s"] for r in runs) / count * 1e6, 1) if count else None
        ),
    }


# --- the orchestrator's side ---------------------------------------------------------


def ratios(points: dict[str, dict[str, dict[str, Any]]], tag: str = "") -> dict[str, float]:
    """decide-stream / decide per concurrency: service CPU, p50, throughput."""
    out: dict[str, float] = {}
    for c, ways in points.items():
        unary, streamed = ways.get("decide"), ways.get("decide-stream")
        if not unary or not streamed:
            continue
        for stat, key in (
            ("service_cpu_us_per_decision", "service_cpu"),
            ("p50_ms", "p50"),
            ("throughput_rps", "throughput"),
        ):
            if unary.get(stat) and streamed.get(stat):
                out[f"ratio_{key}_decide_stream{tag}_vs_decide_c{c}"] = round(
                    streamed[stat] / unary[stat], 3
                )
    return out


def lane(
    target: str, service_pid: int, seconds: float, rounds: int, *, tag: str = ""
) -> dict[str, Any]:
    """Run the generator against ``target`` (the service process ``service_pid``):
    the ``decide``/``decide-stream`` points and their ratios (keys named with ``tag``)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.decide_stream",
            "generate",
            "--target",
            target,
            "--pid",
            str(service_pid),
            "--seconds",
            str(seconds),
            "--rounds",
            str(rounds),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60 + rounds * len(CONCURRENCY) * len(WAYS) * (seconds + 10),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"decide-stream generator failed: {proc.stderr[-2000:]}")
    res: dict[str, Any] = json.loads(proc.stdout)
    if "error" in res:
        raise RuntimeError(res["error"])
    res["ratios"] = ratios(res["points"], tag)
    return res


def table(res: dict[str, Any], title: str = "decide-stream") -> str:
    """The lane's rows: each concurrency, each way."""
    rows = [
        f"{title}: the same requests, unary Decide vs one DecideStream (same service process)",
        "| c | way | throughput/s | p50 ms | p99 ms | service CPU µs/decision | failed closed |",
        "|---|---|---|---|---|---|---|",
    ]
    for c, ways in sorted(res["points"].items(), key=lambda kv: int(kv[0])):
        for way in WAYS:
            s = ways[way]
            rows.append(
                f"| {c} | {way} | {s['throughput_rps']:.0f} | {s['p50_ms']:.2f} "
                f"| {s['p99_ms']:.2f} | {s['service_cpu_us_per_decision']} | {s['failed_closed']} |"
            )
    rows.extend(f"- {k}: {v}" for k, v in sorted(res["ratios"].items()))
    return "\n".join(rows)


def _standalone(seconds: float, rounds: int) -> int:
    import shutil
    import tempfile

    from bench import run

    snapshot = Path(tempfile.mkdtemp(prefix="bench-stream-rego-"))
    rego = snapshot / "rego"
    shutil.copytree(run.REGO, rego)
    out: dict[str, Any] = {"machine": run.machine()}
    try:
        with run.stack() as st:
            _opa_p, opa_url = st.opa(rego)
            svc_p, svc = st.service(opa_url)
            stub_p, stub = st.stub()
            out["decide"] = lane(svc, svc_p.pid, seconds, rounds)
            out["decide_stub_opa"] = lane(stub, stub_p.pid, seconds, rounds, tag="_stub_opa")
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)
    print(table(out["decide"], "decide-stream (real OPA)"))
    print()
    print(table(out["decide_stub_opa"], "decide-stream (stub policy engine)"))
    run.RESULTS.mkdir(parents=True, exist_ok=True)
    path = run.RESULTS / f"decide-stream-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", nargs="?", choices=("generate",))
    p.add_argument("--target")
    p.add_argument("--pid", type=int)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    if args.command == "generate":
        res = asyncio.run(_generate(args.target, args.pid, args.seconds, args.rounds))
        print(json.dumps(res))
        return 0
    return _standalone(args.seconds, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
