"""SessionContext over the memory store: the decoded-state cache never serves stale state."""

from __future__ import annotations

import orjson
from aarm_pdp.model.decision import Decision, DecisionResult, RiskLevel
from aarm_pdp.model.request import Action, ActionRequest, Identity
from aarm_pdp.session import state as st
from aarm_pdp.session.catalogue import Catalogue
from aarm_pdp.session.context import DecodedStates, SessionContext
from aarm_pdp.session.store import MemorySessionStore, session_key

IDENT = Identity(tenant="acme", human="alice", service="svc", agent="a-1", session_id="s-1")
ALLOW = DecisionResult(
    decision=Decision.ALLOW, reasons=(), risk_level=RiskLevel.LOW, risk_score=0.1
)


def request(tool: str = "db", operation: str = "query") -> ActionRequest:
    return ActionRequest(
        request_id="",
        identity=IDENT,
        action=Action(tool=tool, operation=operation, parameters={"table": "customers"}),
    )


async def decide(ctx: SessionContext, n: int, now_ns: int) -> dict[str, object]:
    req = request()
    prepared = await ctx.prepare(req, now_ns)
    await ctx.commit(prepared, req, f"d-{n}", ALLOW, now_ns)
    return prepared.input_parts


async def test_cached_state_follows_every_write() -> None:
    store = MemorySessionStore(ttl_seconds=3600)
    ctx = SessionContext(store, Catalogue)
    for n in range(5):
        parts = await decide(ctx, n, 1_000 + n)
        assert parts["session"]["action_count"] == n  # type: ignore[index]
    # A write by another path (an outcome RPC) changes the blob: the next Decide sees it.
    await ctx.record_outcome(
        IDENT,
        decision_id="d-4",
        executed=True,
        classification="RESTRICTED",
        labels=("pii",),
        texts=[],
        trust=True,
        output_digest="",
        now_ns=2_000,
    )
    parts = await decide(ctx, 5, 3_000)
    session = parts["session"]
    assert session["highest_classification"] == "RESTRICTED"  # type: ignore[index]
    assert session["labels"] == ["pii"]  # type: ignore[index]
    assert session["recent"][-1]["outcome"] == "executed"  # type: ignore[index]
    # ...and so does a write that bypasses SessionContext entirely (another replica).
    key = session_key("acme", "s-1")

    def bump(raw: bytes | None) -> tuple[bytes, None]:
        assert raw is not None
        state = st.SessionState.from_bytes(raw)
        state.action_count = 100
        return state.to_bytes(), None

    await store.update(key, bump, lambda _r: [])
    parts = await decide(ctx, 6, 4_000)
    assert parts["session"]["action_count"] == 100  # type: ignore[index]
    # The stored state equals what a decode-everything path would give.
    raw = (await store.load(key, [], "acme", [])).state
    assert raw is not None
    assert st.SessionState.from_bytes(raw).action_count == 101
    entries = [orjson.loads(b) for b in await store.read_log(key)]
    assert st.verify_chain(entries, st.SessionState.from_bytes(raw).log_head) is None


def test_decoded_states_are_tied_to_their_blob_and_bounded() -> None:
    cache = DecodedStates(size=2)
    a = st.SessionState(session_id="a")
    cache.put("a", b"one", a)
    assert cache.peek("a", b"one") is a
    assert cache.peek("a", b"two") is None  # the blob changed: not this state
    assert cache.take("a", b"one") is a
    assert cache.peek("a", b"one") is None  # taken: never handed out twice
    for key in ("x", "y", "z"):
        cache.put(key, key.encode(), st.SessionState(session_id=key))
    assert cache.peek("x", b"x") is None and cache.peek("z", b"z") is not None


async def test_memory_store_forgets_settled_tickets_after_the_ticket_ttl() -> None:
    from aarm_pdp.session.store import TICKET_TTL_SECONDS

    now = [1000.0]
    store = MemorySessionStore(clock=lambda: now[0])
    await store.ticket_create("t-old", b"old", "approval:acme", 1)
    await store.ticket_update("t-old", lambda raw: (b"granted", None), "approval:acme")
    now[0] += TICKET_TTL_SECONDS / 2
    await store.ticket_create("t-new", b"new", "approval:acme", 2)
    assert await store.ticket_get("t-old") == b"granted"  # still within the TTL
    now[0] += TICKET_TTL_SECONDS / 2 + 1
    await store.ticket_create("t-newer", b"newer", "approval:acme", 3)
    assert await store.ticket_get("t-old") is None  # a week after its last change
    assert await store.ticket_get("t-new") == b"new"
    assert await store.tickets_pending("approval:acme") == [b"new", b"newer"]
