"""An in-process policy engine for unit tests and the bench's stub lane.

Like httpx's MockTransport (the pattern): a handler decides what the "sidecar" answers,
so tests can return any body or raise any engine error without a process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aarm_pdp.model.decision import PolicyVersion

Handler = Callable[[dict[str, Any]], Any | Awaitable[Any]]


class FakePolicyEngine:
    """A :class:`~aarm_pdp.opa.port.PolicyEngine` whose answers come from ``handler``."""

    def __init__(
        self,
        handler: Handler,
        *,
        version: PolicyVersion | None = None,
        healthy: bool = True,
        catalogue: dict[str, Any] | None = None,
        request_scope: dict[str, str] | None = None,
    ) -> None:
        self._handler = handler
        self.version = version or PolicyVersion(revision="fake", hash="0" * 64)
        """What every answer and :meth:`policy_version` report (a test may change it)."""
        self._healthy = healthy
        self._catalogue = catalogue or {}
        self._request_scope = request_scope or {}
        self.calls: list[dict[str, Any]] = []

    async def evaluate(self, input_doc: dict[str, Any], *, timeout: float) -> Any:
        self.calls.append(input_doc)
        out = self._handler(input_doc)
        if isinstance(out, Awaitable):
            return await out
        return out

    def answer_policy(self, body: Any) -> PolicyVersion:
        return self.version

    async def policy_version(self) -> PolicyVersion:
        return self.version

    async def tool_catalogue(self) -> Any:
        return self._catalogue

    async def request_scope(self) -> Any:
        return self._request_scope

    async def healthy(self) -> bool:
        return self._healthy

    async def aclose(self) -> None:
        return None
