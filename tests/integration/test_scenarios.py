"""AARM scenarios S01-S37 replayed as gRPC call sequences against real OPA."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
from aarm.v1 import decision_pb2_grpc, session_pb2_grpc
from aarm_pdp import server

from tests.support import scenarios
from tests.support.grpc_clients import aio_channel

pytestmark = pytest.mark.integration
DOCS = scenarios.load_all()


@pytest.fixture
async def stubs(app: server.App) -> AsyncIterator[tuple[Any, Any]]:
    async with aio_channel(f"127.0.0.1:{app.port}") as ch:
        yield decision_pb2_grpc.DecisionServiceStub(ch), session_pb2_grpc.SessionServiceStub(ch)


def test_every_scenario_matches_the_schema() -> None:
    schema = scenarios.schema()
    assert len(DOCS) >= 28
    for doc in DOCS:
        jsonschema.validate(doc, schema)


@pytest.mark.parametrize("doc", DOCS, ids=[d["id"] for d in DOCS])
async def test_scenario(stubs: tuple[Any, Any], doc: dict[str, Any]) -> None:
    decisions, sessions = stubs
    result = await scenarios.run(doc, decisions, sessions, session_id=f"sess-{doc['id']}")
    assert result.ok, result.explain()
