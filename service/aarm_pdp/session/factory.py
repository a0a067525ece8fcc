"""Open the session store a configuration names: the adapters, chosen in one place."""

from __future__ import annotations

from aarm_pdp.config import SessionConfig
from aarm_pdp.session.redis_store import RedisSessionStore
from aarm_pdp.session.store import MemorySessionStore, SessionStore


def open_session_store(sc: SessionConfig) -> SessionStore:
    """In-process memory for ``memory``, else Redis at the ``redis://`` URL given."""
    if sc.state == "memory":
        return MemorySessionStore(ttl_seconds=sc.ttl_seconds)
    return RedisSessionStore(
        sc.state,
        ttl_seconds=sc.ttl_seconds,
        artifact_ttl_seconds=sc.artifact_ttl_seconds,
        timeout=sc.store_timeout_seconds,
    )
