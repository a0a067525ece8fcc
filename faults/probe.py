"""Helper processes of the fault matrix, each in its own process (own CPU time, own FDs).

``python -m faults.probe health TARGET OUT``
    grpc.health.v1 Check of the whole server every :data:`HEALTH_INTERVAL` seconds, each
    bounded by :data:`HEALTH_TIMEOUT`, on one channel, until SIGTERM; then writes
    ``[[t_sent, seconds, status], ...]`` to OUT (status: SERVING, NOT_SERVING, or the
    gRPC error code name). Prints ``READY 0`` once the first check was answered.
``python -m faults.probe idle PORT COUNT``
    Opens COUNT idle TCP connections to 127.0.0.1:PORT (nothing is ever sent), prints
    ``READY <opened> <seconds it took>``; on each ``count`` line on stdin answers how many
    the server has not closed; closes them all and exits at EOF.
``python -m faults.probe wave TARGET INFLIGHT SECONDS OUT``
    INFLIGHT concurrent Decide loops for SECONDS (each waits :data:`BACKOFF` after a
    refusal; never cancels a call; every call has a :data:`WAVE_DEADLINE` deadline), then
    waits for every call and writes the counts (codes, details, verdicts, receipts) to OUT.

Times are ``time.monotonic()``, system-wide on Linux, so they compare with the
orchestrator's.
"""

from __future__ import annotations

import asyncio
import errno
import json
import resource
import select
import signal
import socket
import sys
import time
from collections import Counter
from typing import Any

HEALTH_INTERVAL = 0.05
HEALTH_TIMEOUT = 3.0
"""Longer than the service's own 2 s bound on a health check: a miss is the server's."""
BACKOFF = 0.05
WAVE_DEADLINE = 60.0
WAVE_CHANNELS = 10
WAVE_SESSIONS = 2000
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.use_local_subchannel_pool", 1),
]


def raise_nofile() -> int:
    """Soft descriptor limit up to the hard one; returns the new soft limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def health(target: str, out: str) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    records: list[tuple[float, float, str]] = []
    ready = False
    with grpc.insecure_channel(target, CHANNEL_OPTIONS) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while not stop:
            t = time.monotonic()
            try:
                # wait_for_ready: a reconnecting channel is not counted against the server.
                r = stub.Check(
                    health_pb2.HealthCheckRequest(service=""),
                    timeout=HEALTH_TIMEOUT,
                    wait_for_ready=True,
                )
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
            except grpc.RpcError as exc:
                status = exc.code().name
            records.append((t, time.monotonic() - t, status))
            if not ready and status in ("SERVING", "NOT_SERVING"):
                ready = True
                print("READY 0", flush=True)
            rest = HEALTH_INTERVAL - (time.monotonic() - t)
            if rest > 0 and not stop:
                time.sleep(rest)  # the polling interval, not a synchronisation
    with open(out, "w") as f:
        json.dump(records, f)


def _still_open(sock: socket.socket) -> bool:
    try:
        while True:
            if not sock.recv(65536):
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def _connect_many(
    port: int, count: int, pending: int = 512, timeout: float = 30.0
) -> list[socket.socket]:
    """``count`` connections to 127.0.0.1:``port``, ``pending`` connects in flight at a time
    (non-blocking: a full accept queue delays some, it does not serialise all)."""
    done: list[socket.socket] = []
    waiting: dict[int, socket.socket] = {}
    poller = select.poll()
    started = 0
    deadline = time.monotonic() + timeout
    while (started < count or waiting) and time.monotonic() < deadline:
        while started < count and len(waiting) < pending:
            s = socket.socket()
            s.setblocking(False)
            started += 1
            if s.connect_ex(("127.0.0.1", port)) not in (0, errno.EINPROGRESS):
                s.close()
                continue
            waiting[s.fileno()] = s
            poller.register(s, select.POLLOUT)
        for fd, _ev in poller.poll(100):
            s = waiting.pop(fd)
            poller.unregister(fd)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                done.append(s)
            else:
                s.close()
    for s in waiting.values():
        s.close()
    return done


def idle(port: int, count: int) -> None:
    raise_nofile()
    start = time.monotonic()
    socks = _connect_many(port, count)
    print(f"READY {len(socks)} {time.monotonic() - start:.3f}", flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            ready: set[int] = set()
            poller = select.poll()
            for s in socks:
                poller.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
            for fd, _ev in poller.poll(0):
                ready.add(fd)
            closed = sum(1 for s in socks if s.fileno() in ready and not _still_open(s))
            print(len(socks) - closed, flush=True)
    for s in socks:
        s.close()


async def _wave(target: str, inflight: int, seconds: float) -> dict[str, Any]:
    import grpc
    from aarm.v1 import decision_pb2

    from faults.load import request
    from tests.support.grpc_clients import Clients, aio_channel

    codes: Counter[str] = Counter()
    details: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    receipts: list[tuple[str, str]] = []
    ok_latency: list[float] = []
    channels = [
        aio_channel(target, options=[*CHANNEL_OPTIONS, ("faults.channel", i)])
        for i in range(WAVE_CHANNELS)
    ]
    # Connected first: the wave is calls in flight on open connections (the idle wave is
    # the one about connections); a channel that cannot connect ends the probe non-zero.
    await asyncio.wait_for(asyncio.gather(*(ch.channel_ready() for ch in channels)), 60)
    stubs = [Clients(ch).decide for ch in channels]
    requests = [request(f"wave-{k}", 0) for k in range(WAVE_SESSIONS)]
    go = asyncio.Event()
    inflight_now = peak = 0
    end = 0.0

    async def worker(w: int) -> None:
        nonlocal inflight_now, peak
        stub = stubs[w % len(stubs)]
        await go.wait()
        i = 0
        while i == 0 or time.monotonic() < end:  # at least once, then until the wave ends
            i += 1
            t = time.monotonic()
            inflight_now += 1
            peak = max(peak, inflight_now)
            try:
                resp = await stub.Decide(
                    requests[(w * 7 + i) % WAVE_SESSIONS], timeout=WAVE_DEADLINE
                )
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1
                details[f"{exc.code().name}: {exc.details()}"] += 1
                await asyncio.sleep(BACKOFF)  # the client's back-off after a refusal
                continue
            finally:
                inflight_now -= 1
            codes["OK"] += 1
            ok_latency.append(time.monotonic() - t)
            verdict = decision_pb2.Decision.Name(resp.decision).removeprefix("DECISION_")
            verdicts[f"{verdict}:{','.join(r.code for r in resp.reasons)}"] += 1
            if resp.receipt.receipt_id:
                receipts.append((resp.decision_id, resp.receipt.receipt_id))

    tasks = [asyncio.create_task(worker(w)) for w in range(inflight)]
    await asyncio.sleep(0)  # every worker waits on `go`
    start = time.monotonic()
    end = start + seconds
    go.set()
    await asyncio.gather(*tasks)
    finished = time.monotonic()
    for ch in channels:
        await ch.close(None)
    ok_latency.sort()

    def pct(p: float) -> float | None:
        return ok_latency[int(p * (len(ok_latency) - 1))] if ok_latency else None

    return {
        "started": start,
        "finished": finished,
        "codes": dict(codes),
        "details": dict(details),
        "verdicts": dict(verdicts),
        "receipts": receipts,
        "peak_inflight": peak,
        "ok_p50_s": pct(0.5),
        "ok_p99_s": pct(0.99),
    }


def main(argv: list[str]) -> None:
    cmd, *args = argv
    if cmd == "health":
        health(args[0], args[1])
    elif cmd == "idle":
        idle(int(args[0]), int(args[1]))
    elif cmd == "wave":
        raise_nofile()
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        result = asyncio.run(_wave(args[0], int(args[1]), float(args[2])))
        with open(args[3], "w") as f:
            json.dump(result, f)
    else:
        raise SystemExit(f"unknown probe {cmd!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
