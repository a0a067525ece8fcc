"""gRPC adapter for the aarm.v1 ReceiptService: fetch receipts and the keys that verify them.

Verification itself needs no service: ``aarm-pdp receipts verify`` works offline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import grpc
from aarm.v1 import decision_pb2, receipt_pb2, receipt_pb2_grpc

from aarm_pdp.api.auth import CallGuard, tenant_for
from aarm_pdp.api.handlers import generic_handler, run
from aarm_pdp.auth.principals import Role
from aarm_pdp.errors import RequestInvalid, SessionNotFound
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.receipts.canonical import canonicalize
from aarm_pdp.receipts.keys import KeyRing
from aarm_pdp.receipts.store import ReceiptStore

log = logging.getLogger("aarm_pdp.api.receipts")

MAX_ID = 256


def _pb(receipt: dict[str, Any], canonical: str | None = None) -> Any:
    return decision_pb2.Receipt(
        receipt_id=receipt["receipt_id"],
        sequence=receipt["chain"]["seq"],
        payload=canonical if canonical is not None else canonicalize(receipt).decode(),
    )


class ReceiptServicer(receipt_pb2_grpc.ReceiptServiceServicer):
    """Serves GetReceipt, ListReceipts and GetPublicKeys."""

    SERVICE = receipt_pb2.DESCRIPTOR.services_by_name["ReceiptService"]

    def __init__(
        self,
        store: ReceiptStore,
        keyring: Callable[[], KeyRing],
        metrics: Metrics,
        guard: CallGuard,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._metrics = metrics
        self._guard = guard

    def handler(self) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
        """The generic handler for every ReceiptService RPC."""
        return generic_handler(self, guard=self._guard)

    async def GetReceipt(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """One receipt, to an auditor of its tenant."""

        async def body() -> Any:
            if not request.receipt_id or len(request.receipt_id) > MAX_ID:
                raise RequestInvalid("receipt_id is required")
            receipt = await self._store.get(request.receipt_id)
            if receipt is None:
                raise SessionNotFound("no such receipt")
            tenant_for(str(receipt["chain"]["tenant"]), Role.AUDITOR)
            return receipt_pb2.GetReceiptResponse(receipt=_pb(receipt))

        return await run(context, body, self._metrics, self._guard)

    async def ListReceipts(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """One session's chain, to an auditor of the tenant."""

        async def body() -> Any:
            if (
                not request.session_id
                or len(request.session_id) > MAX_ID
                or len(request.tenant) > MAX_ID
            ):
                raise RequestInvalid("tenant and session_id required")
            tenant = tenant_for(request.tenant, Role.AUDITOR)
            lines = await self._store.export(tenant, request.session_id)
            return receipt_pb2.ListReceiptsResponse(
                receipts=[_pb(json.loads(line), line) for line in lines]
            )

        return await run(context, body, self._metrics, self._guard)

    async def GetPublicKeys(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """The verification keys (public, open to anyone: offline verification needs them)."""
        return receipt_pb2.GetPublicKeysResponse(jwks=json.dumps(self._keyring().jwks()))
