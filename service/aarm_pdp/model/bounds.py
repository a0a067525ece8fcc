"""Byte budgets for the caches and stores kept in this process. PURE (no clock, no I/O).

Every entry is charged its encoded size (the bytes the store keeps, or the encoded
length of what a cache keeps) to its tenant and to the whole store. A :class:`Budget`
caps both, in bytes and in entries. :class:`BoundedMap` keeps entries oldest first and
makes room for a new one by evicting, oldest first, only entries the store says may
go (``evictable``); when that is not enough it refuses, raising :class:`BudgetFull`
with the scope that was full. What is safe to evict is each store's policy:

=================  ===========================================  ====================
store              evicts (oldest first)                        refuses
=================  ===========================================  ====================
idempotency        any completed entry                          never
tickets            settled tickets (granted, used, resolved...)  a new pending ticket
sessions           sessions idle past the eviction idle time    a new or grown session
=================  ===========================================  ====================

:class:`BoundStats` is what the metric catalogue exports per store (bytes, entries,
largest tenant, evictions and refusals by reason): no tenant label.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, NoReturn, TypeVar

K = TypeVar("K")
V = TypeVar("V")

TENANT = "tenant"
TOTAL = "total"
ENTRY = "entry"
"""Scopes of a refusal: the tenant's budget, the store's, or one entry too big."""


@dataclass(frozen=True, slots=True)
class Budget:
    """Caps of one store: bytes and entries per tenant and in all (0: no entry cap)."""

    tenant_bytes: int
    total_bytes: int
    tenant_entries: int = 0
    total_entries: int = 0
    entry_bytes: int = 0
    """One entry's cap (0: the tenant's byte budget)."""

    def __post_init__(self) -> None:
        if self.tenant_bytes < 1 or self.total_bytes < self.tenant_bytes:
            raise ValueError("budget: need 1 <= tenant_bytes <= total_bytes")
        if min(self.tenant_entries, self.total_entries, self.entry_bytes) < 0:
            raise ValueError("budget: entry caps must be >= 0")

    @property
    def max_entry(self) -> int:
        return min(self.entry_bytes or self.tenant_bytes, self.tenant_bytes)


class BudgetFull(Exception):
    """No room for an entry: ``scope`` is ``tenant``, ``total`` or ``entry``."""

    def __init__(self, store: str, scope: str) -> None:
        super().__init__(f"{store}: {scope} budget full")
        self.store = store
        self.scope = scope


@dataclass(frozen=True, slots=True)
class Usage:
    """Bytes and entries charged."""

    bytes: int = 0
    entries: int = 0


@dataclass(frozen=True, slots=True)
class BoundStats:
    """A store's state for the metrics: no tenant names, bounded label values."""

    store: str
    bytes: int
    entries: int
    tenants: int
    largest_tenant_bytes: int
    budget: Budget
    evictions: dict[str, int] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)


class _Tenant:
    __slots__ = ("bytes", "keys")

    def __init__(self) -> None:
        self.bytes = 0
        # Oldest write first. A plain dict (insertion-ordered; a key moves to the end by
        # being taken out and put back) costs 40 % of an OrderedDict per key; only the
        # eviction path walks it, skipping the holes moved keys leave until it resizes.
        self.keys: dict[object, None] = {}


class BoundedMap(Generic[K, V]):
    """An ordered map (oldest write first) charged by size, per tenant and in all.

    Invariant (tests/unit/test_bounds.py checks it for any sequence of operations):
    the bytes and entries charged never exceed the budget, per tenant or in all.
    """

    def __init__(self, name: str, budget: Budget) -> None:
        self.name = name
        self.budget = budget
        self._items: OrderedDict[K, tuple[str, int, V]] = OrderedDict()
        self._tenants: dict[str, _Tenant] = {}
        self._bytes = 0
        self.evictions: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()

    # -- reading -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        entry = self._items.get(key)
        return entry[2] if entry is not None else None

    def tenant_of(self, key: K) -> str | None:
        entry = self._items.get(key)
        return entry[0] if entry is not None else None

    def size_of(self, key: K) -> int:
        entry = self._items.get(key)
        return entry[1] if entry is not None else 0

    def items(self) -> Iterator[tuple[K, V]]:
        """Oldest first."""
        for key, (_, _, value) in self._items.items():
            yield key, value

    def oldest(self) -> tuple[K, V] | None:
        for key, (_, _, value) in self._items.items():
            return key, value
        return None

    def usage(self, tenant: str | None = None) -> Usage:
        """What ``tenant`` (or the whole map) is charged."""
        if tenant is None:
            return Usage(self._bytes, len(self._items))
        t = self._tenants.get(tenant)
        return Usage(t.bytes, len(t.keys)) if t is not None else Usage()

    def stats(self) -> BoundStats:
        return BoundStats(
            store=self.name,
            bytes=self._bytes,
            entries=len(self._items),
            tenants=len(self._tenants),
            largest_tenant_bytes=max((t.bytes for t in self._tenants.values()), default=0),
            budget=self.budget,
            evictions=dict(self.evictions),
            refusals=dict(self.refusals),
        )

    # -- writing -------------------------------------------------------------------

    def touch(self, key: K) -> None:
        """Make ``key`` the newest (an LRU read)."""
        entry = self._items.get(key)
        if entry is not None:
            self._items.move_to_end(key)
            keys = self._tenants[entry[0]].keys
            del keys[key]
            keys[key] = None

    def pop(self, key: K) -> V | None:
        """Remove ``key`` (not an eviction: its owner let it go)."""
        entry = self._items.pop(key, None)
        if entry is None:
            return None
        tenant, size, value = entry
        self._bytes -= size
        t = self._tenants[tenant]
        t.bytes -= size
        del t.keys[key]
        if not t.keys:
            del self._tenants[tenant]
        return value

    def evict(self, key: K, reason: str) -> V | None:
        """Remove ``key`` to make room or because it is stale; counted under ``reason``."""
        value = self.pop(key)
        if value is not None:
            self.evictions[reason] += 1
        return value

    def put(
        self,
        key: K,
        tenant: str,
        value: V,
        size: int,
        *,
        evictable: Callable[[K, V], bool] | None = None,
        reason: str = "budget",
    ) -> list[tuple[K, V]]:
        """Store ``value`` (``size`` bytes) for ``tenant``; returns what was evicted.

        Room is made by evicting, oldest first, entries ``evictable`` allows (none when
        it is None), first of the tenant while the tenant is over its budget, then of
        any tenant while the map is. Raises :class:`BudgetFull` (nothing changed)
        when that is not enough; ``key``'s current value is never evicted for itself.
        """
        victims = self._plan(key, tenant, size, evictable)
        evicted: list[tuple[K, V]] = []
        for k in victims:
            gone = self.evict(k, reason)
            if gone is not None:
                evicted.append((k, gone))
        self.pop(key)
        self._items[key] = (tenant, size, value)
        tt = self._tenants.get(tenant)
        if tt is None:
            tt = self._tenants[tenant] = _Tenant()
        tt.bytes += size
        tt.keys[key] = None
        self._bytes += size
        return evicted

    def check(
        self, key: K, tenant: str, size: int, *, evictable: Callable[[K, V], bool] | None = None
    ) -> None:
        """Raise :class:`BudgetFull` (counted) if :meth:`put` would; change nothing.

        For a store to refuse before it does the work of encoding an entry."""
        self._plan(key, tenant, size, evictable)

    def _plan(
        self, key: K, tenant: str, size: int, evictable: Callable[[K, V], bool] | None
    ) -> list[K]:
        """The entries :meth:`put` evicts, oldest first; raises BudgetFull if not enough."""
        b = self.budget
        if size > b.max_entry:
            self._refuse(ENTRY)
        old = self._items.get(key)
        t = self._tenants.get(tenant)
        t_bytes, t_entries = (t.bytes, len(t.keys)) if t is not None else (0, 0)
        total_bytes, total_entries = self._bytes, len(self._items)
        if old is not None:  # a rewrite: charged as its new size, not on top of the old
            total_bytes, total_entries = total_bytes - old[1], total_entries - 1
            if old[0] == tenant:
                t_bytes, t_entries = t_bytes - old[1], t_entries - 1

        def tenant_over(tb: int, te: int) -> bool:
            return tb + size > b.tenant_bytes or (0 < b.tenant_entries <= te)

        def total_over(tb: int, te: int) -> bool:
            return tb + size > b.total_bytes or (0 < b.total_entries <= te)

        victims: list[K] = []
        if tenant_over(t_bytes, t_entries) or total_over(total_bytes, total_entries):
            if evictable is None:
                self._refuse(TENANT if tenant_over(t_bytes, t_entries) else TOTAL)
            chosen: set[object] = set()
            if tenant_over(t_bytes, t_entries):
                for k in t.keys if t is not None else ():
                    if not tenant_over(t_bytes, t_entries):
                        break
                    kk: K = k  # type: ignore[assignment]
                    if kk == key or not evictable(kk, self._items[kk][2]):
                        continue
                    s = self._items[kk][1]
                    victims.append(kk)
                    chosen.add(kk)
                    t_bytes, t_entries = t_bytes - s, t_entries - 1
                    total_bytes, total_entries = total_bytes - s, total_entries - 1
                if tenant_over(t_bytes, t_entries):
                    self._refuse(TENANT)
            if total_over(total_bytes, total_entries):
                for kk, (_, s, v) in self._items.items():
                    if not total_over(total_bytes, total_entries):
                        break
                    if kk == key or kk in chosen or not evictable(kk, v):
                        continue
                    victims.append(kk)
                    total_bytes, total_entries = total_bytes - s, total_entries - 1
                if total_over(total_bytes, total_entries):
                    self._refuse(TOTAL)
        return victims

    def _refuse(self, scope: str) -> NoReturn:
        self.refusals[scope] += 1
        raise BudgetFull(self.name, scope)
