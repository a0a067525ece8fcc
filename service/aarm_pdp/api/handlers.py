"""One way to serve a servicer: from its generated service descriptor.

Every servicer subclasses its generated ``<Service>Servicer`` base and names its
service by descriptor in ``SERVICE`` (``x_pb2.DESCRIPTOR.services_by_name[...]``),
never by a string. :func:`generic_handler` walks that descriptor's methods, so an
RPC added to the proto is either served or the server refuses to start: the
servicer must override every method of the generated base with a coroutine.

Its request deserializer never raises. A body protobuf cannot decode reaches no
servicer: it is answered INVALID_ARGUMENT with a short reason, on every RPC, and
nothing is logged (a raising deserializer would make grpc log a traceback and
answer INTERNAL).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

Rpc = Callable[[Any, "grpc.aio.ServicerContext[Any, Any]"], Awaitable[Any]]
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


def _guarded(rpc: Rpc, rejected: Callable[[], object]) -> Rpc:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if type(request) is Unparseable:
            rejected()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        return await rpc(request, context)

    return behaviour


def _nothing() -> None:
    return None


def generic_handler(
    servicer: Servicer, *, rejected: Callable[[], object] = _nothing
) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    """The handler serving every method of ``servicer.SERVICE``; ``rejected()`` counts bad bodies.

    Raises ``TypeError`` when the servicer does not subclass its generated base, leaves
    a method of it unimplemented (or synchronous), or the service has a streaming RPC.
    """
    cls = type(servicer)
    service = servicer.SERVICE
    base = generated_base(service)
    if not issubclass(cls, base):
        raise TypeError(f"{cls.__name__} must subclass {base.__module__}.{base.__qualname__}")
    handlers: dict[str, grpc.RpcMethodHandler] = {}  # type: ignore[type-arg]
    for method in service.methods:
        impl = getattr(cls, method.name)
        if impl is getattr(base, method.name) or not inspect.iscoroutinefunction(impl):
            raise TypeError(f"{cls.__name__} does not implement {method.full_name} (async)")
        if method.client_streaming or method.server_streaming:
            raise TypeError(f"{method.full_name} streams; only unary RPCs are served here")
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _guarded(getattr(servicer, method.name), rejected),
            request_deserializer=_deserializer(request_type),
            response_serializer=response_type.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
