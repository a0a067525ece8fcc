"""gRPC adapter for the aarm.v1 SessionService: validate, call the accumulator, translate."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aarm.v1 import session_pb2, session_pb2_grpc

from aarm_pdp.api.auth import CallGuard, bind_identity
from aarm_pdp.api.handlers import generic_handler, run
from aarm_pdp.api.validation import to_identity
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.followups import Followups
from aarm_pdp.decision.ports import Sessions
from aarm_pdp.errors import ErrorCode, RequestInvalid
from aarm_pdp.model.levels import LEVELS
from aarm_pdp.model.request import Identity
from aarm_pdp.model.timestamps import rfc3339
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.session.state import OriginalRequest

log = logging.getLogger("aarm_pdp.api.session")

MAX_REQUEST_TEXT = 16_384
MAX_OUTPUT_TEXT = 65_536
MAX_VALUES = 256
_LABEL_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,31}")
_SCOPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_DIGEST_RE = re.compile(r"([0-9a-f]{64})?")
# level name X <-> proto CLASSIFICATION_X; 0 (unspecified) is no level (test_proto_enums.py)
_LEVEL_PB = {name: session_pb2.Classification.Value(f"CLASSIFICATION_{name}") for name in LEVELS}
_LEVEL_OF = {pb: name for name, pb in _LEVEL_PB.items()}


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
    return bind_identity(ident)


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    """Serves StartSession, RecordOutcome and EndSession."""

    SERVICE = session_pb2.DESCRIPTOR.services_by_name["SessionService"]

    def __init__(
        self,
        sessions: Sessions,
        followups: Followups,
        metrics: Metrics,
        limits: LimitsConfig,
        guard: CallGuard,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._guard = guard
        self._sessions = sessions
        self._followups = followups
        self._metrics = metrics
        self._limits = limits
        self._clock = clock_ns

    def handler(self) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
        """The generic handler for every SessionService RPC."""
        rejected = self._metrics.errors.labels(ErrorCode.REQUEST_INVALID.value)
        return generic_handler(self, guard=self._guard, rejected=rejected.inc)

    async def _call(
        self, context: grpc.aio.ServicerContext[Any, Any], body: Callable[[], Awaitable[Any]]
    ) -> Any:
        return await run(context, body, self._metrics, self._guard)

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
            head, highest = await self._followups.record_outcome(
                ident,
                decision_id=request.decision_id,
                executed=request.status == session_pb2.OUTCOME_STATUS_EXECUTED,
                classification=_LEVEL_OF.get(request.classification),
                labels=tuple(sorted(set(request.labels))),
                texts=[request.output_text, *request.output_values],
                trust=trust,
                output_digest=request.output_digest,
                started_at=_stamp(request, "started_at"),
                completed_at=_stamp(request, "completed_at"),
                error=request.error,
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
            head, count = await self._followups.end_session(ident)
            return session_pb2.EndSessionResponse(context_hash=head, action_count=count)

        return await self._call(context, body)
