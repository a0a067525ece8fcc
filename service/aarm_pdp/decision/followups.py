"""What follows a decision: the outcome of the action, the end of the session, and the
settlement of an approval or deferral ticket.

Each is one unit of work owned here, never by a servicer: update the session, write
the follow-up receipt (AARM R5: the action's record continues past the decision),
emit the event. The servicers only translate to and from the wire.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from aarm_pdp.approvals.tickets import Ticket
from aarm_pdp.decision.ports import Events, Receipts, Sessions
from aarm_pdp.errors import AarmError, ReceiptInvalid
from aarm_pdp.model.levels import NO_CLASSIFICATION
from aarm_pdp.model.redaction import redact_values
from aarm_pdp.model.request import Identity, identity_doc
from aarm_pdp.observability.events import approval_event
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.receipts import body as receipt_body
from aarm_pdp.receipts.store import ReceiptStore
from aarm_pdp.receipts.verify import KeysLike, verify_chain

log = logging.getLogger("aarm_pdp.decision.followups")

MAX_ERROR_TEXT = 512
REVOCATIONS = "aarm:revocations"
"""The receipt chain of a tenant's revocations (a session id no request may use)."""


class Followups:
    """Outcomes, session ends and ticket settlements: session + receipt + event."""

    def __init__(
        self,
        sessions: Sessions,
        receipts: Receipts,
        events: Events,
        metrics: Metrics,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._sessions = sessions
        self._receipts = receipts
        self._events = events
        self._metrics = metrics
        self._clock = clock_ns
        self._new_id = new_id

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
        started_at: str = "",
        completed_at: str = "",
        error: str = "",
    ) -> tuple[str, int]:
        """Fold an executed (or failed) action's result into the session, then receipt it.

        Returns (context log head, index of the highest classification seen, -1 none).
        """
        now = self._clock()
        head, highest = await self._sessions.record_outcome(
            ident,
            decision_id=decision_id,
            executed=executed,
            classification=classification,
            labels=labels,
            texts=texts,
            trust=trust,
            output_digest=output_digest,
            now_ns=now,
        )
        await self._append(
            receipt_body.follow_up_receipt(
                receipt_id=self._new_id(),
                kind="outcome",
                tenant=ident.tenant,
                session_id=ident.session_id,
                decision_id=decision_id,
                identity=identity_doc(ident),
                detail={
                    "success": executed,
                    "started_at": started_at,
                    "completed_at": completed_at,
                    "output_hash": output_digest,
                    "classification": classification or NO_CLASSIFICATION,
                    "labels": list(labels),
                    # redacted before it is cut, so no credential is cut in half
                    # (half a token is not a shape the detector knows)
                    "error": redact_values(error[: 8 * MAX_ERROR_TEXT])[:MAX_ERROR_TEXT],
                    "context_hash": head,
                },
                now_ns=now,
            )
        )
        return head, highest

    async def end_session(self, ident: Identity) -> tuple[str, int]:
        """Close the session and write its terminal receipt; returns (head, action count)."""
        head, count = await self._sessions.end(ident)
        await self._append(
            receipt_body.follow_up_receipt(
                receipt_id=self._new_id(),
                kind="session_end",
                tenant=ident.tenant,
                session_id=ident.session_id,
                decision_id="",
                identity=identity_doc(ident),
                detail={"context_hash": head, "action_count": count},
                now_ns=self._clock(),
            )
        )
        return head, count

    async def revoke(self, tenant: str, subject: str, *, by: str, reason: str = "") -> None:
        """Revoke ``subject`` (a human, service, agent or credential id) in ``tenant``.

        Durable first: a ``revocation`` receipt in the tenant's revocation chain (the
        receipt store is durable and shared by replicas), then the session store that
        every Decide reads. :meth:`load_revocations` replays the chain at start.
        """
        await self._append(
            receipt_body.follow_up_receipt(
                receipt_id=self._new_id(),
                kind="revocation",
                tenant=tenant,
                session_id=REVOCATIONS,
                decision_id="",
                identity={"principal": by},
                detail={"subject": subject, "revoked_by": by, "reason": reason[:512]},
                now_ns=self._clock(),
            )
        )
        await self._sessions.revoke(tenant, subject)

    async def load_revocations(
        self, tenants: Iterable[str], store: ReceiptStore, keys: Callable[[], KeysLike]
    ) -> int:
        """Replay the revocation chains of ``tenants`` into the session store; how many.

        Each chain is verified first (signatures, sequence, hash links) against the
        service's own public keys: a chain edited in the store (a revocation deleted
        from its middle, one altered) raises ``ReceiptInvalid`` instead of quietly
        un-revoking someone. (A deletion at the very end of a chain leaves no trace in
        the chain itself: anchor exports elsewhere, docs/threat-model.md.)
        """
        count = 0
        for tenant in sorted(set(tenants)):
            lines = await store.export(tenant, REVOCATIONS)
            checked = verify_chain(lines, keys(), session=(tenant, REVOCATIONS))
            if not checked.ok:
                raise ReceiptInvalid(f"revocation chain of {tenant!r} does not verify: {checked}")
            for line in lines:
                doc = orjson.loads(line)
                if doc.get("kind") != "revocation":
                    continue
                subject = (doc.get("detail") or {}).get("subject")
                if isinstance(subject, str) and subject:
                    await self._sessions.revoke(tenant, subject)
                    count += 1
        await self._sessions.mark_revocations_loaded()
        return count

    async def revocations_current(self) -> bool:
        """Whether the session store still holds the replayed revocations."""
        return await self._sessions.revocations_current()

    async def settle_ticket(
        self, ticket: Ticket, verdict: str, kind: str, detail: dict[str, Any]
    ) -> None:
        """How a suspended action ended (approved, rejected, resolved, timed out).

        The workflow's settle hook: session first, then the follow-up receipt; the
        approval event is emitted even when the receipt fails (it says what happened).
        """
        now = self._clock()
        if kind == "timeout":
            self._metrics.tickets_expired.labels(ticket.kind).inc()
        await self._sessions.settle(
            ticket.tenant, ticket.session_id, ticket.decision_id, verdict, kind, detail, now
        )
        body = receipt_body.follow_up_receipt(
            receipt_id=self._new_id(),
            kind=kind,
            tenant=ticket.tenant,
            session_id=ticket.session_id,
            decision_id=ticket.decision_id,
            identity=ticket.context.get("identity", {}),
            detail={
                **detail,
                "result": verdict,
                "ticket": ticket.kind,
                "ticket_id": ticket.ticket_id,
            },
            now_ns=now,
            links={f"{ticket.kind}_id": ticket.ticket_id},
        )
        try:
            await self._receipts.append(body)
        except AarmError as exc:
            log.error("follow-up receipt for %s not stored: %s", ticket.ticket_id, exc)
            self._metrics.errors.labels(exc.code.value).inc()
            raise
        finally:
            if ticket.kind == "approval":
                self._events.emit(
                    approval_event(
                        ticket_context=ticket.context,
                        ticket_id=ticket.ticket_id,
                        decision_id=ticket.decision_id,
                        risk_level=ticket.risk_level,
                        created_ns=ticket.created_ns,
                        kind=kind,
                        verdict=verdict,
                        detail=detail,
                        receipt_id=body["receipt_id"],
                        now_ns=now,
                    )
                )

    async def _append(self, body: dict[str, Any]) -> None:
        """A follow-up receipt of an RPC; its errors reach the caller (counted there)."""
        await self._receipts.append(body)
