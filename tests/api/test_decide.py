"""Decide over gRPC: each of the five policy verdicts, translated; what OPA is asked."""

from __future__ import annotations

import json

import pytest
from aarm.v1 import decision_pb2
from google.protobuf import json_format
from grpc_health.v1 import health_pb2

from tests.api.conftest import Api
from tests.support.messages import IDENTITY, decide_request, opa_answer

pytestmark = pytest.mark.api
D = decision_pb2
QUERY = ("db", "query", {"table": "orders", "limit": 10})


@pytest.mark.parametrize("verdict", ["ALLOW", "DENY", "MODIFY", "STEP_UP", "DEFER"])
async def test_each_policy_verdict_is_the_response(api: Api, verdict: str) -> None:
    api.opa.returns(opa_answer(verdict))
    resp = await api.c.decide.Decide(decide_request(*QUERY))
    assert resp.decision == D.Decision.Value(f"DECISION_{verdict}")
    assert resp.decision_id
    assert [(r.code, r.rule_id, r.message) for r in resp.reasons] == [
        ("catalogued", "aarm.test.rule", "ok")
    ]
    assert list(resp.matched_rules) == ["aarm.test.rule"]
    assert resp.risk.level == D.RISK_LEVEL_LOW
    assert resp.risk.score == pytest.approx(0.1)
    assert (resp.policy.revision, resp.policy.hash) == ("fake", "0" * 64)
    # Every verdict is receipted, and the receipt names that verdict.
    assert resp.receipt.receipt_id
    assert json.loads(resp.receipt.payload)["decision"]["result"] == verdict
    assert api.metric("aarm_decisions_total", decision=verdict, code="catalogued") == 1


async def test_modify_carries_the_modified_parameters(api: Api) -> None:
    api.opa.returns(opa_answer("MODIFY"))
    resp = await api.c.decide.Decide(decide_request(*QUERY))
    assert json_format.MessageToDict(resp.modified_parameters) == {
        "table": "orders",
        "limit": 1000,
    }
    assert not resp.HasField("approval") and not resp.HasField("deferral")


async def test_step_up_carries_an_approval_ticket(api: Api) -> None:
    api.opa.returns(opa_answer("STEP_UP"))
    resp = await api.c.decide.Decide(decide_request(*QUERY))
    assert list(resp.approval.approvers) == ["data-owners"]
    assert resp.approval.timeout_seconds == 600
    assert resp.approval.approval_id
    assert not resp.HasField("deferral")


async def test_defer_carries_a_deferral_ticket(api: Api) -> None:
    api.opa.returns(opa_answer("DEFER"))
    resp = await api.c.decide.Decide(decide_request(*QUERY))
    assert resp.deferral.trigger == "missing_context"
    assert list(resp.deferral.context_needed) == ["maintenance_window"]
    assert resp.deferral.timeout_seconds == 600
    assert resp.deferral.deferral_id
    assert not resp.HasField("approval")


async def test_opa_gets_the_versioned_input(api: Api) -> None:
    await api.c.decide.Decide(
        decide_request(
            *QUERY,
            facts=[{"name": "ticket.state", "value": "approved", "source": "itsm"}],
            risk_signals={"injection": 0.25},
        )
    )
    [doc] = api.engine.calls
    assert doc["version"] == "aarm.v1"
    assert doc["action"]["name"] == "db.query"
    assert doc["action"]["parameters"] == {"table": "orders", "limit": 10}
    assert doc["identity"]["tenant"] == IDENTITY["tenant"]
    assert doc["identity"]["agent"] == IDENTITY["agent"]
    assert doc["identity"]["session_id"] == IDENTITY["session_id"]
    assert doc["facts"]["ticket.state"]["value"] == "approved"
    assert doc["facts"]["ticket.state"]["source"] == "itsm"
    assert doc["risk_signals"] == {"injection": 0.25}
    for part in ("session", "provenance", "drift", "dependencies"):
        assert part in doc


async def test_same_request_id_replays_the_decision(api: Api) -> None:
    req = decide_request(*QUERY, request_id="req-1")
    first = await api.c.decide.Decide(req)
    again = await api.c.decide.Decide(req)
    assert again.decision_id == first.decision_id
    assert again.request_id == "req-1"
    assert len(api.engine.calls) == 1
    assert api.metric("aarm_idempotent_replays_total") == 1


async def test_without_request_id_every_call_is_a_new_decision(api: Api) -> None:
    first = await api.c.decide.Decide(decide_request(*QUERY))
    second = await api.c.decide.Decide(decide_request(*QUERY))
    assert first.decision_id != second.decision_id
    assert len(api.engine.calls) == 2


@pytest.mark.parametrize("drop", ["agent", "session_id"])
async def test_missing_identity_is_deny_without_asking_opa(api: Api, drop: str) -> None:
    ident = {k: v for k, v in IDENTITY.items() if k != drop}
    resp = await api.c.decide.Decide(decide_request(*QUERY, identity=ident))
    assert resp.decision == D.DECISION_DENY
    assert resp.reasons[0].code == "identity_missing"
    assert drop in resp.reasons[0].message
    assert api.engine.calls == []


async def test_a_service_without_a_human_is_identity_enough(api: Api) -> None:
    ident = {k: v for k, v in IDENTITY.items() if k != "human"}
    resp = await api.c.decide.Decide(decide_request(*QUERY, identity=ident))
    assert resp.decision == D.DECISION_ALLOW
    assert len(api.engine.calls) == 1


async def test_no_identity_at_all_is_deny(api: Api) -> None:
    resp = await api.c.decide.Decide(decide_request(*QUERY, identity={}))
    assert resp.decision == D.DECISION_DENY
    assert resp.reasons[0].code == "identity_missing"
    assert api.engine.calls == []


async def test_health_reports_serving_for_every_service(api: Api) -> None:
    names = ["", *(s.full_name for s in D.DESCRIPTOR.services_by_name.values())]
    for name in names:
        got = await api.c.health.Check(health_pb2.HealthCheckRequest(service=name))
        assert got.status == health_pb2.HealthCheckResponse.SERVING, name
