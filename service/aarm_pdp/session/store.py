"""Where session state lives: one interface, in-memory (default) or Redis.

Every update is an atomic read-modify-write of one session: the caller passes a
pure function from the stored bytes to the new bytes, and the store guarantees no
concurrent update is lost (a single event loop in memory; WATCH/MULTI in Redis).
The same store keeps approval and deferral tickets and identity revocations, so
every replica sees them. A store that cannot answer raises
:class:`~aarm_pdp.errors.SessionStoreUnavailable`, which the engine turns into DENY.

Bounded (docs/performance.md, "Memory bounds"): one session's state blob by bytes;
its context log to a window of the newest entries (by entries and bytes), the state's
``log_head`` being the running hash over every entry ever appended and
:meth:`SessionStore.log_window` giving the hash the window starts from; a tenant's
sessions by count (both stores) and bytes (memory: state, log window and provenance
index, with the store's total); tickets by bytes and count per tenant. Past a budget
the store refuses with :class:`~aarm_pdp.errors.BudgetExhausted` (a DENY) instead of
dropping what is still open; only settled tickets and idle sessions are evicted.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Protocol, TypeVar

import orjson

from aarm_pdp.errors import BudgetExhausted, ErrorCode
from aarm_pdp.model.bounds import BoundedMap, BoundStats, Budget, BudgetFull
from aarm_pdp.session import codec

T = TypeVar("T")
Updater = Callable[[bytes | None], tuple[bytes | None, T]]

MAX_INDEX_PER_SESSION = 32_768
MAX_LOG_PER_SESSION = 1024
"""Context-log entries kept per session by default (``session.log_window_entries``)."""
MAX_LOG_BYTES_PER_SESSION = 512 << 10
MAX_STATE_BYTES = 256 << 10
GENESIS = "0" * 64
INDEX_ENTRY_OVERHEAD = 8
"""Bytes charged per provenance-index entry beyond its fingerprint (the mask)."""
INDEX_ENTRY_BYTES = 32 + INDEX_ENTRY_OVERHEAD
"""What the memory store charges per provenance-index entry: a fingerprint's 32 hex
digits and its mask, as the Redis store holds it (the memory store holds 8 bytes)."""
INDEX_MASK_BITS = 0xF
"""The source bits an index entry keeps in the memory store (provenance's four)."""
MAX_ARTIFACTS_PER_TENANT = 100_000
REVOCATION_TTL_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Loaded:
    """One read of everything a decision needs from the store."""

    state: bytes | None
    masks: dict[str, int]
    artifact_level: int
    revoked: bool


@dataclass(frozen=True, slots=True)
class LogWindow:
    """The context log a store still holds: its newest entries, and where they start.

    ``base`` is the chain hash just before ``entries[0]`` (GENESIS while nothing was
    dropped) and ``dropped`` how many older entries were let go, so
    ``verify_chain(entries, state.log_head, start=base)`` checks the window against
    the running hash the state keeps, and ``dropped + len(entries) == state.log_len``.
    """

    base: str = GENESIS
    dropped: int = 0
    entries: list[bytes] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SessionBounds:
    """What one session and one tenant may hold (``session.*`` of the configuration)."""

    max_state_bytes: int = MAX_STATE_BYTES
    log_entries: int = MAX_LOG_PER_SESSION
    log_bytes: int = MAX_LOG_BYTES_PER_SESSION
    tenant_bytes: int = 512 << 20
    tenant_sessions: int = 100_000
    total_bytes: int = 1 << 30
    total_sessions: int = 0
    evict_idle_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class TicketBounds:
    """What one tenant's tickets may hold (``approvals.ticket_*``)."""

    tenant_bytes: int = 64 << 20
    tenant_entries: int = 10_000
    total_bytes: int = 256 << 20
    total_entries: int = 0


def session_refused(detail: str) -> BudgetExhausted:
    return BudgetExhausted(detail, code=ErrorCode.SESSION_BUDGET_EXHAUSTED)


def ticket_refused(detail: str) -> BudgetExhausted:
    return BudgetExhausted(detail, code=ErrorCode.TICKET_BUDGET_EXHAUSTED)


class LogRecord(bytes):
    """The JSON of one context-log entry, carrying the chained entry it is the text of.

    Stores that keep JSON (Redis) use it as the bytes it is; the memory store keeps the
    entry in a compact form without its ``hash``, which it recomputes
    (:func:`~aarm_pdp.session.codec.log_append`), and gives the same bytes back.
    """

    entry: dict[str, Any] | None


def log_record(entry: dict[str, Any], *, chained: bool = False) -> LogRecord:
    """``entry`` as the sorted-key JSON the context log holds (what its hash covers,
    with ``prev`` and ``hash``). ``chained`` says :func:`~aarm_pdp.session.state.chain`
    made ``entry`` and nothing changed it since (its ``hash`` is the link of its
    ``prev`` and the rest), so a store may recompute the hash instead of keeping it;
    otherwise the entry is kept as its JSON."""
    record = LogRecord(orjson.dumps(entry, option=orjson.OPT_SORT_KEYS))
    record.entry = entry if chained else None
    return record


def entry_hash(entry: bytes) -> str:
    """The chain hash a stored context-log entry carries ("" for one that has none)."""
    try:
        doc = orjson.loads(entry)
    except orjson.JSONDecodeError:
        return ""
    return str(doc.get("hash", "")) if isinstance(doc, dict) else ""


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

    async def update(
        self, key: str, fn: Updater[T], log: Callable[[T], list[bytes]], tenant: str = ""
    ) -> T:
        """Atomically apply ``fn``; append ``log(result)`` to the context log.

        ``tenant`` is charged for a new session (an existing one keeps its tenant);
        raises :class:`~aarm_pdp.errors.BudgetExhausted` (nothing written) when the
        state, or a new session, does not fit.
        """
        ...

    async def index_add(self, key: str, masks: dict[str, int]) -> None:
        """OR ``masks`` into the session's provenance index."""
        ...

    async def artifacts_raise(self, tenant: str, levels: dict[str, int]) -> None:
        """Raise the recorded classification of artifacts (never lowers it)."""
        ...

    async def read_log(self, key: str) -> list[bytes]:
        """The session's context log entries still held (the window), oldest first."""
        ...

    async def log_window(self, key: str) -> LogWindow:
        """The window of the context log, with the hash it starts from."""
        ...

    async def delete(self, key: str, tenant: str = "") -> None:
        """Forget a session (state, index, log)."""
        ...

    async def revoke(self, tenant: str, subject: str) -> None:
        """Revoke a principal or credential id for the tenant."""
        ...

    async def ticket_create(self, tid: str, data: bytes, index: str, deadline_ns: int) -> None:
        """Store a new pending approval or deferral, listed under ``index`` until closed."""
        ...

    async def ticket_room(self, index: str, size: int) -> None:
        """Raise :class:`~aarm_pdp.errors.BudgetExhausted` if a new ticket of about
        ``size`` bytes under ``index`` would be refused (before it is encoded)."""
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

    def bound_stats(self) -> list[BoundStats]:
        """Bytes, entries, evictions and refusals of this store's bounded parts."""
        ...


TICKET_TTL_SECONDS = 7 * 24 * 3600
"""How long a ticket is kept after its last change (both stores)."""
MAX_TOMBSTONES = 65_536
"""Sessions evicted for room that are remembered (so they are refused, not restarted)."""


class _Session:
    """One session in memory: state blob, log window and provenance index.

    Kept small (docs/performance.md, "Compact sessions"): the log window is one
    ``bytes`` of compact records (:func:`~aarm_pdp.session.codec.log_append`), the
    index one sorted ``array`` of 8-byte entries (:func:`_index_key`), both made on
    first use; the window's base and dropped count exist once entries were dropped.
    """

    __slots__ = ("index", "log", "seen", "state", "trim")

    def __init__(self, seen: float, state: bytes) -> None:
        self.seen = seen
        self.state = state
        self.log: codec.Log | None = None
        self.index: array[int] | None = None
        self.trim: tuple[str, int] | None = None
        """(base, dropped) once the window let entries go."""

    @property
    def base(self) -> str:
        return self.trim[0] if self.trim is not None else GENESIS

    @property
    def dropped(self) -> int:
        return self.trim[1] if self.trim is not None else 0

    @property
    def index_bytes(self) -> int:
        return len(self.index) * INDEX_ENTRY_BYTES if self.index is not None else 0

    def size(self) -> int:
        """What the session is charged: its state, the JSON of its window, its index."""
        return len(self.state) + codec.log_stats(self.log)[1] + self.index_bytes

    def entries(self) -> list[bytes]:
        """The window's entries, as the JSON bytes they were appended as."""
        return codec.log_entries(self.log, self.base)

    def append(self, entries: list[bytes]) -> None:
        self.log = codec.log_append(self.log, self.base, entries)

    def drop(self, n: int) -> None:
        """Let the ``n`` oldest entries go; the hash of the last becomes the base."""
        assert self.log is not None
        self.log, base = codec.log_drop(self.log, self.base, n)
        self.trim = (base, self.dropped + n)


_INDEX_SALT = secrets.token_hex(16)
_INDEX_HASH = 0xFFFF_FFFF_FFFF_FFFF ^ INDEX_MASK_BITS


def _index_key(fp: str) -> int:
    """A fingerprint's place in the memory store's index: 60 bits of a hash keyed by a
    secret of this process (random, so no value can be made to collide offline), the
    low 4 bits left for the mask. Two fingerprints share a place with probability
    2^-60 per pair (an index of 32 768 entries: ~3e-14 per lookup)."""
    return hash(_INDEX_SALT + fp) & _INDEX_HASH


class MemorySessionStore:
    """In-process store: sessions expire after ``ttl_seconds`` without activity.

    Bounded by :class:`SessionBounds` and :class:`TicketBounds` (module docstring):
    a session idle ``evict_idle_seconds`` may be evicted for room and is then refused
    (remembered as a tombstone until it would have expired), never silently restarted
    with its accumulated context forgotten.
    """

    def __init__(
        self,
        ttl_seconds: int = 3600,
        clock: Callable[[], float] = time.monotonic,
        *,
        bounds: SessionBounds | None = None,
        ticket_bounds: TicketBounds | None = None,
    ) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        b = self.bounds = bounds or SessionBounds()
        self._sessions: BoundedMap[str, _Session] = BoundedMap(
            "sessions",
            Budget(b.tenant_bytes, b.total_bytes, b.tenant_sessions, b.total_sessions),
        )
        self._tombstones: OrderedDict[str, float] = OrderedDict()
        self._artifacts: dict[str, OrderedDict[str, int]] = {}
        self._revoked: dict[str, dict[str, float]] = {}
        # ticket id -> (last write, data); oldest write first. Kept TICKET_TTL_SECONDS after
        # the last write, as the Redis store does, so a long-lived process does not keep
        # every settled ticket forever; open ones are never evicted for room.
        tb = ticket_bounds or TicketBounds()
        self._tickets: BoundedMap[str, tuple[float, bytes]] = BoundedMap(
            "tickets", Budget(tb.tenant_bytes, tb.total_bytes, tb.tenant_entries, tb.total_entries)
        )
        self._pending: dict[str, dict[str, None]] = {}
        self._due: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def bound_stats(self) -> list[BoundStats]:
        return [self._sessions.stats(), self._tickets.stats()]

    def _expire(self) -> None:
        now = self._clock()
        while (oldest := self._sessions.oldest()) is not None:
            key, sess = oldest
            if now - sess.seen <= self._ttl:
                break
            self._sessions.evict(key, "ttl")
        while self._tombstones:
            key, at = next(iter(self._tombstones.items()))
            if now - at <= self._ttl:
                break
            del self._tombstones[key]

    def _check_tombstone(self, key: str) -> None:
        if key in self._tombstones:
            raise session_refused("session evicted from a full session store")

    def _idle(self, now: float) -> Callable[[str, _Session], bool]:
        horizon = self.bounds.evict_idle_seconds

        def idle(_: str, sess: _Session) -> bool:
            return now - sess.seen >= horizon

        return idle

    def _charge(self, key: str, tenant: str, sess: _Session, size: int, now: float) -> None:
        """(Re)charge ``sess`` at ``size``, evicting idle sessions for room."""
        try:
            evicted = self._sessions.put(
                key, tenant, sess, size, evictable=self._idle(now), reason="idle"
            )
        except BudgetFull as exc:
            raise session_refused(f"session store {exc.scope} budget full") from None
        for gone, _ in evicted:
            self._tombstones[gone] = now
            self._tombstones.move_to_end(gone)
        while len(self._tombstones) > MAX_TOMBSTONES:
            self._tombstones.popitem(last=False)

    async def load(
        self,
        key: str,
        fingerprints: Sequence[str],
        tenant: str,
        artifacts: Sequence[str],
        subjects: Sequence[str] = (),
    ) -> Loaded:
        self._expire()
        sess = self._sessions.get(key)
        if sess is None:
            self._check_tombstone(key)
        masks: dict[str, int] = {}
        index = sess.index if sess is not None else None
        if index:
            top, salt = len(index), _INDEX_SALT
            for fp in fingerprints:
                k = hash(salt + fp) & _INDEX_HASH  # _index_key, inlined: every Decide
                i = bisect_left(index, k)
                if i < top and index[i] ^ k <= INDEX_MASK_BITS:
                    masks[fp] = index[i] & INDEX_MASK_BITS
        known: dict[str, int] = self._artifacts.get(tenant, {})
        art = max((known[a] for a in artifacts if a in known), default=-1)
        revoked_at = self._revoked.get(tenant, {})
        now = self._clock()
        revoked = any(
            now - revoked_at[s] < REVOCATION_TTL_SECONDS for s in subjects if s in revoked_at
        )
        return Loaded(sess.state if sess is not None else None, masks, art, revoked)

    async def update(
        self, key: str, fn: Updater[T], log: Callable[[T], list[bytes]], tenant: str = ""
    ) -> T:
        self._expire()
        sess = self._sessions.get(key)
        new, result = fn(sess.state if sess is not None else None)
        if new is None:
            self._sessions.pop(key)
            return result
        if sess is None:  # an evicted session is not created again (a settlement is a no-op)
            self._check_tombstone(key)
        b = self.bounds
        if len(new) > b.max_state_bytes:
            self._sessions.refusals["state"] += 1
            raise session_refused("session state over its byte bound")
        now = self._clock()
        # orjson's bytes keep their growth buffer (~8 KiB): store an exact-size copy.
        blob = bytes(memoryview(new))
        entries = log(result)
        if sess is None:
            owner, sess = tenant, _Session(now, b"")
        else:
            owner = self._sessions.tenant_of(key) or tenant
        # Which of the oldest entries leave the window, decided before anything changes,
        # so a refused write leaves the session as it was.
        count, kept = codec.log_stats(sess.log)
        count += len(entries)
        kept += sum(map(len, entries))
        drop = 0
        if count > 1 and (count > b.log_entries or kept > b.log_bytes):
            sizes = chain(codec.log_json_lengths(sess.log), map(len, entries))
            while count - drop > 1 and (count - drop > b.log_entries or kept > b.log_bytes):
                kept -= next(sizes)
                drop += 1
        self._charge(key, owner, sess, len(blob) + kept + sess.index_bytes, now)
        sess.seen, sess.state = now, blob
        if entries:
            sess.append(entries)
        if drop:
            sess.drop(drop)
        return result

    async def index_add(self, key: str, masks: dict[str, int]) -> None:
        sess = self._sessions.get(key)
        if sess is None or not masks:
            return
        index = sess.index if sess.index is not None else array("Q")
        top = len(index)
        found: dict[int, int] = {}  # position -> mask to OR in
        new: dict[int, int] = {}  # place -> mask, in the order given
        for fp, mask in masks.items():
            if not 0 <= mask <= INDEX_MASK_BITS:
                raise ValueError(f"index mask {mask} has bits the memory index does not keep")
            k = _index_key(fp)
            i = bisect_left(index, k)
            if i < top and index[i] ^ k <= INDEX_MASK_BITS:
                found[i] = found.get(i, 0) | mask
            elif k in new or len(new) < MAX_INDEX_PER_SESSION - top:
                new[k] = new.get(k, 0) | mask
        if new:
            # Charged before it is written: an index that would not fit the tenant's
            # budget is refused whole (RecordOutcome fails; nothing is half-indexed).
            tenant = self._sessions.tenant_of(key) or ""
            added = len(new) * INDEX_ENTRY_BYTES
            self._charge(key, tenant, sess, sess.size() + added, self._clock())
        for i, mask in found.items():
            index[i] |= mask
        if len(new) <= 8:
            for k, mask in new.items():
                index.insert(bisect_left(index, k), k | mask)
        else:
            index = array("Q", sorted([*index, *(k | m for k, m in new.items())]))
        sess.index = index

    async def artifacts_raise(self, tenant: str, levels: dict[str, int]) -> None:
        known = self._artifacts.setdefault(tenant, OrderedDict())
        for fp, lvl in levels.items():
            known[fp] = max(lvl, known.get(fp, -1))
            known.move_to_end(fp)
        while len(known) > MAX_ARTIFACTS_PER_TENANT:
            known.popitem(last=False)

    async def read_log(self, key: str) -> list[bytes]:
        return (await self.log_window(key)).entries

    async def log_window(self, key: str) -> LogWindow:
        sess = self._sessions.get(key)
        if sess is None:
            return LogWindow()
        return LogWindow(sess.base, sess.dropped, sess.entries())

    async def delete(self, key: str, tenant: str = "") -> None:
        self._sessions.pop(key)

    async def revoke(self, tenant: str, subject: str) -> None:
        self._revoked.setdefault(tenant, {})[subject] = self._clock()

    def _expire_tickets(self) -> None:
        horizon = self._clock() - TICKET_TTL_SECONDS
        while (oldest := self._tickets.oldest()) is not None:
            tid, (written, _) = oldest
            if written > horizon:
                break
            self._tickets.evict(tid, "ttl")
            self._unlist(tid)

    def _unlist(self, tid: str) -> None:
        self._due.pop(tid, None)
        for pending in self._pending.values():
            pending.pop(tid, None)

    def _settled(self, tid: str, _: tuple[float, bytes]) -> bool:
        return tid not in self._due

    def _write_ticket(self, tid: str, tenant: str, data: bytes) -> None:
        try:
            self._tickets.put(
                tid,
                tenant,
                (self._clock(), data),
                len(data),
                evictable=self._settled,
                reason="settled",
            )
        except BudgetFull as exc:
            raise ticket_refused(f"ticket store {exc.scope} budget full") from None

    async def ticket_create(self, tid: str, data: bytes, index: str, deadline_ns: int) -> None:
        self._expire_tickets()
        self._write_ticket(tid, index.partition(":")[2], data)
        self._pending.setdefault(index, {})[tid] = None
        self._due[tid] = deadline_ns

    async def ticket_room(self, index: str, size: int) -> None:
        self._expire_tickets()
        try:
            self._tickets.check("", index.partition(":")[2], size, evictable=self._settled)
        except BudgetFull as exc:
            raise ticket_refused(f"ticket store {exc.scope} budget full") from None

    async def ticket_get(self, tid: str) -> bytes | None:
        entry = self._tickets.get(tid)
        return entry[1] if entry is not None else None

    async def ticket_update(self, tid: str, fn: Updater[T], close_index: str | None) -> T:
        entry = self._tickets.get(tid)
        new, result = fn(entry[1] if entry is not None else None)
        if new is not None:
            self._write_ticket(tid, self._tickets.tenant_of(tid) or "", new)
        if close_index is not None:
            self._pending.get(close_index, {}).pop(tid, None)
            self._due.pop(tid, None)
        return result

    async def tickets_pending(self, index: str) -> list[bytes]:
        out = []
        for tid in self._pending.get(index, {}):
            entry = self._tickets.get(tid)
            if entry is not None:
                out.append(entry[1])
        return out

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
