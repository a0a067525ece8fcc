"""gRPC adapters for the aarm.v1 ApprovalService and DeferralService."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
from aarm.v1 import (
    approval_pb2,
    approval_pb2_grpc,
    decision_pb2,
    deferral_pb2,
    deferral_pb2_grpc,
)
from google.protobuf import timestamp_pb2

from aarm_pdp.api.decision_service import to_response
from aarm_pdp.api.handlers import generic_handler
from aarm_pdp.api.validation import FACT_RE, to_action_request, to_identity
from aarm_pdp.approvals import tickets as tk
from aarm_pdp.approvals.auth import Approver, ApproverRegistry
from aarm_pdp.approvals.workflow import Workflow
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.engine import DecisionEngine
from aarm_pdp.errors import (
    AarmError,
    ApprovalRejected,
    ErrorCode,
    RequestInvalid,
    SessionConflict,
    SessionNotFound,
    grpc_status,
)
from aarm_pdp.observability.metrics import Metrics

log = logging.getLogger("aarm_pdp.api.approvals")

IDENTITY_ADMIN_GROUP = "identity-admins"
_STATUS: dict[str, Any] = {
    tk.PENDING: approval_pb2.APPROVAL_STATUS_PENDING,
    tk.GRANTED: approval_pb2.APPROVAL_STATUS_GRANTED,
    tk.REJECTED: approval_pb2.APPROVAL_STATUS_REJECTED,
    tk.EXPIRED: approval_pb2.APPROVAL_STATUS_EXPIRED,
    tk.USED: approval_pb2.APPROVAL_STATUS_USED,
}
_DEFER_STATUS: dict[str, Any] = {
    tk.PENDING: deferral_pb2.DEFERRAL_STATUS_PENDING,
    tk.RESOLVED: deferral_pb2.DEFERRAL_STATUS_RESOLVED,
    tk.EXPIRED: deferral_pb2.DEFERRAL_STATUS_EXPIRED,
}


def _ts(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def to_approval_pb(t: tk.Ticket) -> Any:
    """What an approver sees of a ticket."""
    msg = approval_pb2.ApprovalRequest(
        approval_id=t.ticket_id,
        decision_id=t.decision_id,
        status=_STATUS.get(t.status, approval_pb2.APPROVAL_STATUS_UNSPECIFIED),
        approvers=t.approvers,
        risk_level=cast(Any, decision_pb2.RiskLevel.Value(f"RISK_LEVEL_{t.risk_level}")),
        reasons=[decision_pb2.Reason(**r) for r in t.reasons],
        created_at=_ts(t.created_ns),
        expires_at=_ts(t.deadline_ns),
        source=t.context.get("source", "step_up"),
    )
    msg.context.update(t.context)
    return msg


class _Base:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def _rejected(self) -> None:
        """Count a request body that does not decode."""
        self._metrics.errors.labels(ErrorCode.REQUEST_INVALID.value).inc()

    async def _call(
        self, context: grpc.aio.ServicerContext[Any, Any], body: Callable[[], Awaitable[Any]]
    ) -> Any:
        try:
            return await body()
        except AarmError as exc:
            self._metrics.errors.labels(exc.code.value).inc()
            log.warning("rpc refused: %s: %s", exc.code.value, exc.detail)
            if exc.code is ErrorCode.REQUEST_INVALID:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.detail)
            status, message = grpc_status(exc.code)
            detail = exc.detail if isinstance(exc, SessionNotFound | SessionConflict) else message
            await context.abort(status, detail)
            raise


class ApprovalServicer(_Base, approval_pb2_grpc.ApprovalServiceServicer):
    """Approvers authenticate with their own bearer token; agents never approve."""

    SERVICE = approval_pb2.DESCRIPTOR.services_by_name["ApprovalService"]

    def __init__(
        self,
        workflow: Workflow,
        registry: ApproverRegistry,
        metrics: Metrics,
        revoke: Callable[[str, str], Awaitable[None]],
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(metrics)
        self._wf = workflow
        self._registry = registry
        self._revoke = revoke
        self._clock = clock_ns

    def handler(self) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
        """The generic handler for every ApprovalService RPC."""
        return generic_handler(self, rejected=self._rejected)

    async def _approver(self, context: grpc.aio.ServicerContext[Any, Any]) -> Approver:
        approver = self._registry.authenticate(context.invocation_metadata())  # type: ignore[arg-type]
        if approver is None:
            self._metrics.approvals_rejected.labels("unauthenticated").inc()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "approver credentials required")
            raise AssertionError("unreachable")
        return approver

    async def GetApproval(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        approver = await self._approver(context)

        async def body() -> Any:
            ticket = await self._wf.get(request.approval_id)
            if ticket.kind != "approval" or not Workflow.may_resolve(approver, ticket):
                raise SessionNotFound("no such approval")
            return approval_pb2.GetApprovalResponse(approval=to_approval_pb(ticket))

        return await self._call(context, body)

    async def ListPendingApprovals(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        approver = await self._approver(context)

        async def body() -> Any:
            tickets = await self._wf.pending("approval", request.tenant)
            mine = [to_approval_pb(t) for t in tickets if Workflow.may_resolve(approver, t)]
            return approval_pb2.ListPendingApprovalsResponse(approvals=mine)

        return await self._call(context, body)

    async def ResolveApproval(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        approver = await self._approver(context)

        async def body() -> Any:
            if len(request.reason) > 1024:
                raise RequestInvalid("reason longer than 1024")
            try:
                ticket, token = await self._wf.resolve(
                    approver,
                    request.approval_id,
                    grant=request.grant,
                    reason=request.reason,
                    now_ns=self._clock(),
                )
            except ApprovalRejected:
                self._metrics.approvals_rejected.labels("not_allowed").inc()
                raise
            self._metrics.approvals_resolved.labels(
                "granted" if request.grant else "rejected"
            ).inc()
            resp = approval_pb2.ResolveApprovalResponse(
                status=_STATUS[ticket.status], approval_token=token
            )
            if token:
                resp.token_expires_at.CopyFrom(_ts(ticket.token_expires_ns))
            return resp

        return await self._call(context, body)

    async def RevokeIdentity(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        approver = await self._approver(context)

        async def body() -> Any:
            if IDENTITY_ADMIN_GROUP not in approver.groups:
                raise ApprovalRejected("revocation needs the identity-admins group")
            if not request.subject or len(request.subject) > 256:
                raise RequestInvalid("subject is required")
            await self._revoke(request.tenant, request.subject)
            log.warning("identity revoked by %s: %s", approver.id, request.subject)
            return approval_pb2.RevokeIdentityResponse(subject=request.subject)

        return await self._call(context, body)


class DeferralServicer(_Base, deferral_pb2_grpc.DeferralServiceServicer):
    """The enforcement point (same session identity) supplies facts; the action is re-judged."""

    SERVICE = deferral_pb2.DESCRIPTOR.services_by_name["DeferralService"]

    def __init__(
        self,
        engine: DecisionEngine,
        workflow: Workflow,
        metrics: Metrics,
        limits: LimitsConfig,
    ) -> None:
        super().__init__(metrics)
        self._engine = engine
        self._wf = workflow
        self._limits = limits

    def handler(self) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
        """The generic handler for every DeferralService RPC."""
        return generic_handler(self, rejected=self._rejected)

    async def _ticket(self, request: Any) -> tk.Ticket:
        ident = to_identity(request.identity, self._limits)
        ticket = await self._wf.get(request.deferral_id)
        if (
            ticket.kind != "deferral"
            or ticket.tenant != ident.tenant
            or ticket.session_id != ident.session_id
        ):
            raise SessionNotFound("no such deferral")
        return ticket

    async def GetDeferral(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async def body() -> Any:
            t = await self._ticket(request)
            return deferral_pb2.GetDeferralResponse(
                deferral_id=t.ticket_id,
                decision_id=t.decision_id,
                status=_DEFER_STATUS.get(t.status, deferral_pb2.DEFERRAL_STATUS_UNSPECIFIED),
                deferral=decision_pb2.Deferral(
                    trigger=t.trigger, context_needed=t.context_needed, deferral_id=t.ticket_id
                ),
            )

        return await self._call(context, body)

    async def ProvideContext(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        async def body() -> Any:
            ticket = await self._ticket(request)
            if ticket.status != tk.PENDING:
                raise SessionConflict(f"deferral is {ticket.status}")
            if not request.facts or len(request.facts) > self._limits.max_facts:
                raise RequestInvalid(f"facts: 1..{self._limits.max_facts} required")
            original = decision_pb2.DecideRequest.FromString(ticket.request_bytes())
            merged = {f.name: f for f in original.facts}
            for f in request.facts:
                if not FACT_RE.fullmatch(f.name):
                    raise RequestInvalid("facts[].name must be a dotted lowercase name")
                merged[f.name] = f
            del original.facts[:]
            original.facts.extend(merged[name] for name in sorted(merged))
            # The same action and the same identity bound at submission.
            action_request = to_action_request(original, self._limits)
            record = await self._engine.reevaluate(action_request, ticket)
            after = await self._wf.get(ticket.ticket_id)
            return deferral_pb2.ProvideContextResponse(
                status=_DEFER_STATUS.get(after.status, deferral_pb2.DEFERRAL_STATUS_UNSPECIFIED),
                decision=to_response(record),
            )

        return await self._call(context, body)
