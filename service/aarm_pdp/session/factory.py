"""Open the session store a configuration names: the adapters, chosen in one place."""

from __future__ import annotations

from aarm_pdp.config import ApprovalConfig, SessionConfig
from aarm_pdp.session.redis_store import RedisSessionStore
from aarm_pdp.session.store import MemorySessionStore, SessionBounds, SessionStore, TicketBounds


def session_bounds(sc: SessionConfig) -> SessionBounds:
    """The ``session.*`` memory bounds."""
    return SessionBounds(
        max_state_bytes=sc.max_state_bytes,
        log_entries=sc.log_window_entries,
        log_bytes=sc.log_window_bytes,
        tenant_bytes=sc.tenant_bytes,
        tenant_sessions=sc.tenant_sessions,
        total_bytes=sc.total_bytes,
        evict_idle_seconds=sc.evict_idle_seconds,
    )


def ticket_bounds(ap: ApprovalConfig) -> TicketBounds:
    """The ``approvals.ticket_*`` memory bounds."""
    return TicketBounds(
        tenant_bytes=ap.ticket_tenant_bytes,
        tenant_entries=ap.ticket_tenant_entries,
        total_bytes=ap.ticket_total_bytes,
    )


def open_session_store(sc: SessionConfig, ap: ApprovalConfig | None = None) -> SessionStore:
    """In-process memory for ``memory``, else Redis at the ``redis://`` URL given."""
    bounds, tickets = session_bounds(sc), ticket_bounds(ap or ApprovalConfig())
    if sc.state == "memory":
        return MemorySessionStore(ttl_seconds=sc.ttl_seconds, bounds=bounds, ticket_bounds=tickets)
    return RedisSessionStore(
        sc.state,
        ttl_seconds=sc.ttl_seconds,
        artifact_ttl_seconds=sc.artifact_ttl_seconds,
        timeout=sc.store_timeout_seconds,
        bounds=bounds,
        ticket_bounds=tickets,
    )
