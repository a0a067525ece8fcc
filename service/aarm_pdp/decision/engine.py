"""The decision engine: the only orchestrator of a decision. No transport code.

evaluate: validate identity → session context → build input (pure) → query policy →
parse result (pure) → redeem an approval token; the outcome is an :class:`Evaluation`.
record (one tail for decide and reevaluate): the durable receipt first, then the
session commit and the ticket, all with the verdict the client actually gets, then
telemetry and metrics. Every failure on the way becomes a DENY carrying an error code;
a bug becomes a DENY with ``internal``. Nothing here can produce ALLOW except a valid
policy document (or a redeemed approval of one).

Deadlines: a decision given ``deadline`` seconds (the client's gRPC deadline, less the
time its answer needs on the wire) is judged within the first part of them, and
recorded within the rest (:class:`Deadline`): every session-store, policy and receipt
wait is cut at its part's end, so a hung Redis, PostgreSQL or OPA gives an OK DENY
``session_store_unavailable``, ``receipt_store_unavailable`` or ``opa_timeout``
inside the client's deadline, never ``DEADLINE_EXCEEDED``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from aarm_pdp.analysis import analyse
from aarm_pdp.decision import metatools
from aarm_pdp.decision.idempotency import IdempotencyCache
from aarm_pdp.decision.input import build_input
from aarm_pdp.decision.ports import (
    Events,
    NoEvents,
    NoReceipts,
    NoSessions,
    NoTickets,
    Receipts,
    Sessions,
    Tickets,
)
from aarm_pdp.decision.result import parse_result
from aarm_pdp.errors import (
    AarmError,
    ErrorCode,
    ReceiptStoreUnavailable,
    SessionStoreUnavailable,
    deny_message,
)
from aarm_pdp.model.decision import (
    Decision,
    DecisionRecord,
    DecisionResult,
    PolicyVersion,
    Reason,
    RiskLevel,
)
from aarm_pdp.model.levels import NO_CLASSIFICATION
from aarm_pdp.model.redaction import redact
from aarm_pdp.model.request import ActionRequest, identity_doc
from aarm_pdp.observability import logging as aarm_logging
from aarm_pdp.observability import tracing
from aarm_pdp.observability.events import decision_events
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.opa.port import PolicyEngine
from aarm_pdp.receipts import body as receipt_body
from aarm_pdp.session.catalogue import Catalogue
from aarm_pdp.session.context import Prepared

if TYPE_CHECKING:
    from aarm_pdp.approvals.tickets import Ticket

log = logging.getLogger("aarm_pdp.decision")
T = TypeVar("T")

RECORD_SHARE = 0.25
RECORD_RESERVE_MAX_SECONDS = 0.5
"""Of a decision's deadline, the part kept for recording it (the receipt, the session
commit, the ticket): a quarter of it, at most this."""


class Deadline(NamedTuple):
    """When (event-loop time) a decision must be judged, and when recorded."""

    judge_by: float
    record_by: float

    @classmethod
    def after(cls, seconds: float | None) -> Deadline | None:
        """The deadline ``seconds`` from now (None: none)."""
        if seconds is None:
            return None
        now = asyncio.get_running_loop().time()
        reserve = min(RECORD_RESERVE_MAX_SECONDS, seconds * RECORD_SHARE)
        return cls(now + seconds - reserve, now + seconds)


class _Expiry:
    """Cancels ``task`` when called (by the loop, at the deadline), and remembers it."""

    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.expired = False

    def __call__(self) -> None:
        self.expired = True
        self.task.cancel()


async def _within(aw: Awaitable[T], until: float | None, error: type[AarmError], store: str) -> T:
    """``await aw``, cut at ``until`` (loop time) with ``error`` naming ``store``.

    ``asyncio.timeout_at`` reduced to one loop timer: ~3 µs instead of ~7.5, and a
    decision arms up to three (docs/performance.md, "Admission control"). A
    cancellation from elsewhere still propagates as such.
    """
    if until is None:
        return await aw
    task = asyncio.current_task()
    assert task is not None  # only ever awaited inside a task
    expiry = _Expiry(task)
    timer = asyncio.get_running_loop().call_at(until, expiry)
    try:
        result = await aw
    except asyncio.CancelledError:
        if expiry.expired and task.uncancel() == 0:
            raise error(f"{store} did not answer within the client's deadline") from None
        raise
    finally:
        timer.cancel()
    if expiry.expired:  # cancelled, but the awaitable swallowed it: balance the count
        task.uncancel()
    return result


def fail_closed(code: ErrorCode, detail: str = "") -> DecisionResult:
    """The DENY that stands in for a decision that could not be made."""
    message = deny_message(code)
    if detail:
        message = f"{message}: {detail}"
    return DecisionResult(
        decision=Decision.DENY,
        reasons=(
            Reason(code=code.value, rule_id=f"aarm.fail_closed.{code.value}", message=message),
        ),
        risk_level=RiskLevel.HIGH,
        risk_score=1.0,
        fail_closed=True,
    )


_SUSPENDED = (Decision.STEP_UP, Decision.DEFER)
_KINDS = {Decision.STEP_UP: "approval", Decision.DEFER: "deferral"}
_INLINE_ANALYSIS_CHARS = 2048
"""Analysed text up to this size is parsed on the event loop (well under a millisecond)."""
_SHADOW_INFLIGHT = 64
"""Shadow evaluations in flight at most (docs/policy-lifecycle.md, "Shadow policy")."""
_RUNS = (Decision.ALLOW, Decision.MODIFY)


@dataclass(frozen=True, slots=True)
class Seen:
    """One policy query: the input document and the policy's own verdict on it."""

    input_doc: dict[str, Any]
    result: DecisionResult


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What evaluating one action produced, carried to the recording tail."""

    request: ActionRequest
    """The request as judged (a meta-tool wrapper already resolved)."""
    result: DecisionResult
    prepared: Prepared | None = None
    """The session context read for it (``None`` when evaluation stopped before)."""
    links: Mapping[str, str] = field(default_factory=dict)
    """Receipt links: the redeemed approval, the deferral being resolved."""
    ticket_source: str = "step_up"
    """Why a ticket would be opened: ``step_up`` or ``defer_escalation``."""
    commit: bool = True
    """Whether the verdict is committed to the session: not when evaluation failed
    after reading it, nor for a re-evaluation of a deferred action (which is settled
    through its ticket instead)."""
    received: ActionRequest | None = None
    """The request as it arrived, when a meta-tool wrapper was resolved: the receipt
    and the events bind what the enforcement point sent (its tool and the hash of its
    parameters, which name the wrapped tool); policy, session and ticket see the
    resolved action."""
    policy: PolicyVersion | None = None
    """The policy that judged it, from the policy engine's own answer (``None`` when
    evaluation stopped before asking: the last one seen is recorded)."""
    seen: Seen | None = None
    """What the policy was asked and answered, for the decision record (``None``: it
    was not asked)."""

    @property
    def as_received(self) -> ActionRequest:
        return self.received if self.received is not None else self.request

    @property
    def context(self) -> dict[str, Any] | None:
        return self.prepared.input_parts if self.prepared is not None else None

    @property
    def context_hash(self) -> str:
        return self.prepared.context_hash if self.prepared is not None else ""


class _ReceiptTooLate(ReceiptStoreUnavailable):
    """The receipt store did not confirm the append by the deadline (it may still)."""


def _ticket_id(result: DecisionResult) -> str:
    if result.approval is not None:
        return result.approval.approval_id
    return result.deferral.deferral_id if result.deferral is not None else ""


def _with_ticket_id(result: DecisionResult, ticket_id: str) -> DecisionResult:
    if result.approval is not None:
        return dataclasses.replace(
            result, approval=dataclasses.replace(result.approval, approval_id=ticket_id)
        )
    if result.deferral is not None:
        return dataclasses.replace(
            result, deferral=dataclasses.replace(result.deferral, deferral_id=ticket_id)
        )
    return result


class DecisionEngine:
    """Decides one action at a time against a :class:`PolicyEngine`."""

    def __init__(
        self,
        policy: PolicyEngine,
        metrics: Metrics,
        *,
        opa_timeout: float = 1.0,
        clock_ns: Callable[[], int] = time.time_ns,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        cache: IdempotencyCache | None = None,
        sessions: Sessions | None = None,
        meta_tools: dict[str, metatools.MetaTool] | None = None,
        workflow: Tickets | None = None,
        receipts: Receipts | None = None,
        telemetry: Events | None = None,
        on_catalogue: Callable[[Catalogue], None] | None = None,
        shadow: PolicyEngine | None = None,
    ) -> None:
        """Collaborators left out are switched off (null objects of :mod:`.ports`).

        ``on_catalogue`` is told every tool catalogue read (the policy changed).
        ``shadow``: a policy engine every input is also sent to, after the live answer,
        its verdict counted and never used (:meth:`_shadow_compare`)."""
        self._shadow = shadow
        self._shadow_inflight = 0
        self._policy = policy
        self._metrics = metrics
        self._timeout = opa_timeout
        self._clock = clock_ns
        self._new_id = new_id
        self._cache = cache if cache is not None else IdempotencyCache()
        self._sessions: Sessions = sessions if sessions is not None else NoSessions()
        self._tickets: Tickets = workflow if workflow is not None else NoTickets()
        self._receipts: Receipts = receipts if receipts is not None else NoReceipts()
        self._events: Events = telemetry if telemetry is not None else NoEvents()
        self._meta_tools = metatools.DEFAULT_META_TOOLS if meta_tools is None else meta_tools
        self.policy_version = PolicyVersion()
        self._catalogue = Catalogue()
        self._on_catalogue = on_catalogue or (lambda catalogue: None)
        self._catalogue_reload: asyncio.Future[Any] | None = None
        self._background: set[asyncio.Future[Any]] = set()

    async def refresh_policy_version(self) -> PolicyVersion:
        """Ask the policy engine which policy it runs; publish it; read its catalogue.

        Decisions do not depend on this: each records the policy named in its own
        answer (:meth:`_observe_policy`). The tool catalogue is read again with it:
        ``input.analysis`` is computed from the analysed parameter types of the
        catalogue the policy engine holds.
        """
        try:
            version = await self._policy.policy_version()
        except AarmError as exc:
            log.error("policy version unreadable (%s): keeping %r", exc, self.policy_version)
            version = self.policy_version
        self._observe_policy(version, reload=False)
        await self._read_catalogue()
        return version

    def _observe_policy(self, version: PolicyVersion, *, reload: bool = True) -> None:
        """Note the policy an answer came from; a new one: metric, catalogue re-read."""
        if version == self.policy_version:
            return
        if self.policy_version.hash:
            log.warning("policy changed: revision %s", version.revision)
        self.policy_version = version
        self._metrics.policy.info({"revision": version.revision, "hash": version.hash})
        if reload and (self._catalogue_reload is None or self._catalogue_reload.done()):
            self._catalogue_reload = asyncio.ensure_future(self._read_catalogue())
            self._background.add(self._catalogue_reload)
            self._catalogue_reload.add_done_callback(self._background.discard)

    async def _read_catalogue(self) -> None:
        try:
            catalogue = Catalogue.from_policy_data(
                await self._policy.tool_catalogue(), await self._policy.request_scope()
            )
        except AarmError as exc:
            # Keep the last snapshot; a parameter the policy declares but the service
            # did not analyse is denied by the pack (aarm.analysis.missing).
            log.error("tool catalogue unreadable (%s): analysis types unchanged", exc)
            return
        self._catalogue = catalogue
        self._on_catalogue(catalogue)

    # -- decide ----------------------------------------------------------------

    async def decide(
        self, request: ActionRequest, *, deadline: float | None = None
    ) -> DecisionRecord:
        """One decision for ``request``, within ``deadline`` seconds when given."""
        now_ns = self._clock()
        by = Deadline.after(deadline)
        key = None
        if request.request_id:
            # Keyed by the calling principal too: another enforcement point replaying the
            # same bytes gets no one else's verdict.
            ident = request.identity
            key = (ident.tenant, ident.session_id, request.request_id, ident.principal)
            hit = self._cache.lookup(key, request.fingerprint, now_ns)
            if hit is not None:
                cached = hit if isinstance(hit, DecisionRecord) else await asyncio.shield(hit)
                refusal = await self._recheck(request, cached, now_ns, by)
                if refusal is None:
                    self._metrics.idempotent_replays.inc()
                    return cached
                # What made the cached verdict right no longer holds: decide DENY anew.
                return await self._record(
                    Evaluation(request, self._failed(refusal)),
                    self._new_id(),
                    now_ns,
                    time.perf_counter(),
                    by,
                )
            self._cache.begin(key, request.fingerprint)

        try:
            record = await self._decide_new(request, now_ns, by)
        except BaseException as exc:
            if key is not None:
                self._cache.abandon(key, exc)
            raise
        if key is not None:
            self._cache.finish(key, record, now_ns, store=not record.result.fail_closed)
        return record

    async def _recheck(
        self, request: ActionRequest, cached: DecisionRecord, now_ns: int, by: Deadline | None
    ) -> ErrorCode | None:
        """Why a cached verdict that let the action run may not be replayed, if any.

        A replayed request_id gets its cached verdict only while the identity is not
        revoked or expired and the approval token it carried is still valid.
        """
        if cached.result.decision not in _RUNS:
            return None
        if request.unverified:
            return ErrorCode.IDENTITY_UNVERIFIED
        expires = request.identity.expires_at_ns
        if expires and expires <= now_ns:
            return ErrorCode.IDENTITY_EXPIRED
        until = by.judge_by if by is not None else None
        store = SessionStoreUnavailable
        try:
            if await _within(
                self._sessions.revoked(request.identity), until, store, "session store"
            ):
                return ErrorCode.IDENTITY_REVOKED
            if request.approval_token and not await _within(
                self._tickets.token_still_valid(request.approval_token, now_ns),
                until,
                store,
                "session store",
            ):
                return ErrorCode.APPROVAL_REJECTED
        except AarmError as exc:
            return exc.code
        return None

    async def _decide_new(
        self, request: ActionRequest, now_ns: int, by: Deadline | None
    ) -> DecisionRecord:
        decision_id = self._new_id()
        token = aarm_logging.bind(
            decision_id=decision_id,
            session_id=request.identity.session_id,
            agent_id=request.identity.agent,
        )
        started = time.perf_counter()
        try:
            evaluation = await self._evaluate(request, now_ns, by)
            return await self._record(evaluation, decision_id, now_ns, started, by)
        finally:
            aarm_logging.reset(token)

    async def _evaluate(
        self, request: ActionRequest, now_ns: int, by: Deadline | None
    ) -> Evaluation:
        prepared: Prepared | None = None
        received = request
        until = by.judge_by if by is not None else None
        try:
            if request.unverified:  # first: a token that failed is the root cause
                failed = self._failed(ErrorCode.IDENTITY_UNVERIFIED, request.unverified)
                return Evaluation(request, failed)
            missing = request.identity.missing()
            if missing:
                failed = self._failed(ErrorCode.IDENTITY_MISSING, "missing " + ", ".join(missing))
                return Evaluation(request, failed)
            expires = request.identity.expires_at_ns
            if expires and expires <= now_ns:
                return Evaluation(request, self._failed(ErrorCode.IDENTITY_EXPIRED))
            action = metatools.resolve(request.action, self._meta_tools)
            if action is not request.action:
                request = dataclasses.replace(request, action=action)
            with tracing.child("aarm.session.prepare"):
                prepared = await _within(
                    self._sessions.prepare(request, now_ns),
                    until,
                    SessionStoreUnavailable,
                    "session store",
                )
            self._metrics.drift.observe(prepared.input_parts["drift"]["action"])
            result, policy, seen = await self._query(request, prepared.input_parts, now_ns, until)
            links: dict[str, str] = {}
            if result.decision is Decision.STEP_UP and request.approval_token:
                # A granted, single-use token for exactly this action, same policy.
                result = await _within(
                    self._tickets.redeem(request.approval_token, request, policy, now_ns),
                    until,
                    SessionStoreUnavailable,
                    "session store",
                )
                links["approval_id"] = request.approval_token.partition(".")[0]
            if result.decision in _SUSPENDED:
                # A ticket that will not fit is refused before anything is recorded: a
                # DENY ticket_budget_exhausted, not a suspension without its ticket.
                await _within(
                    self._tickets.room(_KINDS[result.decision], request),
                    until,
                    SessionStoreUnavailable,
                    "session store",
                )
            return Evaluation(
                request, result, prepared, links, received=received, policy=policy, seen=seen
            )
        except AarmError as exc:
            log.warning("failing closed: %s: %s", exc.code.value, exc.detail)
            failed = self._failed(exc.code)
            return Evaluation(request, failed, prepared, commit=False, received=received)
        except Exception:
            log.exception("failing closed: unexpected error")
            failed = self._failed(ErrorCode.INTERNAL)
            return Evaluation(request, failed, prepared, commit=False, received=received)

    # -- reevaluate --------------------------------------------------------------

    async def reevaluate(
        self, request: ActionRequest, ticket: Ticket, *, deadline: float | None = None
    ) -> DecisionRecord:
        """Judge a deferred action again with the facts supplied since (same identity)."""
        now_ns = self._clock()
        by = Deadline.after(deadline)
        until = by.judge_by if by is not None else None
        decision_id = self._new_id()
        started = time.perf_counter()
        links = {"deferral_id": ticket.ticket_id, "deferred_decision_id": ticket.decision_id}
        prepared: Prepared | None = None
        policy: PolicyVersion | None = None
        seen: Seen | None = None
        try:
            if ticket.policy_hash != self.policy_version.hash:
                result = self._failed(ErrorCode.STALE_POLICY, "policy changed while deferred")
            else:
                prepared = await _within(
                    self._sessions.prepare(request, now_ns),
                    until,
                    SessionStoreUnavailable,
                    "session store",
                )
                result, policy, seen = await self._query(
                    request, prepared.input_parts, now_ns, until
                )
                if ticket.policy_hash != policy.hash:  # changed just now
                    result = self._failed(ErrorCode.STALE_POLICY, "policy changed while deferred")
            ticket = await _within(
                self._tickets.record_attempt(
                    ticket.ticket_id,
                    facts=sorted(request.facts),
                    verdict=result.decision.value,
                    decision_id=decision_id,
                    now_ns=now_ns,
                ),
                until,
                SessionStoreUnavailable,
                "session store",
            )
            exhausted = ticket.resolution.get("method") == "attempts_exhausted"
            if exhausted and result.decision is not Decision.DENY:
                result = self._failed(ErrorCode.DEFER_EXHAUSTED)
            if result.decision is Decision.DEFER:
                result = _with_ticket_id(result, ticket.ticket_id)
        except AarmError as exc:
            log.warning("deferral resolution failing closed: %s: %s", exc.code.value, exc.detail)
            result = self._failed(exc.code)
        except Exception:
            log.exception("deferral resolution failing closed: unexpected error")
            result = self._failed(ErrorCode.INTERNAL)
        evaluation = Evaluation(
            request,
            result,
            prepared,
            links,
            ticket_source="defer_escalation",
            commit=False,
            policy=policy,
            seen=seen,
        )
        return await self._record(evaluation, decision_id, now_ns, started, by)

    # -- the recording tail --------------------------------------------------------

    async def _record(
        self,
        ev: Evaluation,
        decision_id: str,
        now_ns: int,
        started: float,
        by: Deadline | None = None,
    ) -> DecisionRecord:
        """Receipt first, then session and ticket with the verdict given, then events.

        No receipt, no verdict: a receipt that cannot be stored (in time) turns the
        answer into DENY before anything else is written. A session or ticket write that
        fails (or is not done by ``by.record_by``) after the receipt turns it into DENY
        too, and a follow-up ``overturned`` receipt records that, so the chain and the
        answer never part.
        """
        until = by.record_by if by is not None else None
        request, result = ev.request, ev.result
        policy = ev.policy if ev.policy is not None else self.policy_version
        if ev.policy is None:
            ev = dataclasses.replace(ev, policy=policy)
        ticket_id = ""
        # A new suspension opens a ticket; a re-evaluation still DEFER keeps its own.
        opens_ticket = result.decision in _SUSPENDED and not _ticket_id(result)
        if opens_ticket:
            ticket_id = self._tickets.new_ticket_id()
            result = _with_ticket_id(result, ticket_id)
        with tracing.child("aarm.receipt.append") as span:
            receipt, error = await self._receipt(ev, decision_id, result, now_ns, until)
            if error is not None:
                span.set_attribute("aarm.error", error.value)
        if error is not None:
            result, opens_ticket = self._failed(error), False
        try:
            if ev.commit and ev.prepared is not None:
                with tracing.child("aarm.session.commit"):
                    await _within(
                        self._sessions.commit(ev.prepared, request, decision_id, result, now_ns),
                        until,
                        SessionStoreUnavailable,
                        "session store",
                    )
            if opens_ticket and result.decision in _SUSPENDED:
                await _within(
                    self._suspend(ev, decision_id, result, ticket_id, now_ns),
                    until,
                    SessionStoreUnavailable,
                    "session store",
                )
        except Exception as exc:
            code = exc.code if isinstance(exc, AarmError) else ErrorCode.INTERNAL
            if error is not None:  # already a DENY without a receipt: keep its reason
                log.error("DENY %s not committed to the session: %s", decision_id, code)
            else:
                log.error("decision %s overturned to DENY after its receipt: %s", decision_id, code)
                result = self._failed(code)
                # The answer never carries the receipt of a verdict it does not give: no
                # overturn stored (failed, or still queued at the deadline), no receipt.
                receipt = await self._overturn(ev, decision_id, result, now_ns, until)
        record = DecisionRecord(
            decision_id=decision_id,
            request_id=request.request_id or decision_id,
            result=result,
            policy=policy,
            receipt=receipt,
        )
        for event in decision_events(ev.as_received, record, ev.context, now_ns):
            self._events.emit(event)
        m = self._metrics
        verdict = result.decision.value
        m.decide_duration.labels(verdict).observe(time.perf_counter() - started)
        m.decisions.labels(verdict, m.code_label(result.reasons[0].code)).inc()
        return record

    async def _receipt(
        self,
        ev: Evaluation,
        decision_id: str,
        result: DecisionResult,
        now_ns: int,
        until: float | None,
    ) -> tuple[dict[str, Any] | None, ErrorCode | None]:
        """Durably record the decision: (receipt, None), or (None, why it failed).

        Not stored by ``until``: the append stays queued (the store may still write it),
        so an ``overturned`` receipt is queued behind it, saying the answer was DENY.
        """
        record = input_sha256 = None
        if ev.seen is not None:
            try:
                record, input_sha256 = receipt_body.decision_record(
                    ev.seen.input_doc, ev.seen.result.decision.value, ev.seen.result.matched_rules
                )
            except Exception:  # a record is for replay: never worth a decision
                log.exception("decision record not kept for %s", decision_id)
        body = receipt_body.decision_receipt(
            receipt_id=self._new_id(),
            decision_id=decision_id,
            request=ev.as_received,
            decision=result,
            policy=ev.policy or self.policy_version,
            context=ev.context,
            context_hash=ev.context_hash,
            now_ns=now_ns,
            links=dict(ev.links),
            input_sha256=input_sha256,
        )
        try:
            return await _within(
                self._receipts.append(body, record=record),
                until,
                _ReceiptTooLate,
                "receipt store",
            ), None
        except _ReceiptTooLate as exc:
            log.error("receipt not stored in time, failing closed: %s", exc.detail)
            deny = fail_closed(ErrorCode.RECEIPT_STORE_UNAVAILABLE)
            self._in_background(self._overturn(ev, decision_id, deny, now_ns, None))
            return None, exc.code
        except AarmError as exc:
            log.error("receipt not stored, failing closed: %s: %s", exc.code.value, exc.detail)
            return None, exc.code
        except Exception:
            log.exception("receipt not stored, failing closed")
            return None, ErrorCode.RECEIPT_STORE_UNAVAILABLE

    async def _overturn(
        self,
        ev: Evaluation,
        decision_id: str,
        result: DecisionResult,
        now_ns: int,
        until: float | None,
    ) -> dict[str, Any] | None:
        """Record that a receipted verdict was replaced by ``result`` (a DENY).

        Not stored by ``until``: it stays queued, and the answer goes out without it.
        """
        ident = ev.request.identity
        body = receipt_body.follow_up_receipt(
            receipt_id=self._new_id(),
            kind="overturned",
            tenant=ident.tenant,
            session_id=ident.session_id,
            decision_id=decision_id,
            identity=identity_doc(ident),
            detail={
                "result": result.decision.value,
                "reason_code": result.reasons[0].code,
            },
            now_ns=now_ns,
        )
        try:
            return await _within(
                self._receipts.append(body), until, _ReceiptTooLate, "receipt store"
            )
        except _ReceiptTooLate:
            log.warning("overturn receipt for %s still queued at the deadline", decision_id)
            return None
        except AarmError as exc:
            log.error("overturn receipt for %s not stored: %s", decision_id, exc.code.value)
            return None
        except Exception:
            log.exception("overturn receipt for %s not stored", decision_id)
            return None

    def _in_background(self, work: Awaitable[Any]) -> None:
        """Run ``work`` to its end after the decision's answer (kept from the GC)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _suspend(
        self,
        ev: Evaluation,
        decision_id: str,
        result: DecisionResult,
        ticket_id: str,
        now_ns: int,
    ) -> None:
        """Open the approval or deferral ticket under the id the verdict already names."""
        request = ev.request
        ctx = ev.context or {}
        session = ctx.get("session", {})
        snapshot = {
            "source": ev.ticket_source,
            "original_request": session.get("original_request"),
            "action": {
                "tool": request.action.tool,
                "operation": request.action.operation,
                "original_tool": request.action.original_tool,
                # Approvers (GetApproval, the webhook) see them: secrets withheld.
                "parameters": redact(request.action.parameters),
            },
            "prior_actions": session.get("recent", []),
            "highest_classification": session.get("highest_classification", NO_CLASSIFICATION),
            "labels": session.get("labels", []),
            "drift": ctx.get("drift", {}),
            "identity": identity_doc(request.identity),
            "matched_rules": list(result.matched_rules),
            "reasons": [r.to_doc() for r in result.reasons],
            "risk": {"level": result.risk_level.value, "score": result.risk_score},
            "policy": dataclasses.asdict(ev.policy or self.policy_version),
        }
        await self._tickets.open(
            kind="approval" if result.decision is Decision.STEP_UP else "deferral",
            request=request,
            raw_request=request.raw,
            decision_id=decision_id,
            decision=result,
            policy=ev.policy or self.policy_version,
            context=snapshot,
            now_ns=now_ns,
            ticket_id=ticket_id,
        )

    # -- policy ----------------------------------------------------------------------

    async def _query(
        self,
        request: ActionRequest,
        context: dict[str, Any] | None,
        now_ns: int,
        until: float | None,
    ) -> tuple[DecisionResult, PolicyVersion, Seen]:
        """Build the input, ask the policy engine (timed, errors counted), parse.

        The policy engine waits at most ``opa_timeout``, and never past ``until``. The
        policy version is the one the answer itself names.
        """
        m = self._metrics
        analysis = await self._analyse(request)
        input_doc = build_input(request, now_ns=now_ns, context=context, analysis=analysis)
        timeout = self._timeout
        if until is not None:
            left = until - asyncio.get_running_loop().time()
            timeout = max(0.0, min(timeout, left))
        t0 = time.perf_counter()
        try:
            with tracing.child("aarm.opa.evaluate"):
                body = await self._policy.evaluate(input_doc, timeout=timeout)
        except AarmError as exc:
            m.opa_errors.labels(exc.code.value).inc()
            raise
        finally:
            m.opa_query_duration.observe(time.perf_counter() - t0)
        policy = self._policy.answer_policy(body)
        if policy is not self.policy_version:
            self._observe_policy(policy)
        result = parse_result(body)
        if self._shadow is not None:
            self._shadow_compare(input_doc, result)
        return result, policy, Seen(input_doc, result)

    def _shadow_compare(self, input_doc: dict[str, Any], live: DecisionResult) -> None:
        """Evaluate ``input_doc`` on the shadow policy in the background; count both
        verdicts. At most ``_SHADOW_INFLIGHT`` at once: past that it is skipped, so a
        slow shadow never holds up or piles behind live decisions."""
        counter = self._metrics.shadow_verdicts
        if self._shadow_inflight >= _SHADOW_INFLIGHT:
            counter.labels(live.decision.value, "skipped").inc()
            return
        self._shadow_inflight += 1
        self._in_background(self._shadow_evaluate(input_doc, live))

    async def _shadow_evaluate(self, input_doc: dict[str, Any], live: DecisionResult) -> None:
        assert self._shadow is not None
        try:
            body = await self._shadow.evaluate(input_doc, timeout=self._timeout)
            shadow = parse_result(body)
            verdict = shadow.decision.value
        except Exception as exc:  # never a decision's business
            verdict, shadow = "error", None
            log.debug("shadow policy did not answer: %s", exc)
        finally:
            self._shadow_inflight -= 1
        self._metrics.shadow_verdicts.labels(live.decision.value, verdict).inc()
        if shadow is not None and verdict != live.decision.value:
            log.info(
                "shadow policy disagrees: live %s %s, shadow %s %s (%s.%s)",
                live.decision.value,
                list(live.matched_rules),
                verdict,
                list(shadow.matched_rules),
                input_doc.get("action", {}).get("tool"),
                input_doc.get("action", {}).get("operation"),
            )

    async def _analyse(self, request: ActionRequest) -> dict[str, Any]:
        """``input.analysis``: parsed facts for the parameters the catalogue types.

        Pure and deterministic (:func:`aarm_pdp.analysis.analyse`); a tool with no
        analysed parameter costs one dictionary look-up. Long texts (a big shell script
        or SQL batch can take a parser hundreds of milliseconds) are parsed off the
        event loop, so one such request does not stall the others.
        """
        action = request.action
        types = self._catalogue.analysis_types(action.name)
        if not types:
            return analyse(action.parameters, types)
        params = action.parameters
        size = sum(len(v) for n in types if isinstance(v := params.get(n), str))
        if size <= _INLINE_ANALYSIS_CHARS:
            return analyse(params, types)
        return await asyncio.to_thread(analyse, params, types)

    def _failed(self, code: ErrorCode, detail: str = "") -> DecisionResult:
        self._metrics.errors.labels(code.value).inc()
        self._metrics.fail_closed.labels(code.value).inc()
        return fail_closed(code, detail)
