"""Liveness is not readiness: with the policy engine down the service is NOT_SERVING
(the pod leaves the Service) while ``aarm.liveness`` stays SERVING (no restart)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from aarm_pdp import server
from aarm_pdp.config import OpaConfig
from aarm_pdp.opa.fake import FakePolicyEngine
from aarm_pdp.server import LIVENESS_NAME
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.grpc_clients import aio_channel
from tests.support.messages import verdict_doc
from tests.support.service import fake_config, running

pytestmark = pytest.mark.api
H = health_pb2.HealthCheckResponse


async def test_a_dependency_down_is_not_a_dead_process(tmp_path: Path) -> None:
    cfg = fake_config(tmp_path, opa=OpaConfig(health_interval_seconds=0.05))
    engine = FakePolicyEngine(lambda _: verdict_doc("ALLOW"))
    async with running(cfg, policy_engine=engine) as (_, c):

        async def status(name: str) -> int:
            resp = await c.health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            return int(resp.status)

        assert await status("aarm.v1.DecisionService") == H.SERVING
        assert await status(LIVENESS_NAME) == H.SERVING
        engine._healthy = False  # OPA stops answering health checks
        call = c.health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        try:
            async for update in call:
                if update.status == H.NOT_SERVING:
                    break
        finally:
            call.cancel()
        assert await status("aarm.v1.DecisionService") == H.NOT_SERVING
        assert await status(LIVENESS_NAME) == H.SERVING


async def test_stop_finishes_even_when_a_background_task_had_failed(tmp_path: Path) -> None:
    """A background task that died is reported by stop(), after everything was closed:
    the gRPC server no longer answers and the stores are closed (nothing outlives the
    event loop that owns it)."""
    cfg = fake_config(tmp_path, opa=OpaConfig(health_interval_seconds=0.05))
    engine = FakePolicyEngine(lambda _: verdict_doc("ALLOW"))
    app = await server.start(cfg, policy_engine=engine)
    port = app.port

    async def dies() -> None:
        raise RuntimeError("background task failed")

    failed = asyncio.get_running_loop().create_task(dies())
    await asyncio.sleep(0)
    app._tasks.insert(0, failed)
    closed: list[str] = []
    store_close = app.store.aclose

    async def recording_close() -> None:
        closed.append("store")
        await store_close()

    app.store.aclose = recording_close  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="background task failed"):
        await app.stop()
    assert closed == ["store"]
    async with aio_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
