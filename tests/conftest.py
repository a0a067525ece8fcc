"""Shared fixtures: real OPA, the real service, over real sockets.

The helpers behind them live in :mod:`tests.support` (shared with conformance/ and bench/).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol, TypeVar

import pytest
from aarm.v1 import decision_pb2_grpc
from aarm_pdp import server

from tests.support.grpc_clients import aio_channel
from tests.support.paths import BIN, REGO
from tests.support.processes import MissingTool, PostgresServer, RedisServer
from tests.support.service import service_config


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A failure is written out as it happens, not only in the summary at the end: a
    run that dies later (the one segfault seen in a busy 5x run, issue 14) still says
    what failed before it."""
    if report.failed:
        sys.stderr.write(
            f"\n--- FAILED {report.nodeid} ({report.when}) ---\n{report.longreprtext}\n"
        )
        sys.stderr.flush()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--opa-url",
        default=os.environ.get("AARM_PDP_TEST_OPA_URL"),
        help="run integration tests against this external OPA instead of a managed one",
    )


@pytest.fixture(scope="session")
def opa_binary() -> str:
    path = os.environ.get("AARM_PDP_OPA_BIN", str(BIN / "opa"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} missing: run `make setup` first")
    return path


class _Store(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Store)


def _started(factory: Callable[[], S]) -> Iterator[S]:
    """One store for the whole session; a missing binary fails the tests that need it."""
    try:
        store = factory()
    except MissingTool as exc:
        pytest.fail(str(exc))
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a loopback port, in a private directory."""
    yield from _started(RedisServer)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl), stopped and deleted at the end."""
    yield from _started(PostgresServer)


@pytest.fixture
def pg_dsn(pg_server: PostgresServer) -> str:
    """A DSN to a fresh, empty database on the session's cluster."""
    return pg_server.create_database()


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
    async with aio_channel(f"127.0.0.1:{app.port}") as channel:
        yield decision_pb2_grpc.DecisionServiceStub(channel)
