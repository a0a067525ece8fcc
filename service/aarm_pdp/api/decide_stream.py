"""DecideStream: many Decides on one bidirectional stream, answered as they are decided.

The servicer (:class:`~aarm_pdp.api.decision_service.DecisionServicer`) hands each
message's request to the same path as a unary Decide (validation, tenant binding, end
user, the engine, its receipt); this module is the stream around it:

- **Admission per message.** Each message read asks the stream's
  :class:`~aarm_pdp.api.admission.StreamGate` for a Decide slot, its bytes and a slot of
  the stream's own bound. Refused: answered at once with the ``overloaded`` error
  (RESOURCE_EXHAUSTED), never queued, never dropped.
- **Deadlines per message.** ``timeout_ms`` runs from the moment the message is read
  (the stream's own gRPC deadline, if any, caps it). The engine gets it less the margin
  a unary Decide keeps for the answer's way back; an answer not ready by the deadline
  (the message waited too long, or the event loop fell behind) is the error
  ``deadline_exceeded``, a DENY, whatever was decided meanwhile.
- **Answers in completion order**, each carrying its message's ``message_id``: a slow
  decision (a session store wait, a deferral) holds up no other.
- **Errors per message.** What would end a unary Decide with a status (an invalid
  request, a tenant the caller holds no role in, overload, a deadline) answers that
  message with a :class:`StreamError` and a stand-in DENY, from the one error table
  (:mod:`aarm_pdp.errors`); the stream goes on.
- **Ending.** The client's half-close ends the stream once every message in flight is
  answered. A message that does not decode, or that arrives after the stream's
  credential expired, stops the reading: the messages in flight are answered, then the
  stream ends with that status (INVALID_ARGUMENT, UNAUTHENTICATED). A client that
  hangs up does not cut its decisions short: they finish (receipt, session commit) and
  give their admission slots back when done.
- **Backpressure.** Answers not yet sent are bounded: past the stream's bound, reading
  pauses until the client takes its answers (HTTP/2 flow control then holds the sender).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from aarm.v1 import decision_pb2

from aarm_pdp.api.admission import StreamGate
from aarm_pdp.errors import (
    ERRORS,
    AarmError,
    DeadlineExceeded,
    ErrorCode,
    Overloaded,
    client_message,
    deny_message,
    grpc_status,
)
from aarm_pdp.observability import tracing

__all__ = ["SPAN", "Decide", "DecideStream", "engine_budget", "error_response"]

log = logging.getLogger("aarm_pdp.api")

SPAN = "aarm.v1.DecisionService/DecideStream"
"""The name of each message's SERVER span (one per message, like Decide's; a shared null
context while tracing is off: observability/tracing.py)."""
DEADLINE_MARGIN_SECONDS = 0.5
DEADLINE_MARGIN_SHARE = 0.1
"""Time kept back from a deadline for the answer to reach the client (and the event
loop's lag under load): a tenth of it, at most 0.5 s; the engine gets the rest."""

Decide = Callable[[Any, "float | None", Any, int], Awaitable[None]]
"""The servicer's one decision: ``decide(request, engine_seconds, response, nbytes)``
fills the DecideResponse ``response`` with the decision for the DecideRequest
``request`` (of ``nbytes`` serialized), or raises :class:`AarmError` for what would end
a unary Decide with a status."""

_DENY = decision_pb2.DECISION_DENY
_HIGH = decision_pb2.RISK_LEVEL_HIGH


def engine_budget(remaining: float | None) -> float | None:
    """Seconds the engine may take when the answer is due in ``remaining`` seconds (None:
    no deadline): less the margin for its way back."""
    if remaining is None:
        return None
    margin = min(DEADLINE_MARGIN_SECONDS, remaining * DEADLINE_MARGIN_SHARE)
    return max(0.0, remaining - margin)


def error_response(message_id: int, request_id: str, exc: AarmError) -> Any:
    """The answer to a message the service did not decide: the error Decide would have
    failed with, and the DENY standing in for the decision (no decision id, no receipt)."""
    code = exc.code
    status, _ = grpc_status(code)
    out = decision_pb2.DecideStreamResponse(message_id=message_id)
    err = out.error
    err.status = status.value[0]
    err.code = code.value
    err.message = client_message(exc)
    resp = out.response
    resp.request_id = request_id
    resp.decision = _DENY
    message = deny_message(code)
    if ERRORS[code].client_detail and exc.detail:
        message = f"{message}: {exc.detail}"
    resp.reasons.add(code=code.value, rule_id=f"aarm.fail_closed.{code.value}", message=message)
    resp.risk.level = _HIGH
    resp.risk.score = 1.0
    return out


class DecideStream:
    """One DecideStream call: reads its messages, decides each, yields their answers."""

    __slots__ = (
        "_decide",
        "_expired",
        "_failure",
        "_gate",
        "_loop",
        "_metadata",
        "_outstanding",
        "_reading",
        "_ready",
        "_room",
        "_stream_deadline",
        "_waiter",
    )

    def __init__(
        self,
        decide: Decide,
        gate: StreamGate,
        *,
        metadata: Iterable[Any] | None,
        time_remaining: float | None,
        expired: Callable[[], object],
    ) -> None:
        """``time_remaining``: the stream's own gRPC deadline (None: none); ``expired()``
        counts a message answered ``deadline_exceeded``."""
        self._decide = decide
        self._expired = expired
        self._gate = gate
        self._metadata = tuple(metadata or ())
        self._loop = asyncio.get_running_loop()
        self._stream_deadline = (
            None if time_remaining is None else self._loop.time() + time_remaining
        )
        self._ready: collections.deque[Any] = collections.deque()
        self._outstanding = 0
        self._reading = True
        self._failure: AarmError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None

    # --- the answers --------------------------------------------------------------

    async def run(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """Every answer, as it is ready; then the stream's end (its error, if any)."""
        reader = asyncio.ensure_future(self._read(requests))
        try:
            while True:
                if self._ready:
                    item = self._ready.popleft()
                    room = self._room
                    if room is not None and not room.done():
                        room.set_result(None)
                    yield item
                    continue
                if not self._reading and not self._outstanding:
                    break
                self._waiter = self._loop.create_future()
                await self._waiter
                self._waiter = None
        finally:
            reader.cancel()  # a client gone: stop reading (its decisions finish alone)
        failure = self._failure
        if failure is not None:
            status, _ = grpc_status(failure.code)
            await context.abort(status, client_message(failure))

    def _put(self, item: Any) -> None:
        self._ready.append(item)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the messages -------------------------------------------------------------

    async def _read(self, requests: AsyncIterator[Any]) -> None:
        limit = self._gate.limit
        try:
            async for msg in requests:
                self._accept(msg)
                if len(self._ready) >= limit:  # the client does not take its answers
                    self._room = self._loop.create_future()
                    await self._room
                    self._room = None
        except AarmError as exc:  # undecodable, or the credential expired
            self._failure = exc
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:  # the call broke under us: nothing more to read
            log.debug("DecideStream stopped reading: %r", exc)
        finally:
            self._reading = False
            self._wake()

    def _accept(self, msg: Any) -> None:
        request = msg.request
        nbytes = request.ByteSize()
        refusal = self._gate.enter(nbytes)
        if refusal is not None:
            self._put(error_response(msg.message_id, request.request_id, Overloaded(refusal)))
            return
        deadline = self._stream_deadline
        if msg.timeout_ms:
            own = self._loop.time() + msg.timeout_ms / 1000
            deadline = own if deadline is None else min(own, deadline)
        self._outstanding += 1
        task = self._loop.create_task(self._traced(msg, deadline, nbytes))
        task.add_done_callback(functools.partial(self._done, msg, nbytes))

    def _done(self, msg: Any, nbytes: int, task: asyncio.Future[Any]) -> None:
        self._gate.leave(nbytes)
        self._outstanding -= 1
        if task.cancelled():  # the loop is closing: nothing will read it
            self._wake()
            return
        failed = task.exception()
        if failed is None:
            self._put(task.result())
            return
        # A bug: still an answer (a DENY), never a message left unanswered.
        log.error("DecideStream message %d failed", msg.message_id, exc_info=failed)
        internal = AarmError("DecideStream message failed", code=ErrorCode.INTERNAL)
        self._put(error_response(msg.message_id, msg.request.request_id, internal))

    async def _traced(self, msg: Any, deadline: float | None, nbytes: int) -> Any:
        with tracing.server_span(SPAN, self._metadata) as span:
            out = await self._answer(msg, deadline, nbytes)
            span.set_attribute("aarm.decision_id", out.response.decision_id)
            span.set_attribute("aarm.decision", decision_pb2.Decision.Name(out.response.decision))
            return out

    async def _answer(self, msg: Any, deadline: float | None, nbytes: int) -> Any:
        request = msg.request
        out = decision_pb2.DecideStreamResponse(message_id=msg.message_id)
        try:
            budget = None
            if deadline is not None:
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    raise DeadlineExceeded("the message's deadline passed before it was decided")
                budget = engine_budget(remaining)
            await self._decide(request, budget, out.response, nbytes)
            if deadline is not None and self._loop.time() > deadline:
                raise DeadlineExceeded("decided after the message's deadline")
        except AarmError as exc:
            if exc.code is ErrorCode.DEADLINE_EXCEEDED:
                self._expired()
            return error_response(msg.message_id, request.request_id, exc)
        return out
