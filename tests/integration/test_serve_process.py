"""`aarm-pdp serve` as users run it: a real process, real ports, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import POLICIES, ROOT

pytestmark = pytest.mark.integration
GRPCURL = ROOT / "bin" / "grpcurl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_cmd(port: int, mport: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "aarm_pdp",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--metrics-listen",
        f"127.0.0.1:{mport}",
        "--log-format",
        "text",
        *extra,
    ]


def _wait_serving(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise AssertionError("service never became SERVING")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(x) for x in out.stdout.split()]


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port, mport = _free_port(), _free_port()
    proc = subprocess.Popen(
        _serve_cmd(port, mport), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_serving(port)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_grpcurl_with_reflection(served: tuple[subprocess.Popen[str], int]) -> None:
    _, port = served
    listing = subprocess.run(
        [str(GRPCURL), "-plaintext", f"127.0.0.1:{port}", "list"],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    assert "aarm.v1.DecisionService" in listing
    assert "grpc.health.v1.Health" in listing
    body = {
        "identity": {"human": "alice@acme.example", "agent": "agent-7", "sessionId": "s-1"},
        "action": {
            "tool": "database",
            "operation": "drop",
            "parameters": {"database": "production"},
        },
    }
    out = subprocess.run(
        [
            str(GRPCURL),
            "-plaintext",
            "-d",
            json.dumps(body),
            f"127.0.0.1:{port}",
            "aarm.v1.DecisionService/Decide",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    resp = json.loads(out)
    assert resp["decision"] == "DECISION_DENY"
    assert resp["reasons"][0]["rule_id"].startswith("aarm.forbidden.")


def test_sigterm_drains_and_stops_opa(served: tuple[subprocess.Popen[str], int]) -> None:
    proc, _port = served
    opa_children = _children(proc.pid)
    assert opa_children, "managed OPA child not found"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    for pid in opa_children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert proc.stdout is not None
    log = proc.stdout.read()
    assert "stopping: draining" in log and "stopped" in log


def test_syntax_error_policy_exits_nonzero_with_reason() -> None:
    port, mport = _free_port(), _free_port()
    proc = subprocess.run(
        _serve_cmd(port, mport, "--policy", str(POLICIES / "syntax_error")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "not ready" in proc.stderr
    assert "rego_parse_error" in proc.stderr


def test_bad_config_lists_every_problem(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "aarm_pdp",
            "serve",
            "--listen",
            "nope",
            "--metrics-listen",
            "x",
            "--policy",
            str(tmp_path / "missing"),
            "--opa-timeout",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    for fragment in ("server.listen", "metrics.listen", "does not exist", "opa.timeout_seconds"):
        assert fragment in proc.stderr
