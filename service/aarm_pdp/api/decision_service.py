"""gRPC adapter for the aarm.v1 DecisionService: validate, call the engine, translate.

Thin by design: no policy logic here. Requests that fail to parse or break a limit
get INVALID_ARGUMENT; everything the engine cannot decide is an OK DENY.

Decide and DecideStream share one path per request (:meth:`DecisionServicer._admit`,
then the engine, then :func:`fill_response`): what ends a Decide with a status answers
a stream message with the same error (api/decide_stream.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
from aarm.v1 import decision_pb2, decision_pb2_grpc

from aarm_pdp.api import decide_stream
from aarm_pdp.api.admission import hold_until_done, stream_gate
from aarm_pdp.api.auth import CallGuard, bind_identity
from aarm_pdp.api.handlers import generic_handler
from aarm_pdp.api.reasons import fill_reason
from aarm_pdp.api.validation import to_action_request
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.engine import DecisionEngine
from aarm_pdp.errors import AarmError, ErrorCode, RequestInvalid, client_message, grpc_status
from aarm_pdp.model.decision import Decision, DecisionRecord, RiskLevel
from aarm_pdp.model.request import ActionRequest
from aarm_pdp.observability import tracing
from aarm_pdp.observability.metrics import Metrics

log = logging.getLogger("aarm_pdp.api")

_DECIDE_SPAN = "aarm.v1.DecisionService/Decide"


def engine_deadline(context: Any) -> float | None:
    """Seconds the engine may take for a call with this context: the client's deadline
    less the margin for the answer's way back (None: the client set no deadline). The
    margin (a tenth of the deadline, at most 0.5 s: decide_stream.engine_budget) covers
    the answer's way to the client and the event loop's lag under load; the engine
    keeps its own share for the receipt and the session commit (decision/engine.py)."""
    return decide_stream.engine_budget(context.time_remaining())


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
    resp = decision_pb2.DecideResponse()
    fill_response(resp, record)
    return resp


def fill_response(resp: Any, record: DecisionRecord) -> None:
    """Write the decision record into the empty DecideResponse ``resp`` (in place: a
    stream's answer holds it as a field, and is not copied)."""
    d = record.result
    resp.decision_id = record.decision_id
    resp.request_id = record.request_id
    resp.decision = DECISION_PB[d.decision]
    reasons = resp.reasons
    for reason in d.reasons:
        fill_reason(reasons.add(), reason)
    resp.matched_rules.extend(d.matched_rules)
    resp.policy.revision = record.policy.revision
    resp.policy.hash = record.policy.hash
    resp.risk.level = RISK_PB[d.risk_level]
    resp.risk.score = d.risk_score
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


class DecisionServicer(decision_pb2_grpc.DecisionServiceServicer):
    """Serves Decide and DecideStream over grpc.aio."""

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
        self._rejected = metrics.requests_rejected.labels(ErrorCode.REQUEST_INVALID.value)
        self._internal = metrics.errors.labels(ErrorCode.INTERNAL.value)
        self._expired = metrics.errors.labels(ErrorCode.DEADLINE_EXCEEDED.value)

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

    async def DecideStream(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """Judge every action of the stream, each as Decide would, each answered with its
        message_id as soon as it is decided (api/decide_stream.py); authenticated once
        (api/handlers.py), admitted per message (api/admission.py)."""
        stream = decide_stream.DecideStream(
            self._decide_message,
            stream_gate(),
            metadata=context.invocation_metadata(),
            time_remaining=context.time_remaining(),
            expired=self._expired.inc,
        )
        async for answer in stream.run(request_iterator, context):
            yield answer

    def _admit(self, request: Any, nbytes: int | None = None) -> ActionRequest:
        """The request validated, bound to the caller's tenant and principal, its end
        user verified: what the engine decides. ``nbytes``: its size, if known.

        Raises:
            RequestInvalid: too large, or invalid (counted in aarm_requests_rejected_total).
            AarmError: the caller may not act in the tenant (counted as a refusal).
        """
        try:
            if (request.ByteSize() if nbytes is None else nbytes) > self._max_bytes:
                raise RequestInvalid(f"request larger than {self._max_bytes} bytes")
            human_token = request.identity.human_token
            if len(human_token) > MAX_HUMAN_TOKEN:
                raise RequestInvalid(f"identity.human_token longer than {MAX_HUMAN_TOKEN}")
            request.identity.human_token = ""  # a credential: never stored with the request
            action_request = to_action_request(request, self._limits)
        except RequestInvalid:
            self._rejected.inc()
            raise
        try:
            action_request = dataclasses.replace(
                action_request, identity=bind_identity(action_request.identity)
            )
        except AarmError as exc:
            self._guard.refused(exc)
            raise
        return self._guard.verify_human(action_request, human_token)

    async def _decide_message(
        self, request: Any, deadline: float | None, resp: Any, nbytes: int
    ) -> None:
        """One DecideStream message: its decision into ``resp``, or the AarmError that
        would have ended a Decide with a status."""
        try:
            action_request = self._admit(request, nbytes)
            try:
                record = await self._engine.decide(action_request, deadline=deadline)
            except RequestInvalid:  # the request_id reused with other content
                self._rejected.inc()
                raise
            fill_response(resp, record)
        except AarmError:
            raise
        except Exception:
            log.exception("DecideStream message failed outside the engine")
            self._internal.inc()
            raise AarmError("DecideStream message failed outside the engine") from None

    async def _decide(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            try:
                action_request = self._admit(request)
            except AarmError as exc:
                status, _ = grpc_status(exc.code)
                await context.abort(status, client_message(exc))
                raise  # unreachable: abort raises
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
            self._internal.inc()
            await context.abort(status, message)
            raise
