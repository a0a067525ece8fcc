"""Stubs for every aarm.v1 service on one channel, blocking or grpc.aio alike."""

from __future__ import annotations

from typing import Any

import grpc
from aarm.v1 import (
    approval_pb2_grpc,
    decision_pb2_grpc,
    deferral_pb2_grpc,
    receipt_pb2_grpc,
    session_pb2_grpc,
)
from grpc_health.v1 import health_pb2_grpc


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
    def connect(cls, target: str) -> Clients:
        """Blocking stubs on a new insecure channel to ``target``; :meth:`close` it."""
        return cls(grpc.insecure_channel(target))

    def close(self) -> None:
        """Close a blocking channel (an aio channel closes with its ``async with``)."""
        self.channel.close()


def bearer(token: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying ``token`` as a bearer credential."""
    return (("authorization", f"Bearer {token}"),)
