"""The gateway's enforcement port and its gRPC implementation.

The proxy talks to the decision service only through :class:`Enforcer`: the five
calls of an enforcement point (start a session, decide, wait for an approval, record
an outcome, end the session). :class:`GrpcEnforcer` implements it on aarm.v1 with the
gateway's own credential (a bearer token, or an mTLS client certificate); it is meant
to be backed by the Python client's ``Guard`` once that lands, without the proxy
changing. Any gRPC failure of Decide is a DENY verdict (:func:`verdicts.fail_closed`),
never an exception; failures of the session calls raise :class:`EnforcerError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Protocol

import grpc
from aarm.v1 import (
    approval_pb2,
    approval_pb2_grpc,
    decision_pb2,
    decision_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
)
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from aarm_pdp.gateway.config import DecisionServiceConfig
from aarm_pdp.gateway.verdicts import (
    ApprovalResult,
    Outcome,
    Reason,
    SessionIdentity,
    Verdict,
    fail_closed,
)

log = logging.getLogger("aarm_pdp.gateway")

_DECISIONS = {
    decision_pb2.DECISION_ALLOW: "ALLOW",
    decision_pb2.DECISION_DENY: "DENY",
    decision_pb2.DECISION_MODIFY: "MODIFY",
    decision_pb2.DECISION_STEP_UP: "STEP_UP",
    decision_pb2.DECISION_DEFER: "DEFER",
}
_CLASSIFICATIONS = {
    "": session_pb2.CLASSIFICATION_UNSPECIFIED,
    "public": session_pb2.CLASSIFICATION_PUBLIC,
    "internal": session_pb2.CLASSIFICATION_INTERNAL,
    "confidential": session_pb2.CLASSIFICATION_CONFIDENTIAL,
    "restricted": session_pb2.CLASSIFICATION_RESTRICTED,
}
_TRUSTS = {"": session_pb2.TRUST_UNSPECIFIED, "untrusted": session_pb2.TRUST_UNTRUSTED}
_APPROVAL = {
    approval_pb2.APPROVAL_STATUS_GRANTED: "GRANTED",
    approval_pb2.APPROVAL_STATUS_REJECTED: "REJECTED",
    approval_pb2.APPROVAL_STATUS_EXPIRED: "EXPIRED",
    approval_pb2.APPROVAL_STATUS_USED: "USED",
}


class EnforcerError(RuntimeError):
    """A session call (start, outcome, end) failed; the message names the gRPC status."""


class Enforcer(Protocol):
    """What the proxy needs of the decision service."""

    async def start_session(self, who: SessionIdentity, original_request: str) -> None: ...

    async def decide(
        self,
        who: SessionIdentity,
        tool: str,
        operation: str,
        arguments: dict[str, Any],
        *,
        approval_token: str = "",
    ) -> Verdict: ...

    async def wait_approval(
        self, who: SessionIdentity, approval_id: str, timeout: float
    ) -> ApprovalResult: ...

    async def record_outcome(
        self, who: SessionIdentity, decision_id: str, outcome: Outcome
    ) -> None: ...

    async def end_session(self, who: SessionIdentity) -> None: ...

    async def close(self) -> None: ...


class GrpcEnforcer:
    """:class:`Enforcer` over aarm.v1 gRPC (grpc.aio), one channel for the gateway."""

    def __init__(self, cfg: DecisionServiceConfig) -> None:
        self._cfg = cfg
        token = cfg.token_file.read_text().strip() if cfg.token_file is not None else ""
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        if cfg.ca_file is not None:
            creds = grpc.ssl_channel_credentials(
                root_certificates=cfg.ca_file.read_bytes(),
                private_key=cfg.client_key.read_bytes() if cfg.client_key else None,
                certificate_chain=cfg.client_cert.read_bytes() if cfg.client_cert else None,
            )
            self._channel = grpc.aio.secure_channel(cfg.target, creds)
        else:
            self._channel = grpc.aio.insecure_channel(cfg.target)
        self._decide = decision_pb2_grpc.DecisionServiceStub(self._channel)
        self._sessions = session_pb2_grpc.SessionServiceStub(self._channel)
        self._approvals = approval_pb2_grpc.ApprovalServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close(None)

    async def start_session(self, who: SessionIdentity, original_request: str) -> None:
        req = session_pb2.StartSessionRequest(
            identity=_identity(who), original_request=original_request
        )
        await self._unary(self._sessions.StartSession, req, "StartSession")

    async def decide(
        self,
        who: SessionIdentity,
        tool: str,
        operation: str,
        arguments: dict[str, Any],
        *,
        approval_token: str = "",
    ) -> Verdict:
        params = struct_pb2.Struct()
        try:
            params.update(arguments)
        except (TypeError, ValueError) as exc:
            return fail_closed("request_invalid", f"arguments are not JSON: {exc}")
        req = decision_pb2.DecideRequest(
            request_id=str(uuid.uuid4()),
            identity=_identity(who),
            action=decision_pb2.Action(tool=tool, operation=operation, parameters=params),
            approval_token=approval_token,
        )
        try:
            resp = await self._decide.Decide(
                req, timeout=self._cfg.timeout_seconds, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("Decide failed (%s): DENY", exc.code().name)
            return fail_closed(
                "decision_unavailable",
                f"the decision service did not decide ({exc.code().name}: {exc.details()}); "
                "a call without a verdict is denied",
            )
        return _verdict(resp)

    async def wait_approval(
        self, who: SessionIdentity, approval_id: str, timeout: float
    ) -> ApprovalResult:
        req = approval_pb2.WatchApprovalRequest(identity=_identity(who), approval_id=approval_id)
        call = self._approvals.WatchApproval(req, timeout=timeout, metadata=self._metadata)
        try:
            async for update in call:
                status = _APPROVAL.get(update.status)
                if status is not None:
                    return ApprovalResult(status, update.approval_token, update.reason)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return ApprovalResult("TIMEOUT")
            log.warning("WatchApproval failed (%s)", exc.code().name)
            return ApprovalResult("UNAVAILABLE", reason=f"{exc.code().name}: {exc.details()}")
        except asyncio.CancelledError:
            call.cancel()
            raise
        return ApprovalResult("UNAVAILABLE", reason="the approval watch ended without an answer")

    async def record_outcome(
        self, who: SessionIdentity, decision_id: str, outcome: Outcome
    ) -> None:
        req = session_pb2.RecordOutcomeRequest(
            identity=_identity(who),
            decision_id=decision_id,
            status=(
                session_pb2.OUTCOME_STATUS_EXECUTED
                if outcome.executed
                else session_pb2.OUTCOME_STATUS_FAILED
            ),
            started_at=_ts(outcome.started_ns),
            completed_at=_ts(outcome.completed_ns),
            output_digest=outcome.output_digest,
            classification=_CLASSIFICATIONS[outcome.classification],
            labels=list(outcome.labels),
            output_text=outcome.output_text,
            source_trust=_TRUSTS[outcome.source_trust],
            error=outcome.error,
        )
        await self._unary(self._sessions.RecordOutcome, req, "RecordOutcome")

    async def end_session(self, who: SessionIdentity) -> None:
        req = session_pb2.EndSessionRequest(identity=_identity(who))
        await self._unary(self._sessions.EndSession, req, "EndSession")

    async def _unary(self, method: Any, req: Any, name: str) -> Any:
        try:
            return await method(req, timeout=self._cfg.timeout_seconds, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise EnforcerError(f"{name}: {exc.code().name}: {exc.details()}") from exc


def _identity(who: SessionIdentity) -> decision_pb2.Identity:
    return decision_pb2.Identity(
        tenant=who.tenant,
        human=who.human,
        service=who.service,
        agent=who.agent,
        session_id=who.session_id,
    )


def _ts(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def now_ns() -> int:
    """Wall-clock time for outcome timestamps."""
    return time.time_ns()


def _verdict(resp: decision_pb2.DecideResponse) -> Verdict:
    decision = _DECISIONS.get(resp.decision)
    reasons = tuple(Reason(r.code, r.rule_id, r.message) for r in resp.reasons)
    if decision is None:
        return fail_closed("decision_malformed", f"unknown verdict {resp.decision}")
    modified = (
        json_format.MessageToDict(resp.modified_parameters)
        if resp.HasField("modified_parameters")
        else None
    )
    if decision == "MODIFY" and modified is None:
        return fail_closed("decision_malformed", "MODIFY without modified_parameters")
    return Verdict(
        decision=decision,
        decision_id=resp.decision_id,
        reasons=reasons,
        modified_parameters=modified,
        approval_id=resp.approval.approval_id,
        approval_timeout_seconds=float(resp.approval.timeout_seconds),
        approvers=tuple(resp.approval.approvers),
        deferral_id=resp.deferral.deferral_id,
        deferral_trigger=resp.deferral.trigger,
        context_needed=tuple(resp.deferral.context_needed),
        deferral_timeout_seconds=float(resp.deferral.timeout_seconds),
    )
