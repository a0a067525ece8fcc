"""The narrow port between the decision engine and a policy engine."""

from __future__ import annotations

from typing import Any, Protocol

from aarm_pdp.model.decision import PolicyVersion


class PolicyEngine(Protocol):
    """Evaluates the decision entrypoint for one input document.

    ``evaluate`` returns the decoded OPA Data API body (``{"result": ...}`` or ``{}``
    when undefined) or raises a :class:`~aarm_pdp.errors.PolicyEngineError`.
    """

    async def evaluate(self, input_doc: dict[str, Any], *, timeout: float) -> Any:
        """Query the decision entrypoint with ``input_doc``."""
        ...

    def answer_policy(self, body: Any) -> PolicyVersion:
        """The revision and hash of the policy that gave ``body``, an ``evaluate`` answer
        (raises :class:`~aarm_pdp.errors.OpaBadResponse` when the answer cannot say)."""
        ...

    async def policy_version(self) -> PolicyVersion:
        """The revision and hash of the policy the engine has loaded now."""
        ...

    async def tool_catalogue(self) -> Any:
        """The policy's tool catalogue document (``data.aarm.catalogue.tools``)."""
        ...

    async def request_scope(self) -> Any:
        """The config's request patterns: category -> regex over a request's text."""
        ...

    async def healthy(self) -> bool:
        """True when the engine answers and its policy is active."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
