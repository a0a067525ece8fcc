"""The receipt log: group commit, fail-closed, back-pressure, validation, replicas."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aarm_pdp.errors import ErrorCode, ReceiptInvalid, ReceiptStoreUnavailable
from aarm_pdp.receipts import KeyRing, MemoryReceiptStore, ReceiptLog, verify_chain

from tests.unit.test_receipts_verify import body


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate("k-log")


async def test_group_commit_batches_concurrent_appends(ring: KeyRing) -> None:
    store = MemoryReceiptStore(delay=0.01)
    log = ReceiptLog(store, ring)
    n = 200
    receipts = await asyncio.gather(*(log.append(body(i, session=f"s-{i % 4}")) for i in range(n)))
    assert len(receipts) == n
    assert store.commits == log.stats.batches < n / 4
    assert log.stats.max_batch > 1
    for s in range(4):
        chain = await store.list_session("acme", f"s-{s}")
        assert len(chain) == n // 4
        assert verify_chain(chain, ring.jwks()).ok
    # what append returned is what was stored
    assert await store.get(receipts[17]["receipt_id"]) == receipts[17]
    await log.aclose()


async def test_batch_size_one_commits_each_receipt_alone(ring: KeyRing) -> None:
    store = MemoryReceiptStore(delay=0.001)
    log = ReceiptLog(store, ring, max_batch=1)
    await asyncio.gather(*(log.append(body(i)) for i in range(20)))
    assert store.commits == 20
    assert log.stats.max_batch == 1
    await log.aclose()


async def test_append_returns_only_after_commit(ring: KeyRing) -> None:
    store = MemoryReceiptStore(delay=0.05)
    log = ReceiptLog(store, ring)
    task = asyncio.create_task(log.append(body(0)))
    await asyncio.sleep(0.02)
    assert not task.done()
    assert await store.count() == 0
    receipt = await task
    assert await store.get(receipt["receipt_id"]) == receipt
    await log.aclose()


async def test_store_failure_fails_every_waiter_in_the_batch(ring: KeyRing) -> None:
    store = MemoryReceiptStore(delay=0.02)
    log = ReceiptLog(store, ring)
    first = asyncio.create_task(log.append(body(0)))
    await asyncio.sleep(0.005)  # first batch in flight
    store.unavailable = True
    results = await asyncio.gather(
        first, *(log.append(body(i)) for i in range(1, 10)), return_exceptions=True
    )
    assert all(isinstance(r, ReceiptStoreUnavailable) for r in results)
    assert all(r.code == ErrorCode.RECEIPT_STORE_UNAVAILABLE for r in results)  # type: ignore[union-attr]
    assert log.stats.store_failures >= 1
    # and it recovers once the store is back
    store.unavailable = False
    receipt = await log.append(body(10))
    assert receipt["chain"]["seq"] == 1
    assert await log.healthy()
    await log.aclose()


async def test_full_queue_is_back_pressure_then_fail_closed(ring: KeyRing) -> None:
    store = MemoryReceiptStore(delay=0.3)
    log = ReceiptLog(store, ring, max_batch=1, max_pending=2, enqueue_timeout=0.05)
    tasks = [asyncio.create_task(log.append(body(i))) for i in range(6)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failed = [r for r in results if isinstance(r, ReceiptStoreUnavailable)]
    stored = [r for r in results if isinstance(r, dict)]
    assert failed and stored
    assert "queue full" in failed[0].detail
    assert await store.count() == len(stored)
    await log.aclose()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda b: b.pop("receipt_id"), "receipt_id"),
        (lambda b: b.__setitem__("kind", ""), "kind"),
        (lambda b: b.__setitem__("issued_at", "yesterday"), "RFC 3339"),
        (lambda b: b.__setitem__("issued_at", "2026-05-01T10:00:00"), "UTC offset"),
        (lambda b: b.pop("chain"), "chain"),
        (lambda b: b["chain"].pop("session_id"), "chain"),
        (lambda b: b["chain"].__setitem__("seq", 4), "the log adds"),
        (lambda b: b.__setitem__("signature", {}), "signature"),
        (lambda b: b.__setitem__("version", "1.0"), "version"),
        (lambda b: b.__setitem__("big", 2**60 + 1), "canonicalisable"),  # no double is it
        (lambda b: b.__setitem__("nan", float("nan")), "canonicalisable"),
    ],
)
async def test_invalid_bodies_are_refused(ring: KeyRing, mutate: Any, match: str) -> None:
    log = ReceiptLog(MemoryReceiptStore(), ring)
    b = body(0)
    mutate(b)
    with pytest.raises(ReceiptInvalid, match=match):
        await log.append(b)
    await log.aclose()


async def test_duplicate_receipt_id_fails_alone(ring: KeyRing) -> None:
    store = MemoryReceiptStore(delay=0.01)
    log = ReceiptLog(store, ring)
    await log.append(body(0))
    results = await asyncio.gather(
        log.append(body(0)),  # stored already
        log.append(body(1)),
        log.append(body(1)),  # twice in one batch
        log.append(body(2)),
        return_exceptions=True,
    )
    assert isinstance(results[0], ReceiptInvalid)
    assert isinstance(results[1], dict)
    assert isinstance(results[2], ReceiptInvalid)
    assert isinstance(results[3], dict)
    chain = await store.list_session("acme", "s-1")
    assert [r["receipt_id"] for r in chain] == ["s-1-r0", "s-1-r1", "s-1-r2"]
    assert verify_chain(chain, ring.jwks()).ok
    await log.aclose()


async def test_nothing_is_appended_after_session_end(ring: KeyRing) -> None:
    store = MemoryReceiptStore()
    log = ReceiptLog(store, ring)
    await log.append(body(0))
    await log.append(body(1, kind="session_end"))
    with pytest.raises(ReceiptInvalid, match="already ended"):
        await log.append(body(2))
    # a fresh log (another replica, a restart) learns it from the store
    other = ReceiptLog(store, ring)
    with pytest.raises(ReceiptInvalid, match="already ended"):
        await other.append(body(3))
    assert verify_chain(
        await store.list_session("acme", "s-1"), ring.jwks(), require_complete=True
    ).ok
    await log.aclose()
    await other.aclose()


async def test_two_replicas_on_one_store_keep_one_chain(ring: KeyRing) -> None:
    store = MemoryReceiptStore(delay=0.002)
    a = ReceiptLog(store, ring)
    b = ReceiptLog(store, KeyRing.generate("k-replica-b"))
    n = 60
    await asyncio.gather(*((a if i % 2 else b).append(body(i)) for i in range(n)))
    chain = await store.list_session("acme", "s-1")
    assert [r["chain"]["seq"] for r in chain] == list(range(1, n + 1))
    jwks = {"keys": ring.jwks()["keys"] + b.keyring.jwks()["keys"]}
    assert verify_chain(chain, jwks).ok
    assert a.stats.conflicts + b.stats.conflicts > 0
    await a.aclose()
    await b.aclose()


async def test_restart_continues_the_chain(ring: KeyRing) -> None:
    store = MemoryReceiptStore()
    first = ReceiptLog(store, ring)
    await first.append(body(0))
    await first.aclose()
    second = ReceiptLog(store, ring)
    receipt = await second.append(body(1))
    assert receipt["chain"]["seq"] == 2
    await second.aclose()


async def test_a_new_chain_costs_no_head_read_and_a_known_one_one_conflict(
    ring: KeyRing,
) -> None:
    store = MemoryReceiptStore()
    reads: list[list[Any]] = []
    real_heads = store.heads

    async def counting_heads(keys: Any) -> Any:
        reads.append(list(keys))
        return await real_heads(keys)

    store.heads = counting_heads  # type: ignore[method-assign]
    first = ReceiptLog(store, ring)
    await first.append(body(0))
    await first.append(body(1))
    assert reads == [] and first.stats.conflicts == 0
    await first.aclose()
    # A restart does not know the head: seq 1 conflicts once, then it reads the store.
    second = ReceiptLog(store, ring)
    receipt = await second.append(body(2))
    assert receipt["chain"]["seq"] == 3
    assert second.stats.conflicts == 1 and reads == [[("acme", "s-1")]]
    await second.append(body(3))
    assert len(reads) == 1  # cached from then on
    assert verify_chain(await store.list_session("acme", "s-1"), ring.jwks()).ok
    await second.aclose()


async def test_closed_log_refuses_and_drains(ring: KeyRing) -> None:
    store = MemoryReceiptStore(delay=0.01)
    log = ReceiptLog(store, ring)
    tasks = [asyncio.create_task(log.append(body(i))) for i in range(10)]
    await asyncio.sleep(0)
    await log.aclose()
    assert all(isinstance(t.result(), dict) for t in tasks)
    with pytest.raises(ReceiptStoreUnavailable):
        await log.append(body(99))
    assert not await log.healthy()


async def test_a_cancelled_caller_still_gets_its_receipt_written(ring: KeyRing) -> None:
    store = MemoryReceiptStore(delay=0.02)
    log = ReceiptLog(store, ring)
    task = asyncio.create_task(log.append(body(0)))
    await asyncio.sleep(0.005)
    task.cancel()
    await log.aclose()
    assert await store.count() == 1
