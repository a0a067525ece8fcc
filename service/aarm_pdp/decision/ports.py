"""What the decision engine needs from the rooms below it, and the null objects for a room
that is switched off.

The engine's collaborators are never ``None``: a feature that is off is a null object
with the same shape (no session memory, no tickets, no receipts, no telemetry). The
real implementations are :class:`~aarm_pdp.session.context.SessionContext`,
:class:`~aarm_pdp.approvals.workflow.Workflow`,
:class:`~aarm_pdp.receipts.log.ReceiptLog` and
:class:`~aarm_pdp.observability.telemetry.TelemetryExporter`; they satisfy these
protocols structurally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from aarm_pdp.approvals.tickets import Ticket
from aarm_pdp.decision.input import empty_context
from aarm_pdp.errors import ApprovalRejected, SessionNotFound
from aarm_pdp.model.decision import DecisionResult, PolicyVersion
from aarm_pdp.model.request import ActionRequest, Identity
from aarm_pdp.session.context import Prepared
from aarm_pdp.session.state import OriginalRequest


class Sessions(Protocol):
    """Session context around each decision (AARM R2)."""

    async def prepare(self, request: ActionRequest, now_ns: int) -> Prepared: ...

    async def commit(
        self,
        prepared: Prepared,
        request: ActionRequest,
        decision_id: str,
        decision: DecisionResult,
        now_ns: int,
    ) -> None: ...

    async def settle(
        self,
        tenant: str,
        session_id: str,
        decision_id: str,
        verdict: str,
        kind: str,
        detail: dict[str, Any],
        now_ns: int,
    ) -> str: ...

    async def start(self, ident: Identity, original: OriginalRequest, now_ns: int) -> str: ...

    async def record_outcome(
        self,
        ident: Identity,
        *,
        decision_id: str,
        executed: bool,
        classification: str | None,
        labels: tuple[str, ...],
        texts: list[str],
        trust: bool | None,
        output_digest: str,
        now_ns: int,
    ) -> tuple[str, int]: ...

    async def end(self, ident: Identity) -> tuple[str, int]: ...

    async def revoke(self, tenant: str, subject: str) -> None: ...

    async def revoked(self, ident: Identity) -> bool: ...

    async def revocations_current(self) -> bool: ...

    async def mark_revocations_loaded(self) -> None: ...


class Tickets(Protocol):
    """Approval and deferral tickets (AARM R4 STEP_UP and DEFER)."""

    def new_ticket_id(self) -> str: ...

    async def open(
        self,
        *,
        kind: str,
        request: ActionRequest,
        raw_request: bytes,
        decision_id: str,
        decision: DecisionResult,
        policy: PolicyVersion,
        context: dict[str, Any],
        now_ns: int,
        ticket_id: str = "",
    ) -> str: ...

    async def redeem(
        self, token: str, request: ActionRequest, policy: PolicyVersion, now_ns: int
    ) -> DecisionResult: ...

    async def record_attempt(
        self, ticket_id: str, *, facts: list[str], verdict: str, decision_id: str, now_ns: int
    ) -> Ticket: ...

    async def token_still_valid(self, token: str, now_ns: int) -> bool: ...

    async def room(self, kind: str, request: ActionRequest) -> None:
        """Raise :class:`~aarm_pdp.errors.BudgetExhausted` if a new ticket of ``kind``
        for ``request`` would be refused (its tenant's ticket budget is full)."""
        ...


class Receipts(Protocol):
    """The signed, hash-chained receipt log (AARM R5)."""

    async def append(
        self, body: Mapping[str, Any], *, record: str | None = None
    ) -> dict[str, Any] | None:
        """Sign, chain and store ``body`` (with ``record``, a decision record, beside it)."""
        ...


class Events(Protocol):
    """The telemetry sink (AARM R8)."""

    def emit(self, ev: dict[str, Any]) -> None: ...


class NoSessions:
    """Session memory off: every request is judged as the first of a fresh session."""

    async def prepare(self, request: ActionRequest, now_ns: int) -> Prepared:
        return Prepared(key="", input_parts=empty_context(), category="")

    async def commit(
        self,
        prepared: Prepared,
        request: ActionRequest,
        decision_id: str,
        decision: DecisionResult,
        now_ns: int,
    ) -> None:
        return None

    async def settle(
        self,
        tenant: str,
        session_id: str,
        decision_id: str,
        verdict: str,
        kind: str,
        detail: dict[str, Any],
        now_ns: int,
    ) -> str:
        return ""

    async def start(self, ident: Identity, original: OriginalRequest, now_ns: int) -> str:
        return ""

    async def record_outcome(
        self,
        ident: Identity,
        *,
        decision_id: str,
        executed: bool,
        classification: str | None,
        labels: tuple[str, ...],
        texts: list[str],
        trust: bool | None,
        output_digest: str,
        now_ns: int,
    ) -> tuple[str, int]:
        return "", -1

    async def end(self, ident: Identity) -> tuple[str, int]:
        return "", 0

    async def revoke(self, tenant: str, subject: str) -> None:
        return None

    async def revoked(self, ident: Identity) -> bool:
        return False

    async def revocations_current(self) -> bool:
        return True

    async def mark_revocations_loaded(self) -> None:
        return None


class NoTickets:
    """Approvals and deferrals off: a STEP_UP or DEFER carries no ticket id, and no
    approval token can be redeemed (a token on such a request fails closed)."""

    def new_ticket_id(self) -> str:
        return ""

    async def open(
        self,
        *,
        kind: str,
        request: ActionRequest,
        raw_request: bytes,
        decision_id: str,
        decision: DecisionResult,
        policy: PolicyVersion,
        context: dict[str, Any],
        now_ns: int,
        ticket_id: str = "",
    ) -> str:
        return ticket_id

    async def redeem(
        self, token: str, request: ActionRequest, policy: PolicyVersion, now_ns: int
    ) -> DecisionResult:
        raise ApprovalRejected("approvals are not enabled on this engine")

    async def record_attempt(
        self, ticket_id: str, *, facts: list[str], verdict: str, decision_id: str, now_ns: int
    ) -> Ticket:
        raise SessionNotFound("deferrals are not enabled on this engine")

    async def token_still_valid(self, token: str, now_ns: int) -> bool:
        return False

    async def room(self, kind: str, request: ActionRequest) -> None:
        return None


class NoReceipts:
    """Receipts off (unit tests of the engine only; ``serve`` always keeps receipts)."""

    async def append(
        self, body: Mapping[str, Any], *, record: str | None = None
    ) -> dict[str, Any] | None:
        return None


class NoEvents:
    """Telemetry export off."""

    def emit(self, ev: dict[str, Any]) -> None:
        return None
