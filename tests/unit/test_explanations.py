"""A reason's explanation (docs/policies/explain.md) through the service: parsed from the
decision document, into the response, the receipt and ``aarm-pdp explain``'s inputs."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from aarm.v1 import decision_pb2
from aarm_pdp.api.reasons import reason_pb
from aarm_pdp.decision.explain import inputs_that_mattered
from aarm_pdp.decision.result import parse_result
from aarm_pdp.errors import DecisionMalformed
from aarm_pdp.model.decision import (
    PolicyVersion,
    Reason,
    ValueProvenance,
    ValueSource,
    VerdictChange,
)
from aarm_pdp.receipts.body import decision_doc

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"

LARGE = {
    "code": "high_impact",
    "rule_id": "aarm.stepup.large_payment",
    "message": 'payments.transfer of 25000 EUR (parameter "amount") is above the threshold',
    "param": "amount",
    "provenance": None,
    "would_change": {
        "kind": "approval",
        "text": "an approval by finance, or an amount of at most 10000",
        "approver_group": "finance",
        "threshold": 10000,
        "value": 25000,
    },
}
UNTRUSTED = {
    "code": "untrusted_argument",
    "rule_id": "aarm.provenance.untrusted_argument",
    "message": "its to_account came only from untrusted content",
    "param": "to_account",
    "provenance": {
        "origin": "untrusted",
        "sources": [{"call": 1, "tool": "email.read", "decision_id": "d-1"}],
    },
    "would_change": {"kind": "provenance", "text": "a value the user's request named"},
}


def _doc(*reasons: dict[str, Any], decision: str = "DENY") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "decision": decision,
        "reasons": list(reasons),
        "matched_rules": sorted({r["rule_id"] for r in reasons}),
        "risk": {"level": "HIGH", "score": 0.7},
    }
    if decision == "STEP_UP":
        doc["approval"] = {"approvers": ["finance-approvers"], "timeout_seconds": 3600}
    return {"result": doc}


def test_the_explanation_is_parsed_with_the_reason() -> None:
    result = parse_result(_doc(LARGE, UNTRUSTED, decision="STEP_UP"))
    large, untrusted = result.reasons
    assert large.param == "amount"
    assert large.provenance is None
    assert large.would_change == VerdictChange(
        kind="approval",
        text="an approval by finance, or an amount of at most 10000",
        approver_group="finance",
        threshold=10000,
        value=25000,
    )
    assert untrusted.provenance == ValueProvenance(
        origin="untrusted", sources=(ValueSource(call=1, tool="email.read", decision_id="d-1"),)
    )
    # JSON: what receipts and tickets store, and back
    assert Reason.from_doc(untrusted.to_doc()) == untrusted
    assert Reason.from_doc(large.to_doc()) == large


def test_a_reason_without_an_explanation_is_what_it_always_was() -> None:
    overlay = {"code": "site_rule", "rule_id": "aarm.overlays.site.rules.r", "message": "m"}
    nulls = {**overlay, "param": None, "provenance": None, "would_change": None}
    for given in (overlay, nulls):
        [reason] = parse_result(_doc(given)).reasons
        assert reason == Reason("site_rule", "aarm.overlays.site.rules.r", "m")
        assert reason.to_doc() == overlay


@pytest.mark.parametrize(
    "bad",
    [
        {"param": ""},
        {"param": 7},
        {"provenance": "untrusted"},
        {"provenance": {"origin": "", "sources": []}},
        {"provenance": {"origin": "untrusted", "sources": [{"call": -1, "tool": "t"}]}},
        {"provenance": {"origin": "untrusted", "sources": [{"call": True, "tool": "t"}]}},
        {"would_change": {"kind": "value"}},
        {"would_change": {"kind": "value", "text": "t", "threshold": "10"}},
        {"would_change": {"kind": "value", "text": "t", "value": float("inf")}},
        {"would_change": {"kind": "value", "text": "t", "context_needed": [""]}},
        {"would_change": ["value"]},
    ],
)
def test_a_malformed_explanation_is_a_malformed_decision(bad: dict[str, Any]) -> None:
    with pytest.raises(DecisionMalformed):
        parse_result(_doc({**UNTRUSTED, **bad}))


def test_explanation_strings_are_redacted_and_a_secret_parameter_keeps_its_value() -> None:
    reason = {
        "code": "parameter_invalid",
        "rule_id": "aarm.params.range",
        "message": f"api_key {AWS_KEY} is too long",
        "param": "api_key",
        "provenance": None,
        "would_change": {
            "kind": "value",
            "text": f"not {AWS_KEY}",
            "threshold": 10,
            "value": 12345,
        },
    }
    [parsed] = parse_result(_doc(reason)).reasons
    assert AWS_KEY not in repr(parsed)
    assert parsed.would_change is not None
    assert parsed.would_change.threshold == 10
    assert parsed.would_change.value is None  # a secret-named parameter's value is not repeated


def test_the_receipt_carries_the_explanation_redacted_by_value() -> None:
    reason = Reason(
        "untrusted_argument",
        "aarm.provenance.untrusted_argument",
        "m",
        param="to",
        provenance=ValueProvenance("untrusted", (ValueSource(2, "web.open", "d-2"),)),
        would_change=VerdictChange("provenance", f"not the one in {AWS_KEY}"),
    )
    result = dataclasses.replace(parse_result(_doc(UNTRUSTED)), reasons=(reason,))
    body = decision_doc("d-3", result, PolicyVersion())
    [doc] = body["reasons"]
    assert doc["param"] == "to"
    assert doc["provenance"] == {
        "origin": "untrusted",
        "sources": [{"call": 2, "tool": "web.open", "decision_id": "d-2"}],
    }
    assert doc["would_change"]["kind"] == "provenance"
    assert AWS_KEY not in str(body)


def test_the_response_carries_the_explanation() -> None:
    large, untrusted = parse_result(_doc(LARGE, UNTRUSTED, decision="STEP_UP")).reasons
    msg = reason_pb(large)
    assert isinstance(msg, decision_pb2.Reason)
    assert msg.param == "amount"
    assert not msg.HasField("provenance")
    assert msg.would_change.approver_group == "finance"
    assert msg.would_change.HasField("threshold") and msg.would_change.threshold == 10000
    assert msg.would_change.value == 25000
    prov = reason_pb(untrusted).provenance
    assert prov.origin == "untrusted"
    assert [(s.call, s.tool, s.decision_id) for s in prov.sources] == [(1, "email.read", "d-1")]
    bare = reason_pb(Reason("catalogued", "aarm.main.catalogued", "ok"))
    assert bare.param == "" and not bare.HasField("would_change")
    assert not bare.would_change.HasField("threshold")


def test_inputs_that_mattered_are_the_named_parameters_facts_and_signals() -> None:
    record_input = {
        "action": {"parameters": {"amount": 25000, "to_account": "NL91", "memo": "x"}},
        "provenance": {
            "parameters": {
                "to_account": {"origins": ["tool_untrusted"]},
                "memo": {"origins": ["user"]},
            }
        },
        "facts": {"maintenance_window": {"value": False, "source": "ticketing"}},
        "risk_signals": {"injection_score": 0.9},
        "dependencies": {"deferred": ["d-2"]},
        "session": {"action_count": 31, "counts": {}, "labels": ["PII"]},
    }
    reasons = [
        UNTRUSTED,
        {"param": None, "would_change": {"kind": "fact", "fact": "maintenance_window"}},
        {"would_change": {"kind": "resolution", "context_needed": ["resolution:d-2"]}},
        {"would_change": {"kind": "signal"}},
        {"would_change": {"kind": "session"}},
    ]
    assert inputs_that_mattered(reasons, record_input) == {
        "parameters": {
            "to_account": {"value": "NL91", "provenance": {"to_account": ["tool_untrusted"]}}
        },
        "facts": {"maintenance_window": {"value": False, "source": "ticketing"}},
        "risk_signals": {"injection_score": 0.9},
        "dependencies": {"deferred": ["d-2"]},
        "session": {"action_count": 31, "counts": {}},
    }
    assert inputs_that_mattered([{"code": "catalogued"}], record_input) == {}
