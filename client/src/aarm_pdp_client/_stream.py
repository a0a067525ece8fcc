"""Decide over one DecideStream per client, falling back to unary Decide.

A client sends every Decide of its guards as a message of one long-lived
``DecisionService/DecideStream`` (a few tens of microseconds of the service's CPU per
decision instead of a unary call's framing), matched to its answer by ``message_id``.
Each message carries the client's per-call timeout as ``timeout_ms`` and is waited for
that long; its answer is the same DecideResponse unary Decide gives, and an answer
with an error is that error's status, so the retry policy (:mod:`._transport`) is the
same for both paths.

The first time the service answers UNIMPLEMENTED (a server from before the stream),
the client remembers it and uses unary Decide from then on; the message that found out
is sent again as a unary call (it was never decided). A Decide while the stream has
:data:`MAX_IN_FLIGHT` messages in flight (the service's default bound per stream) goes
unary, as it would have without the stream. A stream that breaks fails the
messages it carries with its status (retried like a failed call, with the same
``request_id``, so nothing is decided twice) and the next Decide opens a new stream. A
token that changes (``token`` a function) opens a new stream with it; the old one is
half-closed and finishes the messages it carries.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import grpc
import grpc.aio

from aarm_pdp_client._gen.aarm.v1 import decision_pb2

__all__ = [
    "MAX_IN_FLIGHT",
    "AioDecideStream",
    "Full",
    "StreamStatus",
    "SyncDecideStream",
    "Unsupported",
]

_STATUS = {code.value[0]: code for code in grpc.StatusCode}
Metadata = tuple[tuple[str, str], ...]
MAX_IN_FLIGHT = 32
"""Messages in flight on the client's stream at most (the service's default
``server.max_inflight_per_stream``); a Decide past it goes unary, as it would have."""


class StreamStatus(Exception):
    """A Decide the stream did not decide: its per-message error, or the stream's end.

    Has ``code()`` and ``details()`` like :class:`grpc.RpcError`, so the callers treat
    both alike (retry, then :func:`~._transport.denied_by_transport`)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class Unsupported(Exception):
    """The service has no DecideStream: send this Decide (and every later one) unary."""


class Full(Exception):
    """The stream has :data:`MAX_IN_FLIGHT` messages in flight: send this Decide unary."""


def _message(message_id: int, request: Any, timeout: float) -> Any:
    return decision_pb2.DecideStreamRequest(
        message_id=message_id, request=request, timeout_ms=max(1, int(timeout * 1000))
    )


def _answer(resp: Any) -> Any:
    """The DecideResponse of an answer, or its error raised as a StreamStatus."""
    if resp.HasField("error"):
        code = _STATUS.get(resp.error.status, grpc.StatusCode.UNKNOWN)
        raise StreamStatus(code, resp.error.message or resp.error.code)
    return resp.response


# Ends that say something about the caller, not about the stream: never a reason to
# give the stream up (the same call over unary Decide would end the same way).
_NOT_THE_STREAMS_FAULT = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    }
)


def _ended(exc: BaseException | None, owner: Any) -> BaseException:
    """What the messages still unanswered get when a stream ends."""
    if exc is None:  # an OK end with messages unanswered: the service went away
        return StreamStatus(grpc.StatusCode.UNAVAILABLE, "the decision stream ended")
    if isinstance(exc, grpc.RpcError):
        code = exc.code()
        if code == grpc.StatusCode.UNIMPLEMENTED:
            owner.unsupported = True
            return Unsupported()
        if not owner.answered and code not in _NOT_THE_STREAMS_FAULT:
            # No stream of this client was ever answered: the service may well have no
            # DecideStream, and grpc.aio can end such a stream INTERNAL ("Internal error
            # from Core": a request written after the UNIMPLEMENTED status arrived)
            # instead of UNIMPLEMENTED. Unary Decide for good; a decision is never lost
            # to the optimisation (the message is resent unary with its request_id).
            owner.unsupported = True
            return Unsupported()
        return StreamStatus(code, exc.details() or "")
    return StreamStatus(grpc.StatusCode.UNAVAILABLE, f"the decision stream failed: {exc!r}")


# --- the blocking client -------------------------------------------------------------


class _SyncLine:
    """One open DecideStream: a queue feeding its requests, a thread reading its answers."""

    def __init__(self, stub: Any, metadata: Metadata, owner: SyncDecideStream) -> None:
        self.metadata = metadata
        self.pending: dict[int, Future[Any]] = {}
        self.dead = False
        self._owner = owner
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._call = stub.DecideStream(self._requests(), metadata=metadata)
        self._reader = threading.Thread(
            target=self._read, name="aarm-pdp-decide-stream", daemon=True
        )
        self._reader.start()

    def _requests(self) -> Iterator[Any]:
        while (item := self._queue.get()) is not None:
            yield item

    def send(self, message: Any) -> None:
        self._queue.put(message)

    def retire(self) -> None:
        """Send no more: the service answers what it has, then ends the stream."""
        self._queue.put(None)

    def cancel(self) -> None:
        self._queue.put(None)
        self._call.cancel()

    def _read(self) -> None:
        error: BaseException | None = None
        try:
            for resp in self._call:
                with self._owner.lock:
                    fut = self.pending.pop(resp.message_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(resp)
                self._owner.answered = True
        except grpc.RpcError as exc:
            error = exc
        except Exception as exc:
            error = exc
        with self._owner.lock:
            self.dead = True
            pending, self.pending = self.pending, {}
            failure = _ended(error, self._owner)
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(failure)


class SyncDecideStream:
    """The blocking client's DecideStream: thread-safe, opened on first use."""

    def __init__(self, stub: Any) -> None:
        self._stub = stub
        self.lock = threading.Lock()
        self._line: _SyncLine | None = None
        self._ids = itertools.count(1)
        self.unsupported = False
        self.answered = False
        """A stream of this client has delivered an answer: the service has DecideStream."""

    def decide(self, request: Any, timeout: float, metadata: Metadata) -> Any:
        """The DecideResponse for ``request``, waited for ``timeout`` seconds.

        Raises:
            Unsupported: the service has no DecideStream (use unary Decide).
            Full: :data:`MAX_IN_FLIGHT` messages in flight (use unary Decide for this one).
            StreamStatus: no decision (a per-message error, the stream's end, the timeout).
        """
        fut: Future[Any] = Future()
        with self.lock:
            if self.unsupported:
                raise Unsupported()
            line = self._line
            if line is None or line.dead or line.metadata != metadata:
                if line is not None and not line.dead:
                    line.retire()
                line = self._line = _SyncLine(self._stub, metadata, self)
            elif len(line.pending) >= MAX_IN_FLIGHT:
                raise Full()
            message_id = next(self._ids)
            line.pending[message_id] = fut
            line.send(_message(message_id, request, timeout))
        try:
            resp = fut.result(timeout)
        except FutureTimeout:
            with self.lock:
                line.pending.pop(message_id, None)
            raise StreamStatus(
                grpc.StatusCode.DEADLINE_EXCEEDED, "no answer on the decision stream in time"
            ) from None
        return _answer(resp)

    def close(self) -> None:
        with self.lock:
            line, self._line = self._line, None
        if line is not None:
            line.cancel()


# --- the asyncio client --------------------------------------------------------------


class _AioLine:
    """One open DecideStream on the running loop: a queue feeding it, a task reading."""

    def __init__(self, stub: Any, metadata: Metadata, owner: AioDecideStream) -> None:
        self.metadata = metadata
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.dead = False
        self._owner = owner
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._call = stub.DecideStream(self._requests(), metadata=metadata)
        self._reader = asyncio.ensure_future(self._read())

    async def _requests(self) -> AsyncIterator[Any]:
        while (item := await self._queue.get()) is not None:
            yield item

    def send(self, message: Any) -> None:
        self._queue.put_nowait(message)

    def retire(self) -> None:
        self._queue.put_nowait(None)

    def cancel(self) -> None:
        self._queue.put_nowait(None)
        self._call.cancel()
        self._reader.cancel()

    async def _read(self) -> None:
        error: BaseException | None = None
        try:
            async for resp in self._call:
                fut = self.pending.pop(resp.message_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(resp)
                self._owner.answered = True
        except asyncio.CancelledError:
            error = StreamStatus(grpc.StatusCode.CANCELLED, "the client was closed")
        except grpc.RpcError as exc:
            error = exc
        except Exception as exc:
            error = exc
        finally:
            self.dead = True
            pending, self.pending = self.pending, {}
            failure = error if isinstance(error, StreamStatus) else _ended(error, self._owner)
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(failure)


class AioDecideStream:
    """The asyncio client's DecideStream: opened on first use, on the running loop."""

    def __init__(self, stub: Any) -> None:
        self._stub = stub
        self._line: _AioLine | None = None
        self._ids = itertools.count(1)
        self.unsupported = False
        self.answered = False
        """A stream of this client has delivered an answer: the service has DecideStream."""

    async def decide(self, request: Any, timeout: float, metadata: Metadata) -> Any:
        """The DecideResponse for ``request``, waited for ``timeout`` seconds (raises
        like :meth:`SyncDecideStream.decide`)."""
        if self.unsupported:
            raise Unsupported()
        line = self._line
        if line is None or line.dead or line.metadata != metadata:
            if line is not None and not line.dead:
                line.retire()
            line = self._line = _AioLine(self._stub, metadata, self)
        elif len(line.pending) >= MAX_IN_FLIGHT:
            raise Full()
        message_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        line.pending[message_id] = fut
        line.send(_message(message_id, request, timeout))
        try:
            resp = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            line.pending.pop(message_id, None)
            raise StreamStatus(
                grpc.StatusCode.DEADLINE_EXCEEDED, "no answer on the decision stream in time"
            ) from None
        return _answer(resp)

    def close(self) -> None:
        line, self._line = self._line, None
        if line is not None:
            line.cancel()
