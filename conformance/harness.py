"""Processes and clients: the managed service (and its auxiliaries), Redis, gRPC stubs."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from aarm.v1 import (
    approval_pb2_grpc,
    decision_pb2_grpc,
    deferral_pb2_grpc,
    receipt_pb2_grpc,
    session_pb2_grpc,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
APPROVER_GROUPS = [
    "data-owners",
    "finance-approvers",
    "identity-admins",
    "platform-oncall",
    "security-approvers",
]
AGENT = "agent-7"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tokens:
    """Approver bearer tokens; empty when unknown (external target without them)."""

    approver: str = ""
    """In every approver group the reference policy names, and an identity admin."""
    outsider: str = ""
    """A real approver outside those groups."""
    agent: str = ""
    """A credential held by the agent's own identity."""


def write_approvers(path: Path, tokens: Tokens) -> None:
    def entry(who: str, groups: list[str], token: str) -> dict[str, Any]:
        return {
            "id": who,
            "groups": groups,
            "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
        }

    doc = {
        "approvers": [
            entry("conformance-approver@acme.example", APPROVER_GROUPS, tokens.approver),
            entry("outsider@acme.example", ["marketing"], tokens.outsider),
            entry(AGENT, ["data-owners"], tokens.agent),
        ]
    }
    path.write_text(json.dumps(doc))


def new_tokens() -> Tokens:
    return Tokens(
        approver=secrets.token_urlsafe(24),
        outsider=secrets.token_urlsafe(24),
        agent=secrets.token_urlsafe(24),
    )


class Clients:
    """Blocking stubs for every aarm.v1 service on one channel."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.insecure_channel(address)
        self.decide = decision_pb2_grpc.DecisionServiceStub(self.channel)
        self.sessions = session_pb2_grpc.SessionServiceStub(self.channel)
        self.approvals = approval_pb2_grpc.ApprovalServiceStub(self.channel)
        self.deferrals = deferral_pb2_grpc.DeferralServiceStub(self.channel)
        self.receipts = receipt_pb2_grpc.ReceiptServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def wait_serving(
    address: str, timeout: float = 60.0, proc: subprocess.Popen[Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"service exited with {proc.returncode} before SERVING")
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"{address} never became SERVING")


def children(pid: int) -> list[tuple[int, str]]:
    """Direct children of ``pid`` with their command lines, read from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                out.append((int(entry.name), cmd.strip()))
        except (OSError, ValueError, IndexError):
            continue
    return out


@dataclass
class Service:
    """``aarm-pdp serve`` as a subprocess on loopback ports."""

    name: str
    workdir: Path
    extra: list[str] = field(default_factory=list)
    telemetry_webhook: str = ""
    """POST telemetry batches here (the suite's SIEM mock); empty: file sink only."""
    port: int = 0
    metrics_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def telemetry_path(self) -> Path:
        """The JSONL telemetry sink, in the scratch dir (not the repo's var/)."""
        return self.workdir / f"{self.name}-telemetry.jsonl"

    def start(self) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        cmd = [
            sys.executable,
            "-m",
            "aarm_pdp",
            "serve",
            "--listen",
            self.address,
            "--metrics-listen",
            f"127.0.0.1:{self.metrics_port}",
            "--log-format",
            "text",
            "--grace",
            "1",
            # The embedded SQLite receipt store and a fresh key directory, private to the run.
            "--receipts",
            str(self.workdir / f"{self.name}-receipts.db"),
            "--key-dir",
            str(self.workdir / f"{self.name}-keys"),
            # R8 telemetry: a private JSONL file and, when given, the SIEM mock's webhook.
            "--telemetry-file",
            str(self.telemetry_path),
            *(["--telemetry-webhook", self.telemetry_webhook] if self.telemetry_webhook else []),
            *self.extra,
        ]
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def wait(self) -> None:
        assert self.proc is not None
        try:
            wait_serving(self.address, proc=self.proc)
        except RuntimeError as exc:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name}: {exc}\n{tail}") from exc

    def opa_children(self) -> list[int]:
        if self.proc is None:
            return []
        return [pid for pid, cmd in children(self.proc.pid) if "opa" in cmd and " run" in cmd]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            for pid in self.opa_children():
                os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()


@dataclass
class Batch:
    """One POST the SIEM mock received."""

    path: str
    received: float
    """time.time() when it arrived."""
    body: bytes
    events: list[Any] | None
    """The parsed JSON array; None if the body was not one."""


class SiemMock:
    """A SIEM's HTTP intake on a loopback port: keeps every POSTed telemetry batch.

    Each managed service posts to its own path (``/main``, ``/short-timeouts``, ...).
    """

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self._lock = threading.Lock()
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                events = parsed if isinstance(parsed, list) else None
                with mock._lock:
                    mock.batches.append(Batch(self.path, time.time(), body, events))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def received(self, path: str) -> list[Batch]:
        """The batches POSTed to ``/path`` so far."""
        with self._lock:
            return [b for b in self.batches if b.path == f"/{path}"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Redis:
    """A private redis-server on a loopback port (for the context-store checks)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not installed")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=workdir)
        self.proc = subprocess.Popen(  # noqa: S603 - a fixed binary with our arguments
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def short_timeout_policy(workdir: Path, seconds: int) -> Path:
    """A copy of rego/ whose STEP_UP and DEFER timeouts are ``seconds``."""
    policy = workdir / "rego-short-timeouts"
    shutil.copytree(ROOT / "rego", policy)
    cfg_path = policy / "aarm" / "config" / "data.json"
    cfg = json.loads(cfg_path.read_text())
    for group in cfg["stepup"]["approver_groups"].values():
        group["timeout_seconds"] = seconds
    cfg["deferral"]["timeout_seconds"] = seconds
    cfg_path.write_text(json.dumps(cfg))
    return policy


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback http
        return str(r.read().decode())
