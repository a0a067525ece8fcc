"""Receipt bodies for decisions and what followed them. PURE: ids and time come in.

A body binds the action (tool, operation, parameters, with secret-named values
redacted and a sha256 of the full parameters; the modified parameters for MODIFY),
the identity and delegation chain at decision time, the session context hash, the
verdict with rule ids, reasons and the policy revision and hash. The receipt log adds
the chain position and the signature (:mod:`aarm_pdp.receipts.envelope`).

No credential is written in clear (:mod:`aarm_pdp.model.redaction`): the parameters'
clear copies are redacted by name and by value while ``parameters_sha256`` stays the
hash of the full, original parameters (it is what binds them); reason texts and every
string of a follow-up's detail (an outcome's ``error``, an approver's reason, facts)
are redacted by value. A body without a secret is byte for byte what it was without
redaction.
"""

from __future__ import annotations

from typing import Any

from aarm_pdp.model.decision import DecisionResult, PolicyVersion
from aarm_pdp.model.digests import parameters_hash
from aarm_pdp.model.levels import NO_CLASSIFICATION
from aarm_pdp.model.redaction import redact, redact_strings
from aarm_pdp.model.request import ActionRequest, identity_doc
from aarm_pdp.model.timestamps import rfc3339

UNBOUND = "unbound"
"""Chain of decisions about requests that carry no session (they are all DENY)."""


def chain_of(tenant: str, session_id: str) -> dict[str, str]:
    """The receipt chain a session's receipts go to."""
    return {"tenant": tenant or UNBOUND, "session_id": session_id or UNBOUND}


def decision_doc(decision_id: str, d: DecisionResult, policy: PolicyVersion) -> dict[str, Any]:
    """The verdict bound into a receipt."""
    doc: dict[str, Any] = {
        "decision_id": decision_id,
        "result": d.decision.value,
        "reasons": [redact_strings(r.to_doc()) for r in d.reasons],
        "matched_rules": list(d.matched_rules),
        "risk": {"level": d.risk_level.value, "score": d.risk_score},
        "policy": {"revision": policy.revision, "hash": policy.hash},
        "fail_closed": d.fail_closed,
    }
    if d.approval is not None:
        doc["approval_request"] = {
            "approval_id": d.approval.approval_id,
            "approvers": list(d.approval.approvers),
            "timeout_seconds": d.approval.timeout_seconds,
        }
    if d.deferral is not None:
        doc["deferral_request"] = {
            "deferral_id": d.deferral.deferral_id,
            "trigger": d.deferral.trigger,
            "context_needed": list(d.deferral.context_needed),
            "timeout_seconds": d.deferral.timeout_seconds,
        }
    return doc


def decision_receipt(
    *,
    receipt_id: str,
    decision_id: str,
    request: ActionRequest,
    decision: DecisionResult,
    policy: PolicyVersion,
    context: dict[str, Any] | None,
    context_hash: str,
    now_ns: int,
    links: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The body of a decision's receipt."""
    ident = request.identity
    act = request.action
    session = (context or {}).get("session", {})
    action: dict[str, Any] = {
        "tool": act.tool,
        "operation": act.operation,
        "original_tool": act.original_tool,
        "parameters": redact(act.parameters),
        "parameters_sha256": parameters_hash(act.parameters),
        "depends_on": list(act.depends_on),
    }
    if decision.modified_parameters is not None:
        action["modified_parameters"] = redact(decision.modified_parameters)
        action["modified_parameters_sha256"] = parameters_hash(decision.modified_parameters)
    return {
        "receipt_id": receipt_id,
        "kind": "decision",
        "issued_at": rfc3339(now_ns),
        "chain": chain_of(ident.tenant, ident.session_id),
        "decision_id": decision_id,
        "request_id": request.request_id or decision_id,
        "links": links or {},
        "action": action,
        "identity": identity_doc(ident),
        "context": {
            "context_hash": context_hash,
            "action_count": session.get("action_count", 0),
            "highest_classification": session.get("highest_classification", NO_CLASSIFICATION),
            "original_request_present": bool(session.get("original_request")),
        },
        "decision": decision_doc(decision_id, decision, policy),
        "approval": None,
        "deferral": None,
        "outcome": None,
    }


def follow_up_receipt(
    *,
    receipt_id: str,
    kind: str,
    tenant: str,
    session_id: str,
    decision_id: str,
    identity: dict[str, Any],
    detail: dict[str, Any],
    now_ns: int,
    links: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An outcome, approval, deferral resolution, timeout or session-end receipt.

    Every string of ``detail`` is value-redacted (names are ours here, not the caller's).
    """
    detail = redact_strings(detail)
    body: dict[str, Any] = {
        "receipt_id": receipt_id,
        "kind": kind,
        "issued_at": rfc3339(now_ns),
        "chain": chain_of(tenant, session_id),
        "decision_id": decision_id,
        "links": links or {},
        "identity": identity,
        "approval": None,
        "deferral": None,
        "outcome": None,
    }
    slot = {
        "approval": "approval",
        "deferral_resolution": "deferral",
        "timeout": "deferral",
        "outcome": "outcome",
    }.get(kind)
    if slot is not None:
        body[slot] = detail
    else:
        body["detail"] = detail
    if "result" in detail:
        body["decision"] = {"decision_id": decision_id, "result": detail["result"]}
    return body
