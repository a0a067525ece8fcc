"""Plain verdicts and outcomes, and their MCP translations (PURE: no I/O, no clock).

:class:`Verdict` is what the :class:`~aarm_pdp.gateway.enforcer.Enforcer` port answers
(whatever backs it); :func:`refusal` turns a verdict that does not run the call into
the MCP tool error the client sees; :func:`outcome_of` turns an upstream
``CallToolResult`` into the :class:`Outcome` reported to the session.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from mcp import types

RUNS = frozenset({"ALLOW", "MODIFY"})
MAX_OUTPUT_TEXT = 65_536
"""The longest output text a RecordOutcome takes (the rest is cut, the digest is of all)."""


@dataclass(frozen=True, slots=True)
class SessionIdentity:
    """Who acts, in which AARM session (one per MCP client session)."""

    tenant: str
    human: str
    service: str
    agent: str
    session_id: str


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    rule_id: str
    message: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """One Decide answer, reduced to what the gateway acts on."""

    decision: str
    """ALLOW, DENY, MODIFY, STEP_UP or DEFER (an unknown or missing verdict is DENY)."""
    decision_id: str = ""
    reasons: tuple[Reason, ...] = ()
    arguments: dict[str, Any] | None = None
    """For ALLOW and MODIFY: the arguments to run with (a MODIFY's, in the tool's types)."""
    approval_id: str = ""
    approval_timeout_seconds: float = 0.0
    approvers: tuple[str, ...] = ()
    deferral_id: str = ""
    deferral_trigger: str = ""
    context_needed: tuple[str, ...] = ()
    deferral_timeout_seconds: float = 0.0

    @property
    def runs(self) -> bool:
        return self.decision in RUNS

    def rule_ids(self) -> list[str]:
        return [r.rule_id for r in self.reasons if r.rule_id]


@dataclass(frozen=True, slots=True)
class ApprovalResult:
    """How a watched approval ended: GRANTED (with its token), REJECTED, EXPIRED, or
    TIMEOUT (the gateway stopped waiting) / UNAVAILABLE (the watch failed)."""

    status: str
    token: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a forwarded call did, for RecordOutcome."""

    executed: bool
    started_ns: int
    completed_ns: int
    output_digest: str
    output_text: str
    classification: str = ""
    source_trust: str = ""
    error: str = ""
    labels: tuple[str, ...] = field(default_factory=tuple)


def fail_closed(code: str, message: str) -> Verdict:
    """The DENY the gateway gives itself when it cannot get a verdict."""
    return Verdict("DENY", reasons=(Reason(code, "aarm.gateway.fail_closed", message),))


def refusal(
    exposed: str, verdict: Verdict, *, note: str = "", extra: Reason | None = None
) -> types.CallToolResult:
    """The MCP tool error for a call that does not run: reasons with their rule ids.

    ``extra`` is the gateway's own last word (a STEP_UP that timed out, was rejected);
    the text names the decision, every reason and what a DEFER needs.
    """
    reasons = [*verdict.reasons, *([extra] if extra else [])]
    verb = "deferred" if verdict.decision == "DEFER" else "denied"
    head = f"aarm-pdp {verb} {exposed}"
    if verdict.decision_id:
        head += f" (decision {verdict.decision_id}, {verdict.decision})"
    lines = [head + (f": {note}" if note else "")]
    lines += [f"- {r.rule_id or '-'} [{r.code}]: {r.message}" for r in reasons]
    meta: dict[str, Any] = {
        "decision": verdict.decision,
        "decision_id": verdict.decision_id,
        "reasons": [{"code": r.code, "rule_id": r.rule_id, "message": r.message} for r in reasons],
    }
    if verdict.decision == "DEFER":
        needed = ", ".join(verdict.context_needed) or "(none named)"
        lines.append(
            f"context needed: {needed} (trigger {verdict.deferral_trigger or '-'}; "
            f"deferral {verdict.deferral_id}; provide it through "
            f"aarm.v1.DeferralService/ProvideContext within "
            f"{verdict.deferral_timeout_seconds:g} s)"
        )
        meta["deferral"] = {
            "deferral_id": verdict.deferral_id,
            "trigger": verdict.deferral_trigger,
            "context_needed": list(verdict.context_needed),
            "timeout_seconds": verdict.deferral_timeout_seconds,
        }
    if verdict.approval_id:
        meta["approval_id"] = verdict.approval_id
    return types.CallToolResult(
        content=[types.TextContent(type="text", text="\n".join(lines))],
        isError=True,
        _meta={"aarm": meta},
    )


def outcome_of(
    result: types.CallToolResult,
    *,
    started_ns: int,
    completed_ns: int,
    classification: str = "",
    source_trust: str = "",
) -> Outcome:
    """The outcome of an upstream result: its text (cut to :data:`MAX_OUTPUT_TEXT`),
    the sha256 of the whole result as the upstream sent it, failed when ``isError``."""
    dumped = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    digest = hashlib.sha256(
        json.dumps(dumped, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    parts = [_text_of(block) for block in result.content]
    if result.structuredContent is not None and not any(parts):
        parts.append(json.dumps(result.structuredContent, sort_keys=True))
    text = "\n".join(p for p in parts if p)
    if len(text) > MAX_OUTPUT_TEXT:
        text = text[:MAX_OUTPUT_TEXT]
    return Outcome(
        executed=not result.isError,
        started_ns=started_ns,
        completed_ns=completed_ns,
        output_digest=digest,
        output_text=text,
        classification=classification,
        source_trust=source_trust,
        error=text[:2048] if result.isError else "",
    )


def failure(error: str, *, started_ns: int, completed_ns: int) -> Outcome:
    """The outcome of a forwarded call whose upstream failed without a result."""
    return Outcome(
        executed=False,
        started_ns=started_ns,
        completed_ns=completed_ns,
        output_digest=hashlib.sha256(b"").hexdigest(),
        output_text="",
        error=error[:2048],
    )


def _text_of(block: types.ContentBlock) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.EmbeddedResource) and isinstance(
        block.resource, types.TextResourceContents
    ):
        return block.resource.text
    if isinstance(block, types.ResourceLink):
        return str(block.uri)
    return ""
