"""A real PostgreSQL for integration tests: initdb + pg_ctl in a temp dir, loopback port.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as
the ``postgres`` OS user (``runuser -u postgres --``) in a temporary directory owned
by it. Authentication is ``trust`` on 127.0.0.1 only. Each test gets a fresh database
(``pg_dsn``); the cluster lives for the whole pytest session and is stopped and
deleted at the end.

Import the fixtures into a test module::

    from tests.integration.conftest_pg import pg_dsn_fixture, pg_server_fixture  # noqa: F401
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import free_port

PG_BIN = Path(os.environ.get("AARM_PDP_PG_BIN", "/usr/lib/postgresql/15/bin"))
RUN_AS = "postgres"


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BIN / tool).exists():
                pytest.fail(f"{PG_BIN / tool} missing: apt-get install postgresql-15")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="aarm-pg-"))
        self.data = self.dir / "data"
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.fail("running as root needs runuser to start PostgreSQL as postgres")
            user = pwd.getpwnam(RUN_AS)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._prefix = [runuser, "-u", RUN_AS, "--"]
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
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        try:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session", name="pg_server")
def pg_server_fixture() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="pg_dsn")
def pg_dsn_fixture(pg_server: PostgresServer) -> str:
    """A DSN to a fresh, empty database on the session's cluster."""
    return pg_server.create_database()
