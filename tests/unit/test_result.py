"""The result parser: only an exact, valid decision document yields a verdict."""

from __future__ import annotations

from typing import Any

import pytest
from aarm_pdp.decision.result import parse_result
from aarm_pdp.errors import DecisionMalformed, DecisionUndefined, ErrorCode
from aarm_pdp.model.decision import Decision, RiskLevel

from tests.support.messages import verdict_doc


def test_allow_parses() -> None:
    d = parse_result(verdict_doc("ALLOW"))
    assert d.decision is Decision.ALLOW
    assert d.reasons[0].rule_id == "aarm.test.rule"
    assert d.risk_level is RiskLevel.LOW
    assert d.modified_parameters is None and d.approval is None and d.deferral is None


def test_modify_carries_parameters() -> None:
    d = parse_result(verdict_doc("MODIFY", modified_parameters={"limit": 1000}))
    assert d.decision is Decision.MODIFY
    assert d.modified_parameters == {"limit": 1000}


def test_step_up_carries_approval() -> None:
    d = parse_result(
        verdict_doc("STEP_UP", approval={"approvers": ["finance"], "timeout_seconds": 3600})
    )
    assert d.approval is not None
    assert d.approval.approvers == ("finance",)
    assert d.approval.timeout_seconds == 3600


def test_defer_carries_deferral() -> None:
    d = parse_result(
        verdict_doc(
            "DEFER",
            deferral={
                "trigger": "missing_context",
                "context_needed": ["maintenance_window"],
                "timeout_seconds": 300,
            },
        )
    )
    assert d.deferral is not None
    assert d.deferral.context_needed == ("maintenance_window",)


def test_undefined_is_its_own_error() -> None:
    with pytest.raises(DecisionUndefined) as err:
        parse_result({})
    assert err.value.code is ErrorCode.DECISION_UNDEFINED


def _mutate(path: str, value: Any) -> dict[str, Any]:
    body = verdict_doc("ALLOW")
    doc = body["result"]
    *parents, last = path.split(".")
    for p in parents:
        doc = doc[p]
    if value is _DELETE:
        del doc[last]
    else:
        doc[last] = value
    return body


_DELETE = object()

MALFORMED: list[tuple[str, Any]] = [
    ("decision", "PERMIT"),
    ("decision", "allow"),
    ("decision", True),
    ("decision", _DELETE),
    ("reasons", []),
    ("reasons", "nope"),
    ("reasons", [{"code": "x", "rule_id": "y"}]),
    ("reasons", [{"code": 1, "rule_id": "y", "message": "m"}]),
    ("reasons", [{"code": "", "rule_id": "y", "message": "m"}]),
    ("matched_rules", "r"),
    ("matched_rules", [1]),
    ("matched_rules", _DELETE),
    ("risk", _DELETE),
    ("risk.level", "SEVERE"),
    ("risk.score", "0.5"),
    ("risk.score", 1.5),
    ("risk.score", True),
    ("modified_parameters", {"a": 1}),
    ("approval", {"approvers": ["x"], "timeout_seconds": 5}),
    ("deferral", {"trigger": "t", "context_needed": ["x"], "timeout_seconds": 5}),
]


@pytest.mark.parametrize(("path", "value"), MALFORMED)
def test_malformed_documents_raise(path: str, value: Any) -> None:
    with pytest.raises(DecisionMalformed):
        parse_result(_mutate(path, value))


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "ALLOW",
        {"result": None},
        {"result": "ALLOW"},
        {"result": True},
        {"result": []},
        verdict_doc("MODIFY"),
        verdict_doc("MODIFY", modified_parameters=[1]),
        verdict_doc("STEP_UP"),
        verdict_doc("STEP_UP", approval={"approvers": [], "timeout_seconds": 60}),
        verdict_doc("STEP_UP", approval={"approvers": ["a"], "timeout_seconds": 0}),
        verdict_doc("STEP_UP", approval={"approvers": ["a"], "timeout_seconds": 1.5}),
        verdict_doc("DEFER"),
        verdict_doc("DEFER", deferral={"trigger": "t", "context_needed": [], "timeout_seconds": 1}),
        verdict_doc("DEFER", deferral={"context_needed": ["x"], "timeout_seconds": 1}),
    ],
)
def test_wrong_shapes_raise(body: Any) -> None:
    with pytest.raises((DecisionMalformed, DecisionUndefined)):
        parse_result(body)
