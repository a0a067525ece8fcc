"""An in-process receipt store: the fake for unit tests, with the real stores' semantics.

Append-only (no method changes or removes a row but ``replace_prefix``, archiving),
one batch is all-or-nothing, and
uniqueness conflicts raise StoreConflict like the SQL stores. ``delay`` slows every
commit (to exercise group commit); setting ``unavailable`` makes every call fail
with ReceiptStoreUnavailable (to exercise fail-closed paths).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aarm_pdp.errors import ReceiptStoreUnavailable
from aarm_pdp.receipts.envelope import CHECKPOINT_KIND, Receipt
from aarm_pdp.receipts.store import (
    ChainHead,
    DecisionRecord,
    ReceiptStore,
    SessionKey,
    StoreConflict,
    StoredReceipt,
    load_receipt,
)

__all__ = ["MemoryReceiptStore"]


class MemoryReceiptStore(ReceiptStore):
    """Receipts in a list; shareable by several ReceiptLogs like a shared database."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.unavailable = False
        self.commits = 0
        self._rows: list[StoredReceipt] = []
        self._ids: set[str] = set()
        self._seqs: set[tuple[str, str, int]] = set()
        self._checkpoint_seq: dict[SessionKey, int] = {}

    def _check(self) -> None:
        if self.unavailable:
            raise ReceiptStoreUnavailable("memory receipt store set unavailable")

    async def start(self) -> None:
        self._check()

    async def insert_batch(self, rows: Sequence[StoredReceipt]) -> None:
        self._check()
        if self.delay:
            await asyncio.sleep(self.delay)
            self._check()
        ids: set[str] = set()
        seqs: set[tuple[str, str, int]] = set()
        for r in rows:
            f = r.fields
            seq = (f.tenant, f.session_id, f.seq)
            if self._checkpoint_seq.get((f.tenant, f.session_id), 0) >= f.seq:
                raise StoreConflict(f"seq {seq} archived behind a checkpoint")
            if f.receipt_id in self._ids or f.receipt_id in ids:
                raise StoreConflict(f"receipt_id {f.receipt_id!r} exists")
            if seq in self._seqs or seq in seqs:
                raise StoreConflict(f"seq {seq} exists")
            ids.add(f.receipt_id)
            seqs.add(seq)
        self._rows.extend(rows)
        self._ids |= ids
        self._seqs |= seqs
        self.commits += 1

    async def decision_records(
        self, *, since: str = "", tenant: str | None = None
    ) -> list[DecisionRecord]:
        self._check()
        return [
            DecisionRecord(r.canonical, r.record)
            for r in self._rows
            if r.record is not None
            and r.fields.issued_at >= since
            and (tenant is None or r.fields.tenant == tenant)
        ]

    async def heads(self, keys: Sequence[SessionKey]) -> dict[SessionKey, ChainHead]:
        self._check()
        wanted = set(keys)
        out: dict[SessionKey, ChainHead] = {}
        for r in self._rows:
            key = (r.fields.tenant, r.fields.session_id)
            if key in wanted and (key not in out or out[key].seq < r.fields.seq):
                kind = r.fields.kind
                if kind == CHECKPOINT_KIND:
                    kind = str(load_receipt(r.canonical)["head"]["kind"])
                out[key] = ChainHead(r.fields.seq, r.hash, kind)
        return out

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
        self._check()
        key = (tenant, session_id)
        doomed = [
            i
            for i, r in enumerate(self._rows)
            if (r.fields.tenant, r.fields.session_id) == key and r.fields.seq <= through_seq
        ]
        at = [self._rows[i] for i in doomed if self._rows[i].fields.seq == through_seq]
        if not at or at[0].hash != through_hash:
            raise StoreConflict(f"seq {through_seq} is not the receipt that was archived")
        if len(doomed) != expected_rows:
            raise StoreConflict(f"{len(doomed)} rows up to seq {through_seq}, not {expected_rows}")
        if checkpoint.fields.receipt_id in self._ids:
            raise StoreConflict(f"receipt_id {checkpoint.fields.receipt_id!r} exists")
        gone = set(doomed)
        for i in doomed:
            f = self._rows[i].fields
            self._ids.discard(f.receipt_id)
            self._seqs.discard((f.tenant, f.session_id, f.seq))
        kept = [r for i, r in enumerate(self._rows) if i not in gone]
        kept.insert(doomed[0], checkpoint)  # where the chain began: export order stays
        self._rows = kept
        self._ids.add(checkpoint.fields.receipt_id)
        self._seqs.add((tenant, session_id, through_seq))
        self._checkpoint_seq[key] = through_seq

    async def existing_ids(self, receipt_ids: Sequence[str]) -> set[str]:
        self._check()
        return {rid for rid in receipt_ids if rid in self._ids}

    async def get(self, receipt_id: str) -> Receipt | None:
        self._check()
        for r in self._rows:
            if r.fields.receipt_id == receipt_id:
                return load_receipt(r.canonical)
        return None

    async def list_session(self, tenant: str, session_id: str) -> list[Receipt]:
        return [load_receipt(t) for t in await self.export(tenant, session_id)]

    async def list_by_decision(self, decision_id: str) -> list[Receipt]:
        self._check()
        return [
            load_receipt(r.canonical) for r in self._rows if r.fields.decision_id == decision_id
        ]

    async def export(self, tenant: str, session_id: str) -> list[str]:
        self._check()
        return [
            r.canonical
            for r in self._rows
            if r.fields.tenant == tenant and r.fields.session_id == session_id
        ]

    async def sessions(self) -> list[SessionKey]:
        self._check()
        return list(dict.fromkeys((r.fields.tenant, r.fields.session_id) for r in self._rows))

    async def count(self) -> int:
        self._check()
        return len(self._rows)

    async def healthy(self) -> bool:
        return not self.unavailable

    async def aclose(self) -> None:
        return None
