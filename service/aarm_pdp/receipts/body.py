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

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from aarm_pdp.model.decision import DecisionResult, PolicyVersion
from aarm_pdp.model.digests import parameters_hash
from aarm_pdp.model.levels import NO_CLASSIFICATION
from aarm_pdp.model.redaction import redact, redact_strings
from aarm_pdp.model.request import ActionRequest, identity_doc
from aarm_pdp.model.timestamps import rfc3339
from aarm_pdp.receipts.canonical import canonicalize, canonicalize_nearest

UNBOUND = "unbound"
"""Chain of decisions about requests that carry no session (they are all DENY)."""


def chain_of(tenant: str, session_id: str) -> dict[str, str]:
    """The receipt chain a session's receipts go to."""
    return {"tenant": tenant or UNBOUND, "session_id": session_id or UNBOUND}


def decision_doc(
    decision_id: str, d: DecisionResult, policy: PolicyVersion, input_sha256: str | None = None
) -> dict[str, Any]:
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
    if input_sha256 is not None:
        doc["input_sha256"] = input_sha256
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
    input_sha256: str | None = None,
) -> dict[str, Any]:
    """The body of a decision's receipt.

    ``input_sha256``: sha256 (hex) of the decision record, the redacted policy input as
    canonical JSON (:func:`decision_record`), stored beside the receipt; the member
    ``decision.input_sha256`` is left out when there is none (no policy query)."""
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
        "decision": decision_doc(decision_id, decision, policy, input_sha256),
        "approval": None,
        "deferral": None,
        "outcome": None,
    }


def decision_record(
    input_doc: Mapping[str, Any], verdict: str, matched_rules: Sequence[str]
) -> tuple[str, str]:
    """The decision record kept beside a decision receipt, and its input's hash.

    The record (canonical JSON, RFC 8785) holds ``input``, what the policy saw: the OPA
    input with every string redacted by value and the action's parameters redacted by
    name too (as the receipt redacts them); and ``policy``, the policy's own verdict on
    it (``decision``, ``matched_rules``), before approvals or fail-closed overrides. The
    hash is sha256 (hex) of the canonical ``input`` alone: the receipt's
    ``decision.input_sha256``.
    """
    action = input_doc.get("action")
    params = action.get("parameters") if isinstance(action, Mapping) else None
    if isinstance(action, Mapping) and isinstance(params, Mapping):
        # redacted by name too: skipped in the first pass
        doc = redact_strings({**input_doc, "action": {**action, "parameters": {}}})
        doc["action"]["parameters"] = redact(params)
    else:
        doc = redact_strings(dict(input_doc))
    canonical = canonicalize_nearest(doc)
    digest = hashlib.sha256(canonical).hexdigest()
    policy = canonicalize({"decision": verdict, "matched_rules": list(matched_rules)})
    # RFC 8785 of {"input": doc, "policy": ...} ("input" sorts first), the input encoded once.
    return (b'{"input":' + canonical + b',"policy":' + policy + b"}").decode("utf-8"), digest


def input_sha256(record: Mapping[str, Any]) -> str:
    """The ``decision.input_sha256`` a parsed decision record's ``input`` gives."""
    return hashlib.sha256(canonicalize(record["input"])).hexdigest()


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
