"""gRPC adapter for aarm.v1.SessionService: validate, call the accumulator, translate."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aarm.v1 import session_pb2

from aarm_pdp.api.handlers import unary
from aarm_pdp.api.validation import to_identity
from aarm_pdp.config import LimitsConfig
from aarm_pdp.errors import AarmError, ErrorCode, RequestInvalid, grpc_status
from aarm_pdp.model.levels import LEVELS, NO_CLASSIFICATION
from aarm_pdp.model.request import Identity, identity_doc
from aarm_pdp.model.timestamps import rfc3339
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.receipts import body as receipt_body
from aarm_pdp.receipts.log import ReceiptLog
from aarm_pdp.session.context import SessionContext
from aarm_pdp.session.state import OriginalRequest

log = logging.getLogger("aarm_pdp.api.session")

SERVICE_NAME = "aarm.v1.SessionService"
MAX_REQUEST_TEXT = 16_384
MAX_OUTPUT_TEXT = 65_536
MAX_VALUES = 256
_LABEL_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,31}")
_SCOPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_DIGEST_RE = re.compile(r"([0-9a-f]{64})?")
# proto Classification enum value -> level name (0 = unspecified)
_LEVEL_OF = {i + 1: name for i, name in enumerate(LEVELS)}
_LEVEL_PB = {name: i + 1 for i, name in enumerate(LEVELS)}


def _stamp(request: Any, name: str) -> str:
    if not request.HasField(name):
        return ""
    ts = getattr(request, name)
    return rfc3339(ts.seconds * 1_000_000_000 + ts.nanos)


def _session_identity(msg: Any, lim: LimitsConfig) -> Identity:
    ident = to_identity(msg, lim)
    missing = ident.missing()
    if missing:
        raise RequestInvalid("identity missing " + ", ".join(missing))
    return ident


class SessionServicer:
    """Serves StartSession, RecordOutcome and EndSession."""

    async def _receipt(
        self, ident: Identity, kind: str, decision_id: str, detail: dict[str, Any], now_ns: int
    ) -> None:
        if self._receipts is None:
            return
        await self._receipts.append(
            receipt_body.follow_up_receipt(
                receipt_id=str(uuid.uuid4()),
                kind=kind,
                tenant=ident.tenant,
                session_id=ident.session_id,
                decision_id=decision_id,
                identity=identity_doc(ident),
                detail=detail,
                now_ns=now_ns,
            )
        )

    def __init__(
        self,
        sessions: SessionContext,
        metrics: Metrics,
        limits: LimitsConfig,
        clock_ns: Callable[[], int] = time.time_ns,
        receipts: ReceiptLog | None = None,
    ) -> None:
        self._receipts = receipts
        self._sessions = sessions
        self._metrics = metrics
        self._limits = limits
        self._clock = clock_ns

    def handler(self) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
        """The generic handler for the three RPCs."""

        pb = session_pb2
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "StartSession": unary(
                    self.StartSession, pb.StartSessionRequest, pb.StartSessionResponse
                ),
                "RecordOutcome": unary(
                    self.RecordOutcome, pb.RecordOutcomeRequest, pb.RecordOutcomeResponse
                ),
                "EndSession": unary(self.EndSession, pb.EndSessionRequest, pb.EndSessionResponse),
            },
        )

    async def _call(
        self, context: grpc.aio.ServicerContext[Any, Any], body: Callable[[], Awaitable[Any]]
    ) -> Any:
        try:
            return await body()
        except AarmError as exc:
            self._metrics.errors.labels(exc.code.value).inc()
            if exc.code is ErrorCode.REQUEST_INVALID:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.detail)
            status, message = grpc_status(exc.code)
            log.warning("session rpc failed: %s: %s", exc.code.value, exc.detail)
            detail = exc.detail if exc.code is not ErrorCode.SESSION_STORE_UNAVAILABLE else message
            await context.abort(status, detail)
            raise

    async def StartSession(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Bind the session to the user's original request."""

        async def body() -> Any:
            ident = _session_identity(request.identity, self._limits)
            text = request.original_request
            if not text.strip():
                raise RequestInvalid("original_request is required")
            if len(text) > MAX_REQUEST_TEXT:
                raise RequestInvalid(f"original_request longer than {MAX_REQUEST_TEXT}")
            if request.intent_class and not _SCOPE_RE.fullmatch(request.intent_class):
                raise RequestInvalid("intent_class must be a simple name")
            if len(request.expected_scope) > 64 or not all(
                _SCOPE_RE.fullmatch(s) for s in request.expected_scope
            ):
                raise RequestInvalid(
                    "expected_scope: at most 64 tool, tool.operation or category names"
                )
            original = OriginalRequest(
                text=text,
                intent_class=request.intent_class,
                expected_scope=sorted(set(request.expected_scope)),
                max_classification=_LEVEL_OF.get(request.max_classification, ""),
            )
            head = await self._sessions.start(ident, original, self._clock())
            return session_pb2.StartSessionResponse(session_id=ident.session_id, context_hash=head)

        return await self._call(context, body)

    async def RecordOutcome(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Fold an executed (or failed) action's result into the session."""

        async def body() -> Any:
            ident = _session_identity(request.identity, self._limits)
            if not request.decision_id or len(request.decision_id) > 256:
                raise RequestInvalid("decision_id is required")
            if request.status == session_pb2.OUTCOME_STATUS_UNSPECIFIED:
                raise RequestInvalid("status must be EXECUTED or FAILED")
            if not _DIGEST_RE.fullmatch(request.output_digest):
                raise RequestInvalid("output_digest must be 64 lowercase hex digits")
            if len(request.output_text) > MAX_OUTPUT_TEXT:
                raise RequestInvalid(f"output_text longer than {MAX_OUTPUT_TEXT}")
            if len(request.output_values) > MAX_VALUES or any(
                len(v) > 2048 for v in request.output_values
            ):
                raise RequestInvalid(f"output_values: at most {MAX_VALUES} values of 2048 chars")
            if len(request.labels) > 32 or not all(_LABEL_RE.fullmatch(x) for x in request.labels):
                raise RequestInvalid("labels: at most 32 simple names")
            trust = {session_pb2.TRUST_TRUSTED: True, session_pb2.TRUST_UNTRUSTED: False}.get(
                request.source_trust
            )
            now = self._clock()
            head, highest = await self._sessions.record_outcome(
                ident,
                decision_id=request.decision_id,
                executed=request.status == session_pb2.OUTCOME_STATUS_EXECUTED,
                classification=_LEVEL_OF.get(request.classification),
                labels=tuple(sorted(set(request.labels))),
                texts=[request.output_text, *request.output_values],
                trust=trust,
                output_digest=request.output_digest,
                now_ns=now,
            )
            executed = request.status == session_pb2.OUTCOME_STATUS_EXECUTED
            await self._receipt(
                ident,
                "outcome",
                request.decision_id,
                {
                    "success": executed,
                    "started_at": _stamp(request, "started_at"),
                    "completed_at": _stamp(request, "completed_at"),
                    "output_hash": request.output_digest,
                    "classification": _LEVEL_OF.get(request.classification, NO_CLASSIFICATION),
                    "labels": sorted(set(request.labels)),
                    "error": request.error[:512],
                    "context_hash": head,
                },
                now,
            )
            resp = session_pb2.RecordOutcomeResponse(context_hash=head)
            level_pb = _LEVEL_PB[LEVELS[highest]] if highest >= 0 else 0
            resp.highest_classification = level_pb  # type: ignore[assignment]
            return resp

        return await self._call(context, body)

    async def EndSession(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Close the session."""

        async def body() -> Any:
            ident = _session_identity(request.identity, self._limits)
            head, count = await self._sessions.end(ident)
            await self._receipt(
                ident,
                "session_end",
                "",
                {"context_hash": head, "action_count": count},
                self._clock(),
            )
            return session_pb2.EndSessionResponse(context_hash=head, action_count=count)

        return await self._call(context, body)
