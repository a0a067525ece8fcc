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

from aarm_pdp.decision import metatools
from aarm_pdp.decision.idempotency import IdempotencyCache
from aarm_pdp.decision.input import build_input
from aarm_pdp.decision.model import (
    Decision,
    DecisionRecord,
    PolicyVersion,
    Reason,
    RiskLevel,
    Verdict,
)
from aarm_pdp.decision.request import ActionRequest
from aarm_pdp.decision.result import parse_result
from aarm_pdp.errors import AarmError, ErrorCode
from aarm_pdp.observability import logging as aarm_logging
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.opa.port import PolicyEngine
from aarm_pdp.session.context import SessionContext

log = logging.getLogger("aarm_pdp.decision")

_FAIL_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.IDENTITY_MISSING: "action carries no verifiable identity (AARM R6)",
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


def fail_closed(code: ErrorCode, detail: str = "") -> Decision:
    """The DENY that stands in for a decision that could not be made."""
    message = _FAIL_MESSAGES.get(code, "request could not be decided; failing closed")
    if detail:
        message = f"{message}: {detail}"
    return Decision(
        verdict=Verdict.DENY,
        reasons=(Reason(code=code.value, rule_id=f"aarm_pdp.{code.value}", message=message),),
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
    ) -> None:
        self._policy = policy
        self._metrics = metrics
        self._timeout = opa_timeout
        self._clock = clock_ns
        self._new_id = new_id
        self._cache = cache if cache is not None else IdempotencyCache()
        self._sessions = sessions
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
            self._cache.finish(key, record, now_ns, store=not record.decision.fail_closed)
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
        try:
            decision = await self._evaluate(request, now_ns, deadline, decision_id)
        finally:
            aarm_logging.reset(token)
        record = DecisionRecord(
            decision_id=decision_id,
            request_id=request.request_id or decision_id,
            decision=decision,
            policy=self.policy_version,
        )
        m = self._metrics
        verdict = decision.verdict.value
        m.decide_duration.labels(verdict).observe(time.perf_counter() - started)
        m.decisions.labels(verdict, m.code_label(decision.reasons[0].code)).inc()
        return record

    async def _evaluate(
        self, request: ActionRequest, now_ns: int, deadline: float | None, decision_id: str
    ) -> Decision:
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
                m.drift.observe(context["drift"]["action"])
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
            decision = parse_result(body)
            if self._sessions is not None and prepared is not None:
                # Recorded before it runs (AARM R2); no record, no verdict.
                await self._sessions.commit(prepared, request, decision_id, decision, now_ns)
            return decision
        except AarmError as exc:
            log.warning("failing closed: %s: %s", exc.code.value, exc.detail)
            return self._failed(exc.code)
        except Exception:
            log.exception("failing closed: unexpected error")
            return self._failed(ErrorCode.INTERNAL)

    def _failed(self, code: ErrorCode, detail: str = "") -> Decision:
        self._metrics.errors.labels(code.value).inc()
        self._metrics.fail_closed.labels(code.value).inc()
        return fail_closed(code, detail)
