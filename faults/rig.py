"""The real service as a subprocess, the measurements around it, and one row per fault.

A :class:`Rig` is one ``aarm-pdp serve`` process (its own directory, free ports,
principals file, receipt store and keys) with the steady :class:`~faults.load.Load`, a
health prober process and a memory/descriptor :class:`Sampler` around it. Its
:meth:`Rig.fault` runs one fault and makes a :class:`Row`:

1. wait for an ALLOW (the service is healthy before the fault);
2. ``inject()``; the fault is *in effect* from the time it returns (``t_in``);
3. hold it (at least :data:`HOLD` seconds and :data:`HOLD_ANSWERS` answers sent inside);
4. ``heal()``; the fault ends at the time heal *starts* (``t_heal``), or, for a fault
   the service heals itself (OPA killed), at the time ``heal()`` returns;
5. recovery: the first ALLOW to a request sent after ``t_heal`` (bounded by
   :data:`RECOVERY_LIMIT`; none is a failure).

**During the fault** means sent at or after ``t_in`` and answered at or before
``t_heal``: the whole call lies inside the fault, so any ALLOW among them is a bug.
Calls that overlap the window without lying inside it (sent before the injection took
effect, or answered after healing began) are counted as ``straddling`` and their ALLOWs
reported, not judged: they may have been decided before or after.

When the rig closes, the service is stopped, ``aarm-pdp receipts verify`` runs on its
store, and every receipt id a client was given (steady load and waves) must be in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faults.load import ALLOW, Load, Sample
from tests.support.ports import address, free_port
from tests.support.principals import write_principals
from tests.support.processes import children, grpc_serving, serve_command

MiB = 1 << 20
HOLD = 1.5
"""Seconds a fault is held at least..."""
HOLD_ANSWERS = 8
"""...and until this many calls sent inside it were answered (at most HOLD_MAX)."""
HOLD_MAX = 10.0
RECOVERY_LIMIT = 30.0
SLOT_WAIT = 10.0
"""Seconds for the in-flight gauge to reach 0 once a rig's steady load stopped."""
START_LIMIT = 60.0
RSS_BOUND_FACTOR = 1.5
RSS_BOUND_SLACK = 64 * MiB
"""Memory after a wave must come back under 1.5 x the pre-wave RSS + 64 MiB."""
FD_SLACK = 64
"""Descriptors after the idle-connection wave must come back under pre-wave + 64."""

Inject = Callable[[], Awaitable[float | None]]


def now() -> float:
    return time.monotonic()


# --------------------------------------------------------------------------- /proc


def rss(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def fds(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------- the service


class Service:
    """``aarm-pdp serve`` in ``workdir`` on free ports; restartable on the same stores."""

    def __init__(
        self,
        workdir: Path,
        *,
        receipts: str | None = None,
        state: str | None = None,
        opa_url: str | None = None,
        policy: Path | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.dir = workdir
        self.port, self.metrics_port = free_port(), free_port()
        self.receipts = receipts or str(workdir / "receipts.db")
        self.key_dir = workdir / "keys"
        self.log_path = workdir / "service.log"
        args = [
            "--receipts",
            self.receipts,
            "--key-dir",
            str(self.key_dir),
            "--telemetry-file",
            "",
            *(["--state", state] if state else []),
            *(["--opa-url", opa_url] if opa_url else []),
            *(["--policy", str(policy)] if policy else []),
            *extra,
        ]
        self.cmd = serve_command(
            self.port,
            *args,
            metrics_port=self.metrics_port,
            principals=write_principals(workdir / "principals.json"),
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.external_opa: list[int] = []
        """The pid of an OPA it does not manage (sampled with its own)."""

    @property
    def target(self) -> str:
        return address(self.port)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def opa_pids(self) -> list[int]:
        pid = self.pid
        managed = [p for p, cmd in children(pid) if "opa" in cmd.split(" ")[0]] if pid else []
        return managed + [p for p in self.external_opa if alive(p)]

    def spawn(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    async def serving(self, timeout: float = START_LIMIT) -> bool:
        """Until the health check answers SERVING (False: the process exited or timeout)."""
        deadline = now() + timeout
        while now() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            with contextlib.suppress(Exception):
                if await asyncio.to_thread(grpc_serving, self.target):
                    return True
            await asyncio.sleep(0.05)  # polling interval of a readiness probe
        return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    async def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def metric(self, name: str) -> float | None:
        url = f"http://{address(self.metrics_port)}/metrics"
        with urllib.request.urlopen(url, timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class Sampler:
    """RSS of the service and of its OPA children, and the service's descriptors, every
    :attr:`interval` seconds: ``(t, service_rss, opa_rss, service_fds)``."""

    def __init__(self, service: Service, interval: float = 0.05) -> None:
        self.service = service
        self.interval = interval
        self.points: list[tuple[float, int, int, int]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def sample(self) -> tuple[float, int, int, int]:
        pid = self.service.pid
        point = (now(), rss(pid), sum(rss(p) for p in self.service.opa_pids()), fds(pid))
        self.points.append(point)
        return point

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.interval)

    def peak(self, start: float, end: float) -> tuple[int, int, int]:
        inside = [p for p in self.points if start <= p[0] <= end] or [(0.0, 0, 0, 0)]
        return max(p[1] for p in inside), max(p[2] for p in inside), max(p[3] for p in inside)


class HealthProbe:
    """The ``faults.probe health`` process against ``target``."""

    def __init__(self, target: str, workdir: Path) -> None:
        self.out = workdir / f"health-{free_port()}.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faults.probe", "health", target, str(self.out)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.records: list[tuple[float, float, str]] = []

    async def ready(self) -> bool:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 30)
        return line.startswith("READY")

    async def stop(self) -> None:
        self.proc.terminate()
        await asyncio.to_thread(self.proc.wait, 30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        with contextlib.suppress(OSError, ValueError):
            self.records = [(t, s, v) for t, s, v in json.loads(self.out.read_text())]


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    name: str
    rig: str
    kind: str = "fault"
    """``fault`` (ALLOW must be 0 inside), ``wave`` (load, not a policy fault), ``startup``."""
    injected: str = ""
    decisions_during: int = 0
    allows_during: int = 0
    denies_without_reason: int = 0
    errors_during: dict[str, int] = field(default_factory=dict)
    straddling: int = 0
    straddling_allows: int = 0
    reason_codes: dict[str, int] = field(default_factory=dict)
    fault_seconds: float = 0.0
    recovery_seconds: float | None = None
    decisions_total: int = 0
    client_timeouts: int = 0
    cancelled: int = 0
    receipts_seen: int = 0
    receipts_lost: int = 0
    health_checks: int = 0
    health_unanswered: int = 0
    health_max_ms: float = 0.0
    health_statuses: dict[str, int] = field(default_factory=dict)
    rss_before_mib: float = 0.0
    peak_rss_mib: float = 0.0
    peak_opa_rss_mib: float = 0.0
    rss_after_mib: float | None = None
    rss_bound_mib: float | None = None
    fds_before: int | None = None
    fds_peak: int | None = None
    fds_after: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    # window edges (monotonic), for judging samples and health checks
    t_start: float = 0.0
    t_in: float = 0.0
    t_heal: float = 0.0
    t_end: float = 0.0
    health_excused: tuple[float, float] | None = None
    extra_receipts: list[tuple[str, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def public(self) -> dict[str, Any]:
        doc = asdict(self)
        for k in ("t_start", "t_in", "t_heal", "t_end", "health_excused", "extra_receipts"):
            doc.pop(k)
        doc["row_seconds"] = round(self.t_end - self.t_start, 1)
        doc["passed"] = self.passed
        return doc


def _mib(n: int | float) -> float:
    return round(n / MiB, 1)


# --------------------------------------------------------------------------- the rig


async def inflight_settles(
    service: Service, at_most: float, timeout: float
) -> tuple[bool, float | None]:
    """Polls the service's ``aarm_inflight_requests`` until it is ``at_most`` or less
    (bounded by ``timeout``): whether it did, and the last value read (None: none could
    be read)."""
    value: float | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            value = await asyncio.to_thread(service.metric, "aarm_inflight_requests")
        if value is not None and value <= at_most:
            return True, value
        await asyncio.sleep(0.1)
    return False, value


class Rig:
    """One service process with load, health probe and sampler; rows of its faults."""

    def __init__(self, name: str, root: Path, **service: Any) -> None:
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
        self.service_kw = service
        self.service: Service | None = None
        self.rows: list[Row] = []
        self.notes: list[str] = []

    async def __aenter__(self) -> Rig:
        self.service = Service(self.dir, **self.service_kw)
        self.service.spawn()
        if not await self.service.serving():
            tail = self.service.log_tail()
            await self.service.stop()
            raise RuntimeError(f"{self.name}: service did not start:\n{tail}")
        self.sampler = Sampler(self.service)
        self.sampler.start()
        self.health = HealthProbe(self.service.target, self.dir)
        if not await self.health.ready():
            raise RuntimeError(f"{self.name}: health probe did not start")
        self.load = Load(self.service.target)
        await self.load.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.service is not None
        await self.load.stop()
        await self._no_slot_left()
        await self.health.stop()
        await self.sampler.stop()
        code = await self.service.stop()
        if code not in (0, None):
            self.notes.append(f"service exited {code} on SIGTERM")
        await self._judge()

    async def _no_slot_left(self) -> None:
        """With the steady load stopped nothing is in flight: a decision that left its
        admission slot taken (a leak) fails the rig's last row. A service whose gauge
        cannot be read is not judged here."""
        assert self.service is not None
        settled, value = await inflight_settles(self.service, 0, SLOT_WAIT)
        if not settled and value is not None and self.rows:
            self.rows[-1].failures.append(
                f"{value:g} decisions in flight {SLOT_WAIT:g} s after the steady load"
                " stopped (an admission slot leaked)"
            )

    # ------------------------------------------------------------------ faults

    async def fault(
        self,
        name: str,
        inject: Inject,
        heal: Inject,
        *,
        hold: bool = True,
        injected: str = "",
    ) -> Row:
        """One fault under the steady load (see the module docstring for the window)."""
        row = Row(name, self.name, injected=injected, t_start=now())
        self.rows.append(row)
        if await self.load.first_allow(row.t_start, RECOVERY_LIMIT) is None:
            row.failures.append("no ALLOW before the fault (service not healthy)")
            row.t_in = row.t_heal = row.t_end = now()
            return row
        row.rss_before_mib = _mib(self.sampler.sample()[1])
        t_in = await inject()
        row.t_in = t_in if t_in is not None else now()
        if hold:
            await asyncio.sleep(HOLD)  # the fault's minimum length: part of the scenario
            await self.load.answers_since(row.t_in, HOLD_ANSWERS, HOLD_MAX)
        t_heal = now()
        healed = await heal()
        row.t_heal = healed if healed is not None else t_heal
        first = await self.load.first_allow(row.t_heal, RECOVERY_LIMIT)
        if first is None:
            row.failures.append(f"no ALLOW within {RECOVERY_LIMIT:.0f}s of healing")
        else:
            row.recovery_seconds = round(first.answered - row.t_heal, 3)
        row.t_end = now()
        return row

    async def hold_for(self, seconds: float) -> None:
        """Keep the steady load running (the scenario's length, not a synchronisation)."""
        await asyncio.sleep(seconds)

    # ------------------------------------------------------------------ judging

    def _receipt_store(self) -> tuple[set[str], str, int]:
        """(receipt ids in the store, verify output, verify exit code)."""
        assert self.service is not None
        jwks = self.dir / "jwks.json"
        keys = subprocess.run(
            [sys.executable, "-m", "aarm_pdp", "receipts", "keys", "--key-dir",
             str(self.service.key_dir)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        jwks.write_text(keys.stdout)
        verify = subprocess.run(
            [sys.executable, "-m", "aarm_pdp", "receipts", "verify", "--store",
             self.service.receipts, "--jwks", str(jwks)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        ids = asyncio.run(_stored_ids(self.service.receipts))
        return ids, (verify.stdout + verify.stderr).strip(), verify.returncode

    async def _judge(self) -> None:
        samples = self.load.samples
        need_store = any(s.receipt_id for s in samples) or any(r.extra_receipts for r in self.rows)
        if need_store:
            stored, verify_out, verify_rc = await asyncio.to_thread(self._receipt_store)
        else:
            stored, verify_out, verify_rc = set(), "no receipts given out", 0
        self.notes.append(f"receipts verify: {verify_out.splitlines()[-1] if verify_out else ''}")
        for row in self.rows:
            _judge_row(row, samples, self.health.records, self.sampler, stored)
            if verify_rc != 0 and row.receipts_seen:
                row.failures.append(f"receipts verify failed: {verify_out[-300:]}")


async def _stored_ids(store_path: str) -> set[str]:
    from aarm_pdp.receipts.factory import open_store

    store = open_store(store_path)
    try:
        ids: set[str] = set()
        for tenant, session in await store.sessions():
            for text in await store.export(tenant, session):
                ids.add(json.loads(text)["receipt_id"])
        return ids
    finally:
        await store.aclose()


def _judge_row(
    row: Row,
    samples: list[Sample],
    health: list[tuple[float, float, str]],
    sampler: Sampler,
    stored: set[str],
) -> None:
    mine = [s for s in samples if row.t_start <= s.sent < row.t_end]
    row.decisions_total = sum(1 for s in mine if s.ok)
    row.client_timeouts = sum(1 for s in mine if s.outcome == "grpc:DEADLINE_EXCEEDED")
    row.cancelled += sum(1 for s in mine if s.outcome == "grpc:CANCELLED")
    row.fault_seconds = round(max(0.0, row.t_heal - row.t_in), 3)
    during = [s for s in mine if s.sent >= row.t_in and s.answered <= row.t_heal]
    inside = {id(s) for s in during}
    straddle = [
        s for s in mine if s.sent < row.t_heal and s.answered > row.t_in and id(s) not in inside
    ]
    row.decisions_during = sum(1 for s in during if s.ok)
    row.allows_during = sum(1 for s in during if s.outcome == ALLOW)
    row.denies_without_reason = sum(
        1 for s in during if s.outcome == "DECISION_DENY" and not s.codes
    )
    codes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for s in during:
        if s.ok:
            codes[f"{s.outcome.removeprefix('DECISION_')}:{','.join(s.codes)}"] += 1
        else:
            errors[s.outcome.removeprefix("grpc:")] += 1
    if row.kind == "wave":
        row.detail["steady_load_codes"] = dict(codes.most_common())
    else:
        row.reason_codes = dict(codes.most_common())
    row.errors_during = dict(errors.most_common())
    row.straddling = len(straddle)
    row.straddling_allows = sum(1 for s in straddle if s.outcome == ALLOW)
    seen = {s.receipt_id for s in mine if s.receipt_id} | {r for _, r in row.extra_receipts}
    row.receipts_seen = len(seen)
    row.receipts_lost = len(seen - stored)
    checks = [h for h in health if row.t_start <= h[0] < row.t_end]
    if row.health_excused is not None:
        lo, hi = row.health_excused
        excused = [h for h in checks if h[0] + h[1] >= lo and h[0] <= hi]
        row.detail["health_excused_checks"] = len(excused)
        checks = [h for h in checks if h not in excused]
    row.health_checks = len(checks)
    row.health_unanswered = sum(1 for h in checks if h[2] not in ("SERVING", "NOT_SERVING"))
    row.health_max_ms = round(max((h[1] for h in checks), default=0.0) * 1000, 1)
    row.health_statuses = dict(Counter(h[2] for h in checks))
    peak, opa_peak, fd_peak = sampler.peak(row.t_start, row.t_end)
    row.peak_rss_mib = max(row.peak_rss_mib, _mib(peak))
    row.peak_opa_rss_mib = max(row.peak_opa_rss_mib, _mib(opa_peak))
    if row.fds_before is not None:
        row.fds_peak = max(row.fds_peak or 0, fd_peak)

    if row.kind == "fault" and row.allows_during:
        row.failures.append(f"{row.allows_during} ALLOW during the fault")
    if row.kind == "fault" and row.decisions_during + sum(errors.values()) == 0:
        row.failures.append("no call answered inside the fault window")
    if row.denies_without_reason:
        row.failures.append(f"{row.denies_without_reason} DENY without a reason code")
    if row.receipts_lost:
        row.failures.append(f"{row.receipts_lost} receipts lost")
    if row.health_unanswered:
        row.failures.append(f"{row.health_unanswered} health checks unanswered")
    if row.client_timeouts and row.kind != "wave":
        row.failures.append(f"{row.client_timeouts} client deadlines exceeded")
    if row.cancelled:
        row.failures.append(f"{row.cancelled} CANCELLED")


def workroot() -> Path:
    """A private directory for one run's rigs (removed by :func:`cleanup`)."""
    return Path(tempfile.mkdtemp(prefix="aarm-faults-"))


def cleanup(root: Path) -> None:
    """Remove a run's directory, unless FAULTS_KEEP is set (service logs for a post-mortem)."""
    if os.environ.get("FAULTS_KEEP"):
        print(f"kept {root}", file=sys.stderr)
        return
    shutil.rmtree(root, ignore_errors=True)
