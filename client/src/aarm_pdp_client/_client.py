"""The blocking client: :class:`Client`, :class:`Guard`, :class:`Session`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc

from aarm_pdp_client._flow import (
    AbandonOp,
    ActionSpec,
    AskContextOp,
    ContextProvider,
    DecideOp,
    Flow,
    ProvideOp,
    StepUpHook,
    StepUpOp,
    WatchOp,
    decide_flow,
    outcome_request,
)
from aarm_pdp_client._gen.aarm.v1 import (
    approval_pb2,
    approval_pb2_grpc,
    decision_pb2_grpc,
    deferral_pb2,
    deferral_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
)
from aarm_pdp_client._stream import Full, StreamStatus, SyncDecideStream, Unsupported
from aarm_pdp_client._transport import (
    DECIDE_RETRY,
    OTHER_RETRY,
    Settings,
    Token,
    approval_final,
    backoff,
    denied_by_transport,
    open_channel,
)
from aarm_pdp_client._types import (
    AarmClientError,
    Classification,
    Fact,
    Identity,
    OutcomeNotRecorded,
    Tls,
    Trust,
    Verdict,
)

log = logging.getLogger("aarm_pdp_client")
R = TypeVar("R")

__all__ = ["Client", "Guard", "Session"]


class Client:
    """A blocking connection to an aarm-pdp service.

    Args:
        target: ``host:port`` of the service.
        token: the enforcement point's bearer token, or a function returning it (called
            per RPC, for tokens that refresh); None for mTLS-only principals.
        tls: TLS or mTLS settings; None for a plaintext channel (loopback only).
        timeout: per-RPC deadline in seconds.
        retries: further attempts after UNAVAILABLE or RESOURCE_EXHAUSTED (and, for
            Decide, DEADLINE_EXCEEDED); a Decide retried keeps its ``request_id``, so
            the service answers it once.
        approval_wait: the longest a STEP_UP waits for a human, in seconds (the
            approval's own timeout shortens it).
        channel: an existing channel to use instead (the client does not close it).
    """

    def __init__(
        self,
        target: str = "",
        *,
        token: Token = None,
        tls: Tls | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        approval_wait: float = 300.0,
        channel: grpc.Channel | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.settings = Settings(token, timeout, retries, approval_wait)
        self._own = channel is None
        self._channel: grpc.Channel = channel or open_channel(target, tls, options)
        self._decide = decision_pb2_grpc.DecisionServiceStub(self._channel)
        self._sessions = session_pb2_grpc.SessionServiceStub(self._channel)
        self._approvals = approval_pb2_grpc.ApprovalServiceStub(self._channel)
        self._deferrals = deferral_pb2_grpc.DeferralServiceStub(self._channel)
        self._stream = SyncDecideStream(self._decide)

    def close(self) -> None:
        self._stream.close()
        if self._own:
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- RPCs -------------------------------------------------------------------------

    def _unary(self, rpc: Any, request: Any, retry: frozenset[grpc.StatusCode]) -> Any:
        """One RPC with the deadline, the credential and the retries (grpc.RpcError)."""
        s = self.settings
        for attempt in range(s.retries + 1):
            try:
                return rpc(request, timeout=s.timeout, metadata=s.metadata())
            except grpc.RpcError as exc:
                if exc.code() not in retry or attempt == s.retries:
                    raise
                time.sleep(backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _decide_rpc(self, request: Any) -> Any:
        """Decide with the deadline, the credential and the retries: over the client's
        DecideStream while the service has one (``_stream.py``), else unary."""
        s = self.settings
        for attempt in range(s.retries + 1):
            try:
                if not self._stream.unsupported:
                    try:
                        return self._stream.decide(request, s.timeout, s.metadata())
                    except Unsupported:
                        log.info("the service has no DecideStream: using unary Decide")
                    except Full:
                        pass  # this one unary: the stream has as many as it takes
                return self._decide.Decide(request, timeout=s.timeout, metadata=s.metadata())
            except (grpc.RpcError, StreamStatus) as exc:
                if exc.code() not in DECIDE_RETRY or attempt == s.retries:
                    raise
                time.sleep(backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _watch(self, op: WatchOp) -> approval_pb2.WatchApprovalResponse:
        s = self.settings
        end = time.monotonic() + op.wait
        attempt = 0
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise denied_by_transport(grpc.StatusCode.DEADLINE_EXCEEDED, "approval wait over")
            stream = self._approvals.WatchApproval(op.request, timeout=left, metadata=s.metadata())
            try:
                return approval_final(stream)
            except grpc.RpcError as exc:
                if exc.code() not in OTHER_RETRY or attempt >= s.retries:
                    raise denied_by_transport(exc.code(), exc.details() or "") from None
                time.sleep(backoff(attempt))
                attempt += 1
            finally:
                stream.cancel()

    def _drive(self, flow: Flow, spec: ActionSpec) -> Verdict:
        result: Any = None
        try:
            while True:
                op = flow.send(result)
                result = None
                if isinstance(op, DecideOp):
                    try:
                        result = self._decide_rpc(op.request)
                    except (grpc.RpcError, StreamStatus) as exc:
                        raise denied_by_transport(exc.code(), exc.details() or "") from None
                elif isinstance(op, WatchOp):
                    result = self._watch(op)
                elif isinstance(op, ProvideOp):
                    try:
                        result = self._unary(
                            self._deferrals.ProvideContext,
                            deferral_pb2.ProvideContextRequest(
                                identity=op.identity, deferral_id=op.deferral_id, facts=op.facts
                            ),
                            OTHER_RETRY,
                        ).decision
                    except grpc.RpcError as exc:
                        raise denied_by_transport(exc.code(), exc.details() or "") from None
                elif isinstance(op, AskContextOp):
                    assert spec.context_provider is not None
                    result = spec.context_provider(op.info)
                elif isinstance(op, StepUpOp):
                    if spec.on_step_up is not None:
                        spec.on_step_up(op.info)
                elif isinstance(op, AbandonOp):
                    try:
                        self._unary(self._sessions.RecordOutcome, op.outcome, OTHER_RETRY)
                    except grpc.RpcError as exc:
                        log.warning("outcome of an abandoned action not recorded: %s", exc.code())
        except StopIteration as stop:
            verdict: Verdict = stop.value
            return verdict

    # --- the API ----------------------------------------------------------------------

    def decide(
        self,
        identity: Identity,
        tool: str,
        operation: str,
        parameters: Mapping[str, Any],
        *,
        schema: Mapping[str, Any] | None = None,
        facts: Sequence[Fact] = (),
        risk_signals: Mapping[str, float] | None = None,
        depends_on: Sequence[str] = (),
        original_tool: str = "",
        request_id: str = "",
        context_provider: ContextProvider | None = None,
        on_step_up: StepUpHook | None = None,
        approval_wait: float | None = None,
    ) -> Verdict:
        """The verdict for one action, STEP_UP waited for and DEFER answered.

        Returns the :class:`Verdict` (ALLOW or MODIFY; ``parameters`` are the ones to
        run with). Raises :class:`ActionDenied` for everything else: DENY, an approval
        rejected or expired, a deferral nobody answered (:class:`ActionDeferred`), the
        service unreachable or too slow.
        """
        spec = ActionSpec(
            identity=identity,
            tool=tool,
            operation=operation,
            parameters=parameters,
            schema=schema,
            facts=facts,
            risk_signals=risk_signals or {},
            depends_on=depends_on,
            original_tool=original_tool,
            request_id=request_id,
            context_provider=context_provider,
            on_step_up=on_step_up,
            approval_wait=self.settings.approval_wait if approval_wait is None else approval_wait,
        )
        return self._drive(decide_flow(spec), spec)

    def record_outcome(
        self,
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
    ) -> session_pb2.RecordOutcomeResponse:
        """Report what an allowed action did (OutcomeNotRecorded when the service
        did not take it)."""
        req = outcome_request(
            identity,
            decision_id,
            output=output,
            error=error,
            trust=trust,
            classification=classification,
            labels=labels,
            values=values,
            started_at=started_at,
        )
        try:
            resp: session_pb2.RecordOutcomeResponse = self._unary(
                self._sessions.RecordOutcome, req, OTHER_RETRY
            )
        except grpc.RpcError as exc:
            raise OutcomeNotRecorded(
                f"outcome not recorded: {exc.code().name}: {exc.details()}", result=output
            ) from None
        return resp

    def guard(
        self,
        identity: Identity,
        tool: str,
        operation: str,
        parameters: Mapping[str, Any],
        *,
        trust: Trust = Trust.UNSPECIFIED,
        classification: Classification = Classification.UNSPECIFIED,
        **decide: Any,
    ) -> Guard:
        """A :class:`Guard` around one action (decided when entered)."""
        return Guard(
            self,
            identity,
            tool,
            operation,
            parameters,
            trust=trust,
            classification=classification,
            decide=decide,
        )

    def run(
        self,
        identity: Identity,
        tool: str,
        operation: str,
        parameters: Mapping[str, Any],
        fn: Callable[..., R],
        **kw: Any,
    ) -> R:
        """Decide, call ``fn(**effective_parameters)``, record its result; return it."""
        return self.guard(identity, tool, operation, parameters, **kw).run(fn)

    def start_session(
        self,
        identity: Identity,
        original_request: str,
        *,
        intent_class: str = "",
        expected_scope: Sequence[str] = (),
        max_classification: Classification = Classification.UNSPECIFIED,
    ) -> Session:
        """StartSession with the user's request; the :class:`Session` (ends on exit)."""
        req = session_pb2.StartSessionRequest(
            identity=identity.to_pb(),
            original_request=original_request,
            intent_class=intent_class,
            expected_scope=list(expected_scope),
            max_classification=int(max_classification),  # type: ignore[arg-type]
        )
        try:
            resp = self._unary(self._sessions.StartSession, req, OTHER_RETRY)
        except grpc.RpcError as exc:
            raise AarmClientError(
                f"session not started: {exc.code().name}: {exc.details()}"
            ) from None
        return Session(self, identity, resp.context_hash)

    def end_session(self, identity: Identity) -> session_pb2.EndSessionResponse:
        """EndSession: the service discards the session's context."""
        try:
            resp: session_pb2.EndSessionResponse = self._unary(
                self._sessions.EndSession,
                session_pb2.EndSessionRequest(identity=identity.to_pb()),
                OTHER_RETRY,
            )
        except grpc.RpcError as exc:
            raise AarmClientError(
                f"session not ended: {exc.code().name}: {exc.details()}"
            ) from None
        return resp


class Guard:
    """One action: decided on ``with`` (ActionDenied if it may not run), its outcome
    recorded when the block ends.

    Inside the block run the tool with :attr:`parameters` and hand its output to
    :meth:`record` (with its trust); a block that ends without it records EXECUTED with
    no output, one that raises records FAILED with the exception.
    """

    def __init__(
        self,
        client: Client,
        identity: Identity,
        tool: str,
        operation: str,
        parameters: Mapping[str, Any],
        *,
        trust: Trust = Trust.UNSPECIFIED,
        classification: Classification = Classification.UNSPECIFIED,
        decide: Mapping[str, Any] | None = None,
    ) -> None:
        self._client = client
        self.identity = identity
        self.tool = tool
        self.operation = operation
        self._parameters = dict(parameters)
        self._trust = trust
        self._classification = classification
        self._decide = dict(decide or {})
        self.verdict: Verdict | None = None
        self._started = 0.0
        self._recorded = False

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameters to run the tool with (after MODIFY, in the tool's types)."""
        if self.verdict is None:
            raise AarmClientError("the guard has not decided: use it in a with block")
        return dict(self.verdict.parameters)

    def __enter__(self) -> Guard:
        self.verdict = self._client.decide(
            self.identity, self.tool, self.operation, self._parameters, **self._decide
        )
        self._started = time.time()
        return self

    def record(
        self,
        output: Any = None,
        *,
        trust: Trust | None = None,
        classification: Classification | None = None,
        labels: Sequence[str] = (),
        values: Sequence[str] = (),
        error: str | None = None,
    ) -> None:
        """Report the tool's output (or ``error``) with its trust and classification."""
        if self.verdict is None:
            raise AarmClientError("the guard has not decided")
        if self._recorded:
            raise AarmClientError("outcome already recorded")
        self._recorded = True
        self._client.record_outcome(
            self.identity,
            self.verdict.outcome_decision_id,
            output=output,
            error=error,
            trust=self._trust if trust is None else trust,
            classification=self._classification if classification is None else classification,
            labels=labels,
            values=values,
            started_at=self._started,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._recorded or self.verdict is None:
            return
        if exc is None:
            self.record()
            return
        try:
            self.record(error=f"{type(exc).__name__}: {exc}")
        except AarmClientError as failed:
            log.warning("failure of %s.%s not recorded: %s", self.tool, self.operation, failed)

    def run(self, fn: Callable[..., R]) -> R:
        """Decide, ``fn(**parameters)``, record its result (OutcomeNotRecorded: the
        result is withheld, in the error's ``result``); return the result."""
        with self:
            result = fn(**self.parameters)
            self.record(result)
            return result


class Session:
    """A session the service knows (StartSession done); ends on ``with`` exit."""

    def __init__(self, client: Client, identity: Identity, context_hash: str) -> None:
        self.client = client
        self.identity = identity
        self.context_hash = context_hash
        self.ended = False

    def guard(self, tool: str, operation: str, parameters: Mapping[str, Any], **kw: Any) -> Guard:
        return self.client.guard(self.identity, tool, operation, parameters, **kw)

    def decide(
        self, tool: str, operation: str, parameters: Mapping[str, Any], **kw: Any
    ) -> Verdict:
        return self.client.decide(self.identity, tool, operation, parameters, **kw)

    def run(
        self,
        tool: str,
        operation: str,
        parameters: Mapping[str, Any],
        fn: Callable[..., R],
        **kw: Any,
    ) -> R:
        return self.client.run(self.identity, tool, operation, parameters, fn, **kw)

    def end(self) -> session_pb2.EndSessionResponse | None:
        if self.ended:
            return None
        self.ended = True
        return self.client.end_session(self.identity)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.end()
            return
        try:
            self.end()
        except AarmClientError as failed:
            log.warning("session %s not ended: %s", self.identity.session_id, failed)
