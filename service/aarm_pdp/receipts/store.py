"""The append-only receipt store port, and what travels through it.

Two implementations: :class:`~aarm_pdp.receipts.sqlite_store.SqliteReceiptStore`
(one file, WAL, a dedicated writer thread) and
:class:`~aarm_pdp.receipts.postgres_store.PostgresReceiptStore` (psycopg 3 pool,
shared by replicas). Both keep the exact canonical signed bytes of each receipt,
refuse UPDATE and DELETE with triggers (except :meth:`ReceiptStore.replace_prefix`:
archiving), and enforce UNIQUE (tenant, session_id, seq) and a unique receipt_id.

Errors: every failure of the backing database is :class:`ReceiptStoreUnavailable`,
except a uniqueness conflict on insert, which is :class:`StoreConflict` so that the
log can refresh its chain heads and retry. StoreConflict never leaves this package.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from aarm_pdp.errors import ReceiptStoreUnavailable
from aarm_pdp.receipts.canonical import parse
from aarm_pdp.receipts.envelope import IndexFields, Receipt

__all__ = ["ChainHead", "ReceiptStore", "SessionKey", "StoreConflict", "StoredReceipt"]

SessionKey = tuple[str, str]
"""(tenant, session_id): one chain."""


class StoreConflict(Exception):
    """An insert hit a unique constraint: a seq or receipt_id that is already stored.

    Internal to the receipts package: the log refreshes and retries, or fails the
    offending waiters with ReceiptInvalid.
    """


class ChainHead(NamedTuple):
    """The last stored receipt of a chain (for a chain archived up to its end, the
    archived head its checkpoint names: that receipt's seq, hash and kind)."""

    seq: int
    hash: str
    kind: str


@dataclass(frozen=True, slots=True)
class StoredReceipt:
    """One row: the indexed columns, the hash and the exact canonical signed text."""

    fields: IndexFields
    hash: str
    canonical: str
    record: str | None = None
    """A decision receipt's decision record: the redacted policy input, canonical JSON
    (its sha256 is the receipt's ``decision.input_sha256``); kept beside the receipt
    and removed with it (docs/policy-lifecycle.md, "Replay")."""


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A stored decision receipt and the policy input it was decided on."""

    receipt: str
    """The receipt's canonical signed text."""
    record: str
    """The redacted input, canonical JSON."""


def load_receipt(canonical: str) -> Receipt:
    receipt: dict[str, Any] = parse(canonical)
    return receipt


class ReceiptStore(abc.ABC):
    """An append-only store of signed receipts. All methods are coroutine-safe."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Open connections and create the schema if needed (idempotent)."""

    @abc.abstractmethod
    async def insert_batch(self, rows: Sequence[StoredReceipt]) -> None:
        """Insert ``rows`` in ONE transaction and commit durably, or insert nothing.

        Raises:
            StoreConflict: a (tenant, session_id, seq) or receipt_id already exists.
            ReceiptStoreUnavailable: anything else went wrong.
        """

    @abc.abstractmethod
    async def heads(self, keys: Sequence[SessionKey]) -> dict[SessionKey, ChainHead]:
        """The stored head of each chain in ``keys``; chains with no receipt are absent."""

    @abc.abstractmethod
    async def existing_ids(self, receipt_ids: Sequence[str]) -> set[str]:
        """Which of ``receipt_ids`` are already stored."""

    @abc.abstractmethod
    async def get(self, receipt_id: str) -> Receipt | None:
        """One receipt by id, or None."""

    @abc.abstractmethod
    async def list_session(self, tenant: str, session_id: str) -> list[Receipt]:
        """The receipts of one chain, in stored order."""

    @abc.abstractmethod
    async def list_by_decision(self, decision_id: str) -> list[Receipt]:
        """Every receipt about one decision (e.g. a DEFER and its follow-up), stored order."""

    @abc.abstractmethod
    async def export(self, tenant: str, session_id: str) -> list[str]:
        """The exact canonical signed text of each receipt of one chain, stored order."""

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
        """Archive: in ONE transaction, delete the chain's records with seq <= ``through_seq``
        and insert ``checkpoint`` (whose ``hash`` is ``through_hash``) in their place.

        The only removal the store allows, and only this way (``receipts archive``
        calls it after the archive file is durably written). Refused, changing
        nothing, unless the record at ``through_seq`` has hash ``through_hash`` and
        exactly ``expected_rows`` records are deleted (another archive got there first).
        Once a chain has a checkpoint, the store refuses any insert at or below its seq,
        so an append from a stale chain head conflicts and re-reads the head instead of
        restarting the chain.

        Raises:
            StoreConflict: the prefix is not what was archived.
            ReceiptStoreUnavailable: the store failed, or does not archive.
        """
        raise ReceiptStoreUnavailable(f"{type(self).__name__} does not archive")

    async def decision_records(
        self, *, since: str = "", tenant: str | None = None
    ) -> list[DecisionRecord]:
        """Decision receipts issued at or after ``since`` (RFC 3339, the receipts' own
        UTC form; "" for all) of ``tenant`` (None: every tenant) that carry a decision
        record, in store order. A store without records: none."""
        return []

    @abc.abstractmethod
    async def sessions(self) -> list[SessionKey]:
        """Every (tenant, session_id) with at least one receipt."""

    @abc.abstractmethod
    async def count(self) -> int:
        """How many receipts are stored."""

    @abc.abstractmethod
    async def healthy(self) -> bool:
        """True when the store answers a trivial query now; never raises."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections and threads (idempotent)."""
