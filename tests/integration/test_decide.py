"""Decide over gRPC against a real managed OPA loading the reference policy pack."""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request
from typing import Any

import grpc
import pytest
from aarm.v1 import decision_pb2, decision_pb2_grpc
from aarm_pdp import server
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.grpc_clients import aio_channel
from tests.support.messages import decide_request

pytestmark = pytest.mark.integration

D = decision_pb2

# One request per verdict, from the reference pack (see docs/policies/README.md).
CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("db", "query", {"table": "customers", "limit": 10}, D.DECISION_ALLOW, "catalogued"),
    ("database", "drop", {"database": "production"}, D.DECISION_DENY, "forbidden"),
    (
        "payments",
        "transfer",
        {
            "amount": 50000,
            "currency": "USD",
            "to_account": "GB29NWBK6016",
            "from_account": "ACME-OPS-1",
        },
        D.DECISION_STEP_UP,
        "high_impact",
    ),
    ("db", "query", {"table": "customers", "limit": 5000}, D.DECISION_MODIFY, "parameter_modified"),
    ("credentials", "rotate", {"target": "prod-payments"}, D.DECISION_DEFER, "missing_context"),
]


@pytest.mark.parametrize(("tool", "op", "params", "want", "code"), CASES)
async def test_each_verdict(
    stub: Any, tool: str, op: str, params: dict[str, Any], want: int, code: str
) -> None:
    resp = await stub.Decide(decide_request(tool, op, params))
    assert resp.decision == want, json_format.MessageToDict(resp)
    assert code in {r.code for r in resp.reasons}
    assert all(r.rule_id and r.message for r in resp.reasons)
    assert resp.decision_id
    assert resp.policy.revision and len(resp.policy.hash) == 64
    if want == D.DECISION_MODIFY:
        assert json_format.MessageToDict(resp.modified_parameters)["limit"] == 1000
    if want == D.DECISION_STEP_UP:
        assert list(resp.approval.approvers)
        assert resp.approval.timeout_seconds > 0
    if want == D.DECISION_DEFER:
        assert "maintenance_window" in resp.deferral.context_needed


async def test_forbidden_rule_id_reaches_response(stub: Any) -> None:
    resp = await stub.Decide(decide_request("database", "drop", {"database": "production"}))
    assert resp.decision == D.DECISION_DENY
    assert any(r.rule_id.startswith("aarm.forbidden.") for r in resp.reasons)


async def test_unknown_tool_gets_default_posture(stub: Any) -> None:
    resp = await stub.Decide(decide_request("teleport", "engage", {}))
    assert resp.decision == D.DECISION_DENY
    assert resp.reasons[0].code == "default_posture"


async def test_unknown_tool_is_denied_before_a_deferral(stub: Any) -> None:
    """Low confidence would DEFER a catalogued tool; an unknown one is DENY, no ticket."""
    resp = await stub.Decide(
        decide_request("teleport", "engage", {}, risk_signals={"intent_confidence": 0.2})
    )
    assert resp.decision == D.DECISION_DENY
    assert [r.code for r in resp.reasons] == ["default_posture"]
    assert not resp.HasField("deferral")


async def test_missing_identity_denied(stub: Any) -> None:
    resp = await stub.Decide(
        decide_request(
            "db", "query", {"table": "t", "limit": 5}, identity={"human": "h", "agent": "a"}
        )
    )
    assert resp.decision == D.DECISION_DENY
    assert resp.reasons[0].code == "identity_missing"


async def test_request_id_is_idempotent(stub: Any) -> None:
    req = decide_request("db", "query", {"table": "customers", "limit": 10}, request_id="r-42")
    first = await stub.Decide(req)
    second = await stub.Decide(req)
    assert first.decision_id == second.decision_id
    assert first.request_id == "r-42"


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        doc = {"n": doc}
    return doc


@pytest.mark.parametrize(
    "params",
    [
        {"blob": "x" * 70_000},
        _nested(40),
        {
            "many": [{"k": i} for i in range(1000)],
            "more": [{"k": i} for i in range(1000)],
            "evenmore": [[0] * 999 for _ in range(9)],
        },
    ],
    ids=["long-string", "deep-40", "too-many-nodes"],
)
async def test_oversized_or_deep_parameters_are_invalid_argument(stub: Any, params: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Decide(decide_request("db", "query", params))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_nesting_beyond_protobuf_recursion_limit_is_invalid_argument(app: Any) -> None:
    # 150 levels: protobuf itself refuses to decode it; still INVALID_ARGUMENT, not a crash.
    req = decide_request("db", "query", {})
    cur = req.action.parameters
    for _ in range(150):
        cur = cur.fields["n"].struct_value
    cur.fields["leaf"].number_value = 1
    async with aio_channel(f"127.0.0.1:{app.port}") as ch:
        call = ch.unary_unary("/aarm.v1.DecisionService/Decide")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(req.SerializeToString())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # and the service is still fine
    async with aio_channel(f"127.0.0.1:{app.port}") as ch:
        stub = decision_pb2_grpc.DecisionServiceStub(ch)
        resp = await stub.Decide(decide_request("db", "query", {"table": "t", "limit": 5}))
        assert resp.decision == D.DECISION_ALLOW


async def test_garbage_bytes_are_invalid_argument(app: Any) -> None:
    async with aio_channel(f"127.0.0.1:{app.port}") as ch:
        call = ch.unary_unary("/aarm.v1.DecisionService/Decide")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(b"\xff\xff\xff\xff")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_health_serving(app: server.App) -> None:
    async with aio_channel(f"127.0.0.1:{app.port}") as ch:
        h = health_pb2_grpc.HealthStub(ch)
        for name in ("", "aarm.v1.DecisionService"):
            resp = await h.Check(health_pb2.HealthCheckRequest(service=name))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


def _metrics(app: server.App) -> str:
    url = f"http://127.0.0.1:{app.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


async def test_metrics_count_decisions(app: server.App, stub: Any) -> None:
    await stub.Decide(decide_request("db", "query", {"table": "customers", "limit": 10}))
    await stub.Decide(decide_request("database", "drop", {"database": "production"}))
    text = await asyncio.to_thread(_metrics, app)
    assert 'aarm_decisions_total{code="catalogued",decision="ALLOW"} 1.0' in text
    assert 'aarm_decisions_total{code="forbidden",decision="DENY"} 1.0' in text
    assert "aarm_decide_duration_seconds_bucket" in text
    assert "aarm_opa_query_duration_seconds_count 2.0" in text
    assert 'aarm_policy_info{hash="' in text
    assert "aarm_opa_up 1.0" in text
    assert "aarm_inflight_requests 0.0" in text


@pytest.mark.usefixtures("managed_only")
async def test_opa_killed_then_recovers(app: server.App, stub: Any) -> None:
    assert app.sidecar is not None and app.sidecar.pid is not None
    req = decide_request("db", "query", {"table": "customers", "limit": 10})
    assert (await stub.Decide(req)).decision == D.DECISION_ALLOW
    os.kill(app.sidecar.pid, signal.SIGKILL)
    await asyncio.sleep(0.05)
    down = await stub.Decide(req)
    assert down.decision == D.DECISION_DENY
    assert down.reasons[0].code == "opa_unavailable"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        resp = await stub.Decide(req)
        if resp.decision == D.DECISION_ALLOW:
            break
        assert resp.decision == D.DECISION_DENY  # never anything else while down
        assert loop.time() < deadline, "OPA did not come back"
        await asyncio.sleep(0.1)
    text = await asyncio.to_thread(_metrics, app)
    assert "aarm_opa_restarts_total 1.0" in text
    assert 'aarm_fail_closed_total{code="opa_unavailable"}' in text
