"""The stop path: every step runs even when one fails (the first failure is raised at
the end), and no background task outlives the service, not even one that swallowed its
first cancellation (as psycopg-pool's getconn can: the fresh-clone CI once hung on such
a health loop)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc
import pytest
from aarm_pdp import server
from aarm_pdp.opa.fake import FakePolicyEngine
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.messages import verdict_doc
from tests.support.service import fake_config

pytestmark = pytest.mark.api


class _ClosingFails(FakePolicyEngine):
    async def aclose(self) -> None:
        raise RuntimeError("policy engine close failed")


async def test_a_failing_step_does_not_skip_the_rest_of_the_stop(tmp_path: Path) -> None:
    engine = _ClosingFails(lambda _: verdict_doc("ALLOW"))
    app = await server.start(fake_config(tmp_path), policy_engine=engine)
    closed: list[str] = []
    receipts, store = app.receipts, app.store
    assert receipts is not None
    close_receipts, close_store = receipts.aclose, store.aclose

    async def receipts_closed() -> None:
        closed.append("receipts")
        await close_receipts()

    async def store_closed() -> None:
        closed.append("sessions")
        await close_store()

    receipts.aclose = receipts_closed  # type: ignore[method-assign]
    store.aclose = store_closed  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="policy engine close failed"):
        await app.stop()
    assert closed == ["receipts", "sessions"]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_no_background_task_outlives_the_stop(tmp_path: Path) -> None:
    engine = FakePolicyEngine(lambda _: verdict_doc("ALLOW"))
    app = await server.start(fake_config(tmp_path), policy_engine=engine)
    swallowed: list[int] = []

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        swallowed.append(1)
        await asyncio.sleep(3600)

    extra = asyncio.create_task(stubborn())
    app._tasks.append(extra)
    await asyncio.sleep(0)
    await app.stop()
    assert swallowed == [1]
    assert extra.done()
    assert all(t.done() for t in app._tasks)
