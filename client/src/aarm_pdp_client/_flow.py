"""One action's way to a verdict, written once for the blocking and the asyncio client.

:func:`decide_flow` is a generator: it yields the operations it needs (a Decide, a
wait on an approval, the caller's context provider, ...) and receives their results;
``Client`` and ``AsyncClient`` run the operations, blocking or awaited. Every way out
that is not ALLOW or MODIFY raises :class:`ActionDenied`.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from google.protobuf import json_format

from aarm_pdp_client._coerce import CoercionError, coerce_like, coerce_to_schema
from aarm_pdp_client._gen.aarm.v1 import approval_pb2, decision_pb2, session_pb2
from aarm_pdp_client._types import (
    ActionDeferred,
    ActionDenied,
    ApprovalInfo,
    Classification,
    DeferralInfo,
    Fact,
    Identity,
    Reason,
    Trust,
    Verdict,
    parameters_struct,
)

D = decision_pb2
MAX_OUTPUT_TEXT = 65_536
"""The longest output text the service indexes (the rest is cut; the digest is of all)."""

ContextProvider: TypeAlias = Callable[[DeferralInfo], Any]
"""Called on DEFER with what the service needs; returns facts (an iterable of
:class:`Fact`, or a mapping name -> value), or None/empty when it has none (the action
is then not run). The asyncio client also awaits a coroutine it returns."""
StepUpHook: TypeAlias = Callable[[ApprovalInfo], Any]
"""Called on STEP_UP before the wait (e.g. to tell the user who must approve)."""


@dataclass(frozen=True)
class ActionSpec:
    """Everything about one action the flow needs."""

    identity: Identity
    tool: str
    operation: str
    parameters: Mapping[str, Any]
    schema: Mapping[str, Any] | None = None
    facts: Sequence[Fact] = ()
    risk_signals: Mapping[str, float] = field(default_factory=dict)
    depends_on: Sequence[str] = ()
    original_tool: str = ""
    request_id: str = ""
    context_provider: ContextProvider | None = None
    on_step_up: StepUpHook | None = None
    approval_wait: float = 300.0
    max_defer_rounds: int = 3


# --- the operations the drivers run ---------------------------------------------------


@dataclass(frozen=True)
class DecideOp:
    request: decision_pb2.DecideRequest


@dataclass(frozen=True)
class WatchOp:
    request: approval_pb2.WatchApprovalRequest
    wait: float


@dataclass(frozen=True)
class ProvideOp:
    identity: decision_pb2.Identity
    deferral_id: str
    facts: tuple[decision_pb2.Fact, ...]


@dataclass(frozen=True)
class AskContextOp:
    info: DeferralInfo


@dataclass(frozen=True)
class StepUpOp:
    info: ApprovalInfo


@dataclass(frozen=True)
class AbandonOp:
    """A verdict the client cannot carry out: tell the service the action did not run."""

    outcome: session_pb2.RecordOutcomeRequest


Op: TypeAlias = DecideOp | WatchOp | ProvideOp | AskContextOp | StepUpOp | AbandonOp
Flow: TypeAlias = Generator[Op, Any, Verdict]


def new_request_id() -> str:
    return uuid.uuid4().hex


def build_request(spec: ActionSpec, request_id: str) -> decision_pb2.DecideRequest:
    return D.DecideRequest(
        request_id=request_id,
        identity=spec.identity.to_pb(),
        action=D.Action(
            tool=spec.tool,
            operation=spec.operation,
            parameters=parameters_struct(spec.parameters),
            depends_on=list(spec.depends_on),
            original_tool=spec.original_tool,
        ),
        facts=[f.to_pb() for f in spec.facts],
        risk_signals=dict(spec.risk_signals),
    )


def _reasons(resp: decision_pb2.DecideResponse) -> tuple[Reason, ...]:
    return tuple(Reason.from_pb(r) for r in resp.reasons)


def _denied(resp: decision_pb2.DecideResponse, message: str, **kw: Any) -> ActionDenied:
    reasons = kw.pop("reasons", None) or _reasons(resp)
    return ActionDenied(
        message,
        reasons=reasons,
        decision_id=resp.decision_id,
        request_id=resp.request_id,
        **kw,
    )


def effective_parameters(resp: decision_pb2.DecideResponse, spec: ActionSpec) -> dict[str, Any]:
    """The parameters to run with: the caller's on ALLOW; on MODIFY the policy's, in the
    tool's declared types (schema given) or the original call's (CoercionError)."""
    if resp.decision != D.DECISION_MODIFY:
        return dict(spec.parameters)
    modified = json_format.MessageToDict(resp.modified_parameters)
    if spec.schema is not None:
        out = coerce_to_schema(modified, spec.schema)
    else:
        out = coerce_like(modified, dict(spec.parameters))
    if not isinstance(out, dict):  # pragma: no cover - a Struct is always an object
        raise CoercionError("modified parameters are not an object")
    return out


def normalize_facts(got: Any) -> tuple[Fact, ...]:
    """A context provider's answer as facts (None/empty: none)."""
    if not got:
        return ()
    if isinstance(got, Mapping):
        return tuple(Fact(str(k), v, source="context_provider") for k, v in got.items())
    if isinstance(got, Iterable):
        facts = tuple(got)
        if all(isinstance(f, Fact) for f in facts):
            return facts
    raise TypeError("a context provider returns Fact objects or a mapping name -> value")


def decide_flow(spec: ActionSpec) -> Flow:
    """Decide, then see a STEP_UP or DEFER through; the Verdict, or ActionDenied."""
    request_id = spec.request_id or new_request_id()
    request = build_request(spec, request_id)
    resp: decision_pb2.DecideResponse = yield DecideOp(request)
    # The decision an outcome is reported against: a Decide's own; for a deferral the
    # service re-judged (ProvideContext), the deferred decision (the session settles it).
    anchor = resp.decision_id
    approved = False
    defer_rounds = 0
    while True:
        d = resp.decision
        if d == D.DECISION_MODIFY and not resp.HasField("modified_parameters"):
            raise _denied(  # a malformed verdict is a denial, never the original call
                resp,
                f"{spec.tool}.{spec.operation}: MODIFY without parameters",
                reasons=(Reason("modify_malformed", "aarm_pdp_client", "no parameters"),),
            )
        if d in (D.DECISION_ALLOW, D.DECISION_MODIFY):
            try:
                params = effective_parameters(resp, spec)
            except CoercionError as exc:
                yield AbandonOp(
                    outcome_request(
                        spec.identity,
                        anchor,
                        error=f"not run: modified parameters do not fit the tool: {exc}",
                    )
                )
                raise _denied(
                    resp,
                    f"{spec.tool}.{spec.operation}: MODIFY does not fit the tool's types: {exc}",
                    reasons=(Reason("modify_uncoercible", "aarm_pdp_client", str(exc)[:500]),),
                ) from exc
            return Verdict(
                decision="ALLOW" if d == D.DECISION_ALLOW else "MODIFY",
                decision_id=resp.decision_id,
                outcome_decision_id=anchor,
                parameters=params,
                reasons=_reasons(resp),
                receipt_id=resp.receipt.receipt_id,
                request_id=resp.request_id or request.request_id,
                response=resp,
            )
        if d == D.DECISION_STEP_UP:
            if approved or not resp.approval.approval_id:
                raise _denied(resp, f"{spec.tool}.{spec.operation}: STEP_UP not resolvable")
            info = ApprovalInfo(
                approval_id=resp.approval.approval_id,
                approvers=tuple(resp.approval.approvers),
                timeout_seconds=resp.approval.timeout_seconds,
                decision_id=resp.decision_id,
                reasons=_reasons(resp),
            )
            yield StepUpOp(info)
            wait = spec.approval_wait
            if info.timeout_seconds:
                wait = min(wait, info.timeout_seconds + 5.0)
            final: approval_pb2.WatchApprovalResponse = yield WatchOp(
                approval_pb2.WatchApprovalRequest(
                    identity=request.identity, approval_id=info.approval_id
                ),
                wait,
            )
            if final.status != approval_pb2.APPROVAL_STATUS_GRANTED or not final.approval_token:
                status = approval_pb2.ApprovalStatus.Name(final.status)
                code = status.removeprefix("APPROVAL_STATUS_").lower()
                raise _denied(
                    resp,
                    f"{spec.tool}.{spec.operation}: approval {code}",
                    decision="STEP_UP",
                    reasons=(Reason(f"approval_{code}", "aarm_pdp_client", final.reason),),
                )
            approved = True
            resubmit = D.DecideRequest()
            resubmit.CopyFrom(request)
            # A new id: the first id is already bound to the STEP_UP verdict.
            resubmit.request_id = f"{request.request_id}.approved"[:256]
            resubmit.approval_token = final.approval_token
            request = resubmit
            resp = yield DecideOp(request)
            anchor = resp.decision_id
            continue
        if d == D.DECISION_DEFER:
            info_d = DeferralInfo(
                deferral_id=resp.deferral.deferral_id,
                trigger=resp.deferral.trigger,
                context_needed=tuple(resp.deferral.context_needed),
                timeout_seconds=resp.deferral.timeout_seconds,
                decision_id=resp.decision_id,
                reasons=_reasons(resp),
            )
            defer_rounds += 1
            facts: tuple[Fact, ...] = ()
            if (
                spec.context_provider is not None
                and info_d.deferral_id
                and defer_rounds <= spec.max_defer_rounds
            ):
                facts = normalize_facts((yield AskContextOp(info_d)))
            if not facts:
                raise ActionDeferred(
                    f"{spec.tool}.{spec.operation}: deferred ({info_d.trigger}), needs "
                    f"{', '.join(info_d.context_needed) or 'context'}",
                    deferral=info_d,
                    reasons=_reasons(resp),
                    decision_id=resp.decision_id,
                    request_id=resp.request_id,
                )
            resp = yield ProvideOp(
                request.identity, info_d.deferral_id, tuple(f.to_pb() for f in facts)
            )
            continue
        raise _denied(resp, f"{spec.tool}.{spec.operation}: denied")


# --- outcomes ---------------------------------------------------------------------------


def output_text(output: Any) -> str:
    """An output as the text the service indexes (JSON for non-strings)."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    try:
        return json.dumps(output, ensure_ascii=False, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return str(output)


def outcome_request(
    identity: Identity,
    decision_id: str,
    *,
    output: Any = None,
    error: str | None = None,
    trust: Trust = Trust.UNSPECIFIED,
    classification: Classification = Classification.UNSPECIFIED,
    labels: Sequence[str] = (),
    values: Sequence[str] = (),
    started_at: float | None = None,
    completed_at: float | None = None,
) -> session_pb2.RecordOutcomeRequest:
    """RecordOutcome for one action: EXECUTED with its output, or FAILED with ``error``."""
    text = output_text(output)
    req = session_pb2.RecordOutcomeRequest(
        identity=identity.to_pb(),
        decision_id=decision_id,
        status=session_pb2.OUTCOME_STATUS_FAILED
        if error is not None
        else session_pb2.OUTCOME_STATUS_EXECUTED,
        output_digest=hashlib.sha256(text.encode()).hexdigest() if text else "",
        classification=int(classification),  # type: ignore[arg-type]
        labels=list(labels),
        output_text=text[:MAX_OUTPUT_TEXT],
        output_values=list(values),
        source_trust=int(trust),  # type: ignore[arg-type]
        error=(error or "")[:4096],
    )
    now = time.time()
    req.started_at.FromNanoseconds(int((started_at or now) * 1e9))
    req.completed_at.FromNanoseconds(int((completed_at or now) * 1e9))
    return req
