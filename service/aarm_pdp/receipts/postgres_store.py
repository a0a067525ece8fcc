"""An append-only receipt store in PostgreSQL, shared by every replica.

psycopg 3 (async) with a psycopg_pool connection pool. One table, ``aarm_receipts``:
the receipt as JSONB (for ad-hoc queries), the exact canonical signed text (for
byte-exact verification), its sha256, and indexed columns tenant, session_id, seq,
kind, decision_id, issued_at, principal and decision. UNIQUE (tenant, session_id, seq)
is what keeps two replicas from forking a chain. Triggers raise on UPDATE, DELETE
and TRUNCATE (the one DELETE allowed is :meth:`PostgresReceiptStore.replace_prefix`'s,
archiving a chain prefix, which names the chain and seq in transaction-local settings),
and on an insert at or below a checkpoint's seq. The schema is created idempotently at
start, under an advisory lock so replicas starting together do not race.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

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
from aarm_pdp.tasks import cancel_and_wait

__all__ = ["SCHEMA", "PostgresReceiptStore"]

_SCHEMA_LOCK: Final = 0x6161726D  # "aarm"

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS aarm_receipts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    receipt_id  TEXT        NOT NULL UNIQUE,
    tenant      TEXT        NOT NULL,
    session_id  TEXT        NOT NULL,
    seq         BIGINT      NOT NULL CHECK (seq >= 1),
    kind        TEXT        NOT NULL,
    decision_id TEXT,
    issued_at   TIMESTAMPTZ NOT NULL,
    principal   TEXT,
    decision    TEXT,
    hash        CHAR(64)    NOT NULL,
    canonical   TEXT        NOT NULL,
    body        JSONB       NOT NULL,
    stored_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT aarm_receipts_chain_seq UNIQUE (tenant, session_id, seq)
);
CREATE INDEX IF NOT EXISTS aarm_receipts_decision_id ON aarm_receipts (decision_id);
CREATE INDEX IF NOT EXISTS aarm_receipts_issued_at ON aarm_receipts (issued_at);
CREATE INDEX IF NOT EXISTS aarm_receipts_principal ON aarm_receipts (principal, issued_at);
CREATE INDEX IF NOT EXISTS aarm_receipts_kind ON aarm_receipts (kind);
CREATE INDEX IF NOT EXISTS aarm_receipts_decision ON aarm_receipts (decision);
CREATE TABLE IF NOT EXISTS aarm_decision_records (
    receipt_id  TEXT PRIMARY KEY,
    record      TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION aarm_receipts_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The one removal allowed: replace_prefix (receipts archive) names the chain and
    -- the last archived seq for its own transaction only (set_config(..., true)).
    IF TG_OP = 'DELETE'
       AND OLD.tenant = current_setting('aarm.archive_tenant', true)
       AND OLD.session_id = current_setting('aarm.archive_session', true)
       AND OLD.seq <= NULLIF(current_setting('aarm.archive_through', true), '')::bigint
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'aarm_receipts is append-only: % refused', TG_OP;
END
$$;
CREATE OR REPLACE FUNCTION aarm_receipts_behind_checkpoint() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- AFTER the row is in: an insert that waited on the archive's delete of its seq
    -- sees the committed checkpoint here (a fresh snapshot) and conflicts.
    IF NEW.kind <> 'checkpoint' AND EXISTS (
        SELECT 1 FROM aarm_receipts
        WHERE tenant = NEW.tenant AND session_id = NEW.session_id AND seq >= NEW.seq
          AND kind = 'checkpoint'
    ) THEN
        RAISE EXCEPTION 'receipt conflict: seq % already archived behind a checkpoint', NEW.seq
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER aarm_receipts_checkpoint_guard
    AFTER INSERT ON aarm_receipts
    FOR EACH ROW EXECUTE FUNCTION aarm_receipts_behind_checkpoint();
CREATE OR REPLACE TRIGGER aarm_receipts_no_update_delete
    BEFORE UPDATE OR DELETE ON aarm_receipts
    FOR EACH ROW EXECUTE FUNCTION aarm_receipts_append_only();
CREATE OR REPLACE TRIGGER aarm_receipts_no_truncate
    BEFORE TRUNCATE ON aarm_receipts
    FOR EACH STATEMENT EXECUTE FUNCTION aarm_receipts_append_only();
"""

_INSERT_RECORD: Final = "INSERT INTO aarm_decision_records (receipt_id, record) VALUES (%s, %s)"
_INSERT: Final = """
INSERT INTO aarm_receipts (receipt_id, tenant, session_id, seq, kind, decision_id, issued_at,
                           principal, decision, hash, canonical, body)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
"""

_HEADS: Final = """
SELECT k.tenant, k.session_id, r.seq, r.hash, r.kind
FROM unnest(%s::text[], %s::text[]) AS k(tenant, session_id)
CROSS JOIN LATERAL (
    SELECT seq, hash,
           CASE WHEN kind = 'checkpoint' THEN body->'head'->>'kind' ELSE kind END AS kind
    FROM aarm_receipts
    WHERE tenant = k.tenant AND session_id = k.session_id
    ORDER BY seq DESC LIMIT 1
) AS r
"""

_WRITABLE: Final = (
    "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"
)
_PROBE: Final = (
    "CREATE TABLE IF NOT EXISTS aarm_write_probe"
    " (id INTEGER PRIMARY KEY CHECK (id = 1), probed_at TIMESTAMPTZ NOT NULL)",
    "INSERT INTO aarm_write_probe (id, probed_at) VALUES (1, now())"
    " ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
)

log = logging.getLogger("aarm_pdp.receipts")

DEFAULT_POOL_SIZE: Final = 4
_POOL_IDS = itertools.count(1)
"""Each store's pool has its own name: its worker tasks are found by it at close."""
DEFAULT_TIMEOUT_SECONDS: Final = 5.0


class PostgresReceiptStore(ReceiptStore):
    """Receipts in PostgreSQL at ``dsn`` (a libpq URI or key=value string).

    ``timeout`` bounds each operation, from waiting for a pooled connection to its last
    row; past it the store is unavailable (and the engine answers DENY). A server that
    hangs (stopped, not dead: TCP still acknowledges) is cut there too; psycopg then
    cancels the query and drops the connection, which can take it ~10 s more.
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = DEFAULT_POOL_SIZE,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._timeout = timeout
        self._pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]] = (
            psycopg_pool.AsyncConnectionPool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                open=False,
                timeout=timeout,
                kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
                check=psycopg_pool.AsyncConnectionPool.check_connection,
                name=f"aarm-receipts-{next(_POOL_IDS)}",
            )
        )
        self._pool_open = False
        self._started = False
        self._closed = False
        self._write_failed = False
        """The last insert failed (not a conflict): unhealthy until a write succeeds."""

    def __repr__(self) -> str:
        return "PostgresReceiptStore(<dsn>)"  # the DSN may hold a password

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection, every failure translated to ReceiptStoreUnavailable."""
        if self._closed:
            raise ReceiptStoreUnavailable("receipt store is closed")
        try:
            async with asyncio.timeout(self._timeout):
                if not self._pool_open:
                    await self._pool.open(wait=False)
                    self._pool_open = True
                async with self._pool.connection(timeout=self._timeout) as conn:
                    yield conn
        except pg_errors.UniqueViolation as exc:
            raise StoreConflict(str(exc)) from exc
        except TimeoutError:
            raise ReceiptStoreUnavailable(
                f"postgres receipt store: no answer within {self._timeout:g}s"
            ) from None
        except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
            raise ReceiptStoreUnavailable(
                f"postgres receipt store: {type(exc).__name__}: {exc}"
            ) from exc

    async def start(self) -> None:
        if self._started:
            return
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            await conn.execute(SCHEMA)
        self._started = True

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
                datetime.fromisoformat(r.fields.issued_at),
                r.fields.principal,
                r.fields.decision,
                r.hash,
                r.canonical,
                r.canonical,
            )
            for r in rows
        ]
        records = [(r.fields.receipt_id, r.record) for r in rows if r.record is not None]
        try:
            async with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.executemany(_INSERT, params)
                if records:
                    await cur.executemany(_INSERT_RECORD, records)
        except ReceiptStoreUnavailable:
            self._write_failed = True
            raise
        self._write_failed = False

    async def heads(self, keys: Sequence[SessionKey]) -> dict[SessionKey, ChainHead]:
        await self.start()
        async with self._conn() as conn:
            cur = await conn.execute(_HEADS, ([k[0] for k in keys], [k[1] for k in keys]))
            rows = await cur.fetchall()
        return {(t, s): ChainHead(int(seq), str(h), str(kind)) for t, s, seq, h, kind in rows}

    async def existing_ids(self, receipt_ids: Sequence[str]) -> set[str]:
        await self.start()
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT receipt_id FROM aarm_receipts WHERE receipt_id = ANY(%s)",
                (list(receipt_ids),),
            )
            return {str(r[0]) for r in await cur.fetchall()}

    async def _texts(self, sql: str, args: tuple[Any, ...]) -> list[str]:
        await self.start()
        async with self._conn() as conn:
            cur = await conn.execute(sql, args)
            return [str(r[0]) for r in await cur.fetchall()]

    async def get(self, receipt_id: str) -> Receipt | None:
        rows = await self._texts(
            "SELECT canonical FROM aarm_receipts WHERE receipt_id = %s", (receipt_id,)
        )
        return load_receipt(rows[0]) if rows else None

    async def list_session(self, tenant: str, session_id: str) -> list[Receipt]:
        return [load_receipt(t) for t in await self.export(tenant, session_id)]

    async def list_by_decision(self, decision_id: str) -> list[Receipt]:
        rows = await self._texts(
            "SELECT canonical FROM aarm_receipts WHERE decision_id = %s ORDER BY id",
            (decision_id,),
        )
        return [load_receipt(t) for t in rows]

    async def export(self, tenant: str, session_id: str) -> list[str]:
        # A checkpoint (inserted after the receipts that follow it) comes first.
        return await self._texts(
            "SELECT canonical FROM aarm_receipts WHERE tenant = %s AND session_id = %s"
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
        row = (
            f.receipt_id,
            f.tenant,
            f.session_id,
            f.seq,
            f.kind,
            f.decision_id,
            datetime.fromisoformat(f.issued_at),
            f.principal,
            f.decision,
            checkpoint.hash,
            checkpoint.canonical,
            checkpoint.canonical,
        )
        async with self._conn() as conn, conn.transaction():
            # One archiver per chain at a time (two runs racing on one chain).
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                (_SCHEMA_LOCK, f"{tenant}\x1f{session_id}"),
            )
            cur = await conn.execute(
                "SELECT hash FROM aarm_receipts WHERE tenant = %s AND session_id = %s AND seq = %s",
                (tenant, session_id, through_seq),
            )
            found = await cur.fetchone()
            if found is None or found[0] != through_hash:
                raise StoreConflict(f"seq {through_seq} is not the receipt that was archived")
            await conn.execute(
                "SELECT set_config('aarm.archive_tenant', %s, true),"
                " set_config('aarm.archive_session', %s, true),"
                " set_config('aarm.archive_through', %s, true)",
                (tenant, session_id, str(through_seq)),
            )
            await conn.execute(  # the archived receipts' decision records go with them
                "DELETE FROM aarm_decision_records WHERE receipt_id IN (SELECT receipt_id"
                " FROM aarm_receipts WHERE tenant = %s AND session_id = %s AND seq <= %s)",
                (tenant, session_id, through_seq),
            )
            cur = await conn.execute(
                "DELETE FROM aarm_receipts WHERE tenant = %s AND session_id = %s AND seq <= %s",
                (tenant, session_id, through_seq),
            )
            if cur.rowcount != expected_rows:
                raise StoreConflict(
                    f"{cur.rowcount} rows up to seq {through_seq}, not {expected_rows}"
                )
            await conn.execute(_INSERT, row)

    async def decision_records(
        self, *, since: str = "", tenant: str | None = None
    ) -> list[DecisionRecord]:
        await self.start()
        sql = (
            "SELECT r.canonical, d.record FROM aarm_receipts r JOIN aarm_decision_records d"
            " ON d.receipt_id = r.receipt_id WHERE r.issued_at >= %s"
        )
        since_at = datetime.fromisoformat(since) if since else datetime.min.replace(tzinfo=UTC)
        args: list[Any] = [since_at]
        if tenant is not None:
            sql += " AND r.tenant = %s"
            args.append(tenant)
        async with self._conn() as conn:
            cur = await conn.execute(sql + " ORDER BY r.id", args)
            rows = await cur.fetchall()
        return [DecisionRecord(str(c), str(rec)) for c, rec in rows]

    async def sessions(self) -> list[SessionKey]:
        await self.start()
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT tenant, session_id FROM aarm_receipts"
                " GROUP BY tenant, session_id ORDER BY min(id)"
            )
            return [(str(t), str(s)) for t, s in await cur.fetchall()]

    async def count(self) -> int:
        await self.start()
        async with self._conn() as conn:
            cur = await conn.execute("SELECT count(*) FROM aarm_receipts")
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def healthy(self) -> bool:
        """The server answers and takes writes: not a read-only standby (a failover
        that left us on one), and after a failed insert a probe write commits."""
        try:
            async with self._conn() as conn:
                cur = await conn.execute(_WRITABLE)
                row = await cur.fetchone()
                if not (row and row[0]):
                    return False
                if self._write_failed:
                    async with conn.transaction():
                        for statement in _PROBE:
                            await conn.execute(statement)
                    self._write_failed = False
        except ReceiptStoreUnavailable:
            return False
        return True

    async def aclose(self) -> None:
        """Close the pool; its worker tasks end with it, bounded.

        psycopg-pool's workers catch ``CancelledError`` while running a maintenance
        task (a reconnect to a stopped server), and ``close`` abandons a worker still
        busy after its timeout: such a worker then outlived the store and hung the event
        loop's shutdown for minutes. Whatever of this pool still runs after ``close`` is
        cancelled until it ends (:func:`~aarm_pdp.tasks.cancel_and_wait`)."""
        if self._closed:
            return
        self._closed = True
        if self._pool_open:
            try:
                await self._pool.close(timeout=self._timeout)
            finally:
                prefix = f"{self._pool.name}-"
                mine = [t for t in asyncio.all_tasks() if t.get_name().startswith(prefix)]
                left = await cancel_and_wait(mine)
                if left:
                    log.error("postgres receipt store: %d pool task(s) did not end", len(left))
