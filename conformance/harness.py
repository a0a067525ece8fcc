"""Processes the suite manages: the service under test (x3), its SIEM mock, tokens.

Ports, process start-and-wait, Redis and the gRPC stubs come from :mod:`tests.support`,
shared with the test suite and the benchmark.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.ports import address, free_port
from tests.support.principals import write_principals
from tests.support.processes import children, serve_command, wait_serving

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
    """The principals file of a managed run: the platform (tests.support.principals) and
    the approvers behind ``tokens``."""
    write_principals(
        path,
        {
            tokens.approver: ("conformance-approver@acme.example", APPROVER_GROUPS),
            tokens.outsider: ("outsider@acme.example", ["marketing"]),
            tokens.agent: (AGENT, ["data-owners"]),
        },
    )


def new_tokens() -> Tokens:
    return Tokens(
        approver=secrets.token_urlsafe(24),
        outsider=secrets.token_urlsafe(24),
        agent=secrets.token_urlsafe(24),
    )


@dataclass
class Service:
    """``aarm-pdp serve`` as a subprocess on loopback ports."""

    name: str
    workdir: Path
    extra: list[str] = field(default_factory=list)
    telemetry_webhook: str = ""
    """POST telemetry batches here (the suite's SIEM mock); empty: file sink only."""
    principals: Path | None = None
    """The principals file (``--principals``); None: tests.support's default."""
    port: int = 0
    metrics_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return address(self.port)

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
        cmd = serve_command(
            self.port,
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
            metrics_port=self.metrics_port,
            principals=self.principals,
        )
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
