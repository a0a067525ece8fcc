"""Issue 14 item 2: every in-process cache and store is bounded by bytes and per tenant.

The numbers in docs/performance.md ("Memory bounds") come from these tests (run with
``-s``: each prints what it measured).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest
from aarm_pdp.approvals import tickets as tk
from aarm_pdp.approvals.workflow import Workflow
from aarm_pdp.decision.idempotency import IdempotencyCache, record_size
from aarm_pdp.errors import BudgetExhausted, ErrorCode
from aarm_pdp.model.decision import (
    Decision,
    DecisionRecord,
    DecisionResult,
    Deferral,
    PolicyVersion,
    Reason,
    RiskLevel,
)
from aarm_pdp.model.request import Action, ActionRequest, Identity
from aarm_pdp.session import context as session_context
from aarm_pdp.session import state as st
from aarm_pdp.session.catalogue import Catalogue
from aarm_pdp.session.context import SessionContext
from aarm_pdp.session.store import (
    MemorySessionStore,
    SessionBounds,
    TicketBounds,
    session_key,
)

IDENT = Identity(tenant="acme", human="alice", service="svc", agent="a-1", session_id="s-1")
ALLOW = DecisionResult(decision=Decision.ALLOW, reasons=(), risk_level=RiskLevel.LOW)
POLICY = PolicyVersion(revision="r1", hash="0" * 64)
MIB = 1 << 20
BIG = {f"k{i}": "y" * 62_500 for i in range(16)}  # ~1 MB of parameters
NOW = 1_795_658_400_000_000_000


def _request(ident: Identity = IDENT, params: dict[str, Any] | None = None) -> ActionRequest:
    return ActionRequest(
        request_id="",
        identity=ident,
        action=Action(tool="db", operation="query", parameters=params or {"table": "t"}),
    )


# -- the context log: a window plus the running hash ------------------------------


async def test_10000_actions_keep_the_log_a_window_and_the_state_bounded() -> None:
    bounds = SessionBounds()
    store = MemorySessionStore(bounds=bounds)
    ctx = SessionContext(store, Catalogue)
    req = _request()
    for n in range(10_000):
        prepared = await ctx.prepare(req, NOW + n)
        await ctx.commit(prepared, req, f"d-{n}", ALLOW, NOW + n)
        if n % 10 == 0:
            await ctx.record_outcome(
                IDENT,
                decision_id=f"d-{n}",
                executed=True,
                classification="INTERNAL",
                labels=(),
                texts=[f"row {n}"],
                trust=True,
                output_digest="",
                now_ns=NOW + n,
            )
    key = session_key("acme", "s-1")
    raw = (await store.load(key, [], "acme", [])).state
    assert raw is not None
    state = st.SessionState.from_bytes(raw)
    window = await store.log_window(key)
    log_bytes = sum(map(len, window.entries))
    assert state.log_len == 11_000 == window.dropped + len(window.entries)
    assert len(window.entries) <= bounds.log_entries
    assert log_bytes <= bounds.log_bytes
    assert len(raw) <= bounds.max_state_bytes
    entries = [orjson.loads(e) for e in window.entries]
    # The window verifies against the running hash, from the hash it starts at...
    assert st.verify_chain(entries, state.log_head, start=window.base) is None
    assert window.base == entries[0]["prev"] != st.GENESIS
    # ...and an edit, a dropped entry or another start does not.
    edited = [dict(e) for e in entries]
    edited[500]["decision"] = "DENY"
    assert st.verify_chain(edited, state.log_head, start=window.base) == 500
    assert st.verify_chain(entries[1:], state.log_head, start=window.base) == 0
    assert st.verify_chain(entries, state.log_head) == 0
    stats = store.bound_stats()[0]
    assert stats.bytes >= len(raw) + log_bytes  # and the provenance index
    assert stats.bytes <= bounds.tenant_bytes
    print(
        f"\n10 000 actions (+1 000 outcomes): state {len(raw)} B, log window "
        f"{len(window.entries)} entries / {log_bytes} B (dropped {window.dropped}), "
        f"store charged {stats.bytes} B"
    )


async def test_a_state_over_its_bound_is_refused_not_written() -> None:
    store = MemorySessionStore(bounds=SessionBounds(max_state_bytes=2048))
    key = session_key("acme", "s-1")

    def grow(size: int):  # type: ignore[no-untyped-def]
        def apply(raw: bytes | None) -> tuple[bytes, None]:
            return b"x" * size, None

        return apply

    await store.update(key, grow(2048), lambda _: [], "acme")
    with pytest.raises(BudgetExhausted) as exc:
        await store.update(key, grow(2049), lambda _: [], "acme")
    assert exc.value.code is ErrorCode.SESSION_BUDGET_EXHAUSTED
    assert (await store.load(key, [], "acme", [])).state == b"x" * 2048
    assert store.bound_stats()[0].refusals == {"state": 1}


async def test_a_full_tenant_evicts_idle_sessions_then_refuses_new_ones() -> None:
    now = [0.0]
    bounds = SessionBounds(tenant_sessions=3, evict_idle_seconds=60)
    store = MemorySessionStore(clock=lambda: now[0], bounds=bounds)
    ctx = SessionContext(store, Catalogue)

    async def act(session: str, tenant: str = "acme") -> None:
        ident = Identity(
            tenant=tenant, human="alice", service="svc", agent="a-1", session_id=session
        )
        req = _request(ident)
        prepared = await ctx.prepare(req, NOW)
        await ctx.commit(prepared, req, "d", ALLOW, NOW)

    for s in ("s1", "s2", "s3"):
        await act(s)
    with pytest.raises(BudgetExhausted) as exc:
        await act("s4")  # all three active: refused, none dropped
    assert exc.value.code is ErrorCode.SESSION_BUDGET_EXHAUSTED
    await act("s1", tenant="other")  # another tenant has its own budget
    now[0] = 61.0
    await act("s2")  # s2 active again; s1 and s3 idle
    await act("s4")  # room made by evicting the oldest idle session: s1
    assert len(store) == 4
    stats = store.bound_stats()[0]
    assert stats.evictions == {"idle": 1} and stats.refusals == {"tenant": 1}
    # An evicted session is refused, not restarted with its context forgotten...
    with pytest.raises(BudgetExhausted):
        await act("s1")
    # ...while settling a ticket of it is a no-op, as for an expired one.
    assert await ctx.settle("acme", "s1", "d", "DENY", "timeout", {}, NOW) == ""
    assert len(store) == 4


async def test_the_provenance_index_is_charged_to_the_tenant() -> None:
    store = MemorySessionStore()
    ctx = SessionContext(store, Catalogue)
    req = _request()
    prepared = await ctx.prepare(req, NOW)
    await ctx.commit(prepared, req, "d-1", ALLOW, NOW)
    before = store.bound_stats()[0].bytes
    texts = [f"invoice INV-{i} to account DE{i:020d}" for i in range(50)]
    await ctx.record_outcome(
        IDENT,
        decision_id="d-1",
        executed=True,
        classification=None,
        labels=(),
        texts=texts,
        trust=False,
        output_digest="",
        now_ns=NOW,
    )
    key = session_key("acme", "s-1")
    raw = (await store.load(key, [], "acme", [])).state
    assert raw is not None
    window = await store.log_window(key)
    after = store.bound_stats()[0].bytes
    index_bytes = after - len(raw) - sum(map(len, window.entries))
    assert index_bytes > 50 * 40  # (32 hex digits + mask) per fingerprint
    assert after > before


async def test_large_outputs_are_fingerprinted_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threaded: list[int] = []
    real = asyncio.to_thread

    async def to_thread(fn: Any, *args: Any) -> Any:
        threaded.append(sum(map(len, args[0])))
        return await real(fn, *args)

    monkeypatch.setattr(asyncio, "to_thread", to_thread)
    small = await session_context._fingerprints(["pay 25000 to Darius Webb"])
    large = await session_context._fingerprints(["pay 25000 to Darius Webb " * 40])
    assert threaded == [1000]
    assert small and large


# -- tickets: compact, bounded per tenant, open ones never dropped ------------------


def _deferral(seconds: int = 600) -> DecisionResult:
    return DecisionResult(
        decision=Decision.DEFER,
        reasons=(Reason(code="needs_context", rule_id="r", message="m"),),
        deferral=Deferral(trigger="t", context_needed=("window",), timeout_seconds=seconds),
        risk_level=RiskLevel.HIGH,
    )


def _step_up() -> DecisionResult:
    from aarm_pdp.model.decision import Approval

    return DecisionResult(
        decision=Decision.STEP_UP,
        reasons=(Reason(code="needs_approval", rule_id="r", message="m"),),
        approval=Approval(approvers=("owners",), timeout_seconds=600),
        risk_level=RiskLevel.HIGH,
    )


def _snapshot(request: ActionRequest) -> dict[str, Any]:
    return {
        "source": "step_up",
        "original_request": {"text": "clean up " * 3000},
        "action": {"tool": "db", "operation": "query", "parameters": request.action.parameters},
        "identity": {"tenant": "acme", "principal": "pep", "human": "alice"},
        "prior_actions": [],
    }


async def _noop_settle(*_: Any) -> None:
    return None


async def test_a_ticket_keeps_a_bounded_view_of_a_1mb_action() -> None:
    store = MemorySessionStore()
    wf = Workflow(store, settle=_noop_settle)
    request = _request(params=BIG)
    raw = b"\x0a" * 1_000_000
    sizes = {}
    for kind, decision in (("approval", _step_up()), ("deferral", _deferral())):
        tid = await wf.open(
            kind=kind,
            request=request,
            raw_request=raw,
            decision_id=kind,
            decision=decision,
            policy=POLICY,
            context=_snapshot(request),
            now_ns=NOW,
        )
        raw_ticket = await store.ticket_get(tid)
        assert raw_ticket is not None
        sizes[kind] = len(raw_ticket)
        ticket = tk.Ticket.from_bytes(raw_ticket)
        params = ticket.context["action"]["parameters"]
        assert params["k0"].startswith("y" * tk.TEXT_CHARS)
        assert "62500 chars, sha256" in params["k0"]
        assert len(orjson.dumps(ticket.context)) < 2 * tk.CONTEXT_CHARS
    assert sizes["approval"] < 40_000  # was 2 242 270 B: request copy + full parameters
    assert 1_000_000 * 4 // 3 < sizes["deferral"] < 1_000_000 * 4 // 3 + 40_000
    print(
        f"\none ticket of a 1 MB request: approval {sizes['approval']} B, "
        f"deferral {sizes['deferral']} B (was 2 242 270 B)"
    )


async def test_1000_tickets_of_1mb_requests_stay_under_the_byte_bound() -> None:
    tb = TicketBounds()
    store = MemorySessionStore(ticket_bounds=tb)
    wf = Workflow(store, settle=_noop_settle)
    request = _request(params={"table": "t"})  # the parameters' view: the test above
    raw = b"\x0a" * 1_000_000  # the DecideRequest bytes: 1 MB
    snapshot = _snapshot(request)
    # 1 000 approvals: compact (no request copy, the approver's view cut): all fit.
    for i in range(1000):
        await wf.open(
            kind="approval",
            request=request,
            raw_request=raw,
            decision_id=f"a-{i}",
            decision=_step_up(),
            policy=POLICY,
            context=snapshot,
            now_ns=NOW,
        )
    approvals = store.bound_stats()[1]
    per_approval = approvals.bytes // approvals.entries
    assert approvals.entries == 1000 and per_approval < 4_000
    # 1 000 deferrals: each keeps the request once (base64), until the tenant is full.
    refused: list[BudgetExhausted] = []
    for i in range(1000):
        try:
            await wf.open(
                kind="deferral",
                request=request,
                raw_request=raw,
                decision_id=f"d-{i}",
                decision=_deferral(),
                policy=POLICY,
                context=snapshot,
                now_ns=NOW,
            )
        except BudgetExhausted as exc:
            refused.append(exc)
    stats = store.bound_stats()[1]
    opened = stats.entries - 1000
    assert stats.bytes <= tb.tenant_bytes and stats.largest_tenant_bytes <= tb.tenant_bytes
    assert opened + len(refused) == 1000 and 30 < opened < 60
    assert {e.code for e in refused} == {ErrorCode.TICKET_BUDGET_EXHAUSTED}
    assert stats.refusals == {"tenant": len(refused)} and stats.evictions == {}
    pending = await wf.pending("deferral", "acme")
    assert len(pending) == opened  # every open ticket still there
    one = pending[0]
    assert base64.b64decode(one.request_b64) == raw and one.request_bytes_len == len(raw)
    # Settled, a ticket drops its request copy; settled tickets make room for new ones.
    expired = 0
    while swept := await wf.sweep(NOW + 601 * 10**9):
        expired += swept
    assert expired == opened + 1000
    settled = store.bound_stats()[1]
    assert settled.bytes < (1000 + opened) * 4_000
    await wf.open(
        kind="deferral",
        request=request,
        raw_request=raw,
        decision_id="d-again",
        decision=_deferral(),
        policy=POLICY,
        context=snapshot,
        now_ns=NOW + 602 * 10**9,
    )
    print(
        f"\n1 000 approvals of 1 MB requests: {approvals.bytes} B ({per_approval} B each); "
        f"deferrals: {opened} open ({stats.bytes - approvals.bytes} B, "
        f"{(stats.bytes - approvals.bytes) // opened} B each), {len(refused)} refused "
        f"ticket_budget_exhausted; tenant budget {tb.tenant_bytes} B; after expiry "
        f"{settled.bytes} B for {settled.entries} settled tickets"
    )


def test_a_ticket_from_a_newer_version_still_loads() -> None:
    t = tk.Ticket(
        ticket_id="t",
        kind="deferral",
        decision_id="d",
        tenant="acme",
        session_id="s",
        status=tk.PENDING,
        created_ns=1,
        deadline_ns=2,
        action_hash="a",
        request_b64="",
        policy_hash="p",
        policy_revision="r",
    )
    doc = {**orjson.loads(t.to_bytes()), "added_later": [1, 2]}
    assert tk.Ticket.from_bytes(orjson.dumps(doc)) == t


# -- the idempotency cache ---------------------------------------------------------


def _record(i: int, pad: int) -> DecisionRecord:
    return DecisionRecord(
        decision_id=f"d-{i}",
        request_id=f"r-{i}",
        result=ALLOW,
        receipt={"action": {"parameters": {"blob": "z" * pad}}},
    )


async def test_the_idempotency_cache_is_bounded_by_bytes_per_tenant_and_in_all() -> None:
    cache = IdempotencyCache(100_000, tenant_bytes=1 * MIB, total_bytes=2 * MIB)
    size = record_size(_record(0, 100_000))
    for i in range(60):
        tenant = "abc"[i % 3]
        key = (tenant, "s", f"r-{i}", "pep")
        cache.begin(key, "fp")
        cache.finish(key, _record(i, 100_000), NOW, store=True)
        for t in "abc":
            assert cache.usage(t)[0] <= 1 * MIB
        assert cache.usage()[0] <= 2 * MIB
    assert cache.usage()[1] == (2 * MIB) // (size + 40)  # the newest that fit
    newest = ("c", "s", "r-59", "pep")
    assert isinstance(cache.lookup(newest, "fp", NOW), DecisionRecord)
    assert cache.lookup(("a", "s", "r-0", "pep"), "fp", NOW) is None  # evicted: judged anew
    # A record larger than a tenant's whole budget is not cached at all.
    huge = ("a", "s", "r-huge", "pep")
    cache.begin(huge, "fp")
    cache.finish(huge, _record(99, 2 * MIB), NOW, store=True)
    assert cache.lookup(huge, "fp", NOW) is None
    stats = cache.bound_stats()[0]
    assert stats.refusals == {"entry": 1} and stats.evictions["budget"] > 0
    print(
        f"\nidempotency: {stats.entries} entries of {size} B = {stats.bytes} B "
        f"(budget {2 * MIB} B in all, {1 * MIB} B per tenant); "
        f"{stats.evictions['budget']} evicted"
    )


async def test_idempotency_entries_cap_still_holds() -> None:
    cache = IdempotencyCache(3)
    for i in range(5):
        key = ("a", "s", f"r-{i}", "p")
        cache.begin(key, "fp")
        cache.finish(key, _record(i, 10), NOW, store=True)
    assert len(cache) == 3
    off = IdempotencyCache(0)
    off.begin(("a", "s", "r", "p"), "fp")
    off.finish(("a", "s", "r", "p"), _record(0, 10), NOW, store=True)
    assert len(off) == 0
