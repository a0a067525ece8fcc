"""Framework adapters (optional extras): ``openai_agents`` (``aarm-pdp-client[openai-agents]``)
and ``langchain`` (``aarm-pdp-client[langchain]``).

Both name the AARM action of a framework tool the same way: ``action="tool.operation"``
as the service's catalogue knows it (``"db.query"``); without one, the tool's name is
the catalogue tool and the operation is ``"call"``. The tool's parameter schema goes
with each decision, so MODIFY's values reach the tool in its declared types.
"""

from __future__ import annotations

__all__ = ["split_action"]


def split_action(action: str | None, tool_name: str) -> tuple[str, str]:
    """``("db", "query")`` for ``"db.query"``; ``(tool_name, "call")`` for None."""
    if not action:
        return tool_name, "call"
    tool, dot, operation = action.partition(".")
    if not dot or not tool or not operation:
        raise ValueError(f"action {action!r}: expected 'tool.operation'")
    return tool, operation
