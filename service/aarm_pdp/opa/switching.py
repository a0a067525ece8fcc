"""A policy engine that can be switched to another OPA without failing a decision.

The managed sidecar hot-reloads a policy by starting a second OPA on the new bundles
and, once it is ready, switching to it here (:meth:`SwitchingOpaClient.switch`): every
query from then on goes to the new OPA, every query already sent finishes on the old
one, and :meth:`switch` returns only when none is left there, so the old OPA is stopped
with nothing in flight. A decision is thus answered by exactly one OPA, which holds
exactly one policy, the one its answer names (docs/policy-lifecycle.md).

Before the switch the new OPA is warmed up on the last decision input this client sent:
a freshly started OPA answers its first queries 40-50x slower while it builds its rule
indices (226, 192, 102, 35 ms, then 5 ms, on a loaded 2-core box), which on a busy
machine ran a live decision past its deadline (opa_timeout in the reload-under-load test).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aarm_pdp.model.decision import PolicyVersion
from aarm_pdp.opa.client import OpaClient

__all__ = ["SwitchingOpaClient"]

log = logging.getLogger("aarm_pdp.opa.switching")

WARM_UP_QUERIES = 5
"""Evaluations a new OPA answers before it takes live queries (see the module doc)."""
WARM_UP_TIMEOUT_SECONDS = 5.0


class _Slot:
    """One OPA client and the queries in flight on it."""

    def __init__(self, client: OpaClient) -> None:
        self.client = client
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def enter(self) -> OpaClient:
        self.inflight += 1
        self.idle.clear()
        return self.client

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self.idle.set()


class SwitchingOpaClient:
    """:class:`~aarm_pdp.opa.port.PolicyEngine` over the current OPA of a managed sidecar."""

    def __init__(self, url: str, *, entrypoint: str, max_connections: int) -> None:
        self._entrypoint = entrypoint
        self._max_connections = max_connections
        self._slot = _Slot(self._client(url))
        self._current_url = url
        self._last_input: dict[str, Any] | None = None
        self._warm: tuple[str, _Slot] | None = None
        self.switches = 0
        """How many times the OPA was switched (hot reloads)."""

    def _client(self, url: str) -> OpaClient:
        return OpaClient(url, entrypoint=self._entrypoint, max_connections=self._max_connections)

    @property
    def url(self) -> str:
        return self._current_url

    async def warm_up(self, url: str) -> None:
        """Connect to the OPA at ``url`` and have it answer :data:`WARM_UP_QUERIES`
        evaluations of the last input sent, while the current one keeps serving; the
        next :meth:`switch` to ``url`` uses this connection."""
        if self._warm is not None and self._warm[0] != url:
            await self._warm[1].client.aclose()
        slot = _Slot(self._client(url))
        self._warm = (url, slot)
        await self._warm_up(slot.client)

    async def switch(self, url: str) -> None:
        """Send every new query to the OPA at ``url`` (warmed up first, unless
        :meth:`warm_up` already did); return once the previous OPA has answered every
        query it was sent (its connections are then closed)."""
        if self._warm is None or self._warm[0] != url:
            await self.warm_up(url)
        assert self._warm is not None
        fresh = self._warm[1]
        self._warm = None
        old = self._slot
        self._slot = fresh
        self._current_url = url
        self.switches += 1
        await old.idle.wait()
        await old.client.aclose()

    async def _warm_up(self, client: OpaClient) -> None:
        doc = self._last_input
        if doc is None:
            return  # no query yet: nobody waits on a cold first answer
        for _ in range(WARM_UP_QUERIES):
            try:
                await client.evaluate(doc, timeout=WARM_UP_TIMEOUT_SECONDS)
            except Exception as exc:  # it passed readiness; its answers fail closed
                log.warning("warm-up of the new OPA failed (%s); switching to it anyway", exc)
                return

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        slot = self._slot
        client = slot.enter()
        try:
            return await getattr(client, name)(*args, **kwargs)
        finally:
            slot.leave()

    async def evaluate(self, input_doc: dict[str, Any], *, timeout: float) -> Any:
        self._last_input = input_doc  # what the next OPA is warmed up on
        return await self._call("evaluate", input_doc, timeout=timeout)

    def answer_policy(self, body: Any) -> PolicyVersion:
        return self._slot.client.answer_policy(body)

    async def policy_version(self) -> PolicyVersion:
        version: PolicyVersion = await self._call("policy_version")
        return version

    async def tool_catalogue(self) -> Any:
        return await self._call("tool_catalogue")

    async def request_scope(self) -> Any:
        return await self._call("request_scope")

    async def healthy(self) -> bool:
        ok: bool = await self._call("healthy")
        return ok

    async def aclose(self) -> None:
        await self._slot.client.aclose()
