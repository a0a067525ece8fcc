"""A bounded request_id cache: a retry with the same id gets the same decision.

Keys are scoped by tenant and session so one tenant's ids never answer another's.
Concurrent calls with the same key share one evaluation. A reused id with different
content is a client error. Fail-closed DENYs are not cached: a retry after the
sidecar recovers gets a real policy decision.

Bounded by count and by bytes, per tenant and in all (docs/performance.md, "Memory
bounds"): an entry is charged the encoded length of the record it keeps (its receipt
holds the action's redacted parameters: a 1 MB request caches ~1 MB). Evicting an
entry is always safe (a retry is then judged anew), so room is made oldest first.
"""

from __future__ import annotations

import asyncio

import orjson

from aarm_pdp.errors import RequestInvalid
from aarm_pdp.model.bounds import BoundedMap, BoundStats, Budget
from aarm_pdp.model.decision import DecisionRecord

Key = tuple[str, str, str, str]
"""(tenant, session id, request id, calling principal)."""


class IdempotencyCache:
    """LRU of completed decisions plus the evaluations still in flight."""

    def __init__(
        self,
        max_entries: int = 100_000,
        ttl_ns: int = 600 * 10**9,
        *,
        tenant_bytes: int = 64 << 20,
        total_bytes: int = 256 << 20,
    ) -> None:
        self._ttl = ttl_ns
        self._done: BoundedMap[Key, tuple[str, int, DecisionRecord]] = BoundedMap(
            "idempotency",
            Budget(tenant_bytes, total_bytes, total_entries=max_entries),
        )
        self._pending: dict[Key, tuple[str, asyncio.Future[DecisionRecord]]] = {}

    def bound_stats(self) -> list[BoundStats]:
        return [self._done.stats()]

    def usage(self, tenant: str | None = None) -> tuple[int, int]:
        """(bytes, entries) cached for ``tenant`` (or in all)."""
        u = self._done.usage(tenant)
        return u.bytes, u.entries

    def lookup(
        self, key: Key, fingerprint: str, now_ns: int
    ) -> DecisionRecord | asyncio.Future[DecisionRecord] | None:
        """A cached record, a future for an evaluation in flight, or None."""
        hit = self._done.get(key)
        if hit is not None:
            fp, stored_at, record = hit
            if now_ns - stored_at > self._ttl:
                self._done.evict(key, "ttl")
            else:
                if fp != fingerprint:
                    raise RequestInvalid("request_id reused with different content")
                self._done.touch(key)
                return record
        pending = self._pending.get(key)
        if pending is not None:
            if pending[0] != fingerprint:
                raise RequestInvalid("request_id reused with different content")
            return pending[1]
        return None

    def begin(self, key: Key, fingerprint: str) -> asyncio.Future[DecisionRecord]:
        """Mark an evaluation in flight; later callers with the key await its future."""
        fut: asyncio.Future[DecisionRecord] = asyncio.get_running_loop().create_future()
        self._pending[key] = (fingerprint, fut)
        return fut

    def finish(self, key: Key, record: DecisionRecord, now_ns: int, *, store: bool) -> None:
        """Resolve the in-flight future and, if ``store``, remember the record."""
        entry = self._pending.pop(key, None)
        if entry is not None:
            if not entry[1].done():
                entry[1].set_result(record)
            if store and self._done.budget.total_entries != 0:
                size = record_size(record) + len(entry[0]) + sum(map(len, key))
                if size <= self._done.budget.max_entry:
                    value = (entry[0], now_ns, record)
                    self._done.put(key, key[0], value, size, evictable=_always, reason="budget")
                else:  # bigger than a tenant's whole budget: not cached (judged anew)
                    self._done.refusals["entry"] += 1

    def abandon(self, key: Key, exc: BaseException) -> None:
        """Forget an evaluation that raised; callers waiting on it see ``exc``."""
        entry = self._pending.pop(key, None)
        if entry is not None and not entry[1].done():
            entry[1].set_exception(exc)
            entry[1].exception()  # mark retrieved: nobody may be waiting

    def __len__(self) -> int:
        return len(self._done)


def _always(_: Key, __: tuple[str, int, DecisionRecord]) -> bool:
    return True


def record_size(record: DecisionRecord) -> int:
    """Encoded bytes of a cached record (orjson: ~1 µs per KiB)."""
    return len(orjson.dumps(record))
