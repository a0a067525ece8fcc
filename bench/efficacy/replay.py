"""Replay one trace over gRPC as a real enforcement point would (the README's contract).

Each trace gets a fresh session: StartSession with the user's request only, one Decide per
call (fresh request id, parameters as a Struct, nothing else), RecordOutcome for every call
that runs, the approval flow for a STEP_UP the human approves (the enforcement point waits
on WatchApproval, the approver principal calls ResolveApproval, the watch delivers the
token and the same Decide is re-submitted with it), ResolveApproval(reject) for one the
human rejects, and EndSession. What to do with a verdict is
:func:`bench.efficacy.scoring.step`; what was decided comes back as a
:class:`~bench.efficacy.scoring.TraceResult`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from aarm.v1 import (
    approval_pb2,
    approval_pb2_grpc,
    decision_pb2,
    decision_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
)
from google.protobuf import struct_pb2, timestamp_pb2

from bench.efficacy.corpus import Call, Trace
from bench.efficacy.scoring import (
    ERROR,
    RAN,
    CallResult,
    Reason,
    Step,
    TraceResult,
    classify,
    step,
)

TENANT = "default"
AGENT = "efficacy-agent"
RPC_TIMEOUT = 30.0

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    """Call metadata carrying ``token`` as a bearer credential."""
    return (("authorization", f"Bearer {token}"),)


def verdict_name(decision: int) -> str:
    """``DECISION_STEP_UP`` -> ``STEP_UP``."""
    return str(decision_pb2.Decision.Name(decision)).removeprefix("DECISION_")


def reasons_of(resp: Any) -> tuple[Reason, ...]:
    return tuple(Reason(r.code, r.rule_id, r.message) for r in resp.reasons)


def _rpc_error(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {exc.details()}"


def _fail_closed(reasons: Sequence[Reason]) -> str:
    return "fail-closed DENY: " + "; ".join(f"{r.code}: {r.message}" for r in reasons)


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(time.time_ns())
    return ts


class ReplayError(RuntimeError):
    """The replay of a trace cannot go on (not a verdict)."""


@dataclass
class Stats:
    """RPC counts of a run."""

    decides: int = 0
    watched: int = 0
    approvals: int = 0
    outcomes: int = 0


@dataclass
class Replayer:
    """Replays traces against ``channel`` as ``service`` (enforcer token) with approvals
    resolved by the approver principal (approver token)."""

    channel: grpc.aio.Channel
    service: str
    enforcer_token: str
    approver_token: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    watch: bool = True  # wait for answers on WatchApproval (off once UNIMPLEMENTED)
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self._decide = decision_pb2_grpc.DecisionServiceStub(self.channel)
        self._sessions = session_pb2_grpc.SessionServiceStub(self.channel)
        self._approvals = approval_pb2_grpc.ApprovalServiceStub(self.channel)
        self._enforcer = bearer(self.enforcer_token)
        self._approver = bearer(self.approver_token)

    def identity(self, trace: Trace) -> Any:
        return decision_pb2.Identity(
            tenant=TENANT,
            human=trace.user,
            service=self.service,
            agent=AGENT,
            session_id=f"efficacy-{self.run_id}-{trace.id}",
        )

    async def replay(self, trace: Trace) -> TraceResult:
        """The replay of ``trace`` in a fresh session."""
        ident = self.identity(trace)
        try:
            await self._sessions.StartSession(
                session_pb2.StartSessionRequest(identity=ident, original_request=trace.request),
                metadata=self._enforcer,
                timeout=RPC_TIMEOUT,
            )
        except grpc.aio.AioRpcError as exc:
            return TraceResult(trace, (), f"StartSession: {_rpc_error(exc)}")
        calls: list[CallResult] = []
        error = ""
        try:
            for index, call in enumerate(trace.calls, 1):
                result = await self._call(trace, ident, index, call)
                calls.append(result)
                if not result.ran:
                    break
        except grpc.aio.AioRpcError as exc:
            error = _rpc_error(exc)
        except ReplayError as exc:
            error = str(exc)
        finally:
            try:
                await self._sessions.EndSession(
                    session_pb2.EndSessionRequest(identity=ident),
                    metadata=self._enforcer,
                    timeout=RPC_TIMEOUT,
                )
            except grpc.aio.AioRpcError as exc:
                error = error or f"EndSession: {_rpc_error(exc)}"
        return TraceResult(trace, tuple(calls), error)

    async def _call(self, trace: Trace, ident: Any, index: int, call: Call) -> CallResult:
        """Decide one call, then run it, approve it or stop (non-Decide errors raise)."""
        tool, operation = call.tool_operation
        params = struct_pb2.Struct()
        params.update(call.parameters)
        action = decision_pb2.Action(tool=tool, operation=operation, parameters=params)
        first = await self._decide_once(ident, action, "")
        if isinstance(first, str):
            return CallResult(index, call.tool, ERROR, error=first)
        reasons = reasons_of(first)
        verdict = classify(verdict_name(first.decision), reasons)
        if verdict == ERROR:
            return CallResult(index, call.tool, ERROR, reasons, error=_fail_closed(reasons))
        move = step(trace, index, verdict)
        if move is Step.RUN:
            await self._record(ident, first.decision_id, call)
            return CallResult(index, call.tool, verdict, reasons)
        if move is Step.REJECT:
            await self._answer(ident, first.approval.approval_id, grant=False)
            return CallResult(index, call.tool, verdict, reasons)
        if move is Step.END:
            return CallResult(index, call.tool, verdict, reasons)
        token = await self._answer(ident, first.approval.approval_id, grant=True)
        again = await self._decide_once(ident, action, token)
        if isinstance(again, str):
            return CallResult(index, call.tool, verdict, reasons, ERROR, error=again)
        again_reasons = reasons_of(again)
        final = classify(verdict_name(again.decision), again_reasons)
        if final in RAN:
            await self._record(ident, again.decision_id, call)
        error = _fail_closed(again_reasons) if final == ERROR else ""
        return CallResult(index, call.tool, verdict, reasons, final, again_reasons, error)

    async def _decide_once(self, ident: Any, action: Any, approval_token: str) -> Any:
        """One Decide with a fresh request id: the response, or the gRPC error as text."""
        req = decision_pb2.DecideRequest(
            request_id=uuid.uuid4().hex,
            identity=ident,
            action=action,
            approval_token=approval_token,
        )
        self.stats.decides += 1
        try:
            return await self._decide.Decide(req, metadata=self._enforcer, timeout=RPC_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            return _rpc_error(exc)

    async def _answer(self, ident: Any, approval_id: str, *, grant: bool) -> str:
        """The human answers while the enforcement point waits on WatchApproval (as the
        MCP gateway does): the token of a grant is the one the watch delivers.

        A service without WatchApproval (an older ``--source``): the approver's token.
        """
        if not self.watch:
            return await self._resolve(approval_id, grant=grant)
        stream = self._approvals.WatchApproval(
            approval_pb2.WatchApprovalRequest(identity=ident, approval_id=approval_id),
            metadata=self._enforcer,
            timeout=RPC_TIMEOUT,
        )
        answered = False
        try:
            # The stream sends the current status at once (PENDING): the watch is open,
            # so the human answers now and the next status is the answer.
            async for status in stream:
                if status.status != approval_pb2.APPROVAL_STATUS_PENDING:
                    self.stats.watched += 1
                    return str(status.approval_token)
                if not answered:
                    answered = True
                    await self._resolve(approval_id, grant=grant)
        except grpc.aio.AioRpcError as exc:
            if answered or exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            self.watch = False
            return await self._resolve(approval_id, grant=grant)
        finally:
            stream.cancel()  # a no-op once the server has ended the stream
        raise ReplayError(f"WatchApproval {approval_id} ended without an answer")

    async def _resolve(self, approval_id: str, *, grant: bool) -> str:
        """ResolveApproval as the approver: the approval token on a grant."""
        self.stats.approvals += 1
        resp = await self._approvals.ResolveApproval(
            approval_pb2.ResolveApprovalRequest(
                approval_id=approval_id,
                grant=grant,
                reason="efficacy replay: the user "
                + ("asked for this" if grant else "did not ask for this"),
            ),
            metadata=self._approver,
            timeout=RPC_TIMEOUT,
        )
        return str(resp.approval_token)

    async def _record(self, ident: Any, decision_id: str, call: Call) -> None:
        out = call.output
        self.stats.outcomes += 1
        await self._sessions.RecordOutcome(
            session_pb2.RecordOutcomeRequest(
                identity=ident,
                decision_id=decision_id,
                status=session_pb2.OUTCOME_STATUS_EXECUTED,
                started_at=_now(),
                completed_at=_now(),
                output_digest=hashlib.sha256(out.text.encode()).hexdigest(),
                classification=f"CLASSIFICATION_{out.classification}",
                labels=list(out.labels),
                output_text=out.text,
                output_values=list(out.values),
                source_trust=session_pb2.TRUST_UNSPECIFIED,
            ),
            metadata=self._enforcer,
            timeout=RPC_TIMEOUT,
        )


def explain(result: TraceResult) -> str:
    """Every decided call of one replay with its verdicts and reasons."""
    t = result.trace
    lines = [f"{t.id} ({t.kind}, {t.domain}) user {t.user}", f"  request: {t.request}"]
    if t.kind == "injected":
        lines.append(
            f"  injection at call {t.injection_call} ({t.vector}), attack class "
            f"{t.attack_class}, {t.expect} expected"
        )
    decided = {c.index: c for c in result.calls}
    for index, call in enumerate(t.calls, 1):
        marks = "".join(
            m
            for m, on in (
                (" [carrier]", index == t.injection_call),
                (" [injected]", call.injected and not call.attack),
                (" [attack]", call.attack),
            )
            if on
        )
        lines.append(f"  #{index} {call.tool}{marks} {_params(call.parameters)}")
        got = decided.get(index)
        if got is None:
            lines.append("      not reached")
            continue
        lines.append(f"      {got.verdict}" + (f" -> {got.final}" if got.final else ""))
        for r in got.reasons:
            lines.append(f"        {r.line()}")
        for r in got.final_reasons:
            lines.append(f"        (re-submitted) {r.line()}")
        if got.error:
            lines.append(f"        error: {got.error}")
    if result.error:
        lines.append(f"  replay error: {result.error}")
    return "\n".join(lines)


def _params(params: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return text if len(text) <= 200 else text[:197] + "..."


def decided_calls(results: Sequence[TraceResult]) -> int:
    """How many calls the replay decided."""
    return sum(len(r.calls) for r in results)
