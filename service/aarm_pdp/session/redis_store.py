"""Session state in Redis, shared by every replica.

Keys (all under a configurable prefix, all with the session TTL refreshed on write):
``s:<key>`` state bytes, ``i:<key>`` provenance index (hash fingerprint -> mask),
``l:<key>`` context log (list), ``a:<tenant>`` artifact taint (hash, longer TTL).
Updates use WATCH/MULTI/EXEC with retries, so two replicas updating one session never
lose an update. Redis errors become :class:`~aarm_pdp.errors.SessionStoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from aarm_pdp.errors import SessionStoreUnavailable
from aarm_pdp.session.store import (
    MAX_INDEX_PER_SESSION,
    REVOCATION_TTL_SECONDS,
    TICKET_TTL_SECONDS,
    Loaded,
    Updater,
    tenant_key,
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
    ) -> None:
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

    async def update(self, key: str, fn: Updater[T], log: Callable[[T], list[bytes]]) -> T:
        # One writer per session inside this process; WATCH settles races between replicas.
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            return await self._update(key, fn, log)

    async def _transact(
        self, watched: str, fn: Updater[T], write: Callable[[Any, bytes | None, T], None], what: str
    ) -> T:
        """Optimistic read-modify-write of one key: WATCH, ``fn``, MULTI, ``write``, EXEC."""
        with _translate():
            async with self._r.pipeline(transaction=True) as pipe:
                for _ in range(MAX_RETRIES):
                    try:
                        await pipe.watch(watched)
                        new, result = fn(_as_bytes(await pipe.get(watched)))
                        pipe.multi()  # type: ignore[no-untyped-call]
                        write(pipe, new, result)
                        await pipe.execute()
                        return result
                    except redis_errors.WatchError:
                        await asyncio.sleep(random.uniform(0, 0.002))  # noqa: S311 - jitter
        raise SessionStoreUnavailable(f"{what} update lost {MAX_RETRIES} races in a row")

    async def _update(self, key: str, fn: Updater[T], log: Callable[[T], list[bytes]]) -> T:
        skey, lkey = f"{self._p}s:{key}", f"{self._p}l:{key}"

        def write(pipe: Any, new: bytes | None, result: T) -> None:
            if new is None:
                pipe.delete(skey, lkey, f"{self._p}i:{key}")
                return
            pipe.set(skey, new, ex=self._ttl)
            entries = log(result)
            if entries:
                pipe.rpush(lkey, *entries)
            pipe.expire(lkey, self._ttl)

        return await self._transact(skey, fn, write, "session")

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
        with _translate():
            items = await self._r.lrange(f"{self._p}l:{key}", 0, -1)
        return [b for b in map(_as_bytes, items) if b is not None]

    async def delete(self, key: str) -> None:
        with _translate():
            await self._r.delete(f"{self._p}s:{key}", f"{self._p}l:{key}", f"{self._p}i:{key}")

    async def revoke(self, tenant: str, subject: str) -> None:
        rkey = f"{self._p}r:{tenant_key(tenant)}"
        with _translate():
            pipe = self._r.pipeline(transaction=True)
            pipe.sadd(rkey, subject)
            pipe.expire(rkey, REVOCATION_TTL_SECONDS)
            await pipe.execute()

    async def ticket_create(self, tid: str, data: bytes, index: str, deadline_ns: int) -> None:
        with _translate():
            pipe = self._r.pipeline(transaction=True)
            pipe.set(f"{self._p}t:{tid}", data, ex=TICKET_TTL_SECONDS)
            pipe.sadd(f"{self._p}p:{index}", tid)
            pipe.zadd(f"{self._p}due", {tid: deadline_ns / 1e9})
            await pipe.execute()

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
