"""Admission control for the aarm.v1 RPCs: bounded calls and request bytes in flight.

:meth:`Admission.wrap` wraps a servicer's generic handler before the server sees it.
Each call's serialized request size counts against one byte budget, and the call
against its class's budget: Decide, or every other aarm.v1 RPC (sessions, approvals,
deferrals, receipts: approvers still get through while Decide is saturated), or a
server stream (WatchApproval: agents waiting for a human hold theirs for minutes, and
must never take the slots of the ResolveApproval that ends their wait). A call
that would exceed either is refused at once, before its body is decoded or its caller
authenticated, with ``RESOURCE_EXHAUSTED`` and a message naming the limit reached (the
``overloaded`` row of the error table), counted in
``aarm_admission_rejected_total{method, reason}`` and logged at most every few seconds.
Health and reflection are not wrapped: they are answered however loaded Decide is.

A DecideStream is admitted per message, not per stream: opening one takes no slot, and
each message it carries takes a Decide slot and its bytes, as a Decide call would, plus
one of the stream's own (``max_per_stream``: one stream cannot take every slot). The
servicer asks its :class:`StreamGate` (:func:`stream_gate`) for each message it has
read; a message refused is answered on the stream with the same ``overloaded`` error
(RESOURCE_EXHAUSTED), counted like a refused call, while the stream stays open.

A slot is held until its call's work is done. A Decide whose client hangs up keeps its
slot until the (shielded) decision finishes (:func:`hold_until_done`), so clients that
cancel cannot pile up decisions beyond the limit.

One event loop runs every handler, so the counters need no lock; the gauges read them
at scrape time (nothing is updated per call but two integers).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, Final

import grpc

from aarm_pdp.errors import Overloaded, client_message
from aarm_pdp.observability.metrics import Metrics

__all__ = ["REASONS", "Admission", "StreamGate", "hold_until_done", "stream_gate"]

log = logging.getLogger("aarm_pdp.api")

REASONS: Final = ("decisions", "calls", "watches", "bytes", "stream")
"""Why a call was refused: the ``reason`` label of ``aarm_admission_rejected_total``."""
_DETAIL: Final = {
    "decisions": "overloaded: too many decisions in flight; retry with backoff",
    "calls": "overloaded: too many calls in flight; retry with backoff",
    "watches": "overloaded: too many approval watches open; retry with backoff",
    "bytes": "overloaded: too many request bytes in flight; retry with backoff",
    "stream": "overloaded: too many decisions in flight on this stream; retry with backoff",
}
DEFAULT_PER_STREAM: Final = 32
"""Decisions in flight on one DecideStream (``server.max_inflight_per_stream``)."""
LOG_EVERY_SECONDS: Final = 10.0
"""Refusals are logged once, then at most once per this many seconds (with a count)."""


class _Slot:
    """One admitted call's share of the budgets; released once."""

    __slots__ = ("_admission", "_decide", "_held", "_nbytes")

    def __init__(self, admission: Admission, decide: bool, nbytes: int) -> None:
        self._admission = admission
        self._decide = decide
        self._nbytes = nbytes
        self._held = False

    def release(self) -> None:
        """The handler is done; give the slot back unless a running task still holds it."""
        if not self._held:
            self._admission._leave(self._decide, self._nbytes)

    def done(self, _: object) -> None:
        self._admission._leave(self._decide, self._nbytes)


_SLOT: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar(
    "aarm_admission_slot", default=None
)


def hold_until_done(task: asyncio.Future[Any]) -> None:
    """Keep the current call's slot until ``task`` ends (its handler is ending first)."""
    slot = _SLOT.get()
    if slot is None or slot._held or task.done():
        return
    slot._held = True
    task.add_done_callback(slot.done)


class Admission:
    """The in-flight budgets of one server and the wrapper that enforces them."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        max_decisions: int,
        max_calls: int,
        max_bytes: int,
        decide_methods: Collection[str],
        max_watches: int = 1024,
        max_per_stream: int = DEFAULT_PER_STREAM,
    ) -> None:
        self.max_decisions = max_decisions
        self.max_calls = max_calls
        self.max_bytes = max_bytes
        self.decisions = 0
        """Decide calls admitted and not yet decided."""
        self.calls = 0
        """Other aarm.v1 calls admitted and not yet answered."""
        self.max_watches = max_watches
        self.watches = 0
        """Server streams (WatchApproval) open."""
        self.bytes = 0
        """Serialized request bytes of the admitted calls."""
        self.max_per_stream = max_per_stream
        self.streams = 0
        """DecideStream streams open."""
        self._decide_methods = frozenset(decide_methods)
        self._metrics = metrics
        metrics.inflight.set_function(lambda: self.decisions)
        metrics.inflight_calls.set_function(lambda: self.calls)
        metrics.inflight_bytes.set_function(lambda: self.bytes)
        metrics.decide_streams.set_function(lambda: self.streams)
        for resource, limit in (
            ("decisions", max_decisions),
            ("calls", max_calls),
            ("watches", max_watches),
            ("bytes", max_bytes),
            ("stream", max_per_stream),
        ):
            metrics.admission_limit.labels(resource).set(limit)
        self._refused = 0
        self._logged_at = float("-inf")

    # --- the budgets -----------------------------------------------------------------

    def _enter(self, decide: bool, nbytes: int) -> str | None:
        """Take a slot and ``nbytes``: None when admitted, else the reason refused."""
        if decide:
            if self.decisions >= self.max_decisions:
                return "decisions"
        elif self.calls >= self.max_calls:
            return "calls"
        # Nothing in flight: one call is always admitted, whatever its size (the
        # message size limit, not this budget, refuses a request too large for it).
        if self.bytes and self.bytes + nbytes > self.max_bytes:
            return "bytes"
        if decide:
            self.decisions += 1
        else:
            self.calls += 1
        self.bytes += nbytes
        return None

    def _enter_watch(self, nbytes: int) -> str | None:
        """Take a stream slot and ``nbytes`` (held while the stream is open)."""
        if self.watches >= self.max_watches:
            return "watches"
        if self.bytes and self.bytes + nbytes > self.max_bytes:
            return "bytes"
        self.watches += 1
        self.bytes += nbytes
        return None

    def _leave_watch(self, nbytes: int) -> None:
        self.watches -= 1
        self.bytes -= nbytes

    def _leave(self, decide: bool, nbytes: int) -> None:
        if decide:
            self.decisions -= 1
        else:
            self.calls -= 1
        self.bytes -= nbytes

    def _stream(self, method: str, inner: Any) -> Any:
        if inner.stream_stream is not None:
            return _bidi_method(self, method, inner)
        return _stream_method(self, method, inner)

    def _refused_now(self, method: str, reason: str) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            log.warning(
                "admission control refused %d call(s) (latest %s: %s in flight at the limit;"
                " decisions %d/%d, calls %d/%d, bytes %d/%d)",
                self._refused,
                method,
                reason,
                self.decisions,
                self.max_decisions,
                self.calls,
                self.max_calls,
                self.bytes,
                self.max_bytes,
            )
            self._refused = 0
            self._logged_at = now

    # --- the wrapper -----------------------------------------------------------------

    def wrap(self, handler: grpc.GenericRpcHandler) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
        """``handler`` with every unary and server-streaming method behind these budgets
        (and every bidirectional one's messages, through its :class:`StreamGate`)."""
        return _Admitted(handler, self)

    def _method(self, method: str, inner: Any) -> Any:
        """The unary method handler ``inner`` (of ``method``) behind the budgets."""
        behaviour = inner.unary_unary
        if behaviour is None:
            return self._stream(method, inner)
        decide = method in self._decide_methods
        parse: Callable[[bytes], Any] = inner.request_deserializer or _identity
        name = method.rpartition("/")[2]
        refused = {r: self._metrics.admission_rejected.labels(name, r) for r in REASONS}
        messages = {r: client_message(Overloaded(_DETAIL[r])) for r in REASONS}

        async def admitted(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            nbytes = len(raw)
            reason = self._enter(decide, nbytes)
            if reason is not None:
                refused[reason].inc()
                self._refused_now(name, reason)
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, messages[reason])
            slot = _Slot(self, decide, nbytes)
            token = _SLOT.set(slot)
            try:
                return await behaviour(parse(raw), context)
            finally:
                _SLOT.reset(token)
                slot.release()

        return grpc.unary_unary_rpc_method_handler(
            admitted,
            request_deserializer=None,  # bytes in: sized, then decoded by ``parse``
            response_serializer=inner.response_serializer,
        )


def _stream_method(admission: Admission, method: str, inner: Any) -> Any:
    """The server-streaming handler ``inner`` behind the watch and byte budgets."""
    behaviour = inner.unary_stream
    if behaviour is None:  # client streaming: no aarm.v1 RPC has that shape
        raise TypeError(f"{method}: client-streaming RPCs are not admitted")
    parse: Callable[[bytes], Any] = inner.request_deserializer or _identity
    name = method.rpartition("/")[2]
    refused = {r: admission._metrics.admission_rejected.labels(name, r) for r in REASONS}
    messages = {r: client_message(Overloaded(_DETAIL[r])) for r in REASONS}

    async def admitted(
        raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        nbytes = len(raw)
        reason = admission._enter_watch(nbytes)
        if reason is not None:
            refused[reason].inc()
            admission._refused_now(name, reason)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, messages[reason])
        try:
            async for message in behaviour(parse(raw), context):
                yield message
        finally:
            admission._leave_watch(nbytes)

    return grpc.unary_stream_rpc_method_handler(
        admitted,
        request_deserializer=None,
        response_serializer=inner.response_serializer,
    )


class StreamGate:
    """Admission for the messages of one DecideStream: this stream's own bound and the
    server's Decide and byte budgets, per message (no budgets: ``admission`` None)."""

    __slots__ = ("_admission", "_messages", "_name", "_refused", "inflight")

    def __init__(self, admission: Admission | None, name: str) -> None:
        self._admission = admission
        self._name = name
        self.inflight = 0
        """This stream's messages admitted and not yet decided."""
        if admission is not None:
            rejected = admission._metrics.admission_rejected
            self._refused = {r: rejected.labels(name, r) for r in REASONS}
        self._messages = {r: client_message(Overloaded(_DETAIL[r])) for r in REASONS}

    @property
    def limit(self) -> int:
        """This stream's own bound on decisions in flight."""
        return DEFAULT_PER_STREAM if self._admission is None else self._admission.max_per_stream

    def enter(self, nbytes: int) -> str | None:
        """Admit one message of ``nbytes``: None, or the refusal's client message.

        An admitted message holds a Decide slot, its bytes and a slot of this stream
        until :meth:`leave` (called when its decision is made, even if the stream is
        gone by then)."""
        admission = self._admission
        if admission is None:
            self.inflight += 1
            return None
        reason = (
            "stream"
            if self.inflight >= admission.max_per_stream
            else admission._enter(True, nbytes)
        )
        if reason is not None:
            self._refused[reason].inc()
            admission._refused_now(self._name, reason)
            return self._messages[reason]
        self.inflight += 1
        return None

    def leave(self, nbytes: int) -> None:
        self.inflight -= 1
        if self._admission is not None:
            self._admission._leave(True, nbytes)


_GATE: contextvars.ContextVar[StreamGate | None] = contextvars.ContextVar(
    "aarm_admission_stream_gate", default=None
)


def stream_gate(name: str = "DecideStream") -> StreamGate:
    """The gate of the DecideStream being served; without admission control (a servicer
    served unwrapped, in tests) one that admits every message."""
    gate = _GATE.get()
    return gate if gate is not None else StreamGate(None, name)


def _bidi_method(admission: Admission, method: str, inner: Any) -> Any:
    """The bidirectional handler ``inner``: open at once, its messages admitted one by one
    by the servicer through the :class:`StreamGate` this puts in its context."""
    behaviour = inner.stream_stream
    name = method.rpartition("/")[2]

    async def admitted(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        token = _GATE.set(StreamGate(admission, name))
        admission.streams += 1
        try:
            async for message in behaviour(requests, context):
                yield message
        finally:
            admission.streams -= 1
            _GATE.reset(token)

    return grpc.stream_stream_rpc_method_handler(
        admitted,
        request_deserializer=inner.request_deserializer,
        response_serializer=inner.response_serializer,
    )


def _identity(raw: bytes) -> bytes:
    return raw


class _Admitted(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """A generic handler whose unary methods pass admission first (wrapped once each)."""

    def __init__(self, inner: grpc.GenericRpcHandler, admission: Admission) -> None:  # type: ignore[type-arg]
        self._inner = inner
        self._admission = admission
        self._methods: dict[str, Any] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        wrapped = self._methods.get(method)
        if wrapped is None:
            inner = self._inner.service(handler_call_details)
            if inner is None:
                return None  # not this service's: unknown names are not remembered
            wrapped = self._methods[method] = self._admission._method(method, inner)
        return wrapped
