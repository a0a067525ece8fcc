"""Where session state lives: one interface, in-memory (default) or Redis.

Every update is an atomic read-modify-write of one session: the caller passes a
pure function from the stored bytes to the new bytes, and the store guarantees no
concurrent update is lost (a single event loop in memory; WATCH/MULTI in Redis).
A store that cannot answer raises :class:`~aarm_pdp.errors.SessionStoreUnavailable`,
which the engine turns into a DENY.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, TypeVar

T = TypeVar("T")
Updater = Callable[[bytes | None], tuple[bytes | None, T]]

MAX_INDEX_PER_SESSION = 4096
MAX_LOG_PER_SESSION = 20_000
MAX_ARTIFACTS_PER_TENANT = 100_000


def session_key(tenant: str, session_id: str) -> str:
    """A fixed-length key for a (tenant, session) pair: no injection, bounded size."""
    return hashlib.sha256(f"{tenant}\0{session_id}".encode()).hexdigest()[:40]


def tenant_key(tenant: str) -> str:
    """A fixed-length key for a tenant."""
    return hashlib.sha256(f"tenant\0{tenant}".encode()).hexdigest()[:40]


class SessionStore(Protocol):
    """Session state, provenance index, context log and artifact taint."""

    async def load(
        self, key: str, fingerprints: list[str], tenant: str, artifacts: list[str]
    ) -> tuple[bytes | None, dict[str, int], int]:
        """State bytes, index masks of ``fingerprints``, max artifact level (-1 if none)."""
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

    async def healthy(self) -> bool:
        """True when the store answers."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


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
        self, key: str, fingerprints: list[str], tenant: str, artifacts: list[str]
    ) -> tuple[bytes | None, dict[str, int], int]:
        self._expire()
        entry = self._state.get(key)
        index = self._index.get(key, {})
        masks = {fp: index[fp] for fp in fingerprints if fp in index}
        known: dict[str, int] = self._artifacts.get(tenant, {})
        art = max((known[a] for a in artifacts if a in known), default=-1)
        return (entry[1] if entry else None), masks, art

    async def update(self, key: str, fn: Updater[T], log: Callable[[T], list[bytes]]) -> T:
        self._expire()
        entry = self._state.get(key)
        new, result = fn(entry[1] if entry else None)
        if new is None:
            self._drop(key)
            return result
        self._state[key] = (self._clock(), new)
        self._state.move_to_end(key)
        entries = self._log.setdefault(key, [])
        entries.extend(log(result))
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

    async def healthy(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None
