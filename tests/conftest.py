"""Shared fixtures: real OPA, the real service, over real sockets.

The helpers behind them live in :mod:`tests.support` (shared with conformance/ and bench/).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

import pytest
from aarm.v1 import decision_pb2_grpc
from aarm_pdp import server

from tests.support.grpc_clients import aio_channel
from tests.support.paths import BIN, REGO
from tests.support.processes import MissingTool, PostgresServer, RedisServer
from tests.support.service import service_config


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--opa-url",
        default=os.environ.get("AARM_PDP_TEST_OPA_URL"),
        help="run integration tests against this external OPA instead of a managed one",
    )


def _timeout_seconds(item: pytest.Item) -> float:
    """pytest-timeout's limit for ``item`` (marker, --timeout, PYTEST_TIMEOUT, ini); 0: none."""
    marker = item.get_closest_marker("timeout")
    value: Any = None
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout")
    if value is None:
        value = item.config.getoption("timeout", None)
    if value is None:
        value = os.environ.get("PYTEST_TIMEOUT") or item.config.getini("timeout")
    return float(value or 0)


def _cancelled_in_its_loop(
    fn: Callable[..., Coroutine[Any, Any, Any]], seconds: float
) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(fn)
    async def bounded(*args: Any, **kwargs: Any) -> Any:
        limit = asyncio.timeout(seconds)
        try:
            async with limit:
                return await fn(*args, **kwargs)
        except TimeoutError as exc:
            if limit.expired():
                exc.add_note(
                    f"test still running after {seconds:.0f}s: cancelled in its event loop "
                    "(the CancelledError above shows where it waited)"
                )
            raise

    return bounded


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A hung async test is cancelled inside its own event loop before pytest-timeout fires.

    pytest-timeout's SIGALRM raises its ``Failed`` wherever the main thread happens to be:
    inside the event loop that is often a grpc.aio (Cython) callback, where it is either
    swallowed (the test then runs on with no timer left) or leaves the channel, server
    and their poller half-torn-down; tearing those down later crashed the run
    ("Fatal Python error: Segmentation fault" right after the F). Cancelling the test's
    own task instead ends the hung await with CancelledError, so its ``async with``
    blocks close channels and stop servers in that loop, and the test fails with a
    TimeoutError that says where it hung. pytest-timeout stays the backstop (setup,
    teardown, synchronous tests, a cleanup that hangs): the budget is 3/4 of its limit.
    """
    for item in items:
        fn = getattr(item, "obj", None)
        seconds = _timeout_seconds(item)
        if seconds > 0 and inspect.iscoroutinefunction(fn):
            item.obj = _cancelled_in_its_loop(fn, seconds * 0.75)  # type: ignore[attr-defined]


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
