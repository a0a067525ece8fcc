"""Stubs for every aarm.v1 service on one channel, blocking or grpc.aio alike.

Channels made here authenticate like a real enforcement point: each call carries
``authorization: Bearer <token>`` (the platform principal's by default, see
:mod:`tests.support.principals`) unless the call sets its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from aarm.v1 import (
    approval_pb2_grpc,
    decision_pb2_grpc,
    deferral_pb2_grpc,
    receipt_pb2_grpc,
    session_pb2_grpc,
)
from aarm_pdp.api.handlers import ACCEPTED_METADATA
from grpc_health.v1 import health_pb2_grpc

from tests.support.principals import PLATFORM_TOKEN


class Clients:
    """One stub per service on ``channel`` (a ``grpc.Channel`` or a ``grpc.aio.Channel``).

    The stubs' calls block on a blocking channel and are awaited on an aio one.
    """

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.decide = decision_pb2_grpc.DecisionServiceStub(channel)
        self.sessions = session_pb2_grpc.SessionServiceStub(channel)
        self.approvals = approval_pb2_grpc.ApprovalServiceStub(channel)
        self.deferrals = deferral_pb2_grpc.DeferralServiceStub(channel)
        self.receipts = receipt_pb2_grpc.ReceiptServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)

    @classmethod
    def connect(cls, target: str, token: str | None = PLATFORM_TOKEN) -> Clients:
        """Blocking stubs on a new channel to ``target`` carrying ``token``; :meth:`close` it."""
        return cls(sync_channel(target, token))

    def close(self) -> None:
        """Close a blocking channel (an aio channel closes with its ``async with``)."""
        self.channel.close()


def bearer(token: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying ``token`` as a bearer credential."""
    return (("authorization", f"Bearer {token}"),)


def _with_token(details: Any, token: str) -> Any:
    metadata = list(details.metadata or ())
    if any(k == "authorization" for k, _ in metadata):
        return details
    metadata.append(("authorization", f"Bearer {token}"))
    return details._replace(metadata=metadata)


class _AioBearer(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self._token), request)


class _AioStreamBearer(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self._token), request)


class _AioBidiBearer(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self._token), request_iterator)


class _SyncBearer(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._token = token

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return continuation(_with_token(client_call_details, self._token), request)


def aio_channel(
    target: str,
    token: str | None = PLATFORM_TOKEN,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    options: Any = None,
) -> grpc.aio.Channel:
    """A grpc.aio channel to ``target`` whose calls carry ``token`` (None: no credential)."""
    interceptors = (
        [_AioBearer(token), _AioStreamBearer(token), _AioBidiBearer(token)] if token else None
    )
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options, interceptors=interceptors)


def sync_channel(target: str, token: str | None = PLATFORM_TOKEN) -> grpc.Channel:
    """A blocking channel to ``target`` whose calls carry ``token`` (None: no credential)."""
    channel = grpc.insecure_channel(target)
    return grpc.intercept_channel(channel, _SyncBearer(token)) if token else channel


async def opened(call: Any) -> Any:
    """``call`` (a DecideStream) once the service accepted it: its initial metadata,
    sent as it opens, before anything is written. A refused stream raises its
    :class:`grpc.aio.AioRpcError` with the service's own status: nothing was written,
    so no write raced the refusal (grpc.aio reports such a race as INTERNAL,
    grpc/grpc#36066)."""
    metadata = tuple(await call.initial_metadata())
    if ACCEPTED_METADATA[0] not in metadata:
        await call.read()  # a finished call: raises its status
        raise AssertionError(f"a stream without {ACCEPTED_METADATA} answered")
    return call
