"""An append-only receipt store in one SQLite file.

WAL journal with ``synchronous=FULL``: a commit returns only after the WAL is
fsynced. One dedicated writer thread owns the only writing connection, so writes
never contend for the lock inside the process; reads go through a second thread and
connection (WAL lets them run beside the writer). Triggers RAISE on UPDATE and
DELETE, and a BEFORE INSERT trigger refuses duplicates so ``INSERT OR REPLACE``
cannot delete a row behind the DELETE trigger's back.

Health (readiness) means the store can take writes, checked cheaply: the file opens
and reads, its file system is not read-only and has :data:`MIN_FREE_BYTES` free, the
files are writable; and after a write failed, a real write (one row of
``aarm_write_probe``, committed) must succeed before it is healthy again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

from aarm_pdp.errors import ReceiptStoreUnavailable
from aarm_pdp.receipts.envelope import Receipt
from aarm_pdp.receipts.store import (
    ChainHead,
    DecisionRecord,
    ReceiptStore,
    SessionKey,
    StoreConflict,
    StoredReceipt,
    load_receipt,
)

__all__ = ["SqliteReceiptStore"]

T = TypeVar("T")
log = logging.getLogger(__name__)

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS receipts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    receipt_id  TEXT    NOT NULL UNIQUE,
    tenant      TEXT    NOT NULL,
    session_id  TEXT    NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    kind        TEXT    NOT NULL,
    decision_id TEXT,
    issued_at   TEXT    NOT NULL,
    principal   TEXT,
    decision    TEXT,
    hash        TEXT    NOT NULL,
    canonical   TEXT    NOT NULL,
    UNIQUE (tenant, session_id, seq)
);
CREATE INDEX IF NOT EXISTS receipts_decision_id ON receipts (decision_id);
CREATE INDEX IF NOT EXISTS receipts_issued_at ON receipts (issued_at);
CREATE INDEX IF NOT EXISTS receipts_principal ON receipts (principal, issued_at);
CREATE INDEX IF NOT EXISTS receipts_kind ON receipts (kind);
CREATE INDEX IF NOT EXISTS receipts_decision ON receipts (decision);
CREATE TRIGGER IF NOT EXISTS receipts_no_update BEFORE UPDATE ON receipts
BEGIN SELECT RAISE(ABORT, 'receipts are append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS receipts_no_delete BEFORE DELETE ON receipts
BEGIN SELECT RAISE(ABORT, 'receipts are append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS receipts_behind_checkpoint BEFORE INSERT ON receipts
WHEN NEW.kind <> 'checkpoint' AND EXISTS (
    SELECT 1 FROM receipts
    WHERE tenant = NEW.tenant AND session_id = NEW.session_id AND seq >= NEW.seq
      AND kind = 'checkpoint'
)
BEGIN SELECT RAISE(ABORT, 'receipt conflict: seq already archived behind a checkpoint'); END;
CREATE TABLE IF NOT EXISTS decision_records (
    receipt_id  TEXT    PRIMARY KEY,
    record      TEXT    NOT NULL
);
CREATE TRIGGER IF NOT EXISTS receipts_no_replace BEFORE INSERT ON receipts
WHEN EXISTS (
    SELECT 1 FROM receipts
    WHERE receipt_id = NEW.receipt_id
       OR (tenant = NEW.tenant AND session_id = NEW.session_id AND seq = NEW.seq)
)
BEGIN SELECT RAISE(ABORT, 'receipt conflict: receipt_id or seq already stored'); END;
"""

_NO_DELETE: Final = (
    "CREATE TRIGGER receipts_no_delete BEFORE DELETE ON receipts"
    " BEGIN SELECT RAISE(ABORT, 'receipts are append-only: DELETE refused'); END"
)
"""The append-only DELETE guard; :meth:`SqliteReceiptStore.replace_prefix` drops it and
re-creates it inside its own transaction (no other writer ever sees it missing)."""

_HEAD_KIND: Final = (
    "CASE WHEN kind = 'checkpoint' THEN json_extract(canonical, '$.head.kind') ELSE kind END"
)
"""A chain's head kind: a checkpoint row stands for the archived receipt at its seq."""
_HEADS: Final = (
    f"SELECT seq, hash, {_HEAD_KIND} FROM receipts"  # noqa: S608 (constants only)
    " WHERE tenant = ? AND session_id = ? ORDER BY seq DESC LIMIT 1"
)

_INSERT: Final = """
INSERT INTO receipts (receipt_id, tenant, session_id, seq, kind, decision_id, issued_at,
                      principal, decision, hash, canonical)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


_INSERT_RECORD: Final = "INSERT INTO decision_records (receipt_id, record) VALUES (?, ?)"
_RECORDS: Final = (
    "SELECT r.canonical, d.record FROM receipts r JOIN decision_records d"
    " ON d.receipt_id = r.receipt_id WHERE r.issued_at >= ?"
)


MIN_FREE_BYTES: Final = 16 << 20
"""Free space below this (for an unprivileged user) where the store lives: not healthy,
the disk is (nearly) full. A batch of 256 receipts needs ~1 MiB."""

_PROBE: Final = (
    "CREATE TABLE IF NOT EXISTS aarm_write_probe"
    " (id INTEGER PRIMARY KEY CHECK (id = 1), probed_at INTEGER NOT NULL)",
    "INSERT INTO aarm_write_probe (id, probed_at) VALUES (1, ?)"
    " ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
)


def unwritable(path: str) -> str | None:
    """Why the SQLite file at ``path`` cannot take writes now, as far as the file system
    says (None: nothing against it): read-only mount, disk full, files not writable."""
    if path == ":memory:":
        return None
    directory = os.path.dirname(os.path.abspath(path))
    st = os.statvfs(directory)
    if st.f_flag & os.ST_RDONLY:
        return f"{directory} is on a read-only file system"
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE_BYTES:
        return f"{directory} has {free} bytes free (< {MIN_FREE_BYTES})"
    for name in (path, f"{path}-wal"):
        if os.path.exists(name) and not os.access(name, os.W_OK):
            return f"{name} is not writable"
    return None


def _probe_write(conn: sqlite3.Connection) -> None:
    """One committed write (and its fsync): proof the store writes again."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_PROBE[0])
        conn.execute(_PROBE[1], (time.time_ns(),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA synchronous = FULL")
    # 64 MiB page cache: index inserts stay in memory as the store grows past 100k receipts.
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. The switch needs an exclusive lock and does not wait on
    busy_timeout, so two processes opening a new file together retry here."""
    deadline = time.monotonic() + 10.0
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode != "wal":
                mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if mode != "wal":
            raise sqlite3.OperationalError(f"journal_mode is {mode}, not wal")
        return


class _Worker:
    """One thread with one connection; calls run on that thread, in order."""

    def __init__(self, path: str, name: str) -> None:
        self._path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _connect(self._path)
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(self._connection()))

    def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._pool.submit(_close).result()
        self._pool.shutdown(wait=True)


class SqliteReceiptStore(ReceiptStore):
    """Receipts in the SQLite file at ``path`` (created with its directory if missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._writer = _Worker(self.path, "aarm-receipts-sqlite-writer")
        self._reader = _Worker(self.path, "aarm-receipts-sqlite-reader")
        self._started = False
        self._start_lock = asyncio.Lock()
        self._closed = False
        self._write_failed = False
        """The last write failed (not a conflict): unhealthy until a write succeeds."""
        self._healthy = True

    def __repr__(self) -> str:
        return f"SqliteReceiptStore({self.path!r})"

    async def start(self) -> None:
        if self._started:  # every insert and read calls this: no lock once started
            return
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise ReceiptStoreUnavailable("receipt store is closed")

            def _init(conn: sqlite3.Connection) -> None:
                _enable_wal(conn)
                conn.executescript(SCHEMA)  # each statement waits on busy_timeout

            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            await self._call(self._writer, _init)
            self._started = True

    async def _call(self, worker: _Worker, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await worker.run(fn)
        except (StoreConflict, ReceiptStoreUnavailable):
            raise
        except (sqlite3.Error, OSError, RuntimeError) as exc:
            # RuntimeError: the executor was shut down under us.
            raise ReceiptStoreUnavailable(f"sqlite receipt store: {exc}") from exc

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await self.start()
        return await self._call(self._reader, fn)

    async def insert_batch(self, rows: Sequence[StoredReceipt]) -> None:
        await self.start()
        params = [
            (
                r.fields.receipt_id,
                r.fields.tenant,
                r.fields.session_id,
                r.fields.seq,
                r.fields.kind,
                r.fields.decision_id,
                r.fields.issued_at,
                r.fields.principal,
                r.fields.decision,
                r.hash,
                r.canonical,
            )
            for r in rows
        ]

        records = [(r.fields.receipt_id, r.record) for r in rows if r.record is not None]

        def _insert(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, params)
                if records:
                    conn.executemany(_INSERT_RECORD, records)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise StoreConflict(str(exc)) from exc
                raise

        try:
            await self._call(self._writer, _insert)
        except ReceiptStoreUnavailable:
            self._write_failed = True
            raise
        self._write_failed = False

    async def heads(self, keys: Sequence[SessionKey]) -> dict[SessionKey, ChainHead]:
        def _heads(conn: sqlite3.Connection) -> dict[SessionKey, ChainHead]:
            out: dict[SessionKey, ChainHead] = {}
            for tenant, session_id in keys:
                row = conn.execute(
                    _HEADS,
                    (tenant, session_id),
                ).fetchone()
                if row is not None:
                    out[(tenant, session_id)] = ChainHead(int(row[0]), str(row[1]), str(row[2]))
            return out

        # The writer's connection: it sees its own commits without a WAL snapshot lag.
        await self.start()
        return await self._call(self._writer, _heads)

    async def existing_ids(self, receipt_ids: Sequence[str]) -> set[str]:
        def _existing(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for rid in receipt_ids:
                if conn.execute("SELECT 1 FROM receipts WHERE receipt_id = ?", (rid,)).fetchone():
                    found.add(rid)
            return found

        await self.start()
        return await self._call(self._writer, _existing)

    async def _texts(self, sql: str, args: tuple[str, ...]) -> list[str]:
        def _q(conn: sqlite3.Connection) -> list[str]:
            return [str(r[0]) for r in conn.execute(sql, args).fetchall()]

        return await self._read(_q)

    async def get(self, receipt_id: str) -> Receipt | None:
        rows = await self._texts(
            "SELECT canonical FROM receipts WHERE receipt_id = ?", (receipt_id,)
        )
        return load_receipt(rows[0]) if rows else None

    async def list_session(self, tenant: str, session_id: str) -> list[Receipt]:
        return [load_receipt(t) for t in await self.export(tenant, session_id)]

    async def list_by_decision(self, decision_id: str) -> list[Receipt]:
        rows = await self._texts(
            "SELECT canonical FROM receipts WHERE decision_id = ? ORDER BY id", (decision_id,)
        )
        return [load_receipt(t) for t in rows]

    async def export(self, tenant: str, session_id: str) -> list[str]:
        # A checkpoint (inserted after the receipts that follow it) comes first.
        return await self._texts(
            "SELECT canonical FROM receipts WHERE tenant = ? AND session_id = ?"
            " ORDER BY kind <> 'checkpoint', id",
            (tenant, session_id),
        )

    async def replace_prefix(
        self,
        tenant: str,
        session_id: str,
        *,
        through_seq: int,
        through_hash: str,
        expected_rows: int,
        checkpoint: StoredReceipt,
    ) -> None:
        await self.start()
        f = checkpoint.fields
        params = (
            f.receipt_id,
            f.tenant,
            f.session_id,
            f.seq,
            f.kind,
            f.decision_id,
            f.issued_at,
            f.principal,
            f.decision,
            checkpoint.hash,
            checkpoint.canonical,
        )
        chain = (tenant, session_id, through_seq)

        def _replace(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT hash FROM receipts WHERE tenant = ? AND session_id = ? AND seq = ?",
                    chain,
                ).fetchone()
                if row is None or row[0] != through_hash:
                    raise StoreConflict(f"seq {through_seq} is not the receipt that was archived")
                conn.execute(  # the archived receipts' decision records go with them
                    "DELETE FROM decision_records WHERE receipt_id IN (SELECT receipt_id"
                    " FROM receipts WHERE tenant = ? AND session_id = ? AND seq <= ?)",
                    chain,
                )
                conn.execute("DROP TRIGGER receipts_no_delete")
                deleted = conn.execute(
                    "DELETE FROM receipts WHERE tenant = ? AND session_id = ? AND seq <= ?", chain
                ).rowcount
                conn.execute(_NO_DELETE)
                if deleted != expected_rows:
                    raise StoreConflict(
                        f"{deleted} rows up to seq {through_seq}, not {expected_rows}"
                    )
                conn.execute(_INSERT, params)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise StoreConflict(str(exc)) from exc
                raise

        await self._call(self._writer, _replace)

    async def decision_records(
        self, *, since: str = "", tenant: str | None = None
    ) -> list[DecisionRecord]:
        sql, args = _RECORDS, [since]
        if tenant is not None:
            sql += " AND r.tenant = ?"
            args.append(tenant)

        def _q(conn: sqlite3.Connection) -> list[DecisionRecord]:
            rows = conn.execute(sql + " ORDER BY r.id", args).fetchall()
            return [DecisionRecord(str(c), str(rec)) for c, rec in rows]

        return await self._read(_q)

    async def sessions(self) -> list[SessionKey]:
        def _q(conn: sqlite3.Connection) -> list[SessionKey]:
            rows = conn.execute(
                "SELECT tenant, session_id FROM receipts GROUP BY tenant, session_id"
                " ORDER BY MIN(id)"
            ).fetchall()
            return [(str(t), str(s)) for t, s in rows]

        return await self._read(_q)

    async def count(self) -> int:
        return await self._read(
            lambda c: int(c.execute("SELECT count(*) FROM receipts").fetchone()[0])
        )

    async def healthy(self) -> bool:
        """The store reads, its file system takes writes, and (after a failed write) a
        probe write succeeds. A few system calls on the reader's thread per check."""

        def _check(conn: sqlite3.Connection) -> str | None:
            conn.execute("SELECT 1").fetchone()
            return unwritable(self.path)

        try:
            why = await self._read(_check)
            if why is None and self._write_failed:
                await self._call(self._writer, _probe_write)
                self._write_failed = False
        except ReceiptStoreUnavailable as exc:
            why = exc.detail
        if (why is None) != self._healthy:  # log the changes, not every probe
            self._healthy = why is None
            if why is None:
                log.warning("receipt store %s takes writes again", self.path)
            else:
                log.error("receipt store %s cannot take writes: %s", self.path, why)
        return why is None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._writer.close)
        await loop.run_in_executor(None, self._reader.close)
