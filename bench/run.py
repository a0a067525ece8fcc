"""``make bench`` / ``make bench-quick``: the orchestrator.

Starts one real OPA (``opa run --server`` with the reference pack), the real service
against it (``python -m aarm_pdp serve --opa-url ...``), the stub-engine service
(``bench/stub_server.py``) and the load generator (``bench/load.py``), each as its own
process. Then:

1. floor: ``opa bench`` eval-only time of the same query for the corpus inputs;
2. checks that ``decide`` and ``opa-direct`` agree on every verdict (and on the corpus'
   expected verdict), refusing to time anything if they do not;
3. closed loop at concurrency 1, 8, 32 and an open-loop constant-rate sweep, the three
   lanes interleaved (every load point runs all lanes back to back, the lane order
   rotating from round to round);
4. (full) scaling sweeps: the tool catalogue at 10/shipped/100/1000 tools; Decide in
   sessions already holding 0/100/1000/10000 actions (``session_history``); resident
   memory per 100000 sessions (``memory_per_100k_sessions``, ``bench/session_memory.py``);
5. a py-spy profile of the hot path under the decide-stub-opa lane (and, in full mode,
   the decide lane);
6. the analysis step's cost (``bench/analysis_cost.py``: µs per decision over the evasion
   corpus, in-process; key ``analysis``);
7. prints one table and writes ``bench/results/bench-<mode>-<stamp>.json``
   (+ ``latest-<mode>.json``); every ratio sits under a key containing ``ratio``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aarm_pdp.opa.sidecar import OPA_ENV, OPA_FLAGS

from tests.support.ports import address, free_port
from tests.support.processes import (
    grpc_serving,
    http_ok,
    opa_command,
    read_ready,
    serve_command,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
OPA = str(ROOT / "bin" / "opa")
REGO = ROOT / "rego"
RESULTS = ROOT / "bench" / "results"
ENTRYPOINT_PATH = "/v1/data/aarm/main/decision"
QUERY = "data.aarm.main.decision"

# Every OPA here runs as the managed sidecar runs it (flags, GOGC), and the service and
# the forwarder reach it as the managed sidecar's client does: over a unix socket.
OPA_TRANSPORT = "unix"

LANES = ("opa-direct", "decide", "decide-stub-opa")
# The closed loop also runs `grpc-forward` (bench/forward_floor.py): a bare Python gRPC
# front end that forwards each request's OPA body, the floor of any Decide ratio here;
# and `opa-small`: the opa-direct bodies POSTed to a second OPA (same build, same
# settings) serving bench/opa_small, a policy of a dozen rules, the size peers'
# benchmarks use: the floor of the pack's OPA CPU.
CLOSED_LANES = (*LANES, "grpc-forward", "opa-small")
CONCURRENCY = (1, 8, 32)
# Which watched process is "the service" for a lane's CPU per decision.
SERVICE_ROLE = {"decide": "service", "decide-stub-opa": "stub", "grpc-forward": "forward"}
OPA_ROLE = {"decide": "opa", "opa-direct": "opa", "grpc-forward": "opa", "opa-small": "opa_small"}
SMALL_POLICY = ROOT / "bench" / "opa_small"
SMALL_PATH = "/v1/data/small/decision"

NOISY_CORES = 0.1
SWEEP_ROUNDS = 2
SWEEP_SECONDS = 4.0
TARGET_P50_C8 = 1.5
TARGET_P99_C8 = 2.0
TARGET_THROUGHPUT_C32 = 0.5
TARGET_STUB_CPU_US = 350.0
TARGET_HISTORY_RATIO = 1.10
TARGET_MIB_PER_100K_SESSIONS = 64.0
# Issue 18, each against a lane of the same run (docs/performance.md, "Issue 18").
TARGET_SERVICE_CPU_VS_FORWARD = 1.5
TARGET_OPA_CPU_PACK_VS_SMALL = 4.0
TARGET_P50_VS_FORWARD_C1 = 1.3
TARGET_THROUGHPUT_VS_FORWARD_C32 = 0.75
TARGET_MIB_PER_100K_ISSUE18 = 128.0

# Session-history sweep: prior actions per session, the workers (one session each at a
# time), timed requests per worker per round, rounds, and the benign reads that fill the
# sessions first (ALLOW at any history once the pack's session limits are raised).
HISTORY_SIZES = (0, 100, 1000, 10_000)
HISTORY_LANES = ("decide", "decide-stub-opa")
HISTORY_WORKERS = 8
HISTORY_PER_WORKER_ROUND = 80
HISTORY_ROUNDS = 3
HISTORY_FILL = (
    "allow-web-search",
    "allow-email-read",
    "allow-docs-search",
    "allow-code-read",
    "allow-crm-query",
)
# The timed cases: one per verdict but DEFER (an unresolved deferral stays in the session
# and in every later input), and a STEP_UP that pays nothing (a session's payments add
# up, so a repeated large transfer gains a reason).
HISTORY_TIMED = ("allow-db-query", "deny-drop-prod-db", "modify-db-query-cap", "stepup-grant-admin")
HISTORY_LIMIT = 1_000_000_000
MEMORY_SESSIONS = 100_000


@dataclass(frozen=True)
class Mode:
    """How long and how much: quick (< 2 min) or full (~17 min, 7 of them filling sessions)."""

    name: str
    rounds: int  # interleaved rounds of the closed-loop points
    closed_seconds: float
    open_rounds: int
    open_seconds: float
    open_fractions: tuple[float, ...]  # of the decide lane's c=32 throughput
    warmup_seconds: float
    floor_all_cases: bool
    sweeps: bool
    profile_seconds: float
    profile_decide_lane: bool


MODES = {
    "quick": Mode("quick", 1, 2.5, 1, 2.5, (0.5, 0.9), 1.0, False, False, 4.0, False),
    "full": Mode("full", 3, 5.0, 2, 5.0, (0.25, 0.5, 0.75, 0.9), 3.0, True, True, 12.0, True),
}


# ---------------------------------------------------------------- processes


def _durable_args(name: str) -> list[str]:
    """A private receipt store, key dir and telemetry file for one service process."""
    scratch = Path(tempfile.mkdtemp(prefix=f"bench-{name}-var-"))
    return [
        *("--receipts", str(scratch / "receipts.db"), "--key-dir", str(scratch / "keys")),
        *("--telemetry-file", str(scratch / "telemetry.jsonl")),
    ]


@dataclass
class Stack:
    """The processes of one configuration; stopped in reverse order."""

    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)
    unix: dict[int, str] = field(default_factory=dict)

    def _log(self, name: str) -> IO[bytes]:
        f = tempfile.TemporaryFile(prefix=f"bench-{name}-")  # noqa: SIM115 - closed in stop()
        self.logs.append(f)
        return f

    def opa(
        self,
        bundle: Path,
        *,
        flags: tuple[str, ...] | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[subprocess.Popen[Any], str]:
        """``opa run --server`` on a loopback port with ``flags`` and ``env`` added (None:
        the settings the managed sidecar runs OPA with, ``OPA_FLAGS``/``OPA_ENV``).

        It also listens on a unix socket in a private directory: :meth:`unix_url` of
        the returned process is that socket's URL (the service and the forwarder reach
        their local OPA over it, as the managed sidecar does)."""
        port = free_port()
        sock_dir = Path(tempfile.mkdtemp(prefix="bench-opa-sock-"))
        sock = sock_dir / "opa.sock"
        self.dirs.append(sock_dir)
        proc = subprocess.Popen(
            [
                *opa_command(OPA, port, bundle),
                *("--addr", f"unix://{sock}"),
                *(OPA_FLAGS if flags is None else flags),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log("opa"),
            env={**os.environ, **(OPA_ENV if env is None else env)},
        )
        self.procs.append(proc)
        self.unix[proc.pid] = f"unix://{sock}"
        url = f"http://{address(port)}"
        wait_until("opa", lambda: http_ok(f"{url}/health?bundles=true"), proc=proc, timeout=30)
        wait_until("opa socket", sock.exists, proc=proc, timeout=10)
        return proc, url

    def unix_url(self, proc: subprocess.Popen[Any]) -> str:
        """The unix socket URL the OPA process ``proc`` (from :meth:`opa`) listens on."""
        return self.unix[proc.pid]

    def local_opa_url(self, proc: subprocess.Popen[Any], tcp_url: str) -> str:
        """How the service and the forwarder reach OPA: ``OPA_TRANSPORT``."""
        return self.unix_url(proc) if OPA_TRANSPORT == "unix" else tcp_url

    def service(self, opa_url: str) -> tuple[subprocess.Popen[Any], str]:
        port = free_port()
        proc = subprocess.Popen(
            serve_command(
                port,
                "--opa-url",
                opa_url,
                # Receipts (SQLite, synchronous=FULL) and telemetry stay on the measured
                # path, as in production, but in a private scratch directory per process.
                *_durable_args("service"),
                log_format=None,
            ),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._log("service"),
        )
        self.procs.append(proc)
        target = address(port)
        wait_until(
            "service",
            lambda: grpc_serving(target, "aarm.v1.DecisionService"),
            proc=proc,
            timeout=30,
        )
        return proc, target

    def _ready(self, name: str, module: str, *args: str) -> tuple[subprocess.Popen[Any], str]:
        """Start ``python -m module``, which prints ``READY <port>`` once serving."""
        proc = subprocess.Popen(
            [PY, "-m", module, "--listen", "127.0.0.1:0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log(name),
            text=True,
        )
        self.procs.append(proc)
        return proc, address(read_ready(proc, name))

    def stub(self) -> tuple[subprocess.Popen[Any], str]:
        return self._ready("stub", "bench.stub_server", *_durable_args("stub"))

    def forward(self, opa_url: str) -> tuple[subprocess.Popen[Any], str]:
        return self._ready("forward", "bench.forward_floor", "--opa-url", opa_url)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        for f in self.logs:
            f.close()
        self.logs.clear()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.dirs.clear()


@contextlib.contextmanager
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.stop()


class LoadGen:
    """The load generator process, steered over its stdin/stdout."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [PY, "-m", "bench.load"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ask(self, **cmd: Any) -> Any:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("load generator died")
        answer = json.loads(line)
        if isinstance(answer, dict) and "error" in answer:
            raise RuntimeError(f"load generator: {answer['error']}")
        return answer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask(op="quit")
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()


# ---------------------------------------------------------------- statistics


def pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def summarize(runs: list[dict[str, Any]], lane: str) -> dict[str, Any]:
    """Merge the rounds of one lane at one load point."""
    lat = sorted(x for r in runs for x in r["lat_us"])
    count = sum(r["count"] for r in runs)
    elapsed = sum(r["elapsed"] for r in runs)
    clk = runs[0]["clk_tck"]
    ticks: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for r in runs:
        ticks.update(r["ticks"])
        kinds.update(r.get("error_kinds", {}))
    out: dict[str, Any] = {
        "count": count,
        "errors": sum(r["errors"] for r in runs),
        "error_kinds": dict(sorted(kinds.items())),
        "failed_closed": sum(r["failed_closed"] for r in runs),
        "seconds": round(elapsed, 3),
        "throughput_rps": round(count / elapsed, 1) if elapsed else 0.0,
        "p50_ms": pct(lat, 50) / 1e3,
        "p90_ms": pct(lat, 90) / 1e3,
        "p99_ms": pct(lat, 99) / 1e3,
        "p999_ms": pct(lat, 99.9) / 1e3,
        "max_ms": (lat[-1] / 1e3) if lat else float("nan"),
        "cpu_s": {k: v / clk for k, v in sorted(ticks.items())},
        "generator_cpu_share": round(sum(r["generator_cpu_s"] for r in runs) / elapsed, 3),
        # Cores busy with processes outside the benchmark (a noisy neighbour warning).
        "other_cores": round(ticks["other"] / clk / elapsed, 2) if elapsed else 0.0,
    }
    for key, role in (("service", SERVICE_ROLE.get(lane)), ("opa", OPA_ROLE.get(lane))):
        out[f"{key}_cpu_us_per_decision"] = (
            round(ticks[role] / clk / count * 1e6, 1) if role and count else None
        )
        out[f"{key}_sys_share"] = (
            round(ticks[f"{role}.sys"] / ticks[role], 2) if role and ticks[role] else None
        )
    if "offered_rate" in runs[0]:
        out["offered_rate"] = runs[0]["offered_rate"]
        out["send_lag_p99_us"] = max(r["send_lag_p99_us"] for r in runs)
    return out


def ratios(points: dict[str, dict[str, dict[str, Any]]], prefix: str) -> dict[str, float]:
    """decide / opa-direct (and stub / opa-direct) for latency and throughput."""
    out: dict[str, float] = {}
    for point, lanes in points.items():
        base = lanes.get("opa-direct")
        if not base:
            continue
        for lane, tag in (
            ("decide", "decide"),
            ("decide-stub-opa", "decide_stub_opa"),
            ("grpc-forward", "grpc_forward"),
        ):
            if lane not in lanes:
                continue
            cur = lanes[lane]
            for stat in ("p50", "p90", "p99", "p999"):
                if base[f"{stat}_ms"] > 0:
                    out[f"ratio_{stat}_{tag}_vs_opa_direct_{prefix}{point}"] = round(
                        cur[f"{stat}_ms"] / base[f"{stat}_ms"], 3
                    )
            if base["throughput_rps"] > 0:
                out[f"ratio_throughput_{tag}_vs_opa_direct_{prefix}{point}"] = round(
                    cur["throughput_rps"] / base["throughput_rps"], 3
                )
    return out


# ---------------------------------------------------------------- phases


def opa_floor(cases: list[Any], bundle: Path) -> dict[str, Any]:
    """``opa bench`` (eval only, prepared query, no HTTP) for each case's input."""
    per_case = {}
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        for case in cases:
            path = Path(tmp) / f"{case.name}.json"
            path.write_text(json.dumps(case.opa_input()))
            out = subprocess.run(
                [OPA, "bench", "-b", str(bundle), "-i", str(path), "-f", "json", QUERY],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                raise SystemExit(f"opa bench failed for {case.name}: {out.stderr[-500:]}")
            doc = json.loads(out.stdout)
            extra = doc.get("Extra", {})
            per_case[case.name] = {
                "ns_per_op": doc["T"] / doc["N"],
                "eval_p50_ns": extra.get("histogram_timer_rego_query_eval_ns_median"),
                "eval_p99_ns": extra.get("histogram_timer_rego_query_eval_ns_99%"),
                "allocs_per_op": doc["MemAllocs"] / doc["N"],
            }
    n = len(per_case)
    return {
        "cases": n,
        "mean_us_per_op": round(sum(c["ns_per_op"] for c in per_case.values()) / n / 1e3, 1),
        "mean_eval_p50_us": round(
            sum(c["eval_p50_ns"] or 0 for c in per_case.values()) / n / 1e3, 1
        ),
        "mean_eval_p99_us": round(
            sum(c["eval_p99_ns"] or 0 for c in per_case.values()) / n / 1e3, 1
        ),
        "max_us_per_op": round(max(c["ns_per_op"] for c in per_case.values()) / 1e3, 1),
        "per_case": per_case,
    }


def verify(gen: LoadGen, cases: list[Any], lanes: tuple[str, ...]) -> dict[str, Any]:
    """decide and opa-direct must agree on every verdict (and reason codes)."""
    got = gen.ask(op="verify")
    direct, decide = got["opa-direct"], got["decide"]
    mismatches = []
    for case, d, g in zip(cases, direct, decide, strict=True):
        if d != g or d.split(":")[0] != case.verdict:
            mismatches.append({"case": case.name, "expected": case.verdict, "opa": d, "decide": g})
    if mismatches:
        raise SystemExit(f"verdict check FAILED, not timing anything: {mismatches}")
    if "decide-stub-opa" in lanes:
        bad = [v for v in got["decide-stub-opa"] if not v.startswith("ALLOW:")]
        if bad:
            raise SystemExit(f"stub lane answered {bad[:3]}")
    if "grpc-forward" in got:  # verdicts only: the floor answers no reason codes
        fwd = [v.split(":")[0] for v in got["grpc-forward"]]
        if fwd != [d.split(":")[0] for d in direct]:
            raise SystemExit(f"grpc-forward verdicts differ from opa-direct: {fwd}")
    return {"cases": len(cases), "agree": True, "verdicts": dict(Counter(c.verdict for c in cases))}


def interleaved(
    gen: LoadGen,
    points: list[Any],
    lanes: tuple[str, ...],
    rounds: int,
    run_one: Callable[[str, Any], dict[str, Any]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every point runs every lane back to back; the lane order rotates per round."""
    raw: dict[Any, dict[str, list[dict[str, Any]]]] = {p: {ln: [] for ln in lanes} for p in points}
    for r in range(rounds):
        for i, point in enumerate(points):
            k = (r + i) % len(lanes)
            for lane in lanes[k:] + lanes[:k]:
                raw[point][lane].append(run_one(lane, point))
    return {
        str(p): {ln: summarize(runs, ln) for ln, runs in by_lane.items()}
        for p, by_lane in raw.items()
    }


def catalogue_variant(size: int, keep: set[str], rego: Path, dest: Path) -> Path:
    """A copy of the pack whose catalogue has ``size`` tools (keeping ``keep``)."""
    bundle = dest / f"rego-{size}"
    shutil.copytree(rego, bundle, ignore=shutil.ignore_patterns("*_test.rego"))
    data_path = bundle / "aarm" / "catalogue" / "data.json"
    data = json.loads(data_path.read_text())
    shipped: dict[str, Any] = data["tools"]
    names = sorted(keep) + sorted(n for n in shipped if n not in keep)
    tools = {n: shipped[n] for n in names[:size]}
    templates = list(shipped.values())
    i = 0
    while len(tools) < size:
        tools[f"synthetic_{i:05d}.op_{i % 7}"] = templates[i % len(templates)]
        i += 1
    data["tools"] = tools
    data_path.write_text(json.dumps(data))
    return bundle


# ---------------------------------------------------------------- profile


def profile(gen: LoadGen, lane: str, pid: int, seconds: float, stamp: str) -> dict[str, Any]:
    """py-spy (sampling, all threads, native frames) while ``lane`` runs at c=8."""
    pyspy = str(Path(PY).parent / "py-spy")
    out_path = RESULTS / f"profile-{lane}-{stamp}.txt"
    base = [pyspy, "record", "--pid", str(pid), "--duration", str(int(seconds))]
    base += ["--rate", "200", "--format", "raw", "--output", str(out_path)]
    # Python frames only: with --native, py-spy charges threads parked in the kernel
    # (eventfd_write, sendmsg) to the sample; the user/system split per decision comes
    # from /proc instead (``service_sys_share``).
    for extra in ([], ["--nonblocking"]):
        spy = subprocess.Popen(base + extra, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        if spy.poll() is None:
            break
    else:
        err = spy.stderr.read().decode() if spy.stderr else ""
        return {"available": False, "reason": f"py-spy failed: {err[-300:]}"}
    load = gen.ask(op="closed", lane=lane, concurrency=8, duration=seconds + 1)
    _, err_b = spy.communicate(timeout=60)
    if not out_path.exists():
        return {"available": False, "reason": f"py-spy wrote nothing: {err_b.decode()[-300:]}"}
    return {
        "available": True,
        "lane": lane,
        "file": str(out_path.relative_to(ROOT)),
        "pyspy_args": spy.args[1:],
        "throughput_rps_while_profiling": round(load["count"] / load["elapsed"], 1),
        **analyze_profile(out_path),
    }


def _frame_name(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")").rsplit(":", 1)[0]
    short = "/".join(loc.split("/")[-2:]) if loc else ""
    return f"{name} ({short})" if short else name


_BUCKETS = (
    ("aarm_pdp/opa/client.py", "OPA client"),
    ("aarm_pdp/opa/http.py", "OPA client"),
    ("aiohttp/", "OPA client"),
    ("yarl/", "OPA client"),
    ("multidict/", "OPA client"),
    ("aarm_pdp/receipts/", "receipts (canonicalize, sign, SQLite)"),
    ("rfc8785/", "receipts (canonicalize, sign, SQLite)"),
    ("sqlite3/", "receipts (canonicalize, sign, SQLite)"),
    ("aarm_pdp/observability/telemetry", "telemetry export"),
    ("concurrent/futures/thread.py", "executor thread parked in queue.get (not CPU)"),
    ("json/", "json encode/decode"),
    ("aarm_pdp/api/validation.py", "validation (to_action_request)"),
    ("aarm_pdp/analysis/", "analysis (input.analysis parsers)"),
    ("pglast/", "analysis (input.analysis parsers)"),
    ("bashlex/", "analysis (input.analysis parsers)"),
    ("aarm_pdp/decision/input.py", "build_input"),
    ("aarm_pdp/decision/result.py", "parse_result"),
    ("aarm_pdp/session/", "session context (prepare/commit)"),
    ("aarm_pdp/provenance/", "provenance"),
    ("aarm_pdp/drift/", "drift"),
    ("aarm_pdp/decision/metatools.py", "meta-tool resolution"),
    ("aarm_pdp/decision/engine.py", "engine (other)"),
    ("aarm_pdp/api/decision_service.py", "servicer (to_response, Decide)"),
    ("prometheus_client", "prometheus metrics"),
    ("uuid.py", "uuid4"),
    ("observability/logging.py", "logging/contextvars"),
    ("logging/__init__.py", "logging/contextvars"),
    ("google/protobuf", "protobuf"),
    ("grpc", "grpc (python/cython)"),
    ("asyncio", "asyncio event loop"),
)


_BLOCKING = frozenset(
    {
        *("epoll_wait", "epoll_pwait", "poll", "ppoll", "select", "pselect6", "nanosleep"),
        *("clock_nanosleep", "pthread_cond_wait", "pthread_cond_timedwait", "futex", "syscall"),
    }
)


def analyze_profile(path: Path) -> dict[str, Any]:
    """Self and inclusive shares by function; leaf-file buckets by component."""
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    bucket_c: Counter[str] = Counter()
    total = 0
    waiting = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1].split(" ")[0] in _BLOCKING:
            waiting += count  # a thread parked in a blocking syscall: not CPU
            continue
        total += count
        self_c[_frame_name(frames[-1])] += count
        for name in {_frame_name(f) for f in frames}:
            incl_c[name] += count
        # Charge the sample to the innermost frame that belongs to a known component.
        bucket = "other (native / interpreter)"
        for f in reversed(frames):
            hit = next((b for key, b in _BUCKETS if key in f), None)
            if hit:
                bucket = hit
                break
        bucket_c[bucket] += count

    def top(c: Counter[str], k: int) -> list[dict[str, Any]]:
        return [{"frame": f, "share": round(v / total, 3)} for f, v in c.most_common(k)]

    return {
        "samples": total,
        "samples_blocked_in_syscall_excluded": waiting,
        "by_component": top(bucket_c, 20),
        "top_self": top(self_c, 15),
        "top_inclusive_aarm_pdp": top(
            Counter(
                {k: v for k, v in incl_c.items() if "aarm_pdp" in k or "decision_service" in k}
            ),
            15,
        ),
    }


# ---------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    opa_version = subprocess.run([OPA, "version"], capture_output=True, text=True).stdout
    import grpc

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "opa": opa_version.splitlines()[0].split(":", 1)[1].strip() if opa_version else "?",
    }


def _f(x: Any, nd: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def table(res: dict[str, Any]) -> str:
    head = "| load | lane | n | thr/s | p50 ms | p90 ms | p99 ms | p99.9 ms | svc CPU µs/dec "
    head += "| OPA CPU µs/dec | gen CPU | other cores | err/fc |"
    lines = [head, "|" + "---|" * 13]
    sections = [("closed c=", res["closed"]), ("open ", res["open"])]
    for label, points in sections:
        for point, lanes in points.items():
            for lane in CLOSED_LANES:
                s = lanes.get(lane)
                if not s:
                    continue
                load = f"{label}{point}" + ("/s" if label == "open " else "")
                lines.append(
                    f"| {load} | {lane} | {s['count']} | {s['throughput_rps']:.0f} "
                    f"| {_f(s['p50_ms'])} | {_f(s['p90_ms'])} | {_f(s['p99_ms'])} "
                    f"| {_f(s['p999_ms'])} | {_f(s['service_cpu_us_per_decision'], 0)} "
                    f"| {_f(s['opa_cpu_us_per_decision'], 0)} "
                    f"| {s['generator_cpu_share'] * 100:.0f}% | {s['other_cores']:.2f} "
                    f"| {s['errors']}/{s['failed_closed']} |"
                )
    return "\n".join(lines)


def report(res: dict[str, Any]) -> str:
    out = [table(res), ""]
    noisy = [
        s["other_cores"]
        for section in ("closed", "open")
        for lanes in res[section].values()
        for s in lanes.values()
    ]
    if max(noisy) > NOISY_CORES:
        out.append(
            f"WARNING: other processes used up to {max(noisy):.2f} cores during a lane "
            "(column 'other cores'): this machine was not quiet, numbers are pessimistic."
        )
    fl = res["floor"]
    out.append(
        f"opa bench floor (eval only, {fl['cases']} inputs): mean {fl['mean_us_per_op']} µs/op, "
        f"mean eval p50 {fl['mean_eval_p50_us']} µs, p99 {fl['mean_eval_p99_us']} µs"
    )
    r = res["ratios"]
    out.append(
        "ratios decide/opa-direct: "
        + ", ".join(
            f"{k.removeprefix('ratio_')}={v}"
            for k, v in r.items()
            if "_decide_vs_" in k and ("closed_c" in k) and ("p90" not in k)
        )
    )
    out.append(
        "floor grpc-forward/opa-direct (bare Python gRPC front end, same OPA client): "
        + ", ".join(
            f"{k.removeprefix('ratio_')}={v}"
            for k, v in r.items()
            if "_grpc_forward_vs_" in k and ("p90" not in k) and ("p999" not in k)
        )
    )
    out.append(
        "issue 18 (each against a floor lane of this run: grpc-forward, opa-small; fresh "
        "sessions): " + ", ".join(f"{k}={v}" for k, v in res["headline"].items())
    )
    out.append("targets:")
    for name, t in res["targets"].items():
        mark = "MET " if t["met"] else "MISS"
        out.append(f"  [{mark}] {name}: {t['value']} (limit {t['op']} {t['limit']})")
    for name, sweep in res["sweeps"].items():
        if not sweep.get("available"):
            out.append(f"sweep {name}: not available ({sweep['reason']})")
            continue
        out.extend(SWEEP_REPORTS[name](sweep))
    if "analysis" in res:
        from bench import analysis_cost

        out.append(analysis_cost.summary_line(res["analysis"]))
    for lane, prof in res["profile"].items():
        if not prof.get("available"):
            out.append(f"profile {lane}: not available ({prof.get('reason')})")
            continue
        comps = ", ".join(f"{c['frame']} {c['share'] * 100:.0f}%" for c in prof["by_component"][:8])
        out.append(f"profile {lane} ({prof['samples']} samples, {prof['file']}): {comps}")
    return "\n".join(out)


def _report_catalogue(sweep: dict[str, Any]) -> list[str]:
    out = [f"sweep catalogue_size (closed c=8, {sweep['corpus']}):"]
    for size, lanes in sweep["points"].items():
        d, o = lanes["decide"], lanes["opa-direct"]
        out.append(
            f"  {size:>5} tools: decide p50 {d['p50_ms']:.2f} p99 {d['p99_ms']:.2f} ms "
            f"{d['throughput_rps']:.0f}/s | opa-direct p50 {o['p50_ms']:.2f} "
            f"p99 {o['p99_ms']:.2f} ms {o['throughput_rps']:.0f}/s"
        )
    return out


def _report_history(sweep: dict[str, Any]) -> list[str]:
    out = [
        f"sweep session_history (closed, {sweep['workers']} workers each in its own session, "
        f"{sweep['corpus']}; verdicts same as in a fresh session at every size; "
        f"pack copy with {len(sweep['raised_limits'])} session limits raised):"
    ]
    for size, lanes in sweep["points"].items():
        for label, group in ((f"{int(size):>5} prior", lanes), ("  (fresh)", lanes.get("fresh"))):
            if not group:
                continue
            row = [f"  {label}:"]
            for lane in HISTORY_LANES:
                s = group[lane]
                row.append(
                    f"{lane} p50 {s['p50_ms']:.2f} p99 {s['p99_ms']:.2f} ms "
                    f"{s['throughput_rps']:.0f}/s svc {_f(s['service_cpu_us_per_decision'], 0)} µs"
                )
            out.append(" ".join(row[:1]) + " " + " | ".join(row[1:]))
    out.append(
        "  ratios: each size against the fresh-session runs interleaved with it (rows '(fresh)')"
    )
    top = max(HISTORY_SIZES)
    r = sweep["ratios"]
    for lane, tag in (("decide", ""), ("decide-stub-opa", "decide_stub_opa_")):
        out.append(
            f"  {lane} {top}/0: p50 {r[f'ratio_p50_session_history_{tag}{top}_vs_0']} "
            f"p99 {r[f'ratio_p99_session_history_{tag}{top}_vs_0']} "
            f"throughput {r[f'ratio_throughput_session_history_{tag}{top}_vs_0']} "
            f"svc CPU {r.get(f'ratio_service_cpu_session_history_{tag}{top}_vs_0')}"
        )
    return out


def _report_memory(sweep: dict[str, Any]) -> list[str]:
    out = [
        f"sweep memory_per_100k_sessions: {sweep['mib_per_100k_sessions']} MiB per 100k "
        f"sessions ({sweep['bytes_per_session']} B/session; start + "
        f"{sweep['actions_per_session']} decided actions each; RSS {sweep['rss_before_mib']}"
        f" -> {sweep['rss_after_mib']} MiB)"
    ]
    sites = sweep["traced"]["top_sites"][:4]
    out.append(
        f"  heap per session (tracemalloc, {sweep['traced']['bytes_per_session']:.0f} B): "
        + ", ".join(f"{x['site']} {x['bytes_per_session']:.0f} B" for x in sites)
    )
    return out


SWEEP_REPORTS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "catalogue_size": _report_catalogue,
    "session_history": _report_history,
    "memory_per_100k_sessions": _report_memory,
}


def floor_ratios(closed: dict[str, dict[str, dict[str, Any]]]) -> dict[str, float]:
    """Issue 18's ratios to the floor lanes of the same run, at every concurrency.

    ``ratio_service_cpu_decide_vs_forward_c<N>`` (service CPU per decision, decide over
    grpc-forward), ``ratio_opa_cpu_pack_vs_small_c<N>`` (OPA CPU per decision,
    opa-direct over opa-small), ``ratio_p50_decide_vs_forward_c<N>`` and
    ``ratio_throughput_decide_vs_forward_c<N>``; the unsuffixed headline keys are
    c=8 for the CPU ratios (the load the issue measured them at), c=1 for p50 and
    c=32 for throughput.
    """
    out: dict[str, float] = {}

    def put(key: str, num: float | None, den: float | None) -> None:
        if num is not None and den:
            out[key] = round(num / den, 3)

    for c, lanes in closed.items():
        d, f = lanes.get("decide"), lanes.get("grpc-forward")
        o, sm = lanes.get("opa-direct"), lanes.get("opa-small")
        if d and f:
            put(
                f"ratio_service_cpu_decide_vs_forward_c{c}",
                d["service_cpu_us_per_decision"],
                f["service_cpu_us_per_decision"],
            )
            put(f"ratio_p50_decide_vs_forward_c{c}", d["p50_ms"], f["p50_ms"])
            put(
                f"ratio_throughput_decide_vs_forward_c{c}",
                d["throughput_rps"],
                f["throughput_rps"],
            )
        if o and sm:
            put(
                f"ratio_opa_cpu_pack_vs_small_c{c}",
                o["opa_cpu_us_per_decision"],
                sm["opa_cpu_us_per_decision"],
            )
    for key in ("ratio_service_cpu_decide_vs_forward", "ratio_opa_cpu_pack_vs_small"):
        if f"{key}_c8" in out:
            out[key] = out[f"{key}_c8"]
    return out


HEADLINE = (
    # key, limit, op: issue 18's targets, all from one run
    ("ratio_service_cpu_decide_vs_forward", TARGET_SERVICE_CPU_VS_FORWARD, "<="),
    ("ratio_opa_cpu_pack_vs_small", TARGET_OPA_CPU_PACK_VS_SMALL, "<="),
    ("ratio_p50_decide_vs_forward_c1", TARGET_P50_VS_FORWARD_C1, "<="),
    ("ratio_throughput_decide_vs_forward_c32", TARGET_THROUGHPUT_VS_FORWARD_C32, ">="),
    ("ratio_p50_session_history_10000_vs_0", TARGET_HISTORY_RATIO, "<="),
    ("ratio_service_cpu_session_history_10000_vs_0", TARGET_HISTORY_RATIO, "<="),
    ("session_memory_mib_per_100k", TARGET_MIB_PER_100K_ISSUE18, "<="),
)


def headline(res: dict[str, Any]) -> dict[str, Any]:
    """Issue 18's numbers of this run (None where the run did not measure one: the
    history and memory sweeps run in full mode only)."""
    r = res["ratios"]
    mem = res.get("sweeps", {}).get("memory_per_100k_sessions", {})
    out: dict[str, Any] = {key: r.get(key) for key, _, _ in HEADLINE}
    out["session_memory_mib_per_100k"] = (
        mem.get("mib_per_100k_sessions") if mem.get("available") else None
    )
    return out


def targets(res: dict[str, Any]) -> dict[str, Any]:
    r = res["ratios"]
    stub_cpu = [
        res["closed"][str(c)]["decide-stub-opa"]["service_cpu_us_per_decision"] for c in CONCURRENCY
    ]

    def t(value: float, op: str, limit: float) -> dict[str, Any]:
        met = value <= limit if op == "<=" else value >= limit
        return {"value": value, "op": op, "limit": limit, "met": met}

    return {
        "p50 decide/opa-direct at c=8": t(
            r["ratio_p50_decide_vs_opa_direct_closed_c8"], "<=", TARGET_P50_C8
        ),
        "p99 decide/opa-direct at c=8": t(
            r["ratio_p99_decide_vs_opa_direct_closed_c8"], "<=", TARGET_P99_C8
        ),
        "throughput decide/opa-direct at c=32": t(
            r["ratio_throughput_decide_vs_opa_direct_closed_c32"], ">=", TARGET_THROUGHPUT_C32
        ),
        "stub-lane service CPU µs/decision (worst of c=1,8,32)": t(
            max(x for x in stub_cpu if x is not None), "<=", TARGET_STUB_CPU_US
        ),
        **sweep_targets(res.get("sweeps", {}), t),
        **{
            f"issue 18: {key}": t(res["headline"][key], op, limit)
            for key, limit, op in HEADLINE
            if res.get("headline", {}).get(key) is not None
        },
    }


def sweep_targets(
    sweeps: dict[str, Any], t: Callable[[float, str, float], dict[str, Any]]
) -> dict[str, Any]:
    """Targets of the sweeps that ran (full mode)."""
    out: dict[str, Any] = {}
    top = max(HISTORY_SIZES)
    hist = sweeps.get("session_history", {})
    if hist.get("available"):
        r = hist["ratios"]
        for stat, lane, tag in (
            ("p50", "decide", ""),
            ("p99", "decide", ""),
            ("p50", "decide-stub-opa", "decide_stub_opa_"),
        ):
            out[f"session history {stat} {top}/0 prior actions ({lane}, c=8)"] = t(
                r[f"ratio_{stat}_session_history_{tag}{top}_vs_0"], "<=", TARGET_HISTORY_RATIO
            )
    mem = sweeps.get("memory_per_100k_sessions", {})
    if mem.get("available"):
        out["session memory MiB per 100k sessions"] = t(
            mem["mib_per_100k_sessions"], "<=", TARGET_MIB_PER_100K_SESSIONS
        )
    return out


# ---------------------------------------------------------------- main


def not_yet(reason: str) -> Callable[..., dict[str, Any]]:
    def run(*_args: Any) -> dict[str, Any]:
        return {"available": False, "reason": reason}

    return run


def catalogue_sweep(gen: LoadGen, mode: Mode, cases: list[Any], rego: Path) -> dict[str, Any]:
    """Decide and opa-direct at c=8 with 10, shipped, 100 and 1000 catalogued tools."""
    from bench.corpus import tools_used

    shipped = len(json.loads((rego / "aarm" / "catalogue" / "data.json").read_text())["tools"])
    points: dict[str, Any] = {}
    keep = tools_used(tuple(cases))
    with tempfile.TemporaryDirectory(prefix="bench-catalogue-") as tmp:
        for size in sorted({10, shipped, 100, 1000}):
            bundle = catalogue_variant(size, keep, rego, Path(tmp))
            with stack() as st:
                opa_p, opa_url = st.opa(bundle)
                svc_p, svc = st.service(st.local_opa_url(opa_p, opa_url))
                gen.ask(
                    op="setup",
                    targets={"opa-direct": opa_url + ENTRYPOINT_PATH, "decide": f"grpc://{svc}"},
                    cases=[c.name for c in cases],
                    pids={"opa": opa_p.pid, "service": svc_p.pid, "generator": gen.pid},
                )
                verify(gen, cases, ("opa-direct", "decide"))
                for lane in ("opa-direct", "decide"):
                    gen.ask(op="closed", lane=lane, concurrency=8, duration=1.0)
                res = interleaved(
                    gen,
                    [8],
                    ("opa-direct", "decide"),
                    SWEEP_ROUNDS,
                    lambda lane, c: gen.ask(
                        op="closed", lane=lane, concurrency=c, duration=SWEEP_SECONDS
                    ),
                )
                points[str(size)] = res["8"]
    return {
        "available": True,
        "corpus": f"{len(cases)} cases, one per verdict",
        "shipped_tools": shipped,
        "points": points,
        "ratios": ratios(points, "tools_"),
    }


def history_variant(rego: Path, dest: Path) -> tuple[Path, list[str]]:
    """A copy of the pack whose session limits cannot turn a long session into DENY.

    Raises, in ``aarm/config/data.json``, every chain-length limit (the global one and
    each intent class's ``max_chain_length``) and every rate limit to ``HISTORY_LIMIT``.
    Returns the bundle and the JSON paths it changed.
    """
    bundle = dest / "rego-history"
    shutil.copytree(rego, bundle, ignore=shutil.ignore_patterns("*_test.rego"))
    data_path = bundle / "aarm" / "config" / "data.json"
    data = json.loads(data_path.read_text())
    raised: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{path}.{key}"
                if "chain_length" in key and isinstance(value, int):
                    node[key] = HISTORY_LIMIT
                    raised.append(f"{here}: {value}")
                elif key == "rate_limits" and isinstance(value, list):
                    for i, rule in enumerate(value):
                        raised.append(f"{here}[{i}].limit: {rule['limit']}")
                        rule["limit"] = HISTORY_LIMIT
                else:
                    walk(value, here)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")

    walk(data, "config")
    if not any(".chain_length_limit" in r for r in raised) or not any(
        "max_chain_length" in r for r in raised
    ):
        raise SystemExit(f"session-history variant: limits not found (raised {raised})")
    data_path.write_text(json.dumps(data))
    return bundle, raised


def history_plan(size: int, ids: Iterator[int]) -> tuple[list[int], list[list[list[Any]]]]:
    """The workers' sessions and, per round, each worker's ``[session, requests]`` steps.

    Every size gets the same plan: one session per worker (to be filled with ``size``
    actions first; none at 0), which takes every timed request of that worker,
    ``HISTORY_PER_WORKER_ROUND`` per round for ``HISTORY_ROUNDS`` rounds. So every size,
    0 included, times the same number of decisions per session (240), and the timed
    Decides of size N see N to N + 240 prior actions.
    """
    pool = [next(ids) for _ in range(HISTORY_WORKERS)]
    plans = [[[[sid, HISTORY_PER_WORKER_ROUND]] for sid in pool] for _ in range(HISTORY_ROUNDS)]
    return pool, plans


def session_history_sweep(gen: LoadGen, mode: Mode, cases: list[Any], rego: Path) -> dict[str, Any]:
    """Decide at c=8 in sessions already holding 0, 100, 1000 and 10000 decided actions.

    One fresh OPA (a pack copy with the session limits raised), service and stub
    service. For each size, 8 sessions are filled with ``size`` benign reads through
    Decide (lane by lane; every fill answer must be ALLOW), then the corpus cases are
    timed in them, 8 workers, each in its own session for all rounds, lanes interleaved,
    each round back to back with the same plan in 8 fresh sessions (0 prior actions).
    Fair by construction: the same number of timed decisions per session at every size
    and in the fresh sessions (``history_plan``), and no DEFER case among the timed ones
    (a deferral nobody resolves stays in the session and in every later input: sessions
    that took 240 timed Decides carried ~48 of them, which OPA had to decode). The
    measured cases must get the same verdict and reason codes as in a fresh session,
    before and after the timed runs, in the filled and in the fresh sessions.
    """
    from bench.corpus import CORPUS

    by_name = {c.name: c for c in CORPUS}
    cases = [by_name[n] for n in HISTORY_TIMED]
    ids = itertools.count(900_000_000_000)
    points: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    fills: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        bundle, raised = history_variant(rego, Path(tmp))
        with stack() as st:
            opa_p, opa_url = st.opa(bundle)
            svc_p, svc = st.service(st.local_opa_url(opa_p, opa_url))
            stub_p, stub = st.stub()
            gen.ask(
                op="setup",
                targets={"decide": f"grpc://{svc}", "decide-stub-opa": f"grpc://{stub}"},
                cases=[c.name for c in cases],
                pids={
                    "opa": opa_p.pid,
                    "service": svc_p.pid,
                    "stub": stub_p.pid,
                    "generator": gen.pid,
                },
            )
            reference = gen.ask(op="verdicts_in", lane="decide", session=None)["verdicts"]
            wrong = [
                (c.name, v)
                for c, v in zip(cases, reference, strict=True)
                if v.split(":")[0] != c.verdict
            ]
            if wrong:
                return {"available": False, "reason": f"fresh-session verdicts differ: {wrong}"}
            for lane in HISTORY_LANES:
                gen.ask(op="closed", lane=lane, concurrency=HISTORY_WORKERS, duration=1.0)
            for size in HISTORY_SIZES:
                flat, plans = history_plan(size, ids)
                if size:
                    fills[str(size)] = {}
                    for lane in HISTORY_LANES:
                        fill = gen.ask(
                            op="populate",
                            lane=lane,
                            sessions=flat,
                            actions=size,
                            cases=list(HISTORY_FILL),
                            concurrency=HISTORY_WORKERS,
                        )
                        fills[str(size)][lane] = fill
                        bad = {
                            v: n for v, n in fill["verdicts"].items() if not v.startswith("ALLOW:")
                        }
                        if fill["errors"] or bad or fill["count"] != size * len(flat):
                            return {
                                "available": False,
                                "reason": f"filling {lane} sessions to {size} actions: "
                                f"{fill['errors']} errors, non-ALLOW {bad}",
                                "fills": fills,
                            }
                before = gen.ask(op="verdicts_in", lane="decide", session=flat[0], repeat=2)
                raw: dict[str, list[dict[str, Any]]] = {ln: [] for ln in HISTORY_LANES}
                # Each size > 0 is timed back to back with fresh sessions (the 0 plan), order
                # alternating per round, so its ratio compares runs seconds apart, not runs
                # minutes apart on a shared machine whose speed drifts by more than 10 %.
                fresh_raw: dict[str, list[dict[str, Any]]] = {ln: [] for ln in HISTORY_LANES}
                fresh_pool, fresh_plans = history_plan(0, ids)
                for r, plan in enumerate(plans):
                    k = (r + HISTORY_SIZES.index(size)) % len(HISTORY_LANES)
                    for lane in HISTORY_LANES[k:] + HISTORY_LANES[:k]:
                        pair = [(raw, plan), (fresh_raw, fresh_plans[r])] if size else [(raw, plan)]
                        for into, p in pair if r % 2 == 0 else pair[::-1]:
                            into[lane].append(gen.ask(op="in_sessions", lane=lane, plan=p))
                after = gen.ask(op="verdicts_in", lane="decide", session=flat[-1], repeat=1)
                after_fresh = gen.ask(
                    op="verdicts_in", lane="decide", session=fresh_pool[-1], repeat=1
                )
                same = (
                    before["verdicts"] == reference * 2
                    and after["verdicts"] == reference
                    and (not size or after_fresh["verdicts"] == reference)
                )
                checks[str(size)] = {
                    "same_as_fresh_session": same,
                    "before": before["verdicts"],
                    "after": after["verdicts"],
                    "after_in_fresh_sessions": after_fresh["verdicts"] if size else None,
                }
                if not same:
                    return {
                        "available": False,
                        "reason": f"measured verdicts changed at {size} prior actions",
                        "reference": reference,
                        "checks": checks,
                    }
                points[str(size)] = {ln: summarize(runs, ln) for ln, runs in raw.items()}
                if size:
                    points[str(size)]["fresh"] = {
                        ln: summarize(runs, ln) for ln, runs in fresh_raw.items()
                    }
                timed = HISTORY_PER_WORKER_ROUND * HISTORY_ROUNDS
                points[str(size)]["history"] = {
                    "prior_actions": size,
                    "sessions": len(flat),
                    "timed_per_session": timed,
                    "prior_range": [size, size + timed],
                }
    out: dict[str, float] = {}
    for size in HISTORY_SIZES[1:]:
        cur = points[str(size)]
        for lane, tag in (("decide", ""), ("decide-stub-opa", "decide_stub_opa_")):
            b, c = cur["fresh"][lane], cur[lane]  # the fresh-session runs interleaved with it
            for stat in ("p50", "p99"):
                if b[f"{stat}_ms"] > 0:
                    out[f"ratio_{stat}_session_history_{tag}{size}_vs_0"] = round(
                        c[f"{stat}_ms"] / b[f"{stat}_ms"], 3
                    )
            if b["throughput_rps"] > 0:
                out[f"ratio_throughput_session_history_{tag}{size}_vs_0"] = round(
                    c["throughput_rps"] / b["throughput_rps"], 3
                )
            if b["service_cpu_us_per_decision"] and c["service_cpu_us_per_decision"]:
                out[f"ratio_service_cpu_session_history_{tag}{size}_vs_0"] = round(
                    c["service_cpu_us_per_decision"] / b["service_cpu_us_per_decision"], 3
                )
    return {
        "available": True,
        "corpus": f"{len(cases)} cases, one per verdict but DEFER ({', '.join(HISTORY_TIMED)})",
        "fair": "same timed decisions per session at every size and fresh; no DEFER timed",
        "timed_per_session": HISTORY_PER_WORKER_ROUND * HISTORY_ROUNDS,
        "fill_cases": list(HISTORY_FILL),
        "raised_limits": raised,
        "workers": HISTORY_WORKERS,
        "timed_per_worker_per_round": HISTORY_PER_WORKER_ROUND,
        "rounds": HISTORY_ROUNDS,
        "reference_verdicts": reference,
        "fills": fills,
        "checks": checks,
        "points": points,
        "ratios": out,
    }


def memory_sweep(_gen: LoadGen, _mode: Mode, _cases: list[Any], rego: Path) -> dict[str, Any]:
    """RSS growth of 100000 sessions (start + 5 decided actions) in a fresh process."""
    run = subprocess.run(
        [
            *(PY, "-m", "bench.session_memory"),
            *("--sessions", str(MEMORY_SESSIONS), "--bundle", str(rego)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if run.returncode != 0:
        return {"available": False, "reason": f"session_memory failed: {run.stderr[-500:]}"}
    return {"available": True, **json.loads(run.stdout)}


def analysis_step(mode: Mode) -> dict[str, Any]:
    """µs per decision of input.analysis over the evasion corpus (bench/analysis_cost.py).

    Measured in this process, after the load lanes (nothing else of the bench runs): the
    same pure call the engine makes before each query, best of a few rounds.
    """
    from bench import analysis_cost

    return analysis_cost.measure(rounds=7 if mode.sweeps else 3)


# Sweeps: name -> runner. A sweep that needs something the service does not have yet
# says so instead of inventing numbers; wire its runner in when the feature lands.
SWEEPS: dict[str, Callable[..., dict[str, Any]]] = {
    "catalogue_size": catalogue_sweep,
    "session_history": session_history_sweep,
    "memory_per_100k_sessions": memory_sweep,
}


def main() -> int:
    from bench.corpus import CORPUS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mode", choices=sorted(MODES), default="quick")
    args = p.parse_args()
    mode = MODES[args.mode]
    began = time.monotonic()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not os.access(OPA, os.X_OK):
        raise SystemExit(f"{OPA} missing: run `make setup`")

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {msg}", file=sys.stderr, flush=True)

    cases = list(CORPUS)
    # Snapshot the pack: every phase of the run sees the same policy even if rego/ is
    # being edited meanwhile.
    snapshot = Path(tempfile.mkdtemp(prefix="bench-rego-"))
    rego = snapshot / "rego"
    shutil.copytree(REGO, rego)
    try:
        return _run(mode, began, stamp, cases, rego, log)
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)


def _run(
    mode: Mode,
    began: float,
    stamp: str,
    cases: list[Any],
    rego: Path,
    log: Callable[[str], None],
) -> int:
    from bench.corpus import VERDICT_CASES

    res: dict[str, Any] = {
        "mode": mode.name,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "config": {
            "corpus_cases": len(cases),
            "concurrency": list(CONCURRENCY),
            "rounds": mode.rounds,
            "closed_seconds_per_run": mode.closed_seconds,
            "open_seconds_per_run": mode.open_seconds,
            "open_rounds": mode.open_rounds,
            "open_fractions_of_decide_c32": list(mode.open_fractions),
            "opa_flags": list(OPA_FLAGS),
            "opa_env": dict(OPA_ENV),
            "service_to_opa": OPA_TRANSPORT,
        },
    }
    res["policy_revision"] = json.loads((rego / ".manifest").read_text()).get("revision")
    gen = LoadGen()
    try:
        with stack() as st:
            opa_p, opa_url = st.opa(rego)
            small_p, small_url = st.opa(SMALL_POLICY)
            local = st.local_opa_url(opa_p, opa_url)
            svc_p, svc = st.service(local)
            stub_p, stub = st.stub()
            fwd_p, fwd = st.forward(local)
            pids = {
                "opa": opa_p.pid,
                "opa_small": small_p.pid,
                "service": svc_p.pid,
                "stub": stub_p.pid,
                "forward": fwd_p.pid,
            }
            res["pids"] = pids
            gen.ask(
                op="setup",
                targets={
                    "opa-direct": opa_url + ENTRYPOINT_PATH,
                    "decide": f"grpc://{svc}",
                    "decide-stub-opa": f"grpc://{stub}",
                    "grpc-forward": f"grpc://{fwd}",
                    "opa-small": small_url + SMALL_PATH,
                },
                cases=[c.name for c in cases],
                pids={**pids, "generator": gen.pid},
            )
            log("verdict agreement check")
            res["verify"] = verify(gen, cases, LANES)
            log("opa bench floor")
            res["floor"] = opa_floor(cases if mode.floor_all_cases else list(VERDICT_CASES), rego)
            for lane in CLOSED_LANES:
                gen.ask(op="closed", lane=lane, concurrency=8, duration=mode.warmup_seconds)
            log("closed loop")
            res["closed"] = interleaved(
                gen,
                list(CONCURRENCY),
                CLOSED_LANES,
                mode.rounds,
                lambda lane, c: gen.ask(
                    op="closed", lane=lane, concurrency=c, duration=mode.closed_seconds
                ),
            )
            cap = res["closed"]["32"]["decide"]["throughput_rps"]
            rates = [max(10, int(round(cap * f, -1))) for f in mode.open_fractions]
            log(f"open loop at {rates}/s")
            res["open"] = interleaved(
                gen,
                rates,
                LANES,
                mode.open_rounds,
                lambda lane, r: gen.ask(op="open", lane=lane, rate=r, duration=mode.open_seconds),
            )
            log("profile")
            res["profile"] = {
                "decide-stub-opa": profile(
                    gen, "decide-stub-opa", stub_p.pid, mode.profile_seconds, stamp
                )
            }
            if mode.profile_decide_lane:
                res["profile"]["decide"] = profile(
                    gen, "decide", svc_p.pid, mode.profile_seconds, stamp
                )
        res["sweeps"] = {}
        for name, sweep in SWEEPS.items():
            if not mode.sweeps:
                res["sweeps"][name] = {"available": False, "reason": "full mode only"}
                continue
            log(f"sweep {name}")
            res["sweeps"][name] = sweep(gen, mode, list(VERDICT_CASES), rego)
    finally:
        gen.close()
    log("analysis step cost")
    res["analysis"] = analysis_step(mode)
    res["ratios"] = {
        **ratios(res["closed"], "closed_c"),
        **ratios(res["open"], "open_rate"),
    }
    r = res["ratios"]
    r["ratio_p50_decide_vs_opa_direct"] = r["ratio_p50_decide_vs_opa_direct_closed_c8"]
    r["ratio_p99_decide_vs_opa_direct"] = r["ratio_p99_decide_vs_opa_direct_closed_c8"]
    r["ratio_throughput_decide_vs_opa_direct"] = r[
        "ratio_throughput_decide_vs_opa_direct_closed_c32"
    ]
    floor_us = res["floor"]["mean_eval_p50_us"]
    if floor_us:
        r["ratio_p50_opa_direct_c1_vs_opa_bench_floor"] = round(
            res["closed"]["1"]["opa-direct"]["p50_ms"] * 1e3 / floor_us, 2
        )
        r["ratio_p50_decide_c1_vs_opa_bench_floor"] = round(
            res["closed"]["1"]["decide"]["p50_ms"] * 1e3 / floor_us, 2
        )
    for sweep in res["sweeps"].values():
        if sweep.get("available"):
            r.update(sweep.get("ratios", {}))
    r.update(floor_ratios(res["closed"]))
    res["headline"] = headline(res)
    res["session_memory_mib_per_100k"] = res["headline"]["session_memory_mib_per_100k"]
    res["targets"] = targets(res)
    res["elapsed_seconds"] = round(time.monotonic() - began, 1)
    text = report(res)
    res["table"] = table(res)
    out = RESULTS / f"bench-{mode.name}-{stamp}.json"
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    shutil.copyfile(out, RESULTS / f"latest-{mode.name}.json")
    m = res["machine"]
    print(
        f"\naarm-pdp bench ({mode.name}) on {m['nproc']}x {m['cpu_model']}, "
        f"python {m['python']}, grpcio {m['grpcio']}, opa {m['opa']}; "
        f"{len(cases)} requests, all 5 verdicts, decide == opa-direct on every one\n"
    )
    print(text)
    print(f"\nwrote {out.relative_to(ROOT)} in {res['elapsed_seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
