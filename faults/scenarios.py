"""The fault matrix: one coroutine per rig, each returning its rows (one per fault).

Every rig runs the real service as a subprocess (see :mod:`faults.rig`); the faults are
real: signals to real OPA, Redis and PostgreSQL processes, a real full file system, a
scripted OPA over real HTTP, real connection and call floods from other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from faults.bad_opa import ScriptedOpa
from faults.load import ALLOW
from faults.probe import raise_nofile
from faults.rig import (
    FD_SLACK,
    RECOVERY_LIMIT,
    RSS_BOUND_FACTOR,
    RSS_BOUND_SLACK,
    Rig,
    Row,
    Service,
    _mib,
    alive,
    fds,
    inflight_settles,
    now,
    rss,
)
from tests.support.paths import BIN, REGO
from tests.support.ports import free_port
from tests.support.processes import PG_BIN, PostgresServer, RedisServer, children, opa_command

WAVE_INFLIGHT = 5000
WAVE_SECONDS = 3.0
IDLE_CONNECTIONS = 20_000
IDLE_PROCESSES = 2
"""Idle connections are held by this many processes (each under its own FD limit)."""
IDLE_HOLD = 2.0
PROCESS_LIMIT = 10.0

Scenario = Callable[[Path], Awaitable[list[Row]]]


async def _until(cond: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """Poll ``cond`` (a /proc state: no event to wait on) until true; False on timeout."""
    deadline = now() + timeout
    while not cond():
        if now() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


# --------------------------------------------------------------------------- managed OPA


async def managed_opa(root: Path) -> list[Row]:
    """OPA killed and hung under the managed sidecar, then the service itself SIGKILLed."""
    async with Rig("managed", root) as rig:
        svc = rig.service
        assert svc is not None
        old: list[int] = []

        async def kill_opa() -> float:
            old[:] = svc.opa_pids()
            _signal(old, signal.SIGKILL)
            await _until(lambda: not any(alive(p) for p in old), PROCESS_LIMIT)
            return now()

        async def replaced() -> float:
            # The supervisor heals this one: the fault lasts until a new OPA is spawned
            # (it still has to load the policy before it can answer anything).
            await _until(lambda: bool(set(svc.opa_pids()) - set(old)), RECOVERY_LIMIT)
            return now()

        await rig.fault("opa_killed", kill_opa, replaced, hold=False, injected="SIGKILL opa")

        async def stop_opa() -> float:
            old[:] = svc.opa_pids()
            _signal(old, signal.SIGSTOP)
            return now()

        async def cont_opa() -> None:
            _signal(old, signal.SIGCONT)

        await rig.fault("opa_hung", stop_opa, cont_opa, injected="SIGSTOP opa")

        orphans: list[int] = []
        killed_at: list[float] = []

        async def kill_service() -> float:
            opa = svc.opa_pids()
            killed_at.append(now())
            svc.kill()
            if not await _until(lambda: not any(alive(p) for p in opa), PROCESS_LIMIT):
                orphans.extend(p for p in opa if alive(p))
                _signal(orphans, signal.SIGKILL)
            return now()

        async def restart_service() -> None:
            svc.spawn()

        row = await rig.fault(
            "service_sigkill",
            kill_service,
            restart_service,
            injected="SIGKILL service under load; down 1.5 s; restart on the same stores",
        )
        row.health_excused = (killed_at[0], row.t_end)  # nothing listens until it is back
        row.detail["opa_orphans"] = len(orphans)
        if orphans:
            row.failures.append(f"{len(orphans)} OPA children outlived the SIGKILLed service")
        await rig.hold_for(1.0)  # load on the restarted service before the rig closes
    return rig.rows


# --------------------------------------------------------------------------- scripted OPA


async def scripted_opa(root: Path) -> list[Row]:
    """An external OPA behind :class:`~faults.bad_opa.ScriptedOpa`, one row per mode."""
    port = free_port()
    opa = await asyncio.to_thread(
        subprocess.Popen,
        opa_command(str(BIN / "opa"), port, REGO),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = ScriptedOpa(f"http://127.0.0.1:{port}")
    try:
        await proxy.start()
        async with Rig("scripted", root, opa_url=proxy.url) as rig:
            assert rig.service is not None
            rig.service.external_opa.append(opa.pid)
            for mode in ("drip", "garbage", "wrong_types", "http500", "reset"):

                async def inject(mode: str = mode) -> float:
                    proxy.mode = mode
                    return now()

                async def heal() -> None:
                    proxy.mode = "pass"

                before = proxy.faulted
                row = await rig.fault(f"opa_{mode}", inject, heal, injected=f"scripted OPA: {mode}")
                row.detail["opa_queries_faulted"] = proxy.faulted - before
        return rig.rows
    finally:
        await proxy.stop()
        opa.kill()
        opa.wait()


# --------------------------------------------------------------------------- policy


async def missing_policy(root: Path) -> list[Row]:
    """The policy path does not exist, or is an empty directory: refuse to start, or start
    and DENY everything (which one happens is recorded)."""
    rows: list[Row] = []
    for name in ("policy_missing", "policy_empty"):
        d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
        policy = d / name
        if name == "policy_empty":
            policy.mkdir()
        svc = Service(d, policy=policy)
        row = Row(name, "startup", kind="startup", t_start=now(), injected=f"--policy {name}")
        rows.append(row)
        svc.spawn()
        serving = await svc.serving(timeout=60)
        assert svc.proc is not None
        if not serving:
            code = svc.proc.poll()
            lines = [ln for ln in svc.log_tail().splitlines() if ln.strip()]
            row.detail["outcome"] = f"refused to start: exit {code}"
            row.detail["message"] = lines[-1][-240:] if lines else ""
            row.reason_codes = {f"refused_to_start:exit_{code}": 1}
            if code is None:
                row.failures.append("neither serving nor exited within 60 s")
            elif code == 0:
                row.failures.append("exited 0 without serving")
            row.t_end = now()
            await svc.stop()
            continue
        row.detail["outcome"] = "started; every decision must be a DENY"
        from faults.load import Load

        load = Load(svc.target, workers=4)
        await load.start()
        await asyncio.sleep(1.5)  # a fixed stretch of load against the policy-less service
        await load.stop()
        await svc.stop()
        row.t_in, row.t_heal = row.t_start, now()
        ok = [s for s in load.samples if s.ok]
        row.decisions_during = len(ok)
        row.allows_during = sum(1 for s in ok if s.outcome == ALLOW)
        row.reason_codes = dict(
            Counter(f"{s.outcome.removeprefix('DECISION_')}:{','.join(s.codes)}" for s in ok)
        )
        if row.allows_during:
            row.failures.append(f"{row.allows_during} ALLOW without a policy")
        if not ok:
            row.failures.append("started but answered no decision")
        row.t_end = now()
    return rows


# --------------------------------------------------------------------------- stores


async def redis(root: Path) -> list[Row]:
    """The Redis session store SIGSTOPped (hung), then SIGKILLed and restarted empty."""
    server = RedisServer(root)
    try:
        async with Rig("redis", root, state=server.url) as rig:

            async def stop() -> float:
                os.kill(server.proc.pid, signal.SIGSTOP)
                return now()

            async def cont() -> None:
                os.kill(server.proc.pid, signal.SIGCONT)

            await rig.fault("redis_stopped", stop, cont, injected="SIGSTOP redis")

            async def kill() -> float:
                await asyncio.to_thread(server.kill)
                return now()

            async def restart() -> None:
                await asyncio.to_thread(server.restart)

            await rig.fault("redis_killed", kill, restart, injected="SIGKILL redis; start empty")
        return rig.rows
    finally:
        server.stop()


def _pg_ctl(pg: PostgresServer, *args: str) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*prefix, str(PG_BIN / "pg_ctl"), "-D", str(pg.data), *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _pg_pids(pg: PostgresServer) -> list[int]:
    master = int((pg.data / "postmaster.pid").read_text().split()[0])
    return [master, *(pid for pid, _ in children(master))]


async def postgres(root: Path) -> list[Row]:
    """The PostgreSQL receipt store stopped (pg_ctl stop -m fast) and hung (SIGSTOP)."""
    pg = await asyncio.to_thread(PostgresServer)
    try:
        dsn = await asyncio.to_thread(pg.create_database)
        async with Rig("postgres", root, receipts=dsn) as rig:

            async def stop() -> float:
                await asyncio.to_thread(_pg_ctl, pg, "-m", "fast", "-w", "stop")
                return now()

            async def start() -> None:
                options = f"-p {pg.port} -c listen_addresses=127.0.0.1 -k {pg.dir}"
                log = str(pg.dir / "server.log")
                await asyncio.to_thread(
                    _pg_ctl, pg, "-l", log, "-o", options, "-w", "-t", "30", "start"
                )

            await rig.fault("postgres_stopped", stop, start, injected="pg_ctl stop -m fast")
            hung: list[int] = []

            async def sigstop() -> float:
                hung[:] = _pg_pids(pg)
                _signal(hung, signal.SIGSTOP)
                return now()

            async def sigcont() -> None:
                _signal(hung, signal.SIGCONT)

            await rig.fault("postgres_hung", sigstop, sigcont, injected="SIGSTOP postgres")
        return rig.rows
    finally:
        await asyncio.to_thread(pg.stop)


def _fill(directory: Path) -> int:
    """Write a filler file in ``directory`` until the file system is full; its size."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with open(directory / "filler", "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                chunk = chunk[: len(chunk) // 2]
                if not chunk:
                    break
        with contextlib.suppress(OSError):
            os.fsync(f.fileno())
    return written


def _largest_file(directory: Path) -> int:
    return max(p.stat().st_size for p in directory.iterdir())


async def disk_full(root: Path) -> list[Row]:
    """The SQLite receipt store's file system full: a 64 MiB tmpfs filled to the last byte.

    Needs CAP_SYS_ADMIN (mount). Without it (or with FAULTS_NO_MOUNT set) the store's
    files are capped instead with RLIMIT_FSIZE on the service (prlimit, the soft limit
    only, so no privilege is needed to lift it again): writes that grow
    a file fail (EFBIG), as on a full disk, but rewrites in place still succeed; the row
    says which was used.
    """
    disk = Path(tempfile.mkdtemp(prefix="disk-", dir=root))
    mount = ["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(disk)]
    if os.environ.get("FAULTS_NO_MOUNT"):  # exercise the fallback
        mounted = False
    else:
        done = await asyncio.to_thread(subprocess.run, mount, capture_output=True)
        mounted = done.returncode == 0
    try:
        async with Rig("disk", root, receipts=str(disk / "receipts.db")) as rig:
            svc = rig.service
            assert svc is not None

            async def fill() -> float:
                if mounted:
                    await asyncio.to_thread(_fill, disk)
                else:
                    import resource

                    size = await asyncio.to_thread(_largest_file, disk)
                    assert svc.pid is not None
                    _soft, hard = resource.prlimit(svc.pid, resource.RLIMIT_FSIZE)
                    resource.prlimit(svc.pid, resource.RLIMIT_FSIZE, (size, hard))
                return now()

            async def free() -> None:
                if mounted:
                    (disk / "filler").unlink()
                else:
                    import resource

                    assert svc.pid is not None
                    _soft, hard = resource.prlimit(svc.pid, resource.RLIMIT_FSIZE)
                    resource.prlimit(svc.pid, resource.RLIMIT_FSIZE, (hard, hard))

            how = "tmpfs 64 MiB filled" if mounted else "RLIMIT_FSIZE at the files' size"
            row = await rig.fault("receipt_disk_full", fill, free, injected=how)
            row.detail["method"] = how
        return rig.rows
    finally:
        if mounted:
            umount = ["umount", "-l", str(disk)]
            await asyncio.to_thread(subprocess.run, umount, capture_output=True)


# --------------------------------------------------------------------------- overload


async def _rss_settles(svc: Service, bound: float, timeout: float) -> tuple[int, float | None]:
    """Until the service's RSS is under ``bound`` (bounded by ``timeout``): the last RSS
    read, and how long it took (None: never)."""
    start = now()
    while True:
        value = rss(svc.pid)
        if value <= bound:
            return value, round(now() - start, 3)
        if now() - start > timeout:
            return value, None
        await asyncio.sleep(0.1)


async def overload(root: Path) -> list[Row]:
    """A wave of 5 000 Decides in flight, then 20 000 idle TCP connections."""
    raise_nofile()
    async with Rig("overload", root) as rig:
        svc = rig.service
        assert svc is not None

        # ---- 5 000 in flight
        row = Row("wave_5000_inflight", rig.name, kind="wave", t_start=now())
        row.injected = f"{WAVE_INFLIGHT} concurrent Decide loops for {WAVE_SECONDS:.0f}s"
        rig.rows.append(row)
        before = rss(svc.pid)
        row.rss_before_mib = _mib(before)
        out = rig.dir / "wave.json"
        row.t_in = now()
        wave = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "faults.probe", "wave", svc.target,
            str(WAVE_INFLIGHT), str(WAVE_SECONDS), str(out),
        )  # fmt: skip
        try:
            code = await asyncio.wait_for(wave.wait(), WAVE_SECONDS + 120)
        except TimeoutError:
            wave.kill()
            code = await wave.wait()
            row.failures.append("the wave did not finish within its bound")
        row.t_heal = now()
        if code == 0:
            result: dict[str, Any] = json.loads(out.read_text())
            _judge_wave(row, result)
        else:
            row.failures.append(f"wave client exited {code}")
        # The steady load beside it holds at most one call per worker: the wave's own
        # have drained once no more are in flight. (Waiting for zero measured how busy
        # the box was: on a loaded machine the steady load always had calls out.)
        drained, _ = await inflight_settles(svc, rig.load.workers, RECOVERY_LIMIT)
        if not drained:
            row.failures.append("wave decisions still in flight 30 s after the wave")
        first = await rig.load.first_allow(row.t_heal, RECOVERY_LIMIT)
        row.recovery_seconds = round(first.answered - row.t_heal, 3) if first else None
        bound = RSS_BOUND_FACTOR * before + RSS_BOUND_SLACK
        after, took = await _rss_settles(svc, bound, 10.0)
        row.rss_after_mib, row.rss_bound_mib = _mib(after), _mib(bound)
        row.detail["rss_settled_seconds"] = took
        if took is None:
            row.failures.append(f"RSS {_mib(after)} MiB > bound {_mib(bound)} MiB after the wave")
        row.t_end = now()

        # ---- 20 000 idle connections
        row = Row("idle_20000_connections", rig.name, kind="wave", t_start=now())
        rig.rows.append(row)
        per = IDLE_CONNECTIONS // IDLE_PROCESSES
        row.injected = f"{IDLE_CONNECTIONS} idle TCP connections from {IDLE_PROCESSES} processes"
        before = rss(svc.pid)
        row.rss_before_mib = _mib(before)
        row.fds_before = fds(svc.pid)
        row.fds_peak = row.fds_before
        holders = [
            await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-m", "faults.probe", "idle", str(svc.port), str(per)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(IDLE_PROCESSES)
        ]
        opened = 0
        took = 0.0
        try:
            for h in holders:
                assert h.stdout is not None
                line = await asyncio.wait_for(asyncio.to_thread(h.stdout.readline), 120)
                if line.startswith("READY"):
                    opened += int(line.split()[1])
                    took = max(took, float(line.split()[2]))
            row.detail["connections_open_seconds"] = took
            row.t_in = now()
            row.detail["connections_opened"] = opened
            row.detail["service_fds_with_connections"] = fds(svc.pid)
            row.detail["new_connection_health"] = await asyncio.to_thread(_fresh_health, svc)
            await rig.hold_for(IDLE_HOLD)
            still = 0
            for h in holders:
                assert h.stdin is not None
                assert h.stdout is not None
                h.stdin.write("count\n")
                h.stdin.flush()
                still += int(await asyncio.to_thread(h.stdout.readline))
            row.detail["connections_held_by_server"] = still
            row.detail["connection_limit"] = "server.max_connections (half the FD limit, <= 4096)"
        finally:
            for h in holders:
                if h.stdin is not None:
                    with contextlib.suppress(OSError):
                        h.stdin.close()
            for h in holders:
                await asyncio.to_thread(h.wait, 60)
        row.t_heal = now()
        fd_bound = (row.fds_before or 0) + FD_SLACK
        if not await _until(lambda: fds(svc.pid) <= fd_bound, RECOVERY_LIMIT, 0.1):
            row.failures.append(f"service descriptors {fds(svc.pid)} > {fd_bound} after closing")
        row.fds_after = fds(svc.pid)
        row.detail["fd_recovery_seconds"] = round(now() - row.t_heal, 3)
        first = await rig.load.first_allow(row.t_heal, RECOVERY_LIMIT)
        row.recovery_seconds = round(first.answered - row.t_heal, 3) if first else None
        bound = RSS_BOUND_FACTOR * before + RSS_BOUND_SLACK
        after, took = await _rss_settles(svc, bound, 10.0)
        row.rss_after_mib, row.rss_bound_mib = _mib(after), _mib(bound)
        if took is None:
            row.failures.append(f"RSS {_mib(after)} MiB > bound {_mib(bound)} MiB after the wave")
        if opened < IDLE_CONNECTIONS:
            row.failures.append(f"only {opened} of {IDLE_CONNECTIONS} connections opened")
        row.t_end = now()
    for r in rig.rows:
        _judge_wave_load(r, rig)
    return rig.rows


def _fresh_health(svc: Service) -> str:
    """A health check on a new connection while the idle wave holds the server's slots."""
    from tests.support.processes import grpc_serving

    try:
        return "SERVING" if grpc_serving(svc.target) else "NOT_SERVING"
    except Exception as exc:  # the new connection refused or closed at accept
        return f"unanswered: {type(exc).__name__}"


def _judge_wave(row: Row, result: dict[str, Any]) -> None:
    codes: dict[str, int] = result["codes"]
    row.detail.update(
        codes=codes,
        verdicts=result["verdicts"],
        peak_inflight=result["peak_inflight"],
        refusals=result["details"],
        ok_p50_s=result["ok_p50_s"],
        ok_p99_s=result["ok_p99_s"],
        wave_seconds=round(result["finished"] - result["started"], 2),
    )
    row.reason_codes = {f"grpc:{k}": v for k, v in codes.items()}
    row.extra_receipts = [(str(d), str(r)) for d, r in result["receipts"]]
    row.cancelled = codes.get("CANCELLED", 0)
    unexplained = {
        d: n
        for d, n in result["details"].items()
        if not d.startswith("RESOURCE_EXHAUSTED: overloaded:")
    }
    if unexplained:
        row.failures.append(f"answers other than OK or a reasoned refusal: {unexplained}")
    if not codes.get("OK"):
        row.failures.append("no call of the wave was decided")
    if result["peak_inflight"] < WAVE_INFLIGHT:
        row.failures.append(f"the wave had only {result['peak_inflight']} calls in flight")


def _judge_wave_load(row: Row, rig: Rig) -> None:
    """The steady load beside a wave: decisions keep coming (refusals are allowed)."""
    during = [s for s in rig.load.samples if row.t_in <= s.sent and s.answered <= row.t_heal]
    # Refusals and the client's own 5 s deadline (its call queued behind the wave) are
    # what overload looks like to a client; anything else is not.
    explained = ("grpc:RESOURCE_EXHAUSTED", "grpc:DEADLINE_EXCEEDED")
    bad = Counter(s.outcome for s in during if not s.ok and s.outcome not in explained)
    row.detail["steady_load_during"] = {
        "decided": sum(1 for s in during if s.ok),
        **{k: sum(1 for s in during if s.outcome == k) for k in explained},
        **bad,
    }
    if bad:
        row.failures.append(f"steady load beside the wave got {dict(bad)}")


SCENARIOS: dict[str, Scenario] = {
    "managed_opa": managed_opa,
    "scripted_opa": scripted_opa,
    "missing_policy": missing_policy,
    "redis": redis,
    "postgres": postgres,
    "disk_full": disk_full,
    "overload": overload,
}
