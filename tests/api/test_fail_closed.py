"""Every OPA answer that is not exactly a valid decision is an OK DENY with a reason code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aarm.v1 import decision_pb2
from aarm_pdp.errors import OpaBadResponse, OpaTimeout, OpaUnavailable

from tests.api.conftest import Api
from tests.support.messages import decide_request, verdict_doc

pytestmark = pytest.mark.api
D = decision_pb2
QUERY = ("db", "query", {"table": "orders", "limit": 10})


def _raises(exc: Exception) -> Any:
    def answer(_: dict[str, Any]) -> Any:
        raise exc

    return answer


MALFORMED: dict[str, Any] = {
    "no result (undefined decision)": {},
    "body not an object": [],
    "result not an object": {"result": "ALLOW"},
    "decision only": {"result": {"decision": "ALLOW"}},
    "unknown verdict": verdict_doc("PERMIT"),
    "lower-case verdict": verdict_doc("allow"),
    "no reasons": verdict_doc("ALLOW", reasons=[]),
    "reason without a code": verdict_doc("ALLOW", reasons=[{"rule_id": "r", "message": "m"}]),
    "unknown risk level": verdict_doc("ALLOW", risk={"level": "NONE", "score": 0.1}),
    "risk score out of range": verdict_doc("ALLOW", risk={"level": "LOW", "score": 2}),
    "risk score a string": verdict_doc("ALLOW", risk={"level": "LOW", "score": "0.1"}),
    "modified_parameters on ALLOW": verdict_doc("ALLOW", modified_parameters={"limit": 1}),
    "MODIFY without parameters": verdict_doc("MODIFY"),
    "STEP_UP without approvers": verdict_doc(
        "STEP_UP", approval={"approvers": [], "timeout_seconds": 60}
    ),
    "DEFER without a timeout": verdict_doc(
        "DEFER", deferral={"trigger": "missing_context", "context_needed": ["x"]}
    ),
    "unknown data classification": verdict_doc("ALLOW", data_classification="SECRET"),
}
CODE = {"no result (undefined decision)": "decision_undefined"}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_answer_is_deny_with_code(api: Api, name: str) -> None:
    api.opa.returns(MALFORMED[name])
    resp = await api.c.decide.Decide(decide_request(*QUERY))
    code = CODE.get(name, "decision_malformed")
    assert resp.decision == D.DECISION_DENY
    assert [r.code for r in resp.reasons] == [code]
    assert resp.reasons[0].rule_id == f"aarm.fail_closed.{code}"
    assert resp.risk.level == D.RISK_LEVEL_HIGH
    assert api.metric("aarm_fail_closed_total", code=code) == 1


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (OpaUnavailable("connection refused"), "opa_unavailable"),
        (OpaTimeout("no answer in time"), "opa_timeout"),
        (OpaBadResponse("HTTP 500"), "opa_bad_response"),
        (ZeroDivisionError(), "internal"),
    ],
)
async def test_engine_errors_are_deny_with_code(api: Api, exc: Exception, code: str) -> None:
    api.opa.answer = _raises(exc)
    resp = await api.c.decide.Decide(decide_request(*QUERY))
    assert resp.decision == D.DECISION_DENY
    assert resp.reasons[0].code == code
    assert resp.reasons[0].rule_id == f"aarm.fail_closed.{code}"
    assert api.metric("aarm_fail_closed_total", code=code) == 1


async def test_a_fail_closed_deny_is_receipted(api: Api) -> None:
    api.opa.returns({"result": {"decision": "ALLOW"}})
    resp = await api.c.decide.Decide(decide_request(*QUERY))
    doc = json.loads(resp.receipt.payload)
    assert doc["decision"]["result"] == "DENY"
    assert doc["decision"]["fail_closed"] is True
    assert doc["decision"]["reasons"][0]["code"] == "decision_malformed"


async def test_a_fail_closed_deny_is_not_replayed_by_request_id(api: Api) -> None:
    req = decide_request(*QUERY, request_id="retry-me")
    api.opa.answer = _raises(OpaUnavailable("down"))
    down = await api.c.decide.Decide(req)
    assert down.reasons[0].code == "opa_unavailable"
    api.opa.returns(verdict_doc("ALLOW"))
    up = await api.c.decide.Decide(req)
    assert up.decision == D.DECISION_ALLOW
    assert up.decision_id != down.decision_id
