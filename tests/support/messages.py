"""Request builders and OPA answer documents for the unit, API and integration tests."""

from __future__ import annotations

from typing import Any

from aarm.v1 import decision_pb2
from google.protobuf import json_format

IDENTITY: dict[str, Any] = {
    "tenant": "acme",
    "human": "alice@acme.example",
    "service": "agent-platform",
    "agent": "agent-7",
    "session_id": "s-1",
    "roles": ["analyst"],
}


def decide_request(
    tool: str,
    operation: str,
    parameters: dict[str, Any] | None = None,
    *,
    identity: dict[str, Any] | None = None,
    request_id: str = "",
    facts: list[dict[str, Any]] | None = None,
    risk_signals: dict[str, float] | None = None,
) -> Any:
    """A DecideRequest built from plain data through the JSON mapping."""
    doc: dict[str, Any] = {
        "requestId": request_id,
        "identity": IDENTITY if identity is None else identity,
        "action": {"tool": tool, "operation": operation, "parameters": parameters or {}},
        "facts": facts or [],
        "riskSignals": risk_signals or {},
    }
    return json_format.ParseDict(doc, decision_pb2.DecideRequest())


def verdict_doc(decision: str = "ALLOW", **extra: Any) -> dict[str, Any]:
    """A valid OPA decision document, for fakes."""
    doc: dict[str, Any] = {
        "decision": decision,
        "reasons": [{"code": "catalogued", "rule_id": "aarm.test.rule", "message": "ok"}],
        "matched_rules": ["aarm.test.rule"],
        "risk": {"level": "LOW", "score": 0.1},
    }
    doc.update(extra)
    return {"result": doc}


def opa_answer(decision: str) -> dict[str, Any]:
    """A valid OPA answer for each of the five decisions, with what that verdict must carry."""
    extra: dict[str, Any] = {
        "MODIFY": {"modified_parameters": {"table": "orders", "limit": 1000}},
        "STEP_UP": {"approval": {"approvers": ["data-owners"], "timeout_seconds": 600}},
        "DEFER": {
            "deferral": {
                "trigger": "missing_context",
                "context_needed": ["maintenance_window"],
                "timeout_seconds": 600,
            }
        },
    }.get(decision, {})
    return verdict_doc(decision, **extra)
