"""A policy engine that can be switched to another OPA without failing a decision.

The managed sidecar hot-reloads a policy by starting a second OPA on the new bundles
and, once it is ready, switching to it here (:meth:`SwitchingOpaClient.switch`): every
query from then on goes to the new OPA, every query already sent finishes on the old
one, and :meth:`switch` returns only when none is left there, so the old OPA is
stopped with nothing in flight. A decision is thus answered by exactly one OPA, which
holds exactly one policy, the one its answer names (docs/policy-lifecycle.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aarm_pdp.model.decision import PolicyVersion
from aarm_pdp.opa.client import OpaClient

__all__ = ["SwitchingOpaClient"]


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
        self.switches = 0
        """How many times the OPA was switched (hot reloads)."""

    def _client(self, url: str) -> OpaClient:
        return OpaClient(url, entrypoint=self._entrypoint, max_connections=self._max_connections)

    @property
    def url(self) -> str:
        return self._current_url

    async def switch(self, url: str) -> None:
        """Send every new query to the OPA at ``url``; return once the previous OPA has
        answered every query it was sent (its connections are then closed)."""
        old = self._slot
        self._slot = _Slot(self._client(url))
        self._current_url = url
        self.switches += 1
        await old.idle.wait()
        await old.client.aclose()

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        slot = self._slot
        client = slot.enter()
        try:
            return await getattr(client, name)(*args, **kwargs)
        finally:
            slot.leave()

    async def evaluate(self, input_doc: dict[str, Any], *, timeout: float) -> Any:
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
