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

from aarm_pdp.api.handlers import generic_handler
from aarm_pdp.errors import AarmError
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

    def __init__(self, store: ReceiptStore, keyring: Callable[[], KeyRing]) -> None:
        self._store = store
        self._keyring = keyring

    def handler(self) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
        """The generic handler for every ReceiptService RPC."""
        return generic_handler(self)

    async def GetReceipt(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if not request.receipt_id or len(request.receipt_id) > MAX_ID:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "receipt_id is required")
        try:
            receipt = await self._store.get(request.receipt_id)
        except AarmError as exc:
            log.warning("receipt store: %s", exc.detail)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "receipt store unavailable")
            raise
        if receipt is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such receipt")
            raise AssertionError("unreachable")
        return receipt_pb2.GetReceiptResponse(receipt=_pb(receipt))

    async def ListReceipts(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if (
            not request.session_id
            or len(request.session_id) > MAX_ID
            or len(request.tenant) > MAX_ID
        ):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "tenant and session_id required")
        try:
            lines = await self._store.export(request.tenant, request.session_id)
        except AarmError as exc:
            log.warning("receipt store: %s", exc.detail)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "receipt store unavailable")
            raise
        return receipt_pb2.ListReceiptsResponse(
            receipts=[_pb(json.loads(line), line) for line in lines]
        )

    async def GetPublicKeys(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return receipt_pb2.GetPublicKeysResponse(jwks=json.dumps(self._keyring().jwks()))
