"""R8 telemetry: every decision exported within seconds, parameters only as a hash (T9)."""

from __future__ import annotations

import asyncio
import json

import pytest
from aarm.v1 import decision_pb2, decision_pb2_grpc
from aarm_pdp import server

from tests.support.grpc_clients import aio_channel
from tests.support.messages import decide_request

pytestmark = pytest.mark.integration
D = decision_pb2


async def test_events_exported_with_hashed_parameters(app: server.App) -> None:
    secret_sql = "SELECT ssn, card_number FROM customers WHERE name = 'Alice Example'"
    async with aio_channel(f"127.0.0.1:{app.port}") as ch:
        stub = decision_pb2_grpc.DecisionServiceStub(ch)
        allowed = await stub.Decide(
            decide_request("db", "query", {"table": "customers", "sql": secret_sql, "limit": 10})
        )
        deferred = await stub.Decide(decide_request("credentials", "rotate", {"target": "p-1"}))
        denied = await stub.Decide(decide_request("database", "drop", {"database": "production"}))
    assert app.telemetry is not None
    path = app.cfg.telemetry.file
    assert path is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5  # "within seconds"
    events: list[dict[str, object]] = []
    while loop.time() < deadline:
        if path.exists():
            events = [json.loads(line) for line in path.read_text().splitlines()]
            if len(events) >= 5:
                break
        await asyncio.sleep(0.1)
    text = path.read_text()
    assert "ssn" not in text
    assert "Alice" not in text
    assert '"database":' not in text  # no parameter names or values, only the hash
    assert '"parameters"' not in text
    by_decision = {(e["type"], e["decision_id"]) for e in events}
    assert ("aarm.action", allowed.decision_id) in by_decision
    assert ("aarm.action", denied.decision_id) in by_decision
    assert ("aarm.decision", denied.decision_id) in by_decision
    assert ("aarm.decision", deferred.decision_id) in by_decision
    assert ("aarm.decision", allowed.decision_id) not in by_decision
    defer_ev = next(
        e
        for e in events
        if e["type"] == "aarm.decision" and e["decision_id"] == deferred.decision_id
    )
    assert defer_ev["decision"] == "DEFER"
    assert defer_ev["defer_trigger"] == "missing_context"
    assert defer_ev["schema"] == "aarm.telemetry.v1"
    assert defer_ev["class_uid"] == 2001
    for e in events:
        assert len(e["parameters_hash"]) == 64  # type: ignore[arg-type]
        assert e["receipt_id"]
    emitted = app.metrics.registry.get_sample_value("aarm_telemetry_events_emitted_total")
    assert emitted is not None
    assert emitted >= 5
