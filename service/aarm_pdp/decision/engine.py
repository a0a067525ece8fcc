"""The decision engine: orchestrates one decision. No transport code.

validate identity → build input (pure) → query policy → parse result (pure) → record.
Every failure on the way becomes a DENY carrying an error code; a bug becomes a DENY
with ``internal``. Nothing here can produce ALLOW except a valid policy document.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aarm_pdp.decision import metatools
from aarm_pdp.decision.idempotency import IdempotencyCache
from aarm_pdp.decision.input import build_input
from aarm_pdp.decision.result import parse_result
from aarm_pdp.errors import AarmError, ErrorCode
from aarm_pdp.model.decision import (
    Decision,
    DecisionRecord,
    DecisionResult,
    PolicyVersion,
    Reason,
    RiskLevel,
)
from aarm_pdp.model.levels import NO_CLASSIFICATION
from aarm_pdp.model.request import ActionRequest, identity_doc
from aarm_pdp.observability import logging as aarm_logging
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.opa.port import PolicyEngine
from aarm_pdp.receipts import body as receipt_body
from aarm_pdp.session.context import SessionContext

if TYPE_CHECKING:
    from aarm_pdp.approvals.tickets import Ticket
    from aarm_pdp.approvals.workflow import Workflow
    from aarm_pdp.observability.telemetry import TelemetryExporter
    from aarm_pdp.receipts.log import ReceiptLog

log = logging.getLogger("aarm_pdp.decision")

_FAIL_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.IDENTITY_MISSING: "action carries no verifiable identity (AARM R6)",
    ErrorCode.RECEIPT_STORE_UNAVAILABLE: "receipt could not be stored durably; failing closed",
    ErrorCode.STALE_POLICY: "the policy changed while the action was suspended; failing closed",
    ErrorCode.DEFER_EXHAUSTED: "deferral still unresolved after the allowed attempts",
    ErrorCode.APPROVAL_REJECTED: "approval token not valid for this action; failing closed",
    ErrorCode.IDENTITY_EXPIRED: "the identity's credential has expired (AARM R6)",
    ErrorCode.IDENTITY_REVOKED: "the identity has been revoked (AARM R6)",
    ErrorCode.SESSION_STORE_UNAVAILABLE: "session context unavailable; failing closed",
    ErrorCode.SESSION_CONFLICT: "identity does not match the session; failing closed",
    ErrorCode.OPA_UNAVAILABLE: "policy engine unavailable; failing closed",
    ErrorCode.OPA_TIMEOUT: "policy engine did not answer in time; failing closed",
    ErrorCode.OPA_BAD_RESPONSE: "policy engine answered with an error; failing closed",
    ErrorCode.DECISION_UNDEFINED: "policy produced no decision for this action; failing closed",
    ErrorCode.DECISION_MALFORMED: "policy produced a malformed decision; failing closed",
    ErrorCode.INTERNAL: "internal error while deciding; failing closed",
}


def telemetry_events(
    request: ActionRequest,
    record: DecisionRecord,
    context: dict[str, Any] | None,
    now_ns: int,
) -> list[dict[str, Any]]:
    """The aarm.action event, plus aarm.decision for anything but ALLOW. PURE.

    Parameters leave only as a sha256 (T9): never a value.
    """
    from aarm_pdp.observability.telemetry import event

    d = record.result
    ident = request.identity
    receipt = record.receipt or {}
    params_hash = (receipt.get("action") or {}).get(
        "parameters_sha256"
    ) or receipt_body.parameters_hash(request.action.parameters)
    common = {
        "decision_id": record.decision_id,
        "decision": d.decision.value,
        "actor": {
            "tenant": ident.tenant,
            "human": ident.human,
            "service": ident.service,
            "agent": ident.agent,
            "session_id": ident.session_id,
        },
        "api": {
            "tool": request.action.tool,
            "operation": request.action.operation,
            "original_tool": request.action.original_tool,
        },
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
                    "policy_id": list(d.matched_rules),
                    "reason_codes": [r.code for r in d.reasons],
                    "fail_closed": d.fail_closed,
                    "defer_trigger": d.deferral.trigger if d.deferral else "",
                    "classification": session.get("highest_classification", NO_CLASSIFICATION),
                    "signals": {
                        "drift": drift.get("max", 0.0),
                        "scope_expansion": drift.get("scope_expansion", False),
                        "action_count": session.get("action_count", 0),
                    },
                },
            )
        )
    return events


def fail_closed(code: ErrorCode, detail: str = "") -> DecisionResult:
    """The DENY that stands in for a decision that could not be made."""
    message = _FAIL_MESSAGES.get(code, "request could not be decided; failing closed")
    if detail:
        message = f"{message}: {detail}"
    return DecisionResult(
        decision=Decision.DENY,
        reasons=(
            Reason(code=code.value, rule_id=f"aarm.fail_closed.{code.value}", message=message),
        ),
        risk_level=RiskLevel.HIGH,
        risk_score=1.0,
        fail_closed=True,
    )


class DecisionEngine:
    """Decides one action at a time against a :class:`PolicyEngine`."""

    def __init__(
        self,
        policy: PolicyEngine,
        metrics: Metrics,
        *,
        opa_timeout: float = 1.0,
        clock_ns: Callable[[], int] = time.time_ns,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        cache: IdempotencyCache | None = None,
        sessions: SessionContext | None = None,
        meta_tools: dict[str, metatools.MetaTool] | None = None,
        workflow: Workflow | None = None,
        receipts: ReceiptLog | None = None,
        telemetry: TelemetryExporter | None = None,
    ) -> None:
        self._policy = policy
        self._metrics = metrics
        self._timeout = opa_timeout
        self._clock = clock_ns
        self._new_id = new_id
        self._cache = cache if cache is not None else IdempotencyCache()
        self._sessions = sessions
        self.workflow = workflow
        self.receipts = receipts
        self.telemetry = telemetry
        self._meta_tools = metatools.DEFAULT_META_TOOLS if meta_tools is None else meta_tools
        self.policy_version = PolicyVersion()

    async def refresh_policy_version(self) -> PolicyVersion:
        """Ask the policy engine which policy it runs; publish it as a metric."""
        version = await self._policy.policy_version()
        if version != self.policy_version:
            self.policy_version = version
            self._metrics.policy.info({"revision": version.revision, "hash": version.hash})
        return version

    async def decide(
        self, request: ActionRequest, *, deadline: float | None = None
    ) -> DecisionRecord:
        """One decision for ``request``; ``deadline`` caps the OPA wait (seconds)."""
        now_ns = self._clock()
        key = None
        if request.request_id:
            key = (request.identity.tenant, request.identity.session_id, request.request_id)
            hit = self._cache.lookup(key, request.fingerprint, now_ns)
            if hit is not None:
                self._metrics.idempotent_replays.inc()
                return hit if isinstance(hit, DecisionRecord) else await asyncio.shield(hit)
            self._cache.begin(key, request.fingerprint)

        try:
            record = await self._decide_new(request, now_ns, deadline)
        except BaseException as exc:
            if key is not None:
                self._cache.abandon(key, exc)
            raise
        if key is not None:
            self._cache.finish(key, record, now_ns, store=not record.result.fail_closed)
        return record

    async def _decide_new(
        self, request: ActionRequest, now_ns: int, deadline: float | None
    ) -> DecisionRecord:
        decision_id = self._new_id()
        token = aarm_logging.bind(
            decision_id=decision_id,
            session_id=request.identity.session_id,
            agent_id=request.identity.agent,
        )
        started = time.perf_counter()
        scratch: dict[str, Any] = {}
        try:
            decision = await self._evaluate(request, now_ns, deadline, decision_id, scratch)
            receipt = None
            if self.receipts is not None:
                links = {}
                if request.approval_token and decision.reasons[0].code == "approved":
                    links["approval_id"] = request.approval_token.partition(".")[0]
                decision, receipt = await self._receipt(
                    request, decision_id, decision, scratch, now_ns, links
                )
        finally:
            aarm_logging.reset(token)
        record = DecisionRecord(
            decision_id=decision_id,
            request_id=request.request_id or decision_id,
            result=decision,
            policy=self.policy_version,
            receipt=receipt,
        )
        if self.telemetry is not None:
            for ev in telemetry_events(request, record, scratch.get("context"), now_ns):
                self.telemetry.emit(ev)
        m = self._metrics
        verdict = decision.decision.value
        m.decide_duration.labels(verdict).observe(time.perf_counter() - started)
        m.decisions.labels(verdict, m.code_label(decision.reasons[0].code)).inc()
        return record

    async def _receipt(
        self,
        request: ActionRequest,
        decision_id: str,
        decision: DecisionResult,
        scratch: dict[str, Any],
        now_ns: int,
        links: dict[str, str],
    ) -> tuple[DecisionResult, dict[str, Any] | None]:
        """Durably record the decision; no receipt, no verdict (DENY instead)."""
        assert self.receipts is not None
        body = receipt_body.decision_receipt(
            receipt_id=self._new_id(),
            decision_id=decision_id,
            request=request,
            decision=decision,
            policy=self.policy_version,
            context=scratch.get("context"),
            context_hash=scratch.get("context_hash", ""),
            now_ns=now_ns,
            links=links,
        )
        try:
            return decision, await self.receipts.append(body)
        except AarmError as exc:
            log.error("receipt not stored, failing closed: %s: %s", exc.code.value, exc.detail)
            return self._failed(exc.code), None
        except Exception:
            log.exception("receipt not stored, failing closed")
            return self._failed(ErrorCode.RECEIPT_STORE_UNAVAILABLE), None

    async def _evaluate(
        self,
        request: ActionRequest,
        now_ns: int,
        deadline: float | None,
        decision_id: str,
        scratch: dict[str, Any],
    ) -> DecisionResult:
        m = self._metrics
        try:
            missing = request.identity.missing()
            if missing:
                return self._failed(ErrorCode.IDENTITY_MISSING, "missing " + ", ".join(missing))
            expires = request.identity.expires_at_ns
            if expires and expires <= now_ns:
                return self._failed(ErrorCode.IDENTITY_EXPIRED)
            action = metatools.resolve(request.action, self._meta_tools)
            if action is not request.action:
                request = dataclasses.replace(request, action=action)
            prepared = None
            context = None
            if self._sessions is not None:
                prepared = await self._sessions.prepare(request, now_ns)
                context = prepared.input_parts
                scratch["context"] = context
                scratch["context_hash"] = prepared.context_hash
                m.drift.observe(context["drift"]["action"])
            decision = await self._query(request, context, now_ns, deadline)
            wf = self.workflow
            if decision.decision is Decision.STEP_UP and request.approval_token and wf:
                # A granted, single-use token for exactly this action, same policy.
                decision = await wf.redeem(
                    request.approval_token, request, self.policy_version, now_ns
                )
            if self._sessions is not None and prepared is not None:
                # Recorded before it runs (AARM R2); no record, no verdict.
                await self._sessions.commit(prepared, request, decision_id, decision, now_ns)
            if wf is not None and decision.decision in (Decision.STEP_UP, Decision.DEFER):
                decision = await self._suspend(wf, request, decision_id, decision, context, now_ns)
            return decision
        except AarmError as exc:
            log.warning("failing closed: %s: %s", exc.code.value, exc.detail)
            return self._failed(exc.code)
        except Exception:
            log.exception("failing closed: unexpected error")
            return self._failed(ErrorCode.INTERNAL)

    async def _suspend(
        self,
        wf: Workflow,
        request: ActionRequest,
        decision_id: str,
        decision: DecisionResult,
        context: dict[str, Any] | None,
        now_ns: int,
        source: str = "step_up",
    ) -> DecisionResult:
        """Open the approval or deferral ticket; its id goes back in the verdict."""
        ident = request.identity
        ctx = context or {}
        session = ctx.get("session", {})
        snapshot = {
            "source": source,
            "original_request": session.get("original_request"),
            "action": {
                "tool": request.action.tool,
                "operation": request.action.operation,
                "original_tool": request.action.original_tool,
                "parameters": request.action.parameters,
            },
            "prior_actions": session.get("recent", []),
            "highest_classification": session.get("highest_classification", NO_CLASSIFICATION),
            "labels": session.get("labels", []),
            "drift": ctx.get("drift", {}),
            "identity": identity_doc(ident),
            "matched_rules": list(decision.matched_rules),
            "reasons": [r.to_doc() for r in decision.reasons],
            "risk": {"level": decision.risk_level.value, "score": decision.risk_score},
            "policy": dataclasses.asdict(self.policy_version),
        }
        kind = "approval" if decision.decision is Decision.STEP_UP else "deferral"
        ticket_id = await wf.open(
            kind=kind,
            request=request,
            raw_request=request.raw,
            decision_id=decision_id,
            decision=decision,
            policy=self.policy_version,
            context=snapshot,
            now_ns=now_ns,
        )
        if decision.approval is not None:
            return dataclasses.replace(
                decision, approval=dataclasses.replace(decision.approval, approval_id=ticket_id)
            )
        assert decision.deferral is not None
        return dataclasses.replace(
            decision, deferral=dataclasses.replace(decision.deferral, deferral_id=ticket_id)
        )

    async def reevaluate(
        self, request: ActionRequest, ticket: Ticket, *, deadline: float | None = None
    ) -> DecisionRecord:
        """Judge a deferred action again with the facts supplied since (same identity)."""
        wf = self.workflow
        assert wf is not None
        now_ns = self._clock()
        decision_id = self._new_id()
        started = time.perf_counter()
        try:
            if ticket.policy_hash != self.policy_version.hash:
                decision = self._failed(ErrorCode.STALE_POLICY, "policy changed while deferred")
            else:
                decision = await self._reevaluate(request, now_ns, deadline)
            ticket = await wf.record_attempt(
                ticket.ticket_id,
                facts=sorted(request.facts),
                verdict=decision.decision.value,
                decision_id=decision_id,
                now_ns=now_ns,
            )
            exhausted = ticket.resolution.get("method") == "attempts_exhausted"
            if exhausted and decision.decision is not Decision.DENY:
                decision = self._failed(ErrorCode.DEFER_EXHAUSTED)
            if decision.decision is Decision.DEFER and decision.deferral is not None:
                decision = dataclasses.replace(
                    decision,
                    deferral=dataclasses.replace(decision.deferral, deferral_id=ticket.ticket_id),
                )
            elif decision.decision is Decision.STEP_UP:
                decision = await self._suspend(
                    wf, request, decision_id, decision, None, now_ns, source="defer_escalation"
                )
        except AarmError as exc:
            log.warning("deferral resolution failing closed: %s: %s", exc.code.value, exc.detail)
            decision = self._failed(exc.code)
        except Exception:
            log.exception("deferral resolution failing closed: unexpected error")
            decision = self._failed(ErrorCode.INTERNAL)
        receipt = None
        if self.receipts is not None:
            links = {"deferral_id": ticket.ticket_id, "deferred_decision_id": ticket.decision_id}
            decision, receipt = await self._receipt(
                request, decision_id, decision, {}, now_ns, links
            )
        m = self._metrics
        m.decide_duration.labels(decision.decision.value).observe(time.perf_counter() - started)
        m.decisions.labels(decision.decision.value, m.code_label(decision.reasons[0].code)).inc()
        return DecisionRecord(
            decision_id, request.request_id or decision_id, decision, self.policy_version, receipt
        )

    async def _reevaluate(
        self, request: ActionRequest, now_ns: int, deadline: float | None
    ) -> DecisionResult:
        context = None
        if self._sessions is not None:
            context = (await self._sessions.prepare(request, now_ns)).input_parts
        return await self._query(request, context, now_ns, deadline)

    async def _query(
        self,
        request: ActionRequest,
        context: dict[str, Any] | None,
        now_ns: int,
        deadline: float | None,
    ) -> DecisionResult:
        """Build the input, ask the policy engine (timed, errors counted), parse."""
        m = self._metrics
        input_doc = build_input(request, now_ns=now_ns, context=context)
        timeout = self._timeout if deadline is None else max(0.0, min(self._timeout, deadline))
        t0 = time.perf_counter()
        try:
            body = await self._policy.evaluate(input_doc, timeout=timeout)
        except AarmError as exc:
            m.opa_errors.labels(exc.code.value).inc()
            raise
        finally:
            m.opa_query_duration.observe(time.perf_counter() - t0)
        return parse_result(body)

    def _failed(self, code: ErrorCode, detail: str = "") -> DecisionResult:
        self._metrics.errors.labels(code.value).inc()
        self._metrics.fail_closed.labels(code.value).inc()
        return fail_closed(code, detail)
