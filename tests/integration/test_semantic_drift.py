"""Semantic drift computed off the hot path with the real MiniLM model."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aarm.v1 import decision_pb2, decision_pb2_grpc, session_pb2, session_pb2_grpc
from aarm_pdp import server
from aarm_pdp.config import SessionConfig
from aarm_pdp.session import state as st
from aarm_pdp.session.store import session_key
from google.protobuf import json_format

from tests.support.grpc_clients import aio_channel
from tests.support.messages import decide_request
from tests.support.service import service_config

pytestmark = [pytest.mark.integration, pytest.mark.semantic]

IDENT = {"tenant": "acme", "human": "alice@acme.example", "agent": "agent-7", "session_id": "sem-1"}


async def test_semantic_drift_folds_into_session(opa_binary: str) -> None:
    cfg = service_config(opa_binary)
    cfg = replace(cfg, session=SessionConfig(semantic_drift=True)).validate()
    app = await server.start(cfg)
    try:
        async with aio_channel(f"127.0.0.1:{app.port}") as ch:
            sessions = session_pb2_grpc.SessionServiceStub(ch)
            stub = decision_pb2_grpc.DecisionServiceStub(ch)
            await sessions.StartSession(
                session_pb2.StartSessionRequest(
                    identity=json_format.ParseDict(IDENT, decision_pb2.Identity()),
                    original_request="look up the order history of customer 4711",
                )
            )
            near = await stub.Decide(
                decide_request(
                    "db",
                    "query",
                    {"table": "orders", "where": "customer = 4711", "limit": 10},
                    identity=IDENT,
                )
            )
            assert near.decision == decision_pb2.DECISION_ALLOW
            worker = app.engine._sessions.semantic  # type: ignore[union-attr]
            assert worker is not None
            await worker.drain()
            raw = (await app.store.load(session_key("acme", "sem-1"), [], "acme", [])).state
            assert raw is not None
            first = st.SessionState.from_bytes(raw)
            await stub.Decide(
                decide_request(
                    "http",
                    "post",
                    {"url": "https://hooks.slack.com/x", "body": "wire transfer"},
                    identity=IDENT,
                )
            )
            await worker.drain()
            raw = (await app.store.load(session_key("acme", "sem-1"), [], "acme", [])).state
            assert raw is not None
            second = st.SessionState.from_bytes(raw)
        assert 0 <= first.sem_last < second.sem_last <= 1.5
        assert second.sem_max == second.sem_last
        assert app.metrics.registry.get_sample_value("aarm_semantic_drift_count") == 2
    finally:
        await app.stop()
