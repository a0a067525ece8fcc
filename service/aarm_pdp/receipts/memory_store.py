"""An in-process receipt store: the fake for unit tests, with the real stores' semantics.

Append-only (no method changes or removes a row), one batch is all-or-nothing, and
uniqueness conflicts raise StoreConflict like the SQL stores. ``delay`` slows every
commit (to exercise group commit); setting ``unavailable`` makes every call fail
with ReceiptStoreUnavailable (to exercise fail-closed paths).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aarm_pdp.errors import ReceiptStoreUnavailable
from aarm_pdp.receipts.envelope import Receipt
from aarm_pdp.receipts.store import (
    ChainHead,
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

    async def heads(self, keys: Sequence[SessionKey]) -> dict[SessionKey, ChainHead]:
        self._check()
        wanted = set(keys)
        out: dict[SessionKey, ChainHead] = {}
        for r in self._rows:
            key = (r.fields.tenant, r.fields.session_id)
            if key in wanted and (key not in out or out[key].seq < r.fields.seq):
                out[key] = ChainHead(r.fields.seq, r.hash, r.fields.kind)
        return out

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
