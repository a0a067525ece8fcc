"""Shared fixtures: real OPA, the real service, over real sockets."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from aarm.v1 import decision_pb2_grpc
from aarm_pdp import server
from aarm_pdp.config import (
    Config,
    MetricsConfig,
    OpaConfig,
    ReceiptConfig,
    ServerConfig,
    SessionConfig,
    TelemetryConfig,
)

ROOT = Path(__file__).resolve().parent.parent
REGO = ROOT / "rego"
POLICIES = ROOT / "tests" / "integration" / "policies"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--opa-url",
        default=os.environ.get("AARM_PDP_TEST_OPA_URL"),
        help="run integration tests against this external OPA instead of a managed one",
    )


@pytest.fixture(scope="session")
def opa_binary() -> str:
    path = os.environ.get("AARM_PDP_OPA_BIN", str(ROOT / "bin" / "opa"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} missing: run `make setup` first")
    return path


_SCRATCH = Path(tempfile.mkdtemp(prefix="aarm-tests-"))
_KEYS = _SCRATCH / "keys"


def _scratch(name: str) -> Path:
    """A fresh directory under this test run's scratch area."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_SCRATCH))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real redis-server on a loopback port, in a private directory."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server missing: .ci/run installs it (apt-get install redis-server)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="aarm-redis-")
        self.proc = subprocess.Popen(
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

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server_ = RedisServer()
    try:
        yield server_
    finally:
        server_.stop()


def service_config(
    opa_binary: str,
    *,
    policy: Path = REGO,
    url: str | None = None,
    state: str = "memory",
    receipts: str | None = None,
    **opa: object,
) -> Config:
    """Loopback ports chosen by the kernel; managed OPA unless ``url`` is given."""
    return Config(
        server=ServerConfig(listen="127.0.0.1:0", grace_seconds=2.0),
        opa=OpaConfig(
            url=url,
            binary=opa_binary,
            policy_paths=(policy,),
            health_interval_seconds=0.1,
            **opa,  # type: ignore[arg-type]
        ),
        metrics=MetricsConfig(listen="127.0.0.1:0"),
        session=SessionConfig(state=state),
        telemetry=TelemetryConfig(file=_scratch("telemetry") / "t.jsonl", flush_seconds=0.2),
        receipts=ReceiptConfig(store=receipts or str(_scratch("receipts") / "r.db"), key_dir=_KEYS),
    ).validate()


OPA_IMAGE = "openpolicyagent/opa:1.22.3"


@pytest.fixture(scope="session")
def external_opa_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (managed sidecar, the default), --opa-url, or the official OPA image.

    ``AARM_PDP_TEST_OPA=container`` (``make containers-test``) runs the same tests
    against the official image through testcontainers; it needs a Docker engine,
    which CI machines here do not have, so it is opt-in.
    """
    url = request.config.getoption("--opa-url")
    if url or os.environ.get("AARM_PDP_TEST_OPA") != "container":
        yield url
        return
    from testcontainers.core.container import DockerContainer  # type: ignore[import-not-found]
    from testcontainers.core.waiting_utils import wait_for_logs  # type: ignore[import-not-found]

    container = (
        DockerContainer(OPA_IMAGE)
        .with_volume_mapping(str(REGO), "/policy", "ro")
        .with_command("run --server --addr 0.0.0.0:8181 --bundle /policy")
        .with_exposed_ports(8181)
    )
    with container:
        wait_for_logs(container, "Initializing server", timeout=60)
        host = container.get_container_host_ip()
        yield f"http://{host}:{container.get_exposed_port(8181)}"


@pytest.fixture
def managed_only(external_opa_url: str | None) -> None:
    """Tests that kill or restart the managed sidecar cannot run against an external OPA."""
    if external_opa_url:
        pytest.skip("needs the managed OPA sidecar")


@pytest.fixture
async def app(opa_binary: str, external_opa_url: str | None) -> AsyncIterator[server.App]:
    running = await server.start(service_config(opa_binary, url=external_opa_url))
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def stub(app: server.App) -> AsyncIterator[decision_pb2_grpc.DecisionServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield decision_pb2_grpc.DecisionServiceStub(channel)
