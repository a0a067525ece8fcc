"""The managed OPA is spawned fork-safely: restarted 50 times under load, no child aborts.

A child started with ``preexec_fn`` after gRPC's threads run used to abort now and then
(status -6, gRPC's fork handler: "epoll_wait: Bad file descriptor"). The launcher sets
the parent-death signal without Python code between fork and exec.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
from aarm.v1 import decision_pb2 as D
from aarm_pdp.opa.port import PolicyEngine

from tests.support.messages import decide_request
from tests.support.service import running, service_config

pytestmark = pytest.mark.integration

RESTARTS = 50


@pytest.mark.timeout(400)
async def test_fifty_restarts_under_load_no_aborted_child(opa_binary: str) -> None:
    cfg = service_config(opa_binary)
    async with running(cfg) as (app, clients):
        sidecar = app.sidecar
        assert sidecar is not None
        stop = asyncio.Event()
        seen: dict[str, int] = {}

        async def load() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                req = decide_request("db", "query", {"table": "t", "limit": 1})
                req.identity.session_id = f"restart-{i % 16}"
                resp = await clients.decide.Decide(req, timeout=5)
                key = D.Decision.Name(resp.decision) + ":" + resp.reasons[0].code
                seen[key] = seen.get(key, 0) + 1

        workers = [asyncio.create_task(load()) for _ in range(4)]
        try:
            for _ in range(RESTARTS):
                pid = await _wait_for_pid(sidecar)
                os.kill(pid, signal.SIGKILL)
                await _wait_until(lambda pid=pid: sidecar.pid not in (None, pid), 30)  # type: ignore[misc]
                await _wait_healthy(app.policy)  # ready again before the next kill
        finally:
            stop.set()
            await asyncio.gather(*workers)
        await _wait_for_pid(sidecar)

    assert len(sidecar.exit_codes) >= RESTARTS
    assert sidecar.exit_codes.count(-signal.SIGKILL) == len(sidecar.exit_codes), sidecar.exit_codes
    # Every answer is a real decision or a reasoned fail-closed DENY; none was lost.
    assert seen.get("DECISION_ALLOW:catalogued", 0) > 0
    allowed = {"DECISION_ALLOW:catalogued", "DECISION_DENY:opa_unavailable"}
    assert set(seen) <= allowed, seen


async def _wait_healthy(policy: PolicyEngine) -> None:
    deadline = time.monotonic() + 30
    while not await policy.healthy():
        assert time.monotonic() < deadline, "opa not healthy again"
        await asyncio.sleep(0.02)


async def _wait_for_pid(sidecar: object) -> int:
    await _wait_until(lambda: getattr(sidecar, "pid", None) is not None, 30)
    pid = getattr(sidecar, "pid", None)
    assert isinstance(pid, int)
    return pid


async def _wait_until(cond: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_child_dies_with_its_parent_even_by_sigkill(tmp_path: object) -> None:
    """A parent that spawns through the launcher and is SIGKILLed takes the child along."""
    code = (
        "import subprocess, sys, time\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from aarm_pdp.opa.sidecar import launcher_argv\n"
        "p = subprocess.Popen(launcher_argv(['/bin/sleep', '60']))\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    service_dir = os.path.join(os.path.dirname(__file__), "..", "..", "service")
    parent = subprocess.Popen(
        [sys.executable, "-c", code, service_dir], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while _comm(child) != "sleep":  # the launcher has exec'd into the child
            assert time.monotonic() < deadline, _comm(child)
            time.sleep(0.02)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child):
            assert time.monotonic() < deadline, "child outlived its SIGKILLed parent"
            time.sleep(0.02)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False
