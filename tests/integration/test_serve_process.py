"""`aarm-pdp serve` as users run it: a real process, real ports, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import BIN, POLICIES
from tests.support.ports import address, free_port
from tests.support.principals import PLATFORM_TOKEN
from tests.support.processes import children, serve_command, wait_serving

pytestmark = pytest.mark.integration
GRPCURL = BIN / "grpcurl"


def _private_stores(directory: Path) -> list[str]:
    """Receipts, keys and telemetry of a test's own: never the checkout's var/."""
    return [
        "--receipts",
        str(directory / "receipts.db"),
        "--key-dir",
        str(directory / "keys"),
        "--telemetry-file",
        "",
    ]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port, mport = free_port(), free_port()
    proc = subprocess.Popen(
        serve_command(port, *_private_stores(tmp_path), metrics_port=mport),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_serving(address(port), timeout=30)
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
    decide = [
        str(GRPCURL),
        "-plaintext",
        "-d",
        json.dumps(body),
        f"127.0.0.1:{port}",
        "aarm.v1.DecisionService/Decide",
    ]
    refused = subprocess.run(decide, capture_output=True, text=True, timeout=20)
    assert refused.returncode != 0
    assert "Unauthenticated" in refused.stderr
    out = subprocess.run(
        [*decide[:1], "-H", f"authorization: Bearer {PLATFORM_TOKEN}", *decide[1:]],
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
    opa_children = [pid for pid, _ in children(proc.pid)]
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
    port, mport = free_port(), free_port()
    proc = subprocess.run(
        serve_command(port, "--policy", str(POLICIES / "syntax_error"), metrics_port=mport),
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


def test_dev_principal_token_file_and_readme_header(tmp_path: Path) -> None:
    """No principals: a development principal on loopback, its token in a 0600 file."""
    port, mport = free_port(), free_port()
    token_file = tmp_path / "var" / "dev-token"
    cmd = serve_command(
        port, "--dev-token-file", str(token_file), *_private_stores(tmp_path), metrics_port=mport
    )
    at = cmd.index("--principals")
    del cmd[at : at + 2]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_serving(f"127.0.0.1:{port}", proc=proc)
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        body = {
            "identity": {"human": "alice@acme.example", "agent": "agent-7", "sessionId": "s-1"},
            "action": {"tool": "db", "operation": "query", "parameters": {"limit": 10}},
        }
        out = subprocess.run(
            [
                str(GRPCURL),
                "-plaintext",
                "-H",
                f"authorization: Bearer {token}",
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
        assert json.loads(out)["decision"] == "DECISION_ALLOW"
    finally:
        proc.terminate()
        logs, _ = proc.communicate(timeout=30)
    assert "development principal" in logs
    assert token not in logs  # the header is printed as $(cat FILE), never the token
