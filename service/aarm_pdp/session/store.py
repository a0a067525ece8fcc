"""Where session state lives: one interface, in-memory (default) or Redis.

Every update is an atomic read-modify-write of one session: the caller passes a
pure function from the stored bytes to the new bytes, and the store guarantees no
concurrent update is lost (a single event loop in memory; WATCH/MULTI in Redis).
The same store keeps approval and deferral tickets and identity revocations, so
every replica sees them. A store that cannot answer raises
:class:`~aarm_pdp.errors.SessionStoreUnavailable`, which the engine turns into DENY.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")
Updater = Callable[[bytes | None], tuple[bytes | None, T]]

MAX_INDEX_PER_SESSION = 32_768
MAX_LOG_PER_SESSION = 20_000
MAX_ARTIFACTS_PER_TENANT = 100_000
REVOCATION_TTL_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Loaded:
    """One read of everything a decision needs from the store."""

    state: bytes | None
    masks: dict[str, int]
    artifact_level: int
    revoked: bool


def session_key(tenant: str, session_id: str) -> str:
    """A fixed-length key for a (tenant, session) pair: no injection, bounded size."""
    return hashlib.sha256(f"{tenant}\0{session_id}".encode()).hexdigest()[:40]


def tenant_key(tenant: str) -> str:
    """A fixed-length key for a tenant."""
    return hashlib.sha256(f"tenant\0{tenant}".encode()).hexdigest()[:40]


class SessionStore(Protocol):
    """Session state, provenance index, context log, artifact taint, tickets, revocations."""

    async def load(
        self,
        key: str,
        fingerprints: Sequence[str],
        tenant: str,
        artifacts: Sequence[str],
        subjects: Sequence[str] = (),
    ) -> Loaded:
        """State, index masks of ``fingerprints``, max artifact level, any subject revoked."""
        ...

    async def update(self, key: str, fn: Updater[T], log: Callable[[T], list[bytes]]) -> T:
        """Atomically apply ``fn``; append ``log(result)`` to the context log."""
        ...

    async def index_add(self, key: str, masks: dict[str, int]) -> None:
        """OR ``masks`` into the session's provenance index."""
        ...

    async def artifacts_raise(self, tenant: str, levels: dict[str, int]) -> None:
        """Raise the recorded classification of artifacts (never lowers it)."""
        ...

    async def read_log(self, key: str) -> list[bytes]:
        """The session's context log entries, oldest first."""
        ...

    async def delete(self, key: str) -> None:
        """Forget a session (state, index, log)."""
        ...

    async def revoke(self, tenant: str, subject: str) -> None:
        """Revoke a principal or credential id for the tenant."""
        ...

    async def ticket_create(self, tid: str, data: bytes, index: str, deadline_ns: int) -> None:
        """Store a new pending approval or deferral, listed under ``index`` until closed."""
        ...

    async def ticket_get(self, tid: str) -> bytes | None:
        """A ticket's bytes."""
        ...

    async def ticket_update(self, tid: str, fn: Updater[T], close_index: str | None) -> T:
        """Atomically rewrite a ticket; ``close_index`` also takes it off pending lists."""
        ...

    async def tickets_pending(self, index: str) -> list[bytes]:
        """Pending tickets under ``index``."""
        ...

    async def tickets_due(self, now_ns: int, limit: int = 100) -> list[str]:
        """Ids of pending tickets whose deadline has passed."""
        ...

    async def healthy(self) -> bool:
        """True when the store answers."""
        ...

    async def revocations_current(self) -> bool:
        """False when the store lost its state (a restarted Redis) since revocations were
        last replayed into it with :meth:`mark_revocations_loaded`; loads then fail closed."""
        ...

    async def mark_revocations_loaded(self) -> None:
        """Say the durable revocations were replayed into this store."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


TICKET_TTL_SECONDS = 7 * 24 * 3600
"""How long a ticket is kept after its last change (both stores)."""


class MemorySessionStore:
    """In-process store: sessions expire after ``ttl_seconds`` without activity."""

    def __init__(
        self, ttl_seconds: int = 3600, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._state: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._index: dict[str, dict[str, int]] = {}
        self._log: dict[str, list[bytes]] = {}
        self._artifacts: dict[str, OrderedDict[str, int]] = {}
        self._revoked: dict[str, dict[str, float]] = {}
        # ticket id -> (last write, data); oldest write first. Kept TICKET_TTL_SECONDS after
        # the last write, as the Redis store does, so a long-lived process does not keep
        # every settled ticket forever.
        self._tickets: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._pending: dict[str, dict[str, None]] = {}
        self._due: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._state)

    def _expire(self) -> None:
        now = self._clock()
        while self._state:
            key, (seen, _) = next(iter(self._state.items()))
            if now - seen <= self._ttl:
                break
            self._drop(key)

    def _drop(self, key: str) -> None:
        self._state.pop(key, None)
        self._index.pop(key, None)
        self._log.pop(key, None)

    async def load(
        self,
        key: str,
        fingerprints: Sequence[str],
        tenant: str,
        artifacts: Sequence[str],
        subjects: Sequence[str] = (),
    ) -> Loaded:
        self._expire()
        entry = self._state.get(key)
        index = self._index.get(key, {})
        masks = {fp: index[fp] for fp in fingerprints if fp in index}
        known: dict[str, int] = self._artifacts.get(tenant, {})
        art = max((known[a] for a in artifacts if a in known), default=-1)
        revoked_at = self._revoked.get(tenant, {})
        now = self._clock()
        revoked = any(
            now - revoked_at[s] < REVOCATION_TTL_SECONDS for s in subjects if s in revoked_at
        )
        return Loaded(entry[1] if entry else None, masks, art, revoked)

    async def update(self, key: str, fn: Updater[T], log: Callable[[T], list[bytes]]) -> T:
        self._expire()
        entry = self._state.get(key)
        new, result = fn(entry[1] if entry else None)
        if new is None:
            self._drop(key)
            return result
        # orjson's bytes keep their growth buffer (~8 KiB): store an exact-size copy.
        self._state[key] = (self._clock(), bytes(memoryview(new)))
        self._state.move_to_end(key)
        entries = self._log.setdefault(key, [])
        # Exact-size copies: orjson's bytes keep their growth buffer (~4 KiB each).
        entries.extend(bytes(memoryview(entry)) for entry in log(result))
        del entries[:-MAX_LOG_PER_SESSION]
        return result

    async def index_add(self, key: str, masks: dict[str, int]) -> None:
        index = self._index.setdefault(key, {})
        for fp, mask in masks.items():
            if fp in index or len(index) < MAX_INDEX_PER_SESSION:
                index[fp] = index.get(fp, 0) | mask

    async def artifacts_raise(self, tenant: str, levels: dict[str, int]) -> None:
        known = self._artifacts.setdefault(tenant, OrderedDict())
        for fp, lvl in levels.items():
            known[fp] = max(lvl, known.get(fp, -1))
            known.move_to_end(fp)
        while len(known) > MAX_ARTIFACTS_PER_TENANT:
            known.popitem(last=False)

    async def read_log(self, key: str) -> list[bytes]:
        return list(self._log.get(key, []))

    async def delete(self, key: str) -> None:
        self._drop(key)

    async def revoke(self, tenant: str, subject: str) -> None:
        self._revoked.setdefault(tenant, {})[subject] = self._clock()

    def _expire_tickets(self) -> None:
        horizon = self._clock() - TICKET_TTL_SECONDS
        while self._tickets:
            tid, (written, _) = next(iter(self._tickets.items()))
            if written > horizon:
                break
            del self._tickets[tid]
            self._due.pop(tid, None)
            for pending in self._pending.values():
                pending.pop(tid, None)

    def _write_ticket(self, tid: str, data: bytes) -> None:
        self._tickets[tid] = (self._clock(), data)
        self._tickets.move_to_end(tid)

    async def ticket_create(self, tid: str, data: bytes, index: str, deadline_ns: int) -> None:
        self._expire_tickets()
        self._write_ticket(tid, data)
        self._pending.setdefault(index, {})[tid] = None
        self._due[tid] = deadline_ns

    async def ticket_get(self, tid: str) -> bytes | None:
        entry = self._tickets.get(tid)
        return entry[1] if entry is not None else None

    async def ticket_update(self, tid: str, fn: Updater[T], close_index: str | None) -> T:
        entry = self._tickets.get(tid)
        new, result = fn(entry[1] if entry is not None else None)
        if new is not None:
            self._write_ticket(tid, new)
        if close_index is not None:
            self._pending.get(close_index, {}).pop(tid, None)
            self._due.pop(tid, None)
        return result

    async def tickets_pending(self, index: str) -> list[bytes]:
        return [self._tickets[t][1] for t in self._pending.get(index, {}) if t in self._tickets]

    async def tickets_due(self, now_ns: int, limit: int = 100) -> list[str]:
        return sorted(t for t, d in self._due.items() if d <= now_ns)[:limit]

    async def healthy(self) -> bool:
        return True

    async def revocations_current(self) -> bool:
        return True  # lives and dies with the process that replays into it

    async def mark_revocations_loaded(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
