"""`aarm-pdp serve --config deploy/config.example.yaml` alone serves a decision."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from aarm.v1 import decision_pb2, decision_pb2_grpc

from tests.support.ports import address, free_port
from tests.support.processes import grpc_serving, wait_serving

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
_SERVE = (sys.executable, "-m", "aarm_pdp", "serve")


def test_serves_a_decision_from_the_example_file_alone(tmp_path: Path) -> None:
    # The example verbatim, in a deploy/ beside a rego/ as in the checkout; only the two
    # ports are made free ones (parallel runs), so its var/ is the test's own.
    (tmp_path / "deploy").mkdir()
    (tmp_path / "rego").symlink_to(ROOT / "rego")
    port, mport = free_port(), free_port()
    text = (ROOT / "deploy" / "config.example.yaml").read_text()
    text = re.sub(r'listen: "127\.0\.0\.1:50051"', f'listen: "{address(port)}"', text)
    text = re.sub(r'listen: "127\.0\.0\.1:9464"', f'listen: "{address(mport)}"', text)
    config = tmp_path / "deploy" / "config.yaml"
    config.write_text(text)
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [*_SERVE, "--config", str(config)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_serving(address(port), timeout=60, proc=proc)
        assert grpc_serving(address(port), "aarm.liveness")  # what the liveness probe asks
        for name in ("aarm.liveness", "aarm.v1.DecisionService"):  # the exec probes
            probe = subprocess.run(
                [*_SERVE[:3], "health", "--config", str(config), "--service", name],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert probe.returncode == 0 and "SERVING" in probe.stdout, probe
        token = (tmp_path / "var" / "dev-token").read_text().strip()
        with grpc.insecure_channel(address(port)) as ch:
            resp = decision_pb2_grpc.DecisionServiceStub(ch).Decide(
                decision_pb2.DecideRequest(
                    identity=decision_pb2.Identity(
                        human="alice@acme.example", agent="agent-7", session_id="s-1"
                    ),
                    action=decision_pb2.Action(tool="database", operation="drop"),
                ),
                timeout=10,
                metadata=(("authorization", f"Bearer {token}"),),
            )
        assert resp.decision_id
        assert resp.decision == decision_pb2.DECISION_DENY
        assert (tmp_path / "var" / "receipts.db").is_file()
        assert (tmp_path / "var" / "keys").is_dir()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    lines = (tmp_path / "serve.log").read_text().splitlines()
    # Not a terminal: JSON lines, UTC RFC 3339 with milliseconds.
    ours = [line for line in lines if line.startswith('{"time"')]
    assert len(ours) >= 3, lines[:5]  # the service's own lines (OPA writes its own format)
    assert re.search(r'"time": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"', ours[0]), ours[0]
