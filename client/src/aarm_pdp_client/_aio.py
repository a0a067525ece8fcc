"""The asyncio client: :class:`AsyncClient`, :class:`AsyncGuard`, :class:`AsyncSession`.

The same flow as the blocking client (:mod:`aarm_pdp_client._flow`), awaited.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc
import grpc.aio

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
from aarm_pdp_client._stream import AioDecideStream, Full, StreamStatus, Unsupported
from aarm_pdp_client._transport import (
    DECIDE_RETRY,
    OTHER_RETRY,
    Settings,
    Token,
    backoff,
    denied_by_transport,
    grpc_closed,
    open_aio_channel,
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

__all__ = ["AsyncClient", "AsyncGuard", "AsyncSession"]


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class AsyncClient:
    """A grpc.aio connection to an aarm-pdp service; the arguments of :class:`Client`."""

    def __init__(
        self,
        target: str = "",
        *,
        token: Token = None,
        tls: Tls | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        approval_wait: float = 300.0,
        channel: grpc.aio.Channel | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.settings = Settings(token, timeout, retries, approval_wait)
        self._own = channel is None
        self._channel: grpc.aio.Channel = channel or open_aio_channel(target, tls, options)
        self._decide = decision_pb2_grpc.DecisionServiceStub(self._channel)
        self._sessions = session_pb2_grpc.SessionServiceStub(self._channel)
        self._approvals = approval_pb2_grpc.ApprovalServiceStub(self._channel)
        self._deferrals = deferral_pb2_grpc.DeferralServiceStub(self._channel)
        self._stream = AioDecideStream(self._decide)

    async def close(self) -> None:
        self._stream.close()
        if self._own:
            await self._channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- RPCs -------------------------------------------------------------------------

    async def _unary(self, rpc: Any, request: Any, retry: frozenset[grpc.StatusCode]) -> Any:
        s = self.settings
        for attempt in range(s.retries + 1):
            try:
                return await rpc(request, timeout=s.timeout, metadata=s.metadata())
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in retry or attempt == s.retries:
                    raise
                await asyncio.sleep(backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _decide_rpc(self, request: Any) -> Any:
        """Decide with the deadline, the credential and the retries: over the client's
        DecideStream while the service has one (``_stream.py``), else unary."""
        s = self.settings
        for attempt in range(s.retries + 1):
            try:
                if not self._stream.unsupported:
                    try:
                        return await self._stream.decide(request, s.timeout, s.metadata())
                    except Unsupported:
                        log.info("the service has no DecideStream: using unary Decide")
                    except Full:
                        pass  # this one unary: the stream has as many as it takes
                return await self._decide.Decide(request, timeout=s.timeout, metadata=s.metadata())
            except (grpc.aio.AioRpcError, StreamStatus) as exc:
                if exc.code() not in DECIDE_RETRY or attempt == s.retries:
                    raise
                await asyncio.sleep(backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _watch(self, op: WatchOp) -> approval_pb2.WatchApprovalResponse:
        s = self.settings
        end = time.monotonic() + op.wait
        attempt = 0
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise denied_by_transport(grpc.StatusCode.DEADLINE_EXCEEDED, "approval wait over")
            call = self._approvals.WatchApproval(op.request, timeout=left, metadata=s.metadata())
            try:
                async for msg in call:
                    if msg.status != approval_pb2.APPROVAL_STATUS_PENDING:
                        final: approval_pb2.WatchApprovalResponse = msg
                        return final
                raise grpc_closed()
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in OTHER_RETRY or attempt >= s.retries:
                    raise denied_by_transport(exc.code(), exc.details() or "") from None
                await asyncio.sleep(backoff(attempt))
                attempt += 1
            finally:
                call.cancel()

    async def _drive(self, flow: Flow, spec: ActionSpec) -> Verdict:
        result: Any = None
        try:
            while True:
                op = flow.send(result)
                result = None
                if isinstance(op, DecideOp):
                    try:
                        result = await self._decide_rpc(op.request)
                    except (grpc.aio.AioRpcError, StreamStatus) as exc:
                        raise denied_by_transport(exc.code(), exc.details() or "") from None
                elif isinstance(op, WatchOp):
                    result = await self._watch(op)
                elif isinstance(op, ProvideOp):
                    try:
                        got = await self._unary(
                            self._deferrals.ProvideContext,
                            deferral_pb2.ProvideContextRequest(
                                identity=op.identity, deferral_id=op.deferral_id, facts=op.facts
                            ),
                            OTHER_RETRY,
                        )
                    except grpc.aio.AioRpcError as exc:
                        raise denied_by_transport(exc.code(), exc.details() or "") from None
                    result = got.decision
                elif isinstance(op, AskContextOp):
                    assert spec.context_provider is not None
                    result = await _maybe_await(spec.context_provider(op.info))
                elif isinstance(op, StepUpOp):
                    if spec.on_step_up is not None:
                        await _maybe_await(spec.on_step_up(op.info))
                elif isinstance(op, AbandonOp):
                    try:
                        await self._unary(self._sessions.RecordOutcome, op.outcome, OTHER_RETRY)
                    except grpc.aio.AioRpcError as exc:
                        log.warning("outcome of an abandoned action not recorded: %s", exc.code())
        except StopIteration as stop:
            verdict: Verdict = stop.value
            return verdict

    # --- the API ----------------------------------------------------------------------

    async def decide(
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
        """:meth:`Client.decide`, awaited (the provider and hook may be coroutines)."""
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
        return await self._drive(decide_flow(spec), spec)

    async def record_outcome(
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
        """:meth:`Client.record_outcome`, awaited."""
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
            resp: session_pb2.RecordOutcomeResponse = await self._unary(
                self._sessions.RecordOutcome, req, OTHER_RETRY
            )
        except grpc.aio.AioRpcError as exc:
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
    ) -> AsyncGuard:
        """An :class:`AsyncGuard` around one action (decided when entered)."""
        return AsyncGuard(
            self,
            identity,
            tool,
            operation,
            parameters,
            trust=trust,
            classification=classification,
            decide=decide,
        )

    async def run(
        self,
        identity: Identity,
        tool: str,
        operation: str,
        parameters: Mapping[str, Any],
        fn: Callable[..., Awaitable[R]] | Callable[..., R],
        **kw: Any,
    ) -> R:
        """Decide, ``await fn(**effective_parameters)`` (or call it), record; return it."""
        guard = self.guard(identity, tool, operation, parameters, **kw)
        result: R = await guard.run(fn)
        return result

    async def start_session(
        self,
        identity: Identity,
        original_request: str,
        *,
        intent_class: str = "",
        expected_scope: Sequence[str] = (),
        max_classification: Classification = Classification.UNSPECIFIED,
    ) -> AsyncSession:
        """StartSession with the user's request; the :class:`AsyncSession`."""
        req = session_pb2.StartSessionRequest(
            identity=identity.to_pb(),
            original_request=original_request,
            intent_class=intent_class,
            expected_scope=list(expected_scope),
            max_classification=int(max_classification),  # type: ignore[arg-type]
        )
        try:
            resp = await self._unary(self._sessions.StartSession, req, OTHER_RETRY)
        except grpc.aio.AioRpcError as exc:
            raise AarmClientError(
                f"session not started: {exc.code().name}: {exc.details()}"
            ) from None
        return AsyncSession(self, identity, resp.context_hash)

    async def end_session(self, identity: Identity) -> session_pb2.EndSessionResponse:
        """EndSession: the service discards the session's context."""
        try:
            resp: session_pb2.EndSessionResponse = await self._unary(
                self._sessions.EndSession,
                session_pb2.EndSessionRequest(identity=identity.to_pb()),
                OTHER_RETRY,
            )
        except grpc.aio.AioRpcError as exc:
            raise AarmClientError(
                f"session not ended: {exc.code().name}: {exc.details()}"
            ) from None
        return resp


class AsyncGuard:
    """:class:`~aarm_pdp_client.Guard` for ``async with``."""

    def __init__(
        self,
        client: AsyncClient,
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
            raise AarmClientError("the guard has not decided: use it in an async with block")
        return dict(self.verdict.parameters)

    async def __aenter__(self) -> AsyncGuard:
        self.verdict = await self._client.decide(
            self.identity, self.tool, self.operation, self._parameters, **self._decide
        )
        self._started = time.time()
        return self

    async def record(
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
        await self._client.record_outcome(
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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._recorded or self.verdict is None:
            return
        if exc is None:
            await self.record()
            return
        try:
            await self.record(error=f"{type(exc).__name__}: {exc}")
        except AarmClientError as failed:
            log.warning("failure of %s.%s not recorded: %s", self.tool, self.operation, failed)

    async def run(self, fn: Callable[..., Awaitable[R]] | Callable[..., R]) -> R:
        """Decide, run ``fn(**parameters)`` (awaited if it returns an awaitable), record."""
        async with self:
            result: R = await _maybe_await(fn(**self.parameters))
            await self.record(result)
            return result


class AsyncSession:
    """A session the service knows (StartSession done); ends on ``async with`` exit."""

    def __init__(self, client: AsyncClient, identity: Identity, context_hash: str) -> None:
        self.client = client
        self.identity = identity
        self.context_hash = context_hash
        self.ended = False

    def guard(
        self, tool: str, operation: str, parameters: Mapping[str, Any], **kw: Any
    ) -> AsyncGuard:
        return self.client.guard(self.identity, tool, operation, parameters, **kw)

    async def decide(
        self, tool: str, operation: str, parameters: Mapping[str, Any], **kw: Any
    ) -> Verdict:
        return await self.client.decide(self.identity, tool, operation, parameters, **kw)

    async def run(
        self,
        tool: str,
        operation: str,
        parameters: Mapping[str, Any],
        fn: Callable[..., Awaitable[R]] | Callable[..., R],
        **kw: Any,
    ) -> R:
        return await self.client.run(self.identity, tool, operation, parameters, fn, **kw)

    async def end(self) -> session_pb2.EndSessionResponse | None:
        if self.ended:
            return None
        self.ended = True
        return await self.client.end_session(self.identity)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            await self.end()
            return
        try:
            await self.end()
        except AarmClientError as failed:
            log.warning("session %s not ended: %s", self.identity.session_id, failed)
