"""Meta-tool resolution (AARM: resolve wrappers before policy evaluation). PURE.

A meta-tool wraps the real call in its parameters, e.g.
``mcp_tool(mcp_server_name="db", mcp_tool_name="drop_database", arguments={...})``.
Policy must judge ``db.drop_database``, not ``mcp_tool.call``; the wrapper's name is
kept as ``original_tool`` for audit. Resolution repeats for nested wrappers up to a
small depth; a wrapper that does not name a valid inner tool is left as is, so the
default posture (DENY for unknown tools) applies to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from aarm_pdp.model.request import Action

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")
MAX_NESTING = 3


@dataclass(frozen=True, slots=True)
class MetaTool:
    """Where a wrapper keeps the real tool, operation and arguments."""

    tool_param: str
    operation_param: str
    arguments_param: str


DEFAULT_META_TOOLS: dict[str, MetaTool] = {
    "mcp_tool": MetaTool("mcp_server_name", "mcp_tool_name", "arguments"),
    "mcp": MetaTool("server", "tool", "arguments"),
    "Skill": MetaTool("skill", "command", "arguments"),
}


def _split(name: str) -> tuple[str, str] | None:
    # "server.tool" in one parameter is accepted too.
    if "." in name:
        tool, _, op = name.partition(".")
        if _NAME.fullmatch(tool) and _NAME.fullmatch(op):
            return tool, op
    return None


def resolve(action: Action, table: dict[str, MetaTool]) -> Action:
    """The action with meta-tool wrappers peeled off; ``original_tool`` names the outermost."""
    original = action.original_tool
    for _ in range(MAX_NESTING):
        meta = table.get(action.tool)
        if meta is None:
            break
        params = action.parameters
        tool: Any = params.get(meta.tool_param)
        op: Any = params.get(meta.operation_param)
        if isinstance(tool, str) and not op and (pair := _split(tool)):
            tool, op = pair
        if isinstance(op, str) and not tool and (pair := _split(op)):
            tool, op = pair
        if not (isinstance(tool, str) and isinstance(op, str)):
            break
        if not (_NAME.fullmatch(tool) and _NAME.fullmatch(op)):
            break
        args = params.get(meta.arguments_param, {})
        original = original or f"{action.tool}.{action.operation}"
        action = replace(
            action,
            tool=tool,
            operation=op,
            parameters=args if isinstance(args, dict) else {"value": args},
            original_tool=original,
        )
    return action
