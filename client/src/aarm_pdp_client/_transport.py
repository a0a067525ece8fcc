"""Channels, credentials, deadlines and retries, shared by both clients."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
import grpc.aio

from aarm_pdp_client._gen.aarm.v1 import approval_pb2
from aarm_pdp_client._types import ActionDenied, Reason, Tls

Token: TypeAlias = str | Callable[[], str] | None

DECIDE_RETRY = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        # Safe for Decide only: the retry carries the same request_id, so the
        # service returns the first attempt's decision if it got that far.
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
OTHER_RETRY = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True)
class Settings:
    token: Token
    timeout: float
    retries: int
    approval_wait: float

    def metadata(self) -> tuple[tuple[str, str], ...]:
        token = self.token() if callable(self.token) else self.token
        return (("authorization", f"Bearer {token}"),) if token else ()


def backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (0-based): 50 ms doubling, with jitter."""
    base: float = min(0.05 * 2**attempt, 1.0)
    return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


def _credentials(tls: Tls) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=tls.root_certificates,
        private_key=tls.private_key,
        certificate_chain=tls.certificate_chain,
    )


def _options(tls: Tls | None, options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    opts = list(options)
    if tls is not None and tls.server_name:
        opts.append(("grpc.ssl_target_name_override", tls.server_name))
    return opts


def open_channel(target: str, tls: Tls | None, options: Sequence[tuple[str, Any]]) -> grpc.Channel:
    if not target:
        raise ValueError("a target (host:port) or a channel is required")
    if tls is None:
        return grpc.insecure_channel(target, _options(tls, options))
    return grpc.secure_channel(target, _credentials(tls), _options(tls, options))


def open_aio_channel(
    target: str, tls: Tls | None, options: Sequence[tuple[str, Any]]
) -> grpc.aio.Channel:
    if not target:
        raise ValueError("a target (host:port) or a channel is required")
    if tls is None:
        return grpc.aio.insecure_channel(target, _options(tls, options))
    return grpc.aio.secure_channel(target, _credentials(tls), _options(tls, options))


def denied_by_transport(code: grpc.StatusCode, details: str) -> ActionDenied:
    """The service did not decide (down, overloaded, too slow, refused): a denial."""
    reason = "pdp_timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else "pdp_unavailable"
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        reason = "pdp_refused"
    elif code not in DECIDE_RETRY and code != grpc.StatusCode.CANCELLED:
        reason = "pdp_error"
    text = f"{code.name}: {details}"[:500]
    return ActionDenied(
        f"the decision service did not decide ({text}); failing closed",
        reasons=(Reason(reason, "aarm_pdp_client", text),),
    )


def approval_final(
    stream: Iterable[approval_pb2.WatchApprovalResponse],
) -> approval_pb2.WatchApprovalResponse:
    """The first status of a WatchApproval stream that is not PENDING."""
    for msg in stream:
        if msg.status != approval_pb2.APPROVAL_STATUS_PENDING:
            return msg
    raise grpc_closed()


def grpc_closed() -> ActionDenied:
    return denied_by_transport(grpc.StatusCode.UNAVAILABLE, "approval stream ended unresolved")
