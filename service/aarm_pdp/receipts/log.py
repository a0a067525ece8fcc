"""The receipt log: chain, sign and durably store receipts with group commit.

:meth:`ReceiptLog.append` returns a signed receipt only after the store has
committed it. Appends are queued; one writer task takes everything pending (up to
``max_batch``), assigns each receipt its ``chain.seq`` and ``chain.prev`` from an
in-process cache of chain heads, signs it, inserts the whole batch in ONE
transaction, commits, and then resolves every waiter. One fsync (SQLite) or one
commit round trip (PostgreSQL) is thus shared by every append that arrived while the
previous batch was being written. Before it takes a batch the writer lets a few
event-loop iterations pass (``gather_yields``, no timer): a decision whose policy
answer has just arrived appends within one or two, and joins this commit instead of
paying for the next one (commits are what cost CPU: ~175 µs each with SQLite's fsync).

Several replicas may append to the same session through a shared PostgreSQL store.
A replica whose cached head is stale hits UNIQUE (tenant, session_id, seq); the
whole batch rolls back, the log re-reads the heads of that batch's chains from the
store, re-chains and re-signs the batch, and retries. Rows are immutable, so a
fresh head is exact and the chain cannot fork.

The same mechanism lets the log skip a store read for a chain it has no cached head
for: it assumes the chain is new (seq 1), which is what a new session needs, and
costs nothing. A chain that does exist in the store (this process restarted, the
head fell out of the cache, another replica started it) makes that insert conflict
on seq 1, and the retry reads its head from the store. So a new session's first
receipt costs one writer round trip, not two.

Keys: each batch is signed by the key ring's active key, after
:meth:`~aarm_pdp.receipts.keys.KeyRing.refresh` (a rotation in the key directory is
picked up within a second). A receipt whose ``issued_at`` lies outside the active
key's validity window is not signed (it would not verify): it fails alone with
:class:`ReceiptInvalid`.

Failure: when the store fails, every waiter of the batch gets
:class:`ReceiptStoreUnavailable` (the engine answers DENY). When the queue is full
``append`` waits (back-pressure) for at most ``enqueue_timeout`` and then fails the
same way. A body that is invalid, reuses a stored receipt id or extends a chain
after its ``session_end`` fails alone with :class:`ReceiptInvalid`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aarm_pdp.errors import AarmError, ReceiptInvalid, ReceiptStoreUnavailable
from aarm_pdp.receipts.envelope import (
    GENESIS,
    TERMINAL_KIND,
    PreparedBody,
    Receipt,
    SignedReceipt,
    complete,
    index_fields,
    receipt_hash,
    validate_body,
)
from aarm_pdp.receipts.keys import KeyRing, SigningKey
from aarm_pdp.receipts.store import (
    ChainHead,
    ReceiptStore,
    SessionKey,
    StoreConflict,
    StoredReceipt,
)
from aarm_pdp.receipts.verify import parse_timestamp

__all__ = ["LogStats", "ReceiptLog"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH: Final = 256
DEFAULT_MAX_PENDING: Final = 10_000
DEFAULT_ENQUEUE_TIMEOUT_SECONDS: Final = 5.0
DEFAULT_MAX_CONFLICT_RETRIES: Final = 50
DEFAULT_HEAD_CACHE_SIZE: Final = 100_000
DEFAULT_GATHER_YIELDS: Final = 3
"""Event-loop iterations the writer lets pass before it takes a batch."""


@dataclass
class LogStats:
    """Counters for the metrics catalogue and the benchmark."""

    appended: int = 0
    batches: int = 0
    max_batch: int = 0
    conflicts: int = 0
    store_failures: int = 0
    rejected: int = 0


@dataclass
class _Pending:
    body: PreparedBody
    future: asyncio.Future[Receipt]
    record: str | None = None
    key: SessionKey = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.body.tenant, self.body.session_id)


class ReceiptLog:
    """Signs and appends receipts to ``store``, chained per (tenant, session_id).

    ``max_batch=1`` disables group commit (one transaction per receipt).
    ``gather_yields``: event-loop iterations the writer waits before it takes a batch,
    so that appends made by tasks ready at that moment share its commit.
    """

    def __init__(
        self,
        store: ReceiptStore,
        keyring: KeyRing,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_pending: int = DEFAULT_MAX_PENDING,
        enqueue_timeout: float | None = DEFAULT_ENQUEUE_TIMEOUT_SECONDS,
        max_conflict_retries: int = DEFAULT_MAX_CONFLICT_RETRIES,
        head_cache_size: int = DEFAULT_HEAD_CACHE_SIZE,
        gather_yields: int = DEFAULT_GATHER_YIELDS,
    ) -> None:
        if max_batch < 1 or max_pending < 1:
            raise ValueError("max_batch and max_pending must be >= 1")
        self.store = store
        self.keyring = keyring
        """Signs new receipts; replace it to pick up a rotated key."""
        self.stats = LogStats()
        self._max_batch = max_batch
        self._gather_yields = gather_yields if max_batch > 1 else 0
        self._enqueue_timeout = enqueue_timeout
        self._max_retries = max_conflict_retries
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_pending)
        self._heads: OrderedDict[SessionKey, ChainHead] = OrderedDict()
        self._read_through: set[SessionKey] = set()
        """Chains whose head must come from the store (an insert conflicted on them)."""
        self._head_cache_size = head_cache_size
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    # --- public ---------------------------------------------------------------------

    async def start(self) -> None:
        """Prepare the store and start the writer (``append`` also does this lazily)."""
        await self.store.start()
        self._ensure_writer()

    async def append(self, body: Mapping[str, Any], *, record: str | None = None) -> Receipt:
        """Chain, sign and durably store ``body``; return the signed receipt.

        ``record``: the decision record stored beside it (the receipt's
        ``decision.input_sha256`` binds it), written in the same transaction.

        Raises:
            ReceiptInvalid: the body is not a valid receipt body (see envelope), its
                receipt_id is already stored, or its chain already ended.
            ReceiptStoreUnavailable: the store failed, the log is closed, or the queue
                stayed full for ``enqueue_timeout`` seconds.
        """
        if self._closing:
            raise ReceiptStoreUnavailable("receipt log is closed")
        item = _Pending(
            validate_body(body), asyncio.get_running_loop().create_future(), record=record
        )
        # A waiter cancelled by its caller must not log "exception never retrieved".
        item.future.add_done_callback(_retrieve)
        self._ensure_writer()
        try:
            self._queue.put_nowait(item)  # the common case: no timer to arm and cancel
        except asyncio.QueueFull:
            try:
                if self._enqueue_timeout is None:
                    await self._queue.put(item)
                else:
                    async with asyncio.timeout(self._enqueue_timeout):
                        await self._queue.put(item)
            except TimeoutError:
                raise ReceiptStoreUnavailable("receipt log queue full (store too slow)") from None
        # If the caller is cancelled now, the receipt is still written: shield the waiter.
        return await asyncio.shield(item.future)

    @property
    def pending(self) -> int:
        """Appends queued and not yet taken by the writer."""
        return self._queue.qsize()

    async def healthy(self) -> bool:
        """The writer is alive and the store answers."""
        writer_ok = self._writer is None or not self._writer.done()
        return writer_ok and not self._closing and await self.store.healthy()

    async def aclose(self) -> None:
        """Stop accepting appends, write what is queued, stop the writer.

        Does not close the store (the caller owns it).
        """
        if self._closing:
            return
        self._closing = True
        if self._writer is not None and not self._writer.done():
            await self._queue.join()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._fail_queued(ReceiptStoreUnavailable("receipt log is closed"))

    # --- writer ---------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._run(), name="aarm-receipt-writer")

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            # Let the tasks that are ready now run first (decisions whose policy answer
            # has just arrived append within a loop iteration or two): their receipts
            # join this commit instead of waiting for the next one. Costs a few µs, no
            # timer, and nothing when no one else appends (docs/performance.md,
            # "Receipt CPU").
            for _ in range(self._gather_yields):
                await asyncio.sleep(0)
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                _fail(batch, ReceiptStoreUnavailable("receipt log stopped mid-batch"))
                raise
            except Exception as exc:  # never let a waiter hang on an unexpected bug
                log.exception("receipt writer failed a batch")
                _fail(batch, ReceiptStoreUnavailable(f"receipt writer failed: {exc!r}"))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[_Pending]) -> None:
        live = batch
        for attempt in range(self._max_retries + 1):
            live = [p for p in live if not p.future.done()]
            if not live:
                return
            try:
                if await self._try_write(live):
                    return
                await self._after_conflict(live)
            except AarmError as exc:
                self.stats.store_failures += 1
                log.warning("receipt store failed; %d appends fail closed: %s", len(live), exc)
                if not isinstance(exc, ReceiptStoreUnavailable):
                    exc = ReceiptStoreUnavailable(exc.detail)
                _fail(live, exc)
                return
            await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))  # noqa: S311
        _fail(live, ReceiptStoreUnavailable("receipt chain kept conflicting; gave up"))

    async def _try_write(self, live: list[_Pending]) -> bool:
        """Chain, sign and insert ``live`` in one transaction; False on a seq conflict."""
        cached = await self._load_heads({p.key for p in live})
        rows, results, heads = self._chain_and_sign(live, cached)
        if rows:
            try:
                await self.store.insert_batch(rows)
            except StoreConflict as exc:
                self.stats.conflicts += 1
                log.debug("receipt batch conflicted, re-chaining: %s", exc)
                return False
        for key, head in heads.items():
            self._remember(key, head)
        for p, receipt in results:
            if not p.future.done():
                p.future.set_result(receipt)
        self.stats.appended += len(results)
        self.stats.batches += 1
        self.stats.max_batch = max(self.stats.max_batch, len(results))
        return True

    async def _load_heads(self, keys: set[SessionKey]) -> dict[SessionKey, ChainHead | None]:
        heads: dict[SessionKey, ChainHead | None] = {}
        missing = []
        for key in keys:
            if key in self._heads:
                self._heads.move_to_end(key)
                heads[key] = self._heads[key]
            elif key in self._read_through:
                missing.append(key)
            else:
                heads[key] = None  # assumed new; a conflict on seq 1 says otherwise
        if missing:
            stored = await self.store.heads(missing)
            for key in missing:
                heads[key] = stored.get(key)
                self._read_through.discard(key)
        return heads

    def _chain_and_sign(
        self, batch: list[_Pending], heads: dict[SessionKey, ChainHead | None]
    ) -> tuple[list[StoredReceipt], list[tuple[_Pending, Receipt]], dict[SessionKey, ChainHead]]:
        self.keyring.refresh()
        key = self.keyring.active

        def sign(payload: bytes) -> tuple[str, bytes]:
            return key.key_id, key.sign(payload)

        rows: list[StoredReceipt] = []
        results: list[tuple[_Pending, Receipt]] = []
        new_heads: dict[SessionKey, ChainHead] = {}
        seen_ids: set[str] = set()
        for p in batch:
            head = new_heads.get(p.key) or heads.get(p.key)
            rid = p.body.receipt_id
            if head is not None and head.kind == TERMINAL_KIND:
                self._reject(p, f"session {p.key[1]!r} already ended; no receipt after it")
                continue
            if rid in seen_ids:
                self._reject(p, f"receipt_id {rid!r} appended twice")
                continue
            if key.window.bounded and not _in_window(key, p.body.issued_at):
                self._reject(
                    p, f"issued_at is outside the validity window of signing key {key.key_id!r}"
                )
                continue
            seen_ids.add(rid)
            canonical, receipt = complete(
                p.body,
                seq=head.seq + 1 if head else 1,
                prev=head.hash if head else GENESIS,
                sign=sign,
            )
            digest = receipt_hash(canonical)
            fields = index_fields(receipt)
            text = receipt.canonical if isinstance(receipt, SignedReceipt) else canonical.decode()
            rows.append(StoredReceipt(fields, digest, text, p.record))
            results.append((p, receipt))
            new_heads[p.key] = ChainHead(fields.seq, digest, fields.kind)
        return rows, results, new_heads

    async def _after_conflict(self, batch: list[_Pending]) -> None:
        """Forget the batch's cached heads and fail appends whose receipt_id is stored."""
        for key in {p.key for p in batch}:
            self._heads.pop(key, None)
            self._read_through.add(key)
        stored = await self.store.existing_ids([p.body.receipt_id for p in batch])
        for p in batch:
            if p.body.receipt_id in stored:
                self._reject(p, f"receipt_id {p.body.receipt_id!r} is already stored")

    def _reject(self, p: _Pending, detail: str) -> None:
        self.stats.rejected += 1
        if not p.future.done():
            p.future.set_exception(ReceiptInvalid(detail))

    def _remember(self, key: SessionKey, head: ChainHead) -> None:
        if head.kind == TERMINAL_KIND:
            self._heads.pop(key, None)  # ended: the store answers if anyone asks again
            return
        self._heads[key] = head
        self._heads.move_to_end(key)
        while len(self._heads) > self._head_cache_size:
            self._heads.popitem(last=False)

    def _fail_queued(self, exc: AarmError) -> None:
        while True:
            try:
                p = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            _fail([p], exc)
            self._queue.task_done()


def _in_window(key: SigningKey, issued_at: str) -> bool:
    try:
        return key.window.check(parse_timestamp(issued_at)) is None
    except ValueError:  # not RFC 3339: no verifier could place it in the window
        return False


def _retrieve(future: asyncio.Future[Receipt]) -> None:
    if not future.cancelled():
        future.exception()


def _fail(batch: list[_Pending], exc: AarmError) -> None:
    for p in batch:
        if not p.future.done():
            p.future.set_exception(exc)
