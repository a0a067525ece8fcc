"""The Redis session store's memory bounds against a real redis-server.

One session's state by bytes, its context log to a window (entries and bytes) that
still verifies against the running hash, a tenant's sessions by count, a tenant's open
tickets by count and bytes, released when they close.
"""

from __future__ import annotations

import uuid

import orjson
import pytest
from aarm_pdp.errors import BudgetExhausted, ErrorCode
from aarm_pdp.model.decision import Decision, DecisionResult, RiskLevel
from aarm_pdp.model.request import Action, ActionRequest, Identity
from aarm_pdp.session import state as st
from aarm_pdp.session.catalogue import Catalogue
from aarm_pdp.session.context import SessionContext
from aarm_pdp.session.redis_store import RedisSessionStore
from aarm_pdp.session.store import SessionBounds, TicketBounds, session_key

from tests.support.processes import RedisServer

pytestmark = pytest.mark.integration
NOW = 1_795_658_400_000_000_000
ALLOW = DecisionResult(decision=Decision.ALLOW, reasons=(), risk_level=RiskLevel.LOW)


def _ident(session: str) -> Identity:
    return Identity(tenant="acme", human="alice", service="svc", agent="a-1", session_id=session)


async def _store(redis_server: RedisServer, **kw: object) -> RedisSessionStore:
    store = RedisSessionStore(redis_server.url, prefix=f"b{uuid.uuid4().hex[:8]}:", **kw)  # type: ignore[arg-type]
    await store.mark_revocations_loaded()
    return store


async def test_the_log_is_a_verifiable_window_and_the_state_is_bounded(
    redis_server: RedisServer,
) -> None:
    bounds = SessionBounds(log_entries=200, log_bytes=40_000)
    store = await _store(redis_server, bounds=bounds)
    ctx = SessionContext(store, Catalogue)
    ident = _ident("s-long")
    req = ActionRequest(
        request_id="",
        identity=ident,
        action=Action(tool="db", operation="query", parameters={"table": "t"}),
    )
    try:
        for n in range(1000):
            prepared = await ctx.prepare(req, NOW + n)
            await ctx.commit(prepared, req, f"d-{n}", ALLOW, NOW + n)
        key = session_key("acme", "s-long")
        raw = (await store.load(key, [], "acme", [])).state
        assert raw is not None and len(raw) <= bounds.max_state_bytes
        state = st.SessionState.from_bytes(raw)
        window = await store.log_window(key)
        log_bytes = sum(map(len, window.entries))
        assert len(window.entries) <= 200 and log_bytes <= 40_000
        assert window.dropped + len(window.entries) == state.log_len == 1000
        entries = [orjson.loads(e) for e in window.entries]
        assert st.verify_chain(entries, state.log_head, start=window.base) is None
        assert st.verify_chain(entries[1:], state.log_head, start=window.base) == 0
        print(
            f"\nredis, 1 000 actions: state {len(raw)} B, log window "
            f"{len(window.entries)} entries / {log_bytes} B, dropped {window.dropped}"
        )
    finally:
        await store.aclose()


async def test_a_state_over_its_bound_and_a_tenant_over_its_count_are_refused(
    redis_server: RedisServer,
) -> None:
    store = await _store(
        redis_server, bounds=SessionBounds(max_state_bytes=1000, tenant_sessions=2)
    )

    def blob(size: int):  # type: ignore[no-untyped-def]
        def apply(raw: bytes | None) -> tuple[bytes, None]:
            return b"x" * size, None

        return apply

    try:
        await store.update("k1", blob(1000), lambda _: [b'{"hash":"h1"}'], "acme")
        with pytest.raises(BudgetExhausted) as exc:
            await store.update("k1", blob(1001), lambda _: [], "acme")
        assert exc.value.code is ErrorCode.SESSION_BUDGET_EXHAUSTED
        assert (await store.load("k1", [], "acme", [])).state == b"x" * 1000
        await store.update("k2", blob(10), lambda _: [], "acme")
        with pytest.raises(BudgetExhausted):
            await store.update("k3", blob(10), lambda _: [], "acme")  # a third session
        assert (await store.load("k3", [], "acme", [])).state is None  # nothing written
        await store.update("k1", blob(20), lambda _: [], "acme")  # existing ones go on
        await store.update("k3", blob(10), lambda _: [], "other")  # other tenant: own count
        await store.delete("k2", "acme")
        await store.update("k4", blob(10), lambda _: [], "acme")  # room again
        refusals = {s.store: s.refusals for s in store.bound_stats()}
        assert refusals["sessions"] == {"state": 1, "tenant": 1}
    finally:
        await store.aclose()


async def test_a_tenants_open_tickets_are_bounded_and_released_when_closed(
    redis_server: RedisServer,
) -> None:
    store = await _store(
        redis_server, ticket_bounds=TicketBounds(tenant_bytes=3000, tenant_entries=5)
    )
    try:
        for i in range(3):
            await store.ticket_create(f"t{i}", b"x" * 1000, "deferral:acme", NOW)
        with pytest.raises(BudgetExhausted) as exc:
            await store.ticket_create("t3", b"x" * 10, "deferral:acme", NOW)
        assert exc.value.code is ErrorCode.TICKET_BUDGET_EXHAUSTED
        with pytest.raises(BudgetExhausted):
            await store.ticket_room("deferral:acme", 10)
        assert await store.ticket_get("t3") is None
        await store.ticket_room("deferral:other", 10)  # another tenant has room
        # Closing (settling) a ticket releases its bytes; it shrinks and stays readable.
        done: bytes = await store.ticket_update("t0", lambda raw: (b"y", b"y"), "deferral:acme")
        assert done == b"y" and await store.ticket_get("t0") == b"y"
        await store.ticket_create("t3", b"x" * 1000, "deferral:acme", NOW)
        assert len(await store.tickets_pending("deferral:acme")) == 3
        for i in range(4, 9):
            try:
                await store.ticket_create(f"t{i}", b"x", "approval:acme", NOW)
            except BudgetExhausted:
                break
        assert {s.store: s.refusals for s in store.bound_stats()}["tickets"]["tenant"] >= 2
    finally:
        await store.aclose()


async def test_a_tenants_session_bytes_are_bounded(redis_server: RedisServer) -> None:
    store = await _store(
        redis_server, bounds=SessionBounds(max_state_bytes=2000, tenant_bytes=3000)
    )

    def blob(size: int):  # type: ignore[no-untyped-def]
        def apply(raw: bytes | None) -> tuple[bytes, None]:
            return b"x" * size, None

        return apply

    try:
        await store.update("k1", blob(1500), lambda _: [], "acme")
        await store.update("k2", blob(1400), lambda _: [], "acme")
        with pytest.raises(BudgetExhausted) as exc:
            await store.update("k2", blob(1600), lambda _: [], "acme")  # 3 100 > 3 000
        assert exc.value.code is ErrorCode.SESSION_BUDGET_EXHAUSTED
        assert (await store.load("k2", [], "acme", [])).state == b"x" * 1400
        await store.update("k1", blob(100), lambda _: [], "acme")  # shrinking always fits
        await store.update("k2", blob(1600), lambda _: [], "acme")
        with pytest.raises(BudgetExhausted):
            await store.update("k3", blob(1400), lambda _: [b'{"hash":"h"}'], "acme")
        await store.delete("k2", "acme")  # its bytes are released
        await store.update("k3", blob(1400), lambda _: [b'{"hash":"h"}'], "acme")
    finally:
        await store.aclose()
