"""gRPC adapter for the aarm.v1 DecisionService: validate, call the engine, translate.

Thin by design: no policy logic here. Requests that fail to parse or break a limit
get INVALID_ARGUMENT; everything the engine cannot decide is an OK DENY.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, cast

import grpc
from aarm.v1 import decision_pb2, decision_pb2_grpc

from aarm_pdp.api.admission import hold_until_done
from aarm_pdp.api.auth import CallGuard, bind_identity
from aarm_pdp.api.handlers import generic_handler
from aarm_pdp.api.validation import to_action_request
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.engine import DecisionEngine
from aarm_pdp.errors import AarmError, ErrorCode, RequestInvalid, client_message, grpc_status
from aarm_pdp.model.decision import Decision, DecisionRecord, RiskLevel
from aarm_pdp.observability import tracing
from aarm_pdp.observability.metrics import Metrics

log = logging.getLogger("aarm_pdp.api")

_DEADLINE_MARGIN_SECONDS = 0.5
_DECIDE_SPAN = "aarm.v1.DecisionService/Decide"
_DEADLINE_MARGIN_SHARE = 0.1
"""Time kept back from the client's deadline for the answer to reach the client (and the
event loop's lag under load): a tenth of the deadline, at most 0.5 s. The engine gets
the rest, and keeps its own share for the receipt and the session commit
(decision/engine.py)."""


def engine_deadline(context: Any) -> float | None:
    """Seconds the engine may take for a call with this context: the client's deadline
    less the margin for the answer's way back (None: the client set no deadline)."""
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return None
    margin = min(_DEADLINE_MARGIN_SECONDS, remaining * _DEADLINE_MARGIN_SHARE)
    return max(0.0, remaining - margin)


MAX_HUMAN_TOKEN = 8192
"""Longest end-user identity token (a JWT) accepted."""

# Python enum member X is proto value <PREFIX>_X (tests/unit/test_proto_enums.py).
DECISION_PB = {
    d: cast(decision_pb2.Decision, decision_pb2.Decision.Value(f"DECISION_{d.value}"))
    for d in Decision
}
RISK_PB = {
    r: cast(decision_pb2.RiskLevel, decision_pb2.RiskLevel.Value(f"RISK_LEVEL_{r.value}"))
    for r in RiskLevel
}


def to_response(record: DecisionRecord) -> Any:
    """The DecideResponse for a decision record."""
    d = record.result
    resp = decision_pb2.DecideResponse(
        decision_id=record.decision_id,
        request_id=record.request_id,
        decision=DECISION_PB[d.decision],
        reasons=[
            decision_pb2.Reason(code=r.code, rule_id=r.rule_id, message=r.message)
            for r in d.reasons
        ],
        matched_rules=list(d.matched_rules),
        policy=decision_pb2.PolicyVersion(revision=record.policy.revision, hash=record.policy.hash),
        risk=decision_pb2.Risk(level=RISK_PB[d.risk_level], score=d.risk_score),
    )
    r = record.receipt
    if r is not None:
        resp.receipt.receipt_id = r["receipt_id"]
        resp.receipt.sequence = r["chain"]["seq"]
        resp.receipt.payload = getattr(r, "canonical", "")
    if d.modified_parameters is not None:
        resp.modified_parameters.update(d.modified_parameters)
    if d.approval is not None:
        resp.approval.approvers.extend(d.approval.approvers)
        resp.approval.timeout_seconds = d.approval.timeout_seconds
        resp.approval.approval_id = d.approval.approval_id
    if d.deferral is not None:
        resp.deferral.trigger = d.deferral.trigger
        resp.deferral.context_needed.extend(d.deferral.context_needed)
        resp.deferral.timeout_seconds = d.deferral.timeout_seconds
        resp.deferral.deferral_id = d.deferral.deferral_id
    return resp


class DecisionServicer(decision_pb2_grpc.DecisionServiceServicer):
    """Serves Decide over grpc.aio."""

    SERVICE = decision_pb2.DESCRIPTOR.services_by_name["DecisionService"]

    def __init__(
        self,
        engine: DecisionEngine,
        metrics: Metrics,
        limits: LimitsConfig,
        guard: CallGuard,
        *,
        max_request_bytes: int,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._limits = limits
        self._guard = guard
        self._max_bytes = max_request_bytes

    def handler(self) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
        """The generic handler; undecodable requests are INVALID_ARGUMENT, counted as rejected."""
        rejected = self._metrics.requests_rejected.labels(ErrorCode.REQUEST_INVALID.value)
        return generic_handler(self, guard=self._guard, rejected=rejected.inc)

    async def _reject(self, context: grpc.aio.ServicerContext[Any, Any], detail: str) -> None:
        self._metrics.requests_rejected.labels(ErrorCode.REQUEST_INVALID.value).inc()
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, detail)

    async def Decide(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Judge one action (``aarm_inflight_requests`` counts it: api/admission.py), in a
        span continuing the caller's W3C trace context (observability/tracing.py)."""
        with tracing.server_span(_DECIDE_SPAN, context.invocation_metadata()) as span:
            response = await self._decide(request, context)
            span.set_attribute("aarm.decision_id", response.decision_id)
            span.set_attribute("aarm.decision", decision_pb2.Decision.Name(response.decision))
            return response

    async def _decide(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            if request.ByteSize() > self._max_bytes:
                await self._reject(context, f"request larger than {self._max_bytes} bytes")
            human_token = request.identity.human_token
            if len(human_token) > MAX_HUMAN_TOKEN:
                await self._reject(context, f"identity.human_token longer than {MAX_HUMAN_TOKEN}")
            request.identity.human_token = ""  # a credential: never stored with the request
            try:
                action_request = to_action_request(request, self._limits)
            except RequestInvalid as exc:
                await self._reject(context, exc.detail)
                raise  # unreachable: abort raises
            try:
                action_request = dataclasses.replace(
                    action_request, identity=bind_identity(action_request.identity)
                )
            except AarmError as exc:
                self._guard.refused(exc)
                status, _ = grpc_status(exc.code)
                await context.abort(status, client_message(exc))
                raise
            action_request = self._guard.verify_human(action_request, human_token)
            remaining = engine_deadline(context)
            # Shielded: a client that hangs up does not cut a decision (and its
            # metrics and receipt) in half; its admission slot is held until it ends.
            decision = asyncio.ensure_future(
                self._engine.decide(action_request, deadline=remaining)
            )
            try:
                record = await asyncio.shield(decision)
            except asyncio.CancelledError:
                hold_until_done(decision)
                raise
            except RequestInvalid as exc:
                await self._reject(context, exc.detail)
                raise
            return to_response(record)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("Decide failed outside the engine")
            status, message = grpc_status(ErrorCode.INTERNAL)
            self._metrics.errors.labels(ErrorCode.INTERNAL.value).inc()
            await context.abort(status, message)
            raise
