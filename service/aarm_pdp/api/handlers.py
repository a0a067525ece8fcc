"""One way to serve a servicer: from its generated service descriptor.

Every servicer subclasses its generated ``<Service>Servicer`` base and names its
service by descriptor in ``SERVICE`` (``x_pb2.DESCRIPTOR.services_by_name[...]``),
never by a string. :func:`generic_handler` walks that descriptor's methods, so an
RPC added to the proto is either served or the server refuses to start: the
servicer must override every method of the generated base with a coroutine.

Before any servicer code runs, the :class:`~aarm_pdp.api.auth.CallGuard`
authenticates the call and checks its role: no credential is UNAUTHENTICATED, a
principal without the method's role is PERMISSION_DENIED, on every RPC but the open
ones (health, reflection, GetPublicKeys).

Its request deserializer never raises. A body protobuf cannot decode reaches no
servicer: it is answered INVALID_ARGUMENT with a short reason, on every RPC, and
nothing is logged (a raising deserializer would make grpc log a traceback and
answer INTERNAL).

:func:`run` is the one mapper from our errors to a gRPC status, for every servicer
(the table is :data:`aarm_pdp.errors.ERRORS`); :func:`run_stream` is the same for a
server-streaming RPC (WatchApproval), whose servicer method is an async generator.

A bidirectional RPC (DecideStream) is authenticated once, when it opens, from its
metadata like any other call; its servicer method is an async generator over an
iterator of requests. That iterator raises :class:`~aarm_pdp.errors.RequestInvalid`
for a message that does not decode (counted by ``rejected()``) and
:class:`~aarm_pdp.errors.Unauthenticated` for a message read after the stream's
credential expired (a JWT's ``exp``): the servicer ends the stream with that status.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from aarm_pdp.api.auth import CallGuard
from aarm_pdp.errors import (
    AarmError,
    ErrorCode,
    RequestInvalid,
    Unauthenticated,
    client_message,
    grpc_status,
)
from aarm_pdp.observability.metrics import Metrics

log = logging.getLogger("aarm_pdp.api")
_AUTH_CODES = frozenset(
    {
        ErrorCode.UNAUTHENTICATED,
        ErrorCode.PERMISSION_DENIED,
        ErrorCode.IDENTITY_UNVERIFIED,
    }
)

Rpc = Callable[[Any, "grpc.aio.ServicerContext[Any, Any]"], Awaitable[Any]]
StreamRpc = Callable[[Any, "grpc.aio.ServicerContext[Any, Any]"], AsyncIterator[Any]]
BidiRpc = Callable[[AsyncIterator[Any], "grpc.aio.ServicerContext[Any, Any]"], AsyncIterator[Any]]
MAX_REASON = 200
"""Longest reason text sent back for an undecodable request."""


class Servicer(Protocol):
    """What :func:`generic_handler` serves: a generated base's subclass naming its service."""

    SERVICE: ServiceDescriptor


class Unparseable:
    """Stands in for a request body protobuf could not decode."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def generated_base(service: ServiceDescriptor) -> type:
    """The generated ``<Service>Servicer`` class (``aarm/v1/x.proto`` -> ``aarm.v1.x_pb2_grpc``)."""
    module = service.file.name.removesuffix(".proto").replace("/", ".") + "_pb2_grpc"
    base: type = getattr(importlib.import_module(module), f"{service.name}Servicer")
    return base


def _deserializer(message_type: Any) -> Callable[[bytes], Any]:
    parse = message_type.FromString

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # DecodeError, or whatever else a hostile body provokes
            return Unparseable(f"request does not decode: {exc}"[:MAX_REASON])

    return deserialize


def _guarded(rpc: Rpc, rejected: Callable[[], object], guard: CallGuard, path: str) -> Rpc:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            who = guard.admit(path, context)
        except AarmError as exc:
            status, message = grpc_status(exc.code)
            await context.abort(status, message)
            raise  # unreachable: abort raises
        if type(request) is Unparseable:
            rejected()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        token = guard.enter(who)
        try:
            return await rpc(request, context)
        finally:
            guard.leave(token)

    return behaviour


def _guarded_stream(
    rpc: StreamRpc, rejected: Callable[[], object], guard: CallGuard, path: str
) -> StreamRpc:
    async def behaviour(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            who = guard.admit(path, context)
        except AarmError as exc:
            status, message = grpc_status(exc.code)
            await context.abort(status, message)
            raise  # unreachable: abort raises
        if type(request) is Unparseable:
            rejected()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        token = guard.enter(who)
        try:
            async for message in rpc(request, context):
                yield message
        finally:
            guard.leave(token)

    return behaviour


async def _checked(
    requests: AsyncIterator[Any],
    rejected: Callable[[], object],
    guard: CallGuard,
    expires_at: float | None,
) -> AsyncIterator[Any]:
    """The messages of a bidirectional stream; raises at the first one that does not
    decode, or that arrives after the stream's credential expired."""
    async for request in requests:
        if type(request) is Unparseable:
            rejected()
            raise RequestInvalid(request.reason)
        if expires_at is not None and guard.now() >= expires_at:
            exc = Unauthenticated("the stream's credential expired: open a new stream")
            guard.refused(exc)
            raise exc
        yield request


ACCEPTED_METADATA = (("aarm-stream", "accepted"),)
"""The initial metadata of a bidirectional stream the service accepted (sent as it
opens); a refused one ends with its status and no initial metadata."""


def _guarded_bidi(rpc: BidiRpc, rejected: Callable[[], object], guard: CallGuard, path: str) -> Any:
    async def behaviour(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            who, expires_at = guard.admit_until(path, context)
        except AarmError as exc:
            status, message = grpc_status(exc.code)
            await context.abort(status, message)
            raise  # unreachable: abort raises
        # Accepted: say so now, not with the first answer. A client may wait for this
        # (its initial metadata) before it writes: a refused stream ends trailers-only
        # before any write, so the client sees the refusal's own status; grpc.aio
        # reports INTERNAL instead when a write races the refusal (grpc/grpc#36066).
        await context.send_initial_metadata(ACCEPTED_METADATA)
        token = guard.enter(who)
        try:
            async for message in rpc(_checked(requests, rejected, guard, expires_at), context):
                yield message
        finally:
            guard.leave(token)

    return behaviour


async def run_stream(
    context: grpc.aio.ServicerContext[Any, Any],
    body: AsyncIterator[Any],
    metrics: Metrics,
    guard: CallGuard | None = None,
) -> AsyncIterator[Any]:
    """The messages of ``body``, an :class:`AarmError` raised by it answered like
    :func:`run` does (the stream then ends with that status)."""
    try:
        async for message in body:
            yield message
    except AarmError as exc:
        metrics.errors.labels(exc.code.value).inc()
        if guard is not None and exc.code in _AUTH_CODES:
            guard.refused(exc)
        else:
            log.warning("rpc refused: %s: %s", exc.code.value, exc.detail)
        status, _ = grpc_status(exc.code)
        await context.abort(status, client_message(exc))


async def run(
    context: grpc.aio.ServicerContext[Any, Any],
    body: Callable[[], Awaitable[Any]],
    metrics: Metrics,
    guard: CallGuard | None = None,
) -> Any:
    """``body()``, with every :class:`AarmError` answered by its row of the error table.

    Counted in ``aarm_errors_total{code}`` (and, for a refusal at the trust boundary,
    ``aarm_auth_failures_total{code}``); the detail goes to the log, the client gets
    the table's message (or its own request's validation detail).
    """
    try:
        return await body()
    except AarmError as exc:
        metrics.errors.labels(exc.code.value).inc()
        if guard is not None and exc.code in _AUTH_CODES:
            guard.refused(exc)
        else:
            log.warning("rpc refused: %s: %s", exc.code.value, exc.detail)
        status, _ = grpc_status(exc.code)
        await context.abort(status, client_message(exc))
        raise  # unreachable: abort raises


def _nothing() -> None:
    return None


def generic_handler(
    servicer: Servicer, *, guard: CallGuard, rejected: Callable[[], object] = _nothing
) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    """The handler serving every method of ``servicer.SERVICE`` behind ``guard``.

    ``rejected()`` counts bodies that do not decode.

    Raises ``TypeError`` when the servicer does not subclass its generated base, leaves
    a method of it unimplemented (a unary one not a coroutine, a streaming one not an
    async generator), or the service has a client-streaming RPC that does not also
    stream its responses.
    """
    cls = type(servicer)
    service = servicer.SERVICE
    base = generated_base(service)
    if not issubclass(cls, base):
        raise TypeError(f"{cls.__name__} must subclass {base.__module__}.{base.__qualname__}")
    handlers: dict[str, grpc.RpcMethodHandler] = {}  # type: ignore[type-arg]
    for method in service.methods:
        impl = getattr(cls, method.name)
        if method.client_streaming and not method.server_streaming:
            raise TypeError(f"{method.full_name} streams requests only; not served here")
        shaped = (
            inspect.isasyncgenfunction(impl)
            if method.server_streaming
            else inspect.iscoroutinefunction(impl)
        )
        if impl is getattr(base, method.name) or not shaped:
            raise TypeError(f"{cls.__name__} does not implement {method.full_name} (async)")
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        path = f"/{service.full_name}/{method.name}"
        if method.client_streaming:  # and server streaming: DecideStream
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                _guarded_bidi(getattr(servicer, method.name), rejected, guard, path),
                request_deserializer=_deserializer(request_type),
                response_serializer=response_type.SerializeToString,
            )
            continue
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _guarded_stream(
                    getattr(servicer, method.name),
                    rejected,
                    guard,
                    f"/{service.full_name}/{method.name}",
                ),
                request_deserializer=_deserializer(request_type),
                response_serializer=response_type.SerializeToString,
            )
            continue
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _guarded(
                getattr(servicer, method.name),
                rejected,
                guard,
                f"/{service.full_name}/{method.name}",
            ),
            request_deserializer=_deserializer(request_type),
            response_serializer=response_type.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
