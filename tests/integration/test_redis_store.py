"""The Redis session store against a real redis-server: atomic, shared, fail-closed."""

from __future__ import annotations

import asyncio

import pytest
from aarm_pdp.errors import SessionStoreUnavailable
from aarm_pdp.session import state as st
from aarm_pdp.session.redis_store import RedisSessionStore
from aarm_pdp.session.store import MemorySessionStore, session_key

from tests.support.ports import free_port
from tests.support.processes import RedisServer

pytestmark = pytest.mark.integration
T0 = 1_795_658_400 * 10**9


def _append(i: int):  # type: ignore[no-untyped-def]
    def apply(raw: bytes | None) -> tuple[bytes, dict[str, object]]:
        s = (
            st.SessionState.from_bytes(raw)
            if raw
            else st.new_session("s", tenant="t", human="h", service="", agent="a", now_ns=T0)
        )
        entry = st.record_decision(
            s,
            decision_id=f"d-{i}",
            name="db.query",
            category="read",
            verdict="ALLOW",
            classification=None,
            labels=(),
            defer_depth=0,
            drift=None,
            now_ns=T0 + i,
        )
        return s.to_bytes(), entry

    return apply


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_concurrent_updates_from_two_clients_lose_nothing(
    redis_server: RedisServer, kind: str
) -> None:
    if kind == "redis":
        a = RedisSessionStore(redis_server.url, prefix="t1:")
        b = RedisSessionStore(redis_server.url, prefix="t1:")
        await a.mark_revocations_loaded()
    else:
        a = b = MemorySessionStore()  # type: ignore[assignment]
    key = session_key("t", f"s-{kind}")
    n = 100
    await asyncio.gather(
        *(
            (a if i % 2 else b).update(key, _append(i), lambda e: [str(e).encode()])
            for i in range(n)
        )
    )
    raw = (await a.load(key, [], "t", [])).state
    assert raw is not None
    state = st.SessionState.from_bytes(raw)
    assert state.action_count == n
    assert state.log_len == n
    assert len(await a.read_log(key)) == n
    await a.aclose()
    await b.aclose()


async def test_index_and_artifacts(redis_server: RedisServer) -> None:
    store = RedisSessionStore(redis_server.url, prefix="t2:")
    key = session_key("t", "s")
    with pytest.raises(SessionStoreUnavailable):  # an empty store has not had its revocations
        await store.load(key, [], "t", [])
    assert not await store.revocations_current()
    await store.mark_revocations_loaded()
    assert await store.revocations_current()
    await store.index_add(key, {"aa": 1, "bb": 4})
    await store.index_add(key, {"aa": 4})
    await store.artifacts_raise("t", {"p1": 2})
    await store.artifacts_raise("t", {"p1": 1})  # never lowers
    loaded = await store.load(key, ["aa", "bb", "cc"], "t", ["p1", "p2"], ["bob"])
    assert loaded.masks == {"aa": 5, "bb": 4}
    assert loaded.artifact_level == 2
    assert loaded.revoked is False
    await store.revoke("t", "bob")
    assert (await store.load(key, [], "t", [], ["alice", "bob"])).revoked is True
    assert (await store.load(key, [], "other-tenant", ["p1"], ["bob"])).artifact_level == -1
    assert (await store.load(key, [], "other-tenant", [], ["bob"])).revoked is False
    await store.aclose()


async def test_redis_down_raises_store_unavailable() -> None:
    store = RedisSessionStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    assert not await store.healthy()
    with pytest.raises(SessionStoreUnavailable):
        await store.load("k", [], "t", [])
    with pytest.raises(SessionStoreUnavailable):
        await store.update("k", _append(0), lambda e: [])
    await store.aclose()
