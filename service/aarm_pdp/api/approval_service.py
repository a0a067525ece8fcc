"""gRPC adapters for the aarm.v1 ApprovalService and DeferralService."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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

from aarm_pdp.api.auth import CallGuard, bind_identity, principal, tenant_for
from aarm_pdp.api.decision_service import engine_deadline, to_response
from aarm_pdp.api.handlers import generic_handler, run, run_stream
from aarm_pdp.api.reasons import reason_pb
from aarm_pdp.api.validation import FACT_RE, to_action_request, to_identity
from aarm_pdp.approvals import tickets as tk
from aarm_pdp.approvals.workflow import Workflow
from aarm_pdp.auth.principals import Role
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.engine import DecisionEngine
from aarm_pdp.decision.followups import Followups
from aarm_pdp.errors import (
    AarmError,
    ApprovalRejected,
    ErrorCode,
    RequestInvalid,
    SessionConflict,
    SessionNotFound,
)
from aarm_pdp.model.decision import Reason
from aarm_pdp.observability.metrics import Metrics

log = logging.getLogger("aarm_pdp.api.approvals")

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
        reasons=[reason_pb(Reason.from_doc(r)) for r in t.reasons],
        created_at=_ts(t.created_ns),
        expires_at=_ts(t.deadline_ns),
        source=t.context.get("source", "step_up"),
    )
    msg.context.update(t.context)
    return msg


class _Base:
    def __init__(self, metrics: Metrics, guard: CallGuard) -> None:
        self._metrics = metrics
        self._guard = guard

    def _rejected(self) -> None:
        """Count a request body that does not decode."""
        self._metrics.errors.labels(ErrorCode.REQUEST_INVALID.value).inc()

    def handler(self) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
        """The generic handler for every RPC of the service, behind the call guard."""
        return generic_handler(self, guard=self._guard, rejected=self._rejected)  # type: ignore[arg-type]

    async def _call(
        self, context: grpc.aio.ServicerContext[Any, Any], body: Callable[[], Awaitable[Any]]
    ) -> Any:
        return await run(context, body, self._metrics, self._guard)


class ApprovalServicer(_Base, approval_pb2_grpc.ApprovalServiceServicer):
    """Approvers are principals with the approver role in the ticket's tenant, answering
    for one of the groups the policy named; agents and the acting parties never approve."""

    SERVICE = approval_pb2.DESCRIPTOR.services_by_name["ApprovalService"]

    def __init__(
        self,
        workflow: Workflow,
        followups: Followups,
        metrics: Metrics,
        guard: CallGuard,
        clock_ns: Callable[[], int] = time.time_ns,
        *,
        limits: LimitsConfig | None = None,
        watch_poll_seconds: float = 1.0,
    ) -> None:
        super().__init__(metrics, guard)
        self._wf = workflow
        self._followups = followups
        self._clock = clock_ns
        self._limits = limits or LimitsConfig()
        self._watch_poll = watch_poll_seconds

    async def _approval(self, approval_id: str) -> tk.Ticket:
        """The approval ticket, if the caller approves in its tenant (else refused)."""
        if not approval_id or len(approval_id) > 256:
            raise RequestInvalid("approval_id is required")
        ticket = await self._wf.get(approval_id)
        if ticket.kind != "approval":
            raise SessionNotFound("no such approval")
        tenant_for(ticket.tenant, Role.APPROVER)
        return ticket

    async def GetApproval(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async def body() -> Any:
            ticket = await self._approval(request.approval_id)
            if not Workflow.may_resolve(principal(), ticket):
                raise SessionNotFound("no such approval")
            return approval_pb2.GetApprovalResponse(approval=to_approval_pb(ticket))

        return await self._call(context, body)

    async def ListPendingApprovals(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        async def body() -> Any:
            tenant = tenant_for(request.tenant, Role.APPROVER)
            who = principal()
            tickets = await self._wf.pending("approval", tenant)
            mine = [to_approval_pb(t) for t in tickets if Workflow.may_resolve(who, t)]
            return approval_pb2.ListPendingApprovalsResponse(approvals=mine)

        return await self._call(context, body)

    async def ResolveApproval(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        async def body() -> Any:
            if len(request.reason) > 1024:
                raise RequestInvalid("reason longer than 1024")
            await self._approval(request.approval_id)
            try:
                ticket, token = await self._wf.resolve(
                    principal(),
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
        async def body() -> Any:
            if not request.subject or len(request.subject) > 256:
                raise RequestInvalid("subject is required")
            tenant = tenant_for(request.tenant, Role.ADMIN)
            if len(request.reason) > 1024:
                raise RequestInvalid("reason longer than 1024")
            await self._followups.revoke(
                tenant, request.subject, by=principal().id, reason=request.reason
            )
            log.warning("identity revoked by %s: %s", principal().id, request.subject)
            return approval_pb2.RevokeIdentityResponse(subject=request.subject)

        return await self._call(context, body)

    async def _watched(self, request: Any) -> tk.Ticket:
        """The approval the caller may wait on: its own STEP_UP, in its own session."""
        if not request.approval_id or len(request.approval_id) > 256:
            raise RequestInvalid("approval_id is required")
        ident = bind_identity(to_identity(request.identity, self._limits))
        ticket = await self._wf.get(request.approval_id)
        owner = ticket.context.get("identity", {}).get("principal", "")
        if (
            ticket.kind != "approval"
            or ticket.tenant != ident.tenant
            or ticket.session_id != ident.session_id
            or owner != ident.principal
        ):
            raise SessionNotFound("no such approval")
        return ticket

    def _watch_message(self, t: tk.Ticket, token: str = "") -> Any:
        msg = approval_pb2.WatchApprovalResponse(
            status=_STATUS.get(t.status, approval_pb2.APPROVAL_STATUS_UNSPECIFIED),
            approval_token=token,
            reason=t.resolution_reason[:1024],
        )
        if t.status == tk.PENDING:
            msg.expires_at.CopyFrom(_ts(t.deadline_ns))
        if token:
            msg.token_expires_at.CopyFrom(_ts(t.token_expires_ns))
        return msg

    async def WatchApproval(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """PENDING at once (with its expiry), then the resolution; the stream ends there.

        A grant is sent with a token issued to this watcher (the approver's own token
        stays valid too; whichever is presented first redeems the grant). The caller's
        deadline ends the wait: gRPC cancels the stream, DEADLINE_EXCEEDED.
        """

        async def body() -> AsyncIterator[Any]:
            first = await self._watched(request)
            async for t in self._wf.watch(first.ticket_id, poll_seconds=self._watch_poll):
                if t.status != tk.GRANTED:
                    yield self._watch_message(t)
                    continue
                granted, token = await self._wf.issue_watch_token(t.ticket_id, self._clock())
                yield self._watch_message(granted, token)
                return

        async for message in run_stream(context, body(), self._metrics, self._guard):
            yield message


class DeferralServicer(_Base, deferral_pb2_grpc.DeferralServiceServicer):
    """The enforcement point (same session identity) supplies facts; the action is re-judged."""

    SERVICE = deferral_pb2.DESCRIPTOR.services_by_name["DeferralService"]

    def __init__(
        self,
        engine: DecisionEngine,
        workflow: Workflow,
        metrics: Metrics,
        limits: LimitsConfig,
        guard: CallGuard,
    ) -> None:
        super().__init__(metrics, guard)
        self._engine = engine
        self._wf = workflow
        self._limits = limits

    async def _ticket(self, request: Any) -> tk.Ticket:
        ident = bind_identity(to_identity(request.identity, self._limits))
        ticket = await self._wf.get(request.deferral_id)
        owner = ticket.context.get("identity", {}).get("principal", "")
        if (
            ticket.kind != "deferral"
            or ticket.tenant != ident.tenant
            or ticket.session_id != ident.session_id
            or owner != ident.principal
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
            # The same action and the same identity bound (and verified) at submission.
            action_request = to_action_request(original, self._limits)
            bound = ticket.context.get("identity", {})
            action_request = dataclasses.replace(
                action_request,
                identity=dataclasses.replace(
                    action_request.identity,
                    tenant=ticket.tenant,
                    human=str(bound.get("human", action_request.identity.human)),
                    principal=str(bound.get("principal", "")),
                    human_verified=bool(bound.get("human_verified", False)),
                ),
            )
            # Judged within the client's deadline, as Decide is: a hung store or policy
            # engine gives an OK DENY with its reason code, never DEADLINE_EXCEEDED.
            deadline = engine_deadline(context)
            loop = asyncio.get_running_loop()
            until = None if deadline is None else loop.time() + deadline
            record = await self._engine.reevaluate(action_request, ticket, deadline=deadline)
            status = deferral_pb2.DEFERRAL_STATUS_UNSPECIFIED  # unknown if not read in time
            left = None if until is None else until - loop.time()
            if left is None or left > 0:
                try:
                    async with asyncio.timeout(left):
                        after = await self._wf.get(ticket.ticket_id)
                    status = _DEFER_STATUS.get(after.status, status)
                except (TimeoutError, AarmError) as exc:
                    log.warning("deferral status not read after re-evaluation: %r", exc)
            return deferral_pb2.ProvideContextResponse(status=status, decision=to_response(record))

        return await self._call(context, body)
