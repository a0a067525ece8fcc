"""One way to declare a unary gRPC method handler for our servicers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc


def unary(fn: Callable[..., Awaitable[Any]], request_type: Any, response_type: Any) -> Any:
    """A unary-unary handler decoding ``request_type`` and encoding ``response_type``."""
    return grpc.unary_unary_rpc_method_handler(
        fn,
        request_deserializer=request_type.FromString,
        response_serializer=response_type.SerializeToString,
    )
