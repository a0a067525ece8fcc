"""Child processes the tests, the conformance suite and the benchmark start.

- :func:`serve_command` / :func:`opa_command`: the argv of ``aarm-pdp serve`` and of
  ``opa run --server`` on loopback ports;
- :func:`wait_until`, :func:`wait_serving`: start-and-wait, failing early when the child
  exits first;
- :func:`read_ready` / :func:`announce_ready_and_wait`: the two ends of the ``READY <port>``
  line a helper server (the bench's stub and forward servers) prints once serving;
- :class:`RedisServer`, :class:`PostgresServer`: the real stores from the Debian packages,
  private to the run, on a free loopback port;
- :func:`children`: a process's direct children (the managed OPA sidecar).

Nothing here imports pytest: a missing binary raises :class:`MissingTool`, which the
fixtures turn into a test failure and the suite and bench report as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.ports import accepts, address, free_port
from tests.support.principals import default_file


class MissingTool(RuntimeError):
    """A binary a helper needs is not installed; the message says how to get it."""


# --------------------------------------------------------------------------- commands


def serve_command(
    port: int,
    *extra: str,
    metrics_port: int | None = None,
    log_format: str | None = "text",
    principals: Path | None = None,
) -> list[str]:
    """``python -m aarm_pdp serve`` on 127.0.0.1:``port``.

    ``metrics_port`` None turns the metrics endpoint off; ``log_format`` None keeps the
    service's default (JSON), as the benchmark measures it. Callers authenticate as the
    principals of ``principals`` (default: :func:`tests.support.principals.default_file`).
    """
    metrics = address(metrics_port) if metrics_port is not None else ""
    return [
        sys.executable,
        "-m",
        "aarm_pdp",
        "serve",
        "--listen",
        address(port),
        "--metrics-listen",
        metrics,
        "--principals",
        str(principals or default_file()),
        *(["--log-format", log_format] if log_format else []),
        *extra,
    ]


def opa_command(binary: str, port: int, *bundles: Path | str) -> list[str]:
    """``opa run --server`` on 127.0.0.1:``port`` serving ``bundles``, quiet."""
    return [
        binary,
        "run",
        "--server",
        "--addr",
        address(port),
        "--log-level",
        "error",
        "--skip-version-check",
        *(arg for b in bundles for arg in ("--bundle", str(b))),
    ]


# --------------------------------------------------------------------------- waiting


def wait_until(
    what: str,
    ready: Callable[[], bool],
    *,
    proc: subprocess.Popen[Any] | None = None,
    timeout: float = 30.0,
    interval: float = 0.1,
) -> None:
    """Poll ``ready()`` (an exception counts as not yet) until it is true.

    Raises ``RuntimeError`` when ``proc`` exits first or ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before becoming ready")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(interval)
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s")


def grpc_serving(target: str, service: str = "") -> bool:
    """One gRPC health check of ``target`` (``service`` "" is the whole server)."""
    # Imported here: the bench orchestrator forks its children without gRPC loaded.
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=1
        )
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)


def wait_serving(
    target: str,
    *,
    timeout: float = 60.0,
    proc: subprocess.Popen[Any] | None = None,
    service: str = "",
) -> None:
    """Wait until ``target`` reports SERVING over gRPC health."""
    wait_until(target, lambda: grpc_serving(target, service), proc=proc, timeout=timeout)


def http_ok(url: str) -> bool:
    """True when ``GET url`` answers 200."""
    with urllib.request.urlopen(url, timeout=1) as r:
        return bool(r.status == 200)


def read_ready(proc: subprocess.Popen[str], name: str) -> int:
    """The port from the ``READY <port>`` line ``proc`` prints first on its stdout."""
    assert proc.stdout is not None, "start the child with stdout=PIPE, text=True"
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "READY":
        raise RuntimeError(f"{name} server did not start: {line}")
    return int(line[1])


async def announce_ready_and_wait(port: int) -> None:
    """The child's end: print ``READY <port>``, then wait for SIGTERM or SIGINT."""
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


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


# --------------------------------------------------------------------------- stores


class RedisServer:
    """A real redis-server on a loopback port, in a private directory, nothing persisted.

    ``workdir`` holds that directory (default: a fresh temporary one).
    """

    def __init__(self, workdir: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise MissingTool(
                "redis-server missing: .ci/run installs it (apt-get install redis-server)"
            )
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="aarm-redis-", dir=workdir)
        self._binary = binary
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self._binary,
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
            if accepts(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restart(self) -> None:
        """SIGKILL and start again on the same port: an empty store (nothing persisted)."""
        self.kill()
        self._start()

    def kill(self) -> None:
        """SIGKILL (the store dies under the service); the directory stays."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, wait, and remove the directory."""
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


PG_BIN = Path(os.environ.get("AARM_PDP_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_RUN_AS = "postgres"


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port>: initdb + pg_ctl in a temp dir.

    PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` OS
    user (``runuser -u postgres --``) in a temporary directory owned by it.
    Authentication is ``trust`` on 127.0.0.1 only.
    """

    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BIN / tool).exists():
                raise MissingTool(f"{PG_BIN / tool} missing: apt-get install postgresql-15")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="aarm-pg-"))
        self.data = self.dir / "data"
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise MissingTool("running as root needs runuser to start PostgreSQL as postgres")
            user = pwd.getpwnam(PG_RUN_AS)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._prefix = [runuser, "-u", PG_RUN_AS, "--"]
        os.chmod(self.dir, 0o700)
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",  # the cluster is thrown away; the server itself still fsyncs
        )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            "-c max_connections=200 -c fsync=on -c synchronous_commit=on"
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )

    def _run(self, *cmd: str) -> None:
        proc = subprocess.run(
            [*self._prefix, *cmd], capture_output=True, text=True, timeout=60, check=False
        )
        if proc.returncode != 0:
            log = self.dir / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{cmd[0]} failed: {proc.stdout}{proc.stderr}{tail}")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A DSN to a fresh, empty database on this cluster."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        try:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
