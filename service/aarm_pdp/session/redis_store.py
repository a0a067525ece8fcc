"""Session state in Redis, shared by every replica.

Keys (all under a configurable prefix, all with the session TTL refreshed on write):
``s:<key>`` state bytes, ``i:<key>`` provenance index (hash fingerprint -> mask),
``l:<key>`` context log window (list), ``lm:<key>`` the window's bytes, base hash and
dropped count, ``ts:<tenant>`` the tenant's sessions (sorted by last write),
``a:<tenant>`` artifact taint (hash, longer TTL), ``q:<tenant>`` the tenant's open
tickets (ticket id -> bytes) with ``qb:<tenant>`` their total.
Updates use WATCH/MULTI/EXEC with retries, so two replicas updating one session never
lose an update. Redis errors become :class:`~aarm_pdp.errors.SessionStoreUnavailable`.

Bounds (as the memory store, :mod:`aarm_pdp.session.store`): the state blob by bytes
(refused before it is written), the log to a window by entries and bytes (trimmed in
the same transaction, its base kept), a tenant's sessions by count and by the bytes of
their state and log windows (``ts:``/``tsb:``; a write past either is refused, in the
same transaction; the provenance index is capped by entries) and its open tickets by
count and bytes.
Settled tickets shrink (no request copy) and expire after ``TICKET_TTL_SECONDS``;
Redis' own ``maxmemory`` is the operator's global cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from aarm_pdp.errors import SessionStoreUnavailable
from aarm_pdp.model.bounds import BoundStats, Budget
from aarm_pdp.session.store import (
    GENESIS,
    MAX_INDEX_PER_SESSION,
    REVOCATION_TTL_SECONDS,
    TICKET_TTL_SECONDS,
    Loaded,
    LogWindow,
    SessionBounds,
    TicketBounds,
    Updater,
    session_refused,
    tenant_key,
    ticket_refused,
)

T = TypeVar("T")
MAX_RETRIES = 50

# OR each mask into the hash, refusing new fields past the cap; refresh the TTL.
_INDEX_ADD = """
local n = redis.call('HLEN', KEYS[1])
for i = 1, #ARGV - 2, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if old or n < tonumber(ARGV[#ARGV - 1]) then
    if not old then n = n + 1 end
    redis.call('HSET', KEYS[1], ARGV[i], bit.bor(tonumber(old or 0), tonumber(ARGV[i + 1])))
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[#ARGV])
return n
"""

# Raise (never lower) each artifact's level.
_ARTIFACTS_RAISE = """
for i = 1, #ARGV - 1, 2 do
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or -1)
  if tonumber(ARGV[i + 1]) > old then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('EXPIRE', KEYS[1], ARGV[#ARGV])
return 1
"""


# Write a session: refuse (nothing written, returns 0) a new one past the tenant's
# count, or any write that would take the tenant's sessions (state + log window) past
# its bytes; else set the state, append the log entries, trim the window to its entries
# and bytes (keeping the hash it starts from and how many were dropped), note the
# session and its bytes on the tenant's lists. Sessions idle past the TTL leave them.
# KEYS: state, log, log meta, tenant sessions (zset), tenant session bytes (hash, '#'
# the total). ARGV: state, ttl, is_new, now, tenant cap, max entries, max bytes, member,
# tenant bytes, entries...
_SESSION_WRITE = """
local ttl = tonumber(ARGV[2])
local now = tonumber(ARGV[4])
local member = ARGV[8]
local stale = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - ttl, 'LIMIT', 0, 64)
for _, m in ipairs(stale) do
  local sz = tonumber(redis.call('HGET', KEYS[5], m) or 0)
  redis.call('HDEL', KEYS[5], m)
  redis.call('HINCRBY', KEYS[5], '#', -sz)
  redis.call('ZREM', KEYS[4], m)
end
local known = redis.call('ZSCORE', KEYS[4], member) ~= false
if ARGV[3] == '1' and not known and redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[5]) then
  return 0
end
local bytes = tonumber(redis.call('HGET', KEYS[3], 'bytes') or 0)
local added = 0
for i = 10, #ARGV do added = added + #ARGV[i] end
local old = tonumber(redis.call('HGET', KEYS[5], member) or 0)
local total = tonumber(redis.call('HGET', KEYS[5], '#') or 0)
local estimate = #ARGV[1] + math.min(bytes + added, tonumber(ARGV[7]))
if estimate > old and total - old + estimate > tonumber(ARGV[9]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
for i = 10, #ARGV do
  redis.call('RPUSH', KEYS[2], ARGV[i])
  bytes = bytes + #ARGV[i]
end
local n = redis.call('LLEN', KEYS[2])
local dropped = 0
local last = false
while n > 1 and (n > tonumber(ARGV[6]) or bytes > tonumber(ARGV[7])) do
  last = redis.call('LPOP', KEYS[2])
  bytes = bytes - #last
  n = n - 1
  dropped = dropped + 1
end
if last then
  local ok, doc = pcall(cjson.decode, last)
  local base = ''
  if ok and type(doc) == 'table' and type(doc['hash']) == 'string' then base = doc['hash'] end
  redis.call('HSET', KEYS[3], 'base', base)
  redis.call('HINCRBY', KEYS[3], 'dropped', dropped)
end
redis.call('HSET', KEYS[3], 'bytes', bytes)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('ZADD', KEYS[4], now, member)
redis.call('EXPIRE', KEYS[4], ttl)
local size = #ARGV[1] + bytes
redis.call('HSET', KEYS[5], member, size)
redis.call('HINCRBY', KEYS[5], '#', size - old)
redis.call('EXPIRE', KEYS[5], ttl)
return 1
"""

# Take a session off its tenant's lists. KEYS: tenant sessions, their bytes. ARGV: member.
_SESSION_FORGET = """
local sz = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or 0)
if redis.call('HDEL', KEYS[2], ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[2], '#', -sz) end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""

# Open a ticket unless the tenant's open tickets are at their count or bytes cap.
# KEYS: ticket, pending index, due, tenant open tickets, their bytes.
# ARGV: data, ttl, tid, deadline (s), max count, max bytes.
_TICKET_CREATE = """
local size = #ARGV[1]
local used = tonumber(redis.call('GET', KEYS[5]) or 0)
if redis.call('HLEN', KEYS[4]) >= tonumber(ARGV[5]) or used + size > tonumber(ARGV[6]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[3], size)
redis.call('INCRBY', KEYS[5], size)
redis.call('EXPIRE', KEYS[4], ARGV[2])
redis.call('EXPIRE', KEYS[5], ARGV[2])
return 1
"""

# Take a ticket off its tenant's open tickets (releases its bytes). KEYS: open, bytes.
_TICKET_CLOSE = """
local size = redis.call('HGET', KEYS[1], ARGV[1])
if size then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('DECRBY', KEYS[2], size)
end
return 1
"""


def _as_bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


@contextlib.contextmanager
def _translate() -> Iterator[None]:
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        raise SessionStoreUnavailable(f"redis unreachable: {type(exc).__name__}") from exc
    except redis_errors.RedisError as exc:
        raise SessionStoreUnavailable(f"redis error: {type(exc).__name__}: {exc}") from exc


class RedisSessionStore:
    """A :class:`~aarm_pdp.session.store.SessionStore` over one Redis server."""

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: int = 3600,
        artifact_ttl_seconds: int = 30 * 24 * 3600,
        prefix: str = "aarm:",
        timeout: float = 0.5,
        bounds: SessionBounds | None = None,
        ticket_bounds: TicketBounds | None = None,
    ) -> None:
        self.bounds = bounds or SessionBounds()
        self.ticket_bounds = ticket_bounds or TicketBounds()
        self._refusals: dict[str, dict[str, int]] = {"sessions": {}, "tickets": {}}
        self._r = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=0,
            retry_on_timeout=False,
        )
        self._ttl = ttl_seconds
        self._art_ttl = artifact_ttl_seconds
        self._p = prefix
        self._loaded_key = f"{self._p}rv:loaded"
        self._index_add = self._r.register_script(_INDEX_ADD)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._artifacts_raise = self._r.register_script(_ARTIFACTS_RAISE)

    async def load(
        self,
        key: str,
        fingerprints: Sequence[str],
        tenant: str,
        artifacts: Sequence[str],
        subjects: Sequence[str] = (),
    ) -> Loaded:
        fps, arts, subs = list(fingerprints), list(artifacts), [x for x in subjects if x]
        with _translate():
            pipe = self._r.pipeline(transaction=False)
            pipe.get(f"{self._p}s:{key}")
            if fps:
                pipe.hmget(f"{self._p}i:{key}", fps)
            if arts:
                pipe.hmget(f"{self._p}a:{tenant_key(tenant)}", arts)
            if subs:
                pipe.smismember(f"{self._p}r:{tenant_key(tenant)}", subs)
            pipe.exists(self._loaded_key)
            out: list[Any] = await pipe.execute()
        if not out[-1]:
            # Emptied (a restart without persistence): the revocations are gone until
            # they are replayed from the receipt store. Fail closed until then.
            raise SessionStoreUnavailable("session store lost its state; revocations not loaded")
        raw = _as_bytes(out[0])
        pos = 1
        masks: dict[str, int] = {}
        if fps:
            masks = {fp: int(v) for fp, v in zip(fps, out[pos], strict=True) if v}
            pos += 1
        art = -1
        if arts:
            art = max((int(v) for v in out[pos] if v is not None), default=-1)
            pos += 1
        revoked = bool(subs) and any(out[pos])
        return Loaded(raw, masks, art, revoked)

    def _refused(self, store: str, scope: str) -> None:
        counts = self._refusals[store]
        counts[scope] = counts.get(scope, 0) + 1

    def bound_stats(self) -> list[BoundStats]:
        """What this replica refused; the bytes live in Redis (its INFO memory)."""
        b, tb = self.bounds, self.ticket_bounds
        return [
            BoundStats(
                "sessions",
                0,
                0,
                0,
                0,
                Budget(b.tenant_bytes, b.total_bytes, b.tenant_sessions, b.total_sessions),
                refusals=dict(self._refusals["sessions"]),
            ),
            BoundStats(
                "tickets",
                0,
                0,
                0,
                0,
                Budget(tb.tenant_bytes, tb.total_bytes, tb.tenant_entries, tb.total_entries),
                refusals=dict(self._refusals["tickets"]),
            ),
        ]

    async def update(
        self, key: str, fn: Updater[T], log: Callable[[T], list[bytes]], tenant: str = ""
    ) -> T:
        # One writer per session inside this process; WATCH settles races between replicas.
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            return await self._update(key, fn, log, tenant)

    async def _transact(
        self, watched: str, fn: Updater[T], write: Callable[[Any, bytes | None, T], None], what: str
    ) -> T:
        """Optimistic read-modify-write of one key: WATCH, ``fn``, MULTI, ``write``, EXEC."""
        return (await self._transact_replies(watched, fn, write, what))[0]

    async def _update(
        self, key: str, fn: Updater[T], log: Callable[[T], list[bytes]], tenant: str
    ) -> T:
        skey, lkey, mkey = f"{self._p}s:{key}", f"{self._p}l:{key}", f"{self._p}lm:{key}"
        tskey = f"{self._p}ts:{tenant_key(tenant)}"
        tbkey = f"{self._p}tsb:{tenant_key(tenant)}"
        b = self.bounds
        fresh: list[bool] = []

        def checked(raw: bytes | None) -> tuple[bytes | None, T]:
            new, result = fn(raw)
            if new is not None and len(new) > b.max_state_bytes:
                self._refused("sessions", "state")
                raise session_refused("session state over its byte bound")
            fresh[:] = [raw is None]
            return new, result

        def write(pipe: Any, new: bytes | None, result: T) -> None:
            if new is None:
                pipe.delete(skey, lkey, mkey, f"{self._p}i:{key}")
                pipe.eval(_SESSION_FORGET, 2, tskey, tbkey, key)
                return
            args: list[Any] = [
                new,
                self._ttl,
                "1" if fresh and fresh[0] else "0",
                int(time.time()),
                b.tenant_sessions,
                b.log_entries,
                b.log_bytes,
                key,
                b.tenant_bytes,
                *log(result),
            ]
            pipe.eval(_SESSION_WRITE, 5, skey, lkey, mkey, tskey, tbkey, *args)

        out: list[Any] = []

        def keep(pipe: Any, new: bytes | None, result: T) -> None:
            write(pipe, new, result)
            out[:] = [new is not None]

        result, replies = await self._transact_replies(skey, checked, keep, "session")
        if out and out[0] and replies and replies[-1] == 0:
            self._refused("sessions", "tenant")
            raise session_refused("session store tenant budget full")
        return result

    async def _transact_replies(
        self, watched: str, fn: Updater[T], write: Callable[[Any, bytes | None, T], None], what: str
    ) -> tuple[T, list[Any]]:
        """:meth:`_transact`, also returning the replies of the transaction's commands."""
        with _translate():
            async with self._r.pipeline(transaction=True) as pipe:
                for _ in range(MAX_RETRIES):
                    try:
                        await pipe.watch(watched)
                        new, result = fn(_as_bytes(await pipe.get(watched)))
                        pipe.multi()  # type: ignore[no-untyped-call]
                        write(pipe, new, result)
                        replies: list[Any] = await pipe.execute()
                        return result, replies
                    except redis_errors.WatchError:
                        await asyncio.sleep(random.uniform(0, 0.002))  # noqa: S311 - jitter
        raise SessionStoreUnavailable(f"{what} update lost {MAX_RETRIES} races in a row")

    async def index_add(self, key: str, masks: dict[str, int]) -> None:
        if not masks:
            return
        args: list[Any] = []
        for fp, mask in masks.items():
            args += [fp, mask]
        args += [MAX_INDEX_PER_SESSION, self._ttl]
        with _translate():
            await self._index_add(keys=[f"{self._p}i:{key}"], args=args)

    async def artifacts_raise(self, tenant: str, levels: dict[str, int]) -> None:
        if not levels:
            return
        args: list[Any] = []
        for fp, lvl in levels.items():
            args += [fp, lvl]
        args.append(self._art_ttl)
        with _translate():
            await self._artifacts_raise(keys=[f"{self._p}a:{tenant_key(tenant)}"], args=args)

    async def read_log(self, key: str) -> list[bytes]:
        return (await self.log_window(key)).entries

    async def log_window(self, key: str) -> LogWindow:
        with _translate():
            pipe = self._r.pipeline(transaction=True)
            pipe.lrange(f"{self._p}l:{key}", 0, -1)
            pipe.hmget(f"{self._p}lm:{key}", ["base", "dropped"])
            items, (base, dropped) = await pipe.execute()
        entries = [b for b in map(_as_bytes, items) if b is not None]
        base_b = _as_bytes(base)
        return LogWindow(base_b.decode() if base_b else GENESIS, int(dropped or 0), entries)

    async def delete(self, key: str, tenant: str = "") -> None:
        with _translate():
            pipe = self._r.pipeline(transaction=True)
            pipe.delete(
                f"{self._p}s:{key}", f"{self._p}l:{key}", f"{self._p}lm:{key}", f"{self._p}i:{key}"
            )
            tk = tenant_key(tenant)
            pipe.eval(_SESSION_FORGET, 2, f"{self._p}ts:{tk}", f"{self._p}tsb:{tk}", key)
            await pipe.execute()

    async def revoke(self, tenant: str, subject: str) -> None:
        rkey = f"{self._p}r:{tenant_key(tenant)}"
        with _translate():
            pipe = self._r.pipeline(transaction=True)
            pipe.sadd(rkey, subject)
            pipe.expire(rkey, REVOCATION_TTL_SECONDS)
            await pipe.execute()

    def _open_keys(self, index: str) -> tuple[str, str]:
        tk = tenant_key(index.partition(":")[2])
        return f"{self._p}q:{tk}", f"{self._p}qb:{tk}"

    async def ticket_room(self, index: str, size: int) -> None:
        tb = self.ticket_bounds
        qkey, qbkey = self._open_keys(index)
        with _translate():
            pipe = self._r.pipeline(transaction=False)
            pipe.hlen(qkey)
            pipe.get(qbkey)
            count, used = await pipe.execute()
        if int(count) >= tb.tenant_entries or int(used or 0) + size > tb.tenant_bytes:
            self._refused("tickets", "tenant")
            raise ticket_refused("ticket store tenant budget full")

    async def ticket_create(self, tid: str, data: bytes, index: str, deadline_ns: int) -> None:
        tb = self.ticket_bounds
        qkey, qbkey = self._open_keys(index)
        with _translate():
            done = await self._r.eval(
                _TICKET_CREATE,
                5,
                f"{self._p}t:{tid}",
                f"{self._p}p:{index}",
                f"{self._p}due",
                qkey,
                qbkey,
                data,
                TICKET_TTL_SECONDS,
                tid,
                deadline_ns / 1e9,
                tb.tenant_entries,
                tb.tenant_bytes,
            )
        if not done:
            self._refused("tickets", "tenant")
            raise ticket_refused("ticket store tenant budget full")

    async def ticket_get(self, tid: str) -> bytes | None:
        with _translate():
            return _as_bytes(await self._r.get(f"{self._p}t:{tid}"))

    async def ticket_update(self, tid: str, fn: Updater[T], close_index: str | None) -> T:
        tkey = f"{self._p}t:{tid}"

        def write(pipe: Any, new: bytes | None, result: T) -> None:
            if new is not None:
                pipe.set(tkey, new, ex=TICKET_TTL_SECONDS)
            if close_index is not None:
                pipe.srem(f"{self._p}p:{close_index}", tid)
                pipe.zrem(f"{self._p}due", tid)
                pipe.eval(_TICKET_CLOSE, 2, *self._open_keys(close_index), tid)

        return await self._transact(tkey, fn, write, "ticket")

    async def tickets_pending(self, index: str) -> list[bytes]:
        with _translate():
            ids = sorted(_as_bytes(i) or b"" for i in await self._r.smembers(f"{self._p}p:{index}"))
            if not ids:
                return []
            values = await self._r.mget([f"{self._p}t:{i.decode()}" for i in ids])
        return [b for b in map(_as_bytes, values) if b is not None]

    async def tickets_due(self, now_ns: int, limit: int = 100) -> list[str]:
        with _translate():
            ids = await self._r.zrangebyscore(
                f"{self._p}due", "-inf", now_ns / 1e9, start=0, num=limit
            )
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def revocations_current(self) -> bool:
        with _translate():
            return bool(await self._r.exists(self._loaded_key))

    async def mark_revocations_loaded(self) -> None:
        with _translate():
            await self._r.set(self._loaded_key, b"1")

    async def healthy(self) -> bool:
        try:
            with _translate():
                return bool(await self._r.ping())
        except SessionStoreUnavailable:
            return False

    async def aclose(self) -> None:
        await self._r.aclose()
