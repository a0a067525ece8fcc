"""Every telemetry event the service emits, built in one place. PURE.

Schema ``aarm.telemetry.v1`` (``docs/telemetry.md``): ``aarm.action`` for every
decided action, ``aarm.decision`` for anything but ALLOW, ``aarm.approval`` for a
settled approval. Parameters leave only as a sha256 (AARM T9): never a value. The
other strings that come from a caller or the policy (actor, api, rule ids, reason codes,
defer trigger, classification, approver) are value-redacted
(:func:`~aarm_pdp.model.redaction.redact_values`: a credential echoed there leaves as
``<redacted>``); our own ids and hashes are left as they are. The exporter
(:mod:`aarm_pdp.observability.telemetry`) ships what these return.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aarm_pdp.model.decision import Decision, DecisionRecord
from aarm_pdp.model.digests import parameters_hash
from aarm_pdp.model.levels import NO_CLASSIFICATION
from aarm_pdp.model.redaction import redact_strings, redact_values
from aarm_pdp.model.request import ActionRequest

SCHEMA = "aarm.telemetry.v1"
SEVERITY_ID = {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
CLASS_UID = {"aarm.action": 6003, "aarm.decision": 2001, "aarm.approval": 3003}
_ACTOR = ("tenant", "human", "service", "agent", "session_id")
_API = ("tool", "operation", "original_tool")


def event(kind: str, *, time_ns: int, severity: str, fields: dict[str, Any]) -> dict[str, Any]:
    """One telemetry event."""
    return {
        "schema": SCHEMA,
        "type": kind,
        "class_uid": CLASS_UID.get(kind, 0),
        "time": time_ns // 1_000_000,
        "severity": severity,
        "severity_id": SEVERITY_ID.get(severity, 0),
        **fields,
    }


def decision_events(
    request: ActionRequest,
    record: DecisionRecord,
    context: Mapping[str, Any] | None,
    now_ns: int,
) -> list[dict[str, Any]]:
    """The aarm.action event, plus aarm.decision for anything but ALLOW."""
    d = record.result
    ident = request.identity
    receipt = record.receipt or {}
    params_hash = (receipt.get("action") or {}).get("parameters_sha256") or parameters_hash(
        request.action.parameters
    )
    common = {
        "decision_id": record.decision_id,
        "decision": d.decision.value,
        "actor": {k: redact_values(getattr(ident, k)) for k in _ACTOR},
        "api": {k: redact_values(getattr(request.action, k)) for k in _API},
        "parameters_hash": params_hash,
        "policy": {"revision": record.policy.revision, "hash": record.policy.hash},
        "receipt_id": receipt.get("receipt_id", ""),
    }
    events = [event("aarm.action", time_ns=now_ns, severity=d.risk_level.value, fields=common)]
    if d.decision is not Decision.ALLOW:
        session = (context or {}).get("session", {})
        drift = (context or {}).get("drift", {})
        events.append(
            event(
                "aarm.decision",
                time_ns=now_ns,
                severity=d.risk_level.value,
                fields={
                    **common,
                    "policy_id": [redact_values(r) for r in d.matched_rules],
                    "reason_codes": [redact_values(r.code) for r in d.reasons],
                    "fail_closed": d.fail_closed,
                    "defer_trigger": redact_values(d.deferral.trigger) if d.deferral else "",
                    "classification": redact_strings(
                        session.get("highest_classification", NO_CLASSIFICATION)
                    ),
                    "signals": {
                        "drift": drift.get("max", 0.0),
                        "scope_expansion": drift.get("scope_expansion", False),
                        "action_count": session.get("action_count", 0),
                    },
                },
            )
        )
    return events


def approval_event(
    *,
    ticket_context: Mapping[str, Any],
    ticket_id: str,
    decision_id: str,
    risk_level: str,
    created_ns: int,
    kind: str,
    verdict: str,
    detail: Mapping[str, Any],
    receipt_id: str,
    now_ns: int,
) -> dict[str, Any]:
    """The aarm.approval event for a settled approval (granted, rejected or expired)."""
    ident = ticket_context.get("identity", {})
    action = ticket_context.get("action", {})
    policy = ticket_context.get("policy", {})
    status = "expired" if kind == "timeout" else "granted" if verdict == "GRANTED" else "rejected"
    return event(
        "aarm.approval",
        time_ns=now_ns,
        severity=risk_level,
        fields={
            "decision_id": decision_id,
            "decision": "STEP_UP",
            "actor": {k: redact_strings(ident.get(k, "")) for k in _ACTOR},
            "api": {k: redact_strings(action.get(k, "")) for k in _API},
            "parameters_hash": parameters_hash(action.get("parameters", {})),
            "policy": {"revision": policy.get("revision", ""), "hash": policy.get("hash", "")},
            "receipt_id": receipt_id,
            "approval_id": ticket_id,
            "status": status,
            "approver": redact_strings(detail.get("approver", "")),
            "response_time_ms": (now_ns - created_ns) // 1_000_000,
        },
    )
