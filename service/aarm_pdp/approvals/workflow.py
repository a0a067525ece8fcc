"""STEP_UP approvals and DEFER resolutions: open, resolve, redeem, expire.

Nothing here ever turns into an ALLOW on its own: a grant only yields a single-use
token bound to the exact action; the enforcement point must re-submit the action,
which is judged again (identity re-validated, same policy hash required) before
the token is redeemed. A deferral is resolved only by re-evaluating the same action
under the same identity and policy. Every ticket has a deadline; the sweeper turns
an unanswered ticket into DENY. Store failures raise and become DENY upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aarm_pdp.approvals import tickets as tk
from aarm_pdp.auth.principals import Principal
from aarm_pdp.errors import (
    ApprovalRejected,
    ErrorCode,
    SessionConflict,
    SessionNotFound,
    SessionStoreUnavailable,
)
from aarm_pdp.model.decision import Decision, DecisionResult, PolicyVersion, Reason, RiskLevel
from aarm_pdp.model.request import ActionRequest
from aarm_pdp.session.store import SessionStore

log = logging.getLogger("aarm_pdp.approvals")

DEFAULT_TOKEN_TTL_SECONDS = 300
DEFAULT_MAX_DEFER_ATTEMPTS = 5
_NS = 1_000_000_000

# Called with (ticket, verdict, kind, extra) whenever a ticket is settled, so the
# owner can update the session and write the follow-up receipt.
SettleHook = Callable[[tk.Ticket, str, str, dict[str, Any]], Awaitable[None]]
Notifier = Callable[[tk.Ticket], None]


def _approved(ticket: tk.Ticket) -> DecisionResult:
    return DecisionResult(
        decision=Decision.ALLOW,
        reasons=(
            Reason(
                code="approved",
                rule_id="aarm.approval.granted",
                message=f"approved by {ticket.approver}: {ticket.resolution_reason}"[:1000],
            ),
        ),
        matched_rules=("aarm.approval.granted",),
        risk_level=RiskLevel(ticket.risk_level),
        risk_score=0.5,
    )


class Workflow:
    """Approvals and deferrals over the shared ticket store."""

    def __init__(
        self,
        store: SessionStore,
        *,
        settle: SettleHook,
        notifier: Notifier | None = None,
        token_ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS,
        max_defer_attempts: int = DEFAULT_MAX_DEFER_ATTEMPTS,
        new_id: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        self._store = store
        self._settle = settle
        self._notify = notifier or (lambda t: None)
        self._token_ttl = token_ttl_seconds
        self._max_attempts = max_defer_attempts
        self._new_id = new_id
        self._watchers: dict[str, set[asyncio.Event]] = {}

    # -- opening -------------------------------------------------------------

    def new_ticket_id(self) -> str:
        """A fresh ticket id, for a ticket :meth:`open` will create."""
        return self._new_id()

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
        """Suspend a STEP_UP (kind "approval") or DEFER (kind "deferral") action.

        ``ticket_id`` is one :meth:`new_ticket_id` handed out earlier (so the receipt
        written before the ticket can name it); a new one is drawn when it is empty.
        """
        if kind == "deferral":  # refused before ~1.4 bytes per request byte are encoded
            await self.room(kind, request, len(raw_request))
        timeout = (
            decision.approval.timeout_seconds
            if decision.approval is not None
            else decision.deferral.timeout_seconds
            if decision.deferral is not None
            else 300
        )
        ticket = tk.Ticket(
            ticket_id=ticket_id or self._new_id(),
            kind=kind,
            decision_id=decision_id,
            tenant=request.identity.tenant,
            session_id=request.identity.session_id,
            status=tk.PENDING,
            created_ns=now_ns,
            deadline_ns=now_ns + timeout * _NS,
            action_hash=tk.action_hash(request),
            # Only a deferral is re-judged from the ticket (ProvideContext); an approval
            # is redeemed by the re-submitted action itself.
            request_b64=tk.encode_request(raw_request) if kind == "deferral" else "",
            request_sha256=hashlib.sha256(raw_request).hexdigest(),
            request_bytes_len=len(raw_request),
            policy_hash=policy.hash,
            policy_revision=policy.revision,
            approvers=list(decision.approval.approvers) if decision.approval else [],
            context_needed=list(decision.deferral.context_needed) if decision.deferral else [],
            trigger=decision.deferral.trigger if decision.deferral else "",
            risk_level=decision.risk_level.value,
            reasons=[r.to_doc() for r in decision.reasons],
            context=tk.compact_context(context),
        )
        await self._store.ticket_create(
            ticket.ticket_id, ticket.to_bytes(), ticket.index, ticket.deadline_ns
        )
        if kind == "approval":
            self._notify(ticket)
        return ticket.ticket_id

    async def room(self, kind: str, request: ActionRequest, raw_size: int = -1) -> None:
        """Raise BudgetExhausted if the tenant has no room for this new ticket (its
        size estimated: a deferral keeps the request, base64, plus the bounded view)."""
        raw = len(request.raw) if raw_size < 0 else raw_size
        size = tk.VIEW_BYTES + (raw * 4 // 3 if kind == "deferral" else 0)
        await self._store.ticket_room(f"{kind}:{request.identity.tenant}", size)

    # -- approvals -----------------------------------------------------------

    async def get(self, ticket_id: str) -> tk.Ticket:
        """A ticket by id."""
        raw = await self._store.ticket_get(ticket_id)
        if raw is None:
            raise SessionNotFound("no such approval or deferral")
        return tk.Ticket.from_bytes(raw)

    async def pending(self, kind: str, tenant: str) -> list[tk.Ticket]:
        """Pending tickets of a kind for a tenant."""
        out = [
            tk.Ticket.from_bytes(r) for r in await self._store.tickets_pending(f"{kind}:{tenant}")
        ]
        return sorted((t for t in out if t.status == tk.PENDING), key=lambda t: t.created_ns)

    @staticmethod
    def may_resolve(approver: Principal, ticket: tk.Ticket) -> bool:
        """Group membership from the policy's verdict, and four-eyes: neither the
        enforcing principal nor the acting agent, service or human approves."""
        req = ticket.context.get("identity", {})
        actors = {req.get(k) for k in ("agent", "service", "human", "principal")} - {None, ""}
        return approver.approves_for(ticket.approvers) and not (approver.names() & actors)

    async def resolve(
        self, approver: Principal, ticket_id: str, *, grant: bool, reason: str, now_ns: int
    ) -> tuple[tk.Ticket, str]:
        """Grant (returns the token) or reject a pending approval."""
        secret = secrets.token_urlsafe(32)
        token = f"{ticket_id}.{secret}"

        def apply(raw: bytes | None) -> tuple[bytes, tk.Ticket]:
            if raw is None:
                raise SessionNotFound("no such approval")
            t = tk.Ticket.from_bytes(raw)
            if t.kind != "approval":
                raise SessionNotFound("no such approval")
            if not self.may_resolve(approver, t):
                raise ApprovalRejected("approver not allowed for this request")
            if t.status != tk.PENDING:
                raise SessionConflict(f"approval is {t.status}")
            if now_ns >= t.deadline_ns:
                raise SessionConflict("approval expired")
            t.status = tk.GRANTED if grant else tk.REJECTED
            t.approver = approver.id
            t.resolution_reason = reason
            t.resolved_ns = now_ns
            if grant:
                t.token_sha256 = tk.token_hash(token)
                t.token_expires_ns = now_ns + self._token_ttl * _NS
            t.settle()
            return t.to_bytes(), t

        probe = await self.get(ticket_id)
        ticket = await self._store.ticket_update(ticket_id, apply, probe.index)
        self._changed(ticket_id)
        await self._settle(
            ticket,
            "GRANTED" if grant else "DENY",
            "approval",
            {
                "approver": approver.id,
                "granted": grant,
                "reason": reason,
                "identity_verified": True,
            },
        )
        return ticket, (token if grant else "")

    async def redeem(
        self, token: str, request: ActionRequest, policy: PolicyVersion, now_ns: int
    ) -> DecisionResult:
        """Spend a grant token on the re-submitted action: ALLOW, or raise ApprovalRejected."""
        ticket_id, _, _ = token.partition(".")
        expected_action = tk.action_hash(request)

        def apply(raw: bytes | None) -> tuple[bytes, tk.Ticket]:
            if raw is None:
                raise ApprovalRejected("unknown approval token")
            t = tk.Ticket.from_bytes(raw)
            if t.kind != "approval" or not t.holds_token(token):
                raise ApprovalRejected("unknown approval token")
            if t.status != tk.GRANTED:
                raise ApprovalRejected(f"approval is {t.status}")
            if now_ns >= t.token_expires_ns:
                raise ApprovalRejected("approval token expired")
            if t.action_hash != expected_action:
                raise ApprovalRejected("approval token is for another action")
            if t.policy_hash != policy.hash:
                raise ApprovalRejected("policy changed since the approval was requested")
            t.status = tk.USED
            return t.to_bytes(), t

        ticket = await self._store.ticket_update(ticket_id, apply, None)
        self._changed(ticket_id)
        return _approved(ticket)

    async def token_still_valid(self, token: str, now_ns: int) -> bool:
        """Whether a spent grant token is still within its lifetime (a replayed Decide
        that carried it may return its cached verdict only while it is)."""
        ticket_id, _, _ = token.partition(".")
        raw = await self._store.ticket_get(ticket_id)
        if raw is None:
            return False
        t = tk.Ticket.from_bytes(raw)
        return t.kind == "approval" and t.holds_token(token) and now_ns < t.token_expires_ns

    # -- waiting for a resolution ---------------------------------------------

    def _changed(self, ticket_id: str) -> None:
        for event in self._watchers.get(ticket_id, ()):
            event.set()

    async def watch(self, ticket_id: str, *, poll_seconds: float = 1.0) -> AsyncIterator[tk.Ticket]:
        """The ticket now, then again each time its status changes, until it is no longer
        PENDING. A change made by this process wakes the watch at once; one made by
        another replica (a shared store) is seen within ``poll_seconds``.

        The first read's failure is the caller's error; a later poll that fails (a
        shared store slow for a moment) is tried again at the next poll, since giving up
        would end a watch whose approval may still come: only the caller's deadline ends
        the wait. A watch never grants anything itself."""
        event = asyncio.Event()
        self._watchers.setdefault(ticket_id, set()).add(event)
        try:
            last = ""
            while True:
                event.clear()
                try:
                    ticket = await self.get(ticket_id)
                except SessionStoreUnavailable as exc:
                    if not last:
                        raise
                    log.warning("approval watch %s: poll failed, retrying: %s", ticket_id, exc)
                else:
                    if ticket.status != last:
                        last = ticket.status
                        yield ticket
                    if ticket.status != tk.PENDING:
                        return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), poll_seconds)
        finally:
            waiting = self._watchers.get(ticket_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._watchers[ticket_id]

    async def issue_watch_token(self, ticket_id: str, now_ns: int) -> tuple[tk.Ticket, str]:
        """A grant token for the enforcement point waiting on a GRANTED approval (replacing
        one issued to an earlier watch); "" with the ticket when it is no longer GRANTED."""
        token = f"{ticket_id}.{secrets.token_urlsafe(32)}"

        def apply(raw: bytes | None) -> tuple[bytes | None, tuple[tk.Ticket, str]]:
            if raw is None:
                raise SessionNotFound("no such approval")
            t = tk.Ticket.from_bytes(raw)
            if t.kind != "approval" or t.status != tk.GRANTED or now_ns >= t.token_expires_ns:
                return None, (t, "")
            t.watch_token_sha256 = tk.token_hash(token)
            return t.to_bytes(), (t, token)

        result: tuple[tk.Ticket, str] = await self._store.ticket_update(ticket_id, apply, None)
        return result

    # -- deferrals -----------------------------------------------------------

    async def record_attempt(
        self, ticket_id: str, *, facts: list[str], verdict: str, decision_id: str, now_ns: int
    ) -> tk.Ticket:
        """Log a resolution attempt; settle the ticket unless it is DEFER again."""
        final = verdict != "DEFER"

        def apply(raw: bytes | None) -> tuple[bytes, tk.Ticket]:
            if raw is None:
                raise SessionNotFound("no such deferral")
            t = tk.Ticket.from_bytes(raw)
            if t.status != tk.PENDING:
                raise SessionConflict(f"deferral is {t.status}")
            t.attempts.append(
                {"at_ns": now_ns, "facts": facts, "verdict": verdict, "decision_id": decision_id}
            )
            exhausted = not final and len(t.attempts) >= self._max_attempts
            if final or exhausted:
                t.status = tk.RESOLVED
                t.resolved_ns = now_ns
                t.resolution = {
                    "verdict": "DENY" if exhausted else verdict,
                    "decision_id": decision_id,
                    "method": "attempts_exhausted" if exhausted else "context_provided",
                }
                t.settle()
            return t.to_bytes(), t

        probe = await self.get(ticket_id)
        ticket = await self._store.ticket_update(ticket_id, apply, probe.index)
        if ticket.status == tk.RESOLVED:
            await self._settle(
                ticket, ticket.resolution["verdict"], "deferral_resolution", dict(ticket.resolution)
            )
        return ticket

    # -- timeouts ------------------------------------------------------------

    async def sweep(self, now_ns: int) -> int:
        """Expire every pending ticket past its deadline (DENY). Returns how many."""
        expired = 0
        for ticket_id in await self._store.tickets_due(now_ns):

            def apply(raw: bytes | None) -> tuple[bytes | None, tk.Ticket | None]:
                if raw is None:
                    return None, None
                t = tk.Ticket.from_bytes(raw)
                if t.status != tk.PENDING or now_ns < t.deadline_ns:
                    return None, None
                t.status = tk.EXPIRED
                t.resolved_ns = now_ns
                t.settle()
                return t.to_bytes(), t

            probe = await self._store.ticket_get(ticket_id)
            if probe is None:
                continue
            index = tk.Ticket.from_bytes(probe).index
            ticket = await self._store.ticket_update(ticket_id, apply, index)
            if ticket is not None:
                expired += 1
                self._changed(ticket_id)
                await self._settle(ticket, "DENY", "timeout", {"method": "timeout"})
        return expired

    async def run_sweeper(self, clock_ns: Callable[[], int], interval: float = 0.5) -> None:
        """Sweep forever (a background task); errors are logged, never fatal."""
        while True:
            try:
                await self.sweep(clock_ns())
            except Exception:
                log.exception("approval/deferral sweep failed; retrying")
            await asyncio.sleep(interval)


__all__ = ["ErrorCode", "Workflow"]
