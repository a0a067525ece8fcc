"""Shared fixtures: real OPA, the real service, over real sockets."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from aarm.v1 import decision_pb2_grpc

from aarm_pdp import server
from aarm_pdp.config import Config, MetricsConfig, OpaConfig, ServerConfig

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


def service_config(
    opa_binary: str, *, policy: Path = REGO, url: str | None = None, **opa: object
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
    ).validate()


@pytest.fixture
async def app(opa_binary: str, request: pytest.FixtureRequest) -> AsyncIterator[server.App]:
    url = request.config.getoption("--opa-url")
    running = await server.start(service_config(opa_binary, url=url))
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def stub(app: server.App) -> AsyncIterator[decision_pb2_grpc.DecisionServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield decision_pb2_grpc.DecisionServiceStub(channel)
