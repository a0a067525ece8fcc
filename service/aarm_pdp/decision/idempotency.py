"""A bounded request_id cache: a retry with the same id gets the same decision.

Keys are scoped by tenant and session so one tenant's ids never answer another's.
Concurrent calls with the same key share one evaluation. A reused id with different
content is a client error. Fail-closed DENYs are not cached: a retry after the
sidecar recovers gets a real policy decision.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from aarm_pdp.errors import RequestInvalid
from aarm_pdp.model.decision import DecisionRecord

Key = tuple[str, str, str, str]
"""(tenant, session id, request id, calling principal)."""


class IdempotencyCache:
    """LRU of completed decisions plus the evaluations still in flight."""

    def __init__(self, max_entries: int = 100_000, ttl_ns: int = 600 * 10**9) -> None:
        self._max = max_entries
        self._ttl = ttl_ns
        self._done: OrderedDict[Key, tuple[str, int, DecisionRecord]] = OrderedDict()
        self._pending: dict[Key, tuple[str, asyncio.Future[DecisionRecord]]] = {}

    def lookup(
        self, key: Key, fingerprint: str, now_ns: int
    ) -> DecisionRecord | asyncio.Future[DecisionRecord] | None:
        """A cached record, a future for an evaluation in flight, or None."""
        hit = self._done.get(key)
        if hit is not None:
            fp, stored_at, record = hit
            if now_ns - stored_at > self._ttl:
                del self._done[key]
            else:
                if fp != fingerprint:
                    raise RequestInvalid("request_id reused with different content")
                self._done.move_to_end(key)
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
            if store:
                self._done[key] = (entry[0], now_ns, record)
                while len(self._done) > self._max:
                    self._done.popitem(last=False)

    def abandon(self, key: Key, exc: BaseException) -> None:
        """Forget an evaluation that raised; callers waiting on it see ``exc``."""
        entry = self._pending.pop(key, None)
        if entry is not None and not entry[1].done():
            entry[1].set_exception(exc)
            entry[1].exception()  # mark retrieved: nobody may be waiting

    def __len__(self) -> int:
        return len(self._done)
