"""Liveness is not readiness: with the policy engine down the service is NOT_SERVING
(the pod leaves the Service) while ``aarm.liveness`` stays SERVING (no restart)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aarm_pdp.config import OpaConfig
from aarm_pdp.opa.fake import FakePolicyEngine
from aarm_pdp.server import LIVENESS_NAME
from grpc_health.v1 import health_pb2

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
