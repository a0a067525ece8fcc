"""Receipt stores against a real PostgreSQL and a real SQLite file.

Append-only is enforced by the database, group commit holds under concurrency, two
"replicas" appending to one session still make one valid chain, and a dead store
fails every append closed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aarm_pdp.errors import ReceiptInvalid, ReceiptStoreUnavailable
from aarm_pdp.receipts import (
    KeyRing,
    PostgresReceiptStore,
    Reason,
    ReceiptLog,
    ReceiptStore,
    SqliteReceiptStore,
    canonicalize,
    cli,
    receipt_hash,
    verify_chain,
)

from tests.support.ports import free_port
from tests.unit.test_receipts_verify import body

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file path or a DSN to a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "receipts" / "receipts.db")
    return str(request.getfixturevalue("pg_dsn"))


def open_at(location: str) -> ReceiptStore:
    if location.startswith("postgresql://"):
        return PostgresReceiptStore(location, max_size=4)
    return SqliteReceiptStore(location)


@pytest.fixture
async def store(location: str) -> AsyncIterator[ReceiptStore]:
    s = open_at(location)
    await s.start()
    yield s
    await s.aclose()


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate("k-int")


def raw_sql(location: str, sql: str) -> None:
    """Run SQL behind the store's back, as an operator (or attacker) with a DB client."""
    if location.startswith("postgresql://"):
        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute(sql.replace("receipts", "aarm_receipts"))
    else:
        conn = sqlite3.connect(location, isolation_level=None)
        try:
            conn.execute(sql)
        finally:
            conn.close()


async def test_round_trip_is_byte_exact(store: ReceiptStore, ring: KeyRing) -> None:
    log = ReceiptLog(store, ring)
    written = [await log.append(body(i)) for i in range(3)]
    written.append(await log.append(body(3, kind="session_end")))
    await log.aclose()
    texts = await store.export("acme", "s-1")
    assert texts == [canonicalize(r).decode() for r in written]
    assert await store.list_session("acme", "s-1") == written
    assert await store.get("s-1-r2") == written[2]
    assert await store.get("nope") is None
    assert await store.list_by_decision("d-1") == [written[1]]
    assert await store.sessions() == [("acme", "s-1")]
    assert await store.count() == 4
    assert await store.healthy()
    heads = await store.heads([("acme", "s-1"), ("acme", "none")])
    assert heads == {("acme", "s-1"): (4, receipt_hash(texts[-1]), "session_end")}
    assert verify_chain(texts, ring.jwks(), require_complete=True).ok


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE receipts SET kind = 'edited' WHERE seq = 2",
        "UPDATE receipts SET canonical = canonical",
        "DELETE FROM receipts WHERE seq = 3",
        "DELETE FROM receipts",
    ],
)
async def test_update_and_delete_are_refused_by_the_database(
    store: ReceiptStore, location: str, ring: KeyRing, sql: str
) -> None:
    log = ReceiptLog(store, ring)
    for i in range(3):
        await log.append(body(i))
    await log.aclose()
    errors = (sqlite3.IntegrityError, psycopg.errors.RaiseException)
    with pytest.raises(errors, match="append-only"):
        raw_sql(location, sql)
    assert await store.count() == 3
    assert verify_chain(await store.export("acme", "s-1"), ring.jwks()).ok


async def test_backdoor_rewrites_are_refused_too(
    store: ReceiptStore, location: str, ring: KeyRing
) -> None:
    log = ReceiptLog(store, ring)
    await log.append(body(0))
    await log.aclose()
    if location.startswith("postgresql://"):
        with pytest.raises(psycopg.errors.RaiseException, match="TRUNCATE"):
            raw_sql(location, "TRUNCATE receipts")
        with pytest.raises(psycopg.errors.RaiseException, match="UPDATE"):
            raw_sql(
                location,
                "INSERT INTO receipts (receipt_id, tenant, session_id, seq, kind, issued_at,"
                " hash, canonical, body) SELECT receipt_id, tenant, session_id, seq, kind,"
                " issued_at, hash, canonical, body FROM receipts"
                " ON CONFLICT (receipt_id) DO UPDATE SET kind = 'x'",
            )
    else:
        with pytest.raises(sqlite3.IntegrityError, match="conflict"):
            raw_sql(
                location,
                "INSERT OR REPLACE INTO receipts (receipt_id, tenant, session_id, seq, kind,"
                " issued_at, hash, canonical) SELECT receipt_id, tenant, session_id, seq,"
                " 'x', issued_at, hash, canonical FROM receipts",
            )
    assert await store.count() == 1


async def test_group_commit_under_concurrency(store: ReceiptStore, ring: KeyRing) -> None:
    log = ReceiptLog(store, ring)
    sessions, per = 8, 40
    await asyncio.gather(
        *(log.append(body(i, session=f"s-{s}")) for i in range(per) for s in range(sessions))
    )
    assert await store.count() == sessions * per
    assert log.stats.batches < sessions * per / 4  # many appends share a commit
    for s in range(sessions):
        result = verify_chain(await store.export("acme", f"s-{s}"), ring.jwks())
        assert result.ok and result.receipts == per
    await log.aclose()


async def test_appends_ready_a_loop_iteration_later_share_the_commit(
    store: ReceiptStore, ring: KeyRing
) -> None:
    # Each append comes one or two event-loop iterations after the one that woke the
    # writer (a decision whose policy answer has just arrived): the writer lets those
    # iterations pass before it takes its batch, so they share one commit, records too.
    log = ReceiptLog(store, ring)
    await log.append(body(0, session="warm"))
    before = log.stats.batches

    async def late(i: int) -> None:
        for _ in range(i % 3):
            await asyncio.sleep(0)
        record = canonicalize({"input": {"i": i}, "policy": {"decision": "ALLOW"}}).decode()
        await log.append(body(i, session=f"late-{i}"), record=record)

    await asyncio.gather(*(late(i) for i in range(8)))
    assert log.stats.batches - before == 1
    assert await store.count() == 9
    records = await store.decision_records()
    assert sorted(r.record for r in records) == sorted(
        canonicalize({"input": {"i": i}, "policy": {"decision": "ALLOW"}}).decode()
        for i in range(8)
    )
    for i in range(8):
        result = verify_chain(await store.export("acme", f"late-{i}"), ring.jwks())
        assert result.ok and result.receipts == 1
    # Without group commit the writer does not wait: one commit per receipt.
    solo = ReceiptLog(store, ring, max_batch=1)
    await asyncio.gather(*(solo.append(body(i, session=f"solo-{i}")) for i in range(4)))
    assert solo.stats.batches == 4
    await solo.aclose()
    await log.aclose()


async def test_two_replicas_append_to_one_session(location: str) -> None:
    """Two ReceiptLogs, each with its own store connection(s) and its own key."""
    ring_a, ring_b = KeyRing.generate("k-a"), KeyRing.generate("k-b")
    store_a, store_b = open_at(location), open_at(location)
    a, b = ReceiptLog(store_a, ring_a), ReceiptLog(store_b, ring_b)
    n = 120
    results = await asyncio.gather(*((a if i % 2 else b).append(body(i)) for i in range(n - 1)))
    assert len(results) == n - 1
    await a.append(body(n - 1, kind="session_end"))
    with pytest.raises(ReceiptInvalid, match="already ended"):
        await b.append(body(n))
    texts = await store_a.export("acme", "s-1")
    jwks = {"keys": ring_a.jwks()["keys"] + ring_b.jwks()["keys"]}
    result = verify_chain(texts, jwks, require_complete=True)
    assert result.ok, result
    assert result.receipts == n
    assert {r["signature"]["key_id"] for r in await store_b.list_session("acme", "s-1")} == {
        "k-a",
        "k-b",
    }
    assert a.stats.conflicts + b.stats.conflicts > 0  # they did collide, and recovered
    for log, s in ((a, store_a), (b, store_b)):
        await log.aclose()
        await s.aclose()


async def test_duplicate_receipt_id_against_the_database(
    store: ReceiptStore, ring: KeyRing
) -> None:
    log = ReceiptLog(store, ring)
    await log.append(body(0))
    other_session = body(0, session="s-2")
    other_session["receipt_id"] = "s-1-r0"
    results = await asyncio.gather(
        log.append(other_session), log.append(body(1)), return_exceptions=True
    )
    assert isinstance(results[0], ReceiptInvalid)
    assert isinstance(results[1], dict)
    assert await store.count() == 2
    await log.aclose()


async def test_dead_postgres_fails_every_append_closed(ring: KeyRing) -> None:
    store = PostgresReceiptStore(
        f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", timeout=0.5
    )
    log = ReceiptLog(store, ring)
    results = await asyncio.gather(
        *(log.append(body(i)) for i in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, ReceiptStoreUnavailable) for r in results)
    assert not await store.healthy()
    assert not await log.healthy()
    await log.aclose()
    await store.aclose()


async def test_unwritable_sqlite_fails_every_append_closed(tmp_path: Path, ring: KeyRing) -> None:
    (tmp_path / "db").mkdir()  # a directory where the file should be
    store = SqliteReceiptStore(tmp_path / "db")
    log = ReceiptLog(store, ring)
    results = await asyncio.gather(*(log.append(body(i)) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, ReceiptStoreUnavailable) for r in results)
    await log.aclose()
    await store.aclose()


async def test_postgres_recovers_after_connections_are_killed(pg_dsn: str, ring: KeyRing) -> None:
    store = PostgresReceiptStore(pg_dsn, max_size=2, timeout=2.0)
    log = ReceiptLog(store, ring)
    await log.append(body(0))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    outcomes: list[Any] = []
    for i in range(1, 4):
        try:
            outcomes.append(await log.append(body(i)))
        except ReceiptStoreUnavailable as exc:  # at most the batch on the dead connection
            outcomes.append(exc)
    assert isinstance(outcomes[-1], dict)
    assert verify_chain(await store.export("acme", "s-1"), ring.jwks()).ok
    await log.aclose()
    await store.aclose()


async def _fill(path: Path, ring: KeyRing) -> None:
    store = SqliteReceiptStore(path)
    log = ReceiptLog(store, ring)
    for s in ("s-1", "s-2"):
        for i in range(4):
            await log.append(body(i, session=s, kind="session_end" if i == 3 else "action"))
    await log.aclose()
    await store.aclose()


def test_cli_verify_finds_a_row_rewritten_behind_the_triggers(
    tmp_path: Path, ring: KeyRing, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.db"
    asyncio.run(_fill(path, ring))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(canonicalize(ring.jwks()).decode())
    assert cli.verify(str(path), jwks, require_complete=True) == 0
    assert capsys.readouterr().out.strip() == "ok: 8 receipts, 2 chains"
    # An attacker with file access drops the trigger and edits a decision.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER receipts_no_update")
    conn.execute(
        "UPDATE receipts SET canonical = replace(canonical, '\"DENY\"', '\"ALLOW\"')"
        " WHERE session_id = 's-2' AND seq = 2"
    )
    conn.close()
    assert cli.verify(str(path), jwks, session="s-2") == 1
    out = capsys.readouterr().out
    assert "receipt #1 (s-2-r1): bad_signature" in out
    export_file = tmp_path / "s1.jsonl"
    assert cli.export(str(path), "acme", "s-1", export_file) == 0
    assert cli.verify(None, jwks, export_file=export_file, require_complete=True) == 0
    assert Reason.BAD_SIGNATURE.value in out


async def _fill_pg(dsn: str, ring: KeyRing) -> None:
    store = PostgresReceiptStore(dsn)
    log = ReceiptLog(store, ring)
    for i in range(3):
        await log.append(body(i, kind="session_end" if i == 2 else "action"))
    await log.aclose()
    await store.aclose()


def test_cli_verify_and_export_against_postgres(
    pg_dsn: str, tmp_path: Path, ring: KeyRing, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_fill_pg(pg_dsn, ring))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(canonicalize(ring.jwks()).decode())
    assert cli.verify(pg_dsn, jwks, session="s-1", tenant="acme", require_complete=True) == 0
    assert capsys.readouterr().out.strip() == "ok: 3 receipts, 1 chains"
    assert cli.export(pg_dsn, "acme", "s-1") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and '"count":3' in lines[0]
    assert cli.verify(pg_dsn, jwks, session="nope") == 1
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=1"
    assert cli.verify(dead, jwks) == 2
