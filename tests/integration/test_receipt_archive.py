"""``receipts archive`` against a real SQLite file and a real PostgreSQL.

Archive, then verify the store alone, the archive alone and both end to end; appends
continue from the checkpoint (a warm and a cold log); the append-only guards still
hold after an archive; tampering in the store or the archive is caught; a crash
between writing the archive and updating the store loses nothing and a re-run works.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aarm_pdp.errors import ReceiptInvalid
from aarm_pdp.receipts import KeyRing, ReceiptLog, ReceiptStore, cli, verify_chain
from aarm_pdp.receipts.canonical import parse
from aarm_pdp.receipts.envelope import index_fields
from aarm_pdp.receipts.keys import init_key_dir
from aarm_pdp.receipts.store import StoreConflict, StoredReceipt

from tests.integration.test_receipt_stores import location, open_at, raw_sql
from tests.unit.test_receipts_verify import body

pytestmark = pytest.mark.integration

__all__ = ["location"]  # the fixture: SQLite file and PostgreSQL database

CUTOFF = "2026-05-01T10:00:05Z"  # body(0..4) are older


async def run(fn: Any, *args: Any, **kwargs: Any) -> tuple[int, str]:
    """A CLI function (it runs its own event loop) on a thread: exit code, output."""
    buf = io.StringIO()
    rc = await asyncio.to_thread(fn, *args, out=buf, **kwargs)
    return rc, buf.getvalue()


class PowerCut(BaseException):
    """The process dies here: nothing in the archive command catches it."""


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    init_key_dir(tmp_path / "keys")
    return tmp_path / "keys"


@pytest.fixture
def jwks(key_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(KeyRing.load(key_dir).jwks()))
    return path


async def fill(location: str, key_dir: Path) -> None:
    store = open_at(location)
    log = ReceiptLog(store, KeyRing.load(key_dir))
    for i in range(8):
        await log.append(body(i, session="s-1"))
    for i in range(3):
        await log.append(body(i, session="s-2"))
    await log.append(body(9, session="s-3"))
    await log.aclose()
    await store.aclose()


async def texts(location: str, session: str) -> list[str]:
    store = open_at(location)
    try:
        return await store.export("acme", session)
    finally:
        await store.aclose()


async def test_archive_verify_and_append(
    location: str, key_dir: Path, jwks: Path, tmp_path: Path
) -> None:
    await fill(location, key_dir)
    out = tmp_path / "archive" / "receipts-1.jsonl"
    rc, text = await run(cli.archive, location, CUTOFF, out, key_dir=key_dir)
    assert rc == 0, text
    assert "archived 8 receipts of 2 chains" in text
    assert [parse(t)["kind"] for t in await texts(location, "s-1")][:2] == ["checkpoint", "action"]

    rc, text = await run(cli.verify, location, jwks)
    assert (rc, text.strip()) == (0, "ok: 6 receipts, 3 chains")  # 2 checkpoints + 3 + 1
    rc, text = await run(cli.verify, None, jwks, export_file=out)
    assert (rc, text.strip()) == (0, "ok: 8 receipts, 2 chains")
    rc, text = await run(cli.verify, location, jwks, archives=[out])
    assert rc == 0, text
    assert (
        text.strip() == "ok: 12 receipts, 3 chains (2 checkpoints verified against their archives)"
    )

    # Appends continue: a cold log (a restarted service) and an export that starts
    # with the checkpoint.
    store = open_at(location)
    cold = ReceiptLog(store, KeyRing.load(key_dir))
    r = await cold.append(body(30, session="s-2"))
    assert r["chain"]["seq"] == 4
    r = await cold.append(body(31, session="s-1", kind="session_end"))
    assert r["chain"]["seq"] == 9
    await cold.aclose()
    await store.aclose()
    rc, text = await run(cli.verify, location, jwks, archives=[out])
    assert rc == 0 and text.startswith("ok: 14 receipts, 3 chains"), text
    export = tmp_path / "s-1.jsonl"
    assert (await run(cli.export, location, "acme", "s-1", export, key_dir=key_dir))[0] == 0
    rc, text = await run(cli.verify, None, jwks, export_file=export, require_complete=True)
    assert (rc, text.strip()) == (0, "ok: 5 receipts, 1 chains")  # checkpoint + 6..9
    rc, text = await run(
        cli.verify, None, jwks, export_file=export, require_complete=True, archives=[out]
    )
    assert rc == 0 and text.startswith("ok: 9 receipts, 1 chains"), text


async def test_append_only_guards_hold_after_archiving(
    location: str, key_dir: Path, tmp_path: Path
) -> None:
    await fill(location, key_dir)
    assert (await run(cli.archive, location, CUTOFF, tmp_path / "a.jsonl", key_dir=key_dir))[0] == 0
    with pytest.raises(Exception, match="append-only"):
        raw_sql(location, "DELETE FROM receipts WHERE session_id = 's-1'")
    with pytest.raises(Exception, match="append-only"):
        raw_sql(location, "UPDATE receipts SET kind = 'x' WHERE kind = 'checkpoint'")
    # An insert at or below the checkpoint's seq (a stale head) conflicts.
    store = open_at(location)
    try:
        text = (await store.export("acme", "s-3"))[0]
        row = parse(text)
        for seq in (1, 5):  # below and at the checkpoint of s-1 (seq 5)
            fork = dict(
                row, receipt_id=f"fork-{seq}", chain=dict(row["chain"], session_id="s-1", seq=seq)
            )
            with pytest.raises(StoreConflict):
                await store.insert_batch([StoredReceipt(index_fields(fork), "00" * 32, text)])
        assert len(await store.export("acme", "s-1")) == 4
    finally:
        await store.aclose()


async def test_tampering_is_caught(
    location: str, key_dir: Path, jwks: Path, tmp_path: Path
) -> None:
    await fill(location, key_dir)
    out = tmp_path / "a.jsonl"
    assert (await run(cli.archive, location, CUTOFF, out, key_dir=key_dir))[0] == 0
    # An archived receipt altered: caught by the archive alone and with the store.
    edited = tmp_path / "edited.jsonl"
    edited.write_text(
        out.read_text(encoding="utf-8").replace('"result":"DENY"', '"result":"ALLOW"', 1),
        encoding="utf-8",
    )
    rc, text = await run(cli.verify, None, jwks, export_file=edited)
    assert rc == 1 and "bad_signature" in text and "section 1" in text, text
    rc, text = await run(cli.verify, location, jwks, archives=[edited])
    assert rc == 1 and "archive_mismatch" in text, text
    # A checkpoint altered in the store (behind the triggers' back), a gap after it.
    behind_the_back(
        location,
        "UPDATE receipts SET canonical = replace(canonical, '\"count\":3', '\"count\":2')"
        " WHERE kind = 'checkpoint' AND session_id = 's-2'",
    )
    rc, text = await run(cli.verify, location, jwks, session="s-2")
    assert rc == 1 and "receipt #0" in text and "malformed" in text, text
    behind_the_back(location, "DELETE FROM receipts WHERE session_id = 's-1' AND seq = 6")
    rc, text = await run(cli.verify, location, jwks, session="s-1")
    assert rc == 1 and "receipt #1" in text and "missing_receipt" in text, text
    rc, text = await run(cli.verify, location, jwks, session="s-1", archives=[out])
    assert rc == 1 and "receipt #5" in text and "missing_receipt" in text, text
    behind_the_back(
        location,
        'UPDATE receipts SET canonical = replace(canonical, \'"kind":"action"}\', '
        "'\"kind\":\"session_end\"}') WHERE kind = 'checkpoint' AND session_id = 's-1'",
    )
    rc, text = await run(cli.verify, location, jwks, session="s-1", archives=[out])
    assert rc == 1 and "receipt #0" in text and "bad_signature" in text, text


def behind_the_back(location: str, sql: str) -> None:
    """Run ``sql`` with the append-only triggers out of the way (an attacker with the
    database); opening the store puts them back."""
    if location.startswith("postgresql://"):
        raw_sql(location, "ALTER TABLE receipts DISABLE TRIGGER USER")
    else:
        raw_sql(location, "DROP TRIGGER IF EXISTS receipts_no_update")
        raw_sql(location, "DROP TRIGGER IF EXISTS receipts_no_delete")
    raw_sql(location, sql)
    if location.startswith("postgresql://"):
        raw_sql(location, "ALTER TABLE receipts ENABLE TRIGGER USER")


async def test_crash_between_archive_and_store_update(
    location: str, key_dir: Path, jwks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fill(location, key_dir)
    before = {s: await texts(location, s) for s in ("s-1", "s-2", "s-3")}
    store_type = type(open_at(location))
    real = store_type.replace_prefix
    calls: list[str] = []

    async def crash_on_second(self: ReceiptStore, tenant: str, session_id: str, **kw: Any) -> None:
        calls.append(session_id)
        if len(calls) == 2:
            raise PowerCut
        await real(self, tenant, session_id, **kw)

    monkeypatch.setattr(store_type, "replace_prefix", crash_on_second)
    a1 = tmp_path / "a1.jsonl"
    with pytest.raises(PowerCut):
        await run(cli.archive, location, CUTOFF, a1, key_dir=key_dir)
    monkeypatch.undo()
    assert a1.exists()  # written and fsynced before the store was touched
    assert calls == ["s-1", "s-2"]
    assert await texts(location, "s-2") == before["s-2"]  # the chain that crashed: whole
    assert await texts(location, "s-3") == before["s-3"]
    assert len(await texts(location, "s-1")) == 4  # the one done: checkpoint + 6..8
    rc, text = await run(cli.verify, location, jwks, archives=[a1])
    assert rc == 0, text
    # The same name again is refused (a1 is what s-1's checkpoint names); a new one works.
    rc, text = await run(cli.archive, location, CUTOFF, a1, key_dir=key_dir)
    assert rc == 2 and "exists" in text
    a2 = tmp_path / "a2.jsonl"
    rc, text = await run(cli.archive, location, CUTOFF, a2, key_dir=key_dir)
    assert rc == 0 and "archived 3 receipts of 1 chains" in text, text
    rc, text = await run(cli.verify, location, jwks, archives=[a1, a2])
    assert rc == 0 and text.startswith("ok: 12 receipts, 3 chains"), text
    # Every receipt that was stored is in the store or an archive, byte for byte.
    archived = {line for p in (a1, a2) for line in p.read_text(encoding="utf-8").split("\n")}
    now = {t for s in before for t in await texts(location, s)}
    for lines in before.values():
        for line in lines:
            assert line in archived or line in now


async def test_archiving_twice_verifies_through_both_archives(
    location: str, key_dir: Path, jwks: Path, tmp_path: Path
) -> None:
    await fill(location, key_dir)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert (await run(cli.archive, location, "2026-05-01T10:00:02Z", a, key_dir=key_dir))[0] == 0
    assert (await run(cli.archive, location, CUTOFF, b, key_dir=key_dir))[0] == 0
    chain = await texts(location, "s-1")
    cp = parse(chain[0])
    assert (cp["chain"]["seq"], cp["archive"]["first_seq"], cp["archive"]["count"]) == (5, 3, 3)
    assert verify_chain(chain, KeyRing.load(key_dir).public_keys()).ok
    rc, text = await run(cli.verify, location, jwks, archives=[a, b])
    # s-1: 2 + 3 + 3 receipts; s-2: 2 + 1; s-3: 1. Each archived twice (a, then b).
    assert rc == 0 and text.startswith("ok: 12 receipts, 3 chains (4 checkpoints"), text


def _pg_conn(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


async def test_postgres_an_insert_waiting_on_the_archive_conflicts_after_it(
    pg_dsn: str, key_dir: Path, tmp_path: Path
) -> None:
    """The race the AFTER INSERT guard is for: an append from a stale head (a replica
    that assumes the chain is new, seq 1) waits on the archive's uncommitted delete of
    seq 1, the archive commits, and the waiting insert must then conflict, not start
    the chain again behind the checkpoint."""
    await fill(pg_dsn, key_dir)
    chain = await texts(pg_dsn, "s-1")
    fork = dict(parse(chain[0]), receipt_id="fork-1")
    archiver, inserter, watcher = _pg_conn(pg_dsn), _pg_conn(pg_dsn), _pg_conn(pg_dsn)
    try:
        # The archive's transaction, by hand, up to its commit (as replace_prefix does it).
        archiver.execute("BEGIN")
        archiver.execute(
            "SELECT set_config('aarm.archive_tenant', 'acme', true),"
            " set_config('aarm.archive_session', 's-1', true),"
            " set_config('aarm.archive_through', '5', true)"
        )
        archiver.execute(
            "DELETE FROM aarm_receipts WHERE tenant = 'acme' AND session_id = 's-1' AND seq <= 5"
        )
        checkpoint = dict(parse(chain[4]), receipt_id="cp-1", kind="checkpoint")
        archiver.execute(
            "INSERT INTO aarm_receipts (receipt_id, tenant, session_id, seq, kind, issued_at,"
            " hash, canonical, body) VALUES ('cp-1', 'acme', 's-1', 5, 'checkpoint', now(),"
            " %s, %s, %s::jsonb)",
            ("00" * 32, json.dumps(checkpoint), json.dumps(checkpoint)),
        )
        pid = inserter.info.backend_pid

        def insert_seq_1() -> BaseException | None:
            try:
                inserter.execute(
                    "INSERT INTO aarm_receipts (receipt_id, tenant, session_id, seq, kind,"
                    " issued_at, hash, canonical, body)"
                    " VALUES ('fork-1', 'acme', 's-1', 1, 'action', now(), %s, %s, %s::jsonb)",
                    ("00" * 32, json.dumps(fork), json.dumps(fork)),
                )
            except psycopg.Error as exc:
                return exc
            return None

        pending = asyncio.create_task(asyncio.to_thread(insert_seq_1))
        # Wait (on the server's own report, not a timer) until the insert blocks on the lock.
        async with asyncio.timeout(30):
            while not watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                (pid,),
            ).fetchone()[0]:  # type: ignore[index]
                assert not pending.done(), await pending
                await asyncio.sleep(0.01)  # poll the condition above
        archiver.execute("COMMIT")
        error = await pending
        assert isinstance(error, psycopg.errors.UniqueViolation), error
        assert "archived behind a checkpoint" in str(error)
        seqs = [
            r[0]
            for r in watcher.execute(
                "SELECT seq FROM aarm_receipts WHERE session_id = 's-1' ORDER BY seq"
            ).fetchall()
        ]
        assert seqs == [5, 6, 7, 8]
    finally:
        for conn in (archiver, inserter, watcher):
            conn.close()


async def test_a_closed_chain_archived_whole_stays_closed(
    location: str, key_dir: Path, jwks: Path, tmp_path: Path
) -> None:
    store = open_at(location)
    log = ReceiptLog(store, KeyRing.load(key_dir))
    await log.append(body(0, session="s-9"))
    await log.append(body(1, session="s-9", kind="session_end"))
    await log.aclose()
    await store.aclose()
    assert (await run(cli.archive, location, CUTOFF, tmp_path / "a.jsonl", key_dir=key_dir))[0] == 0
    assert len(await texts(location, "s-9")) == 1
    rc, text = await run(cli.verify, location, jwks, require_complete=True)
    assert (rc, text.strip()) == (0, "ok: 1 receipts, 1 chains"), text
    store = open_at(location)
    cold = ReceiptLog(store, KeyRing.load(key_dir))
    try:
        with pytest.raises(ReceiptInvalid):  # the head the store gives is the session_end
            await cold.append(body(2, session="s-9"))
    finally:
        await cold.aclose()
        await store.aclose()
