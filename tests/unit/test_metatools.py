"""Meta-tool wrappers are resolved before policy; the wrapper name is kept."""

from __future__ import annotations

from aarm_pdp.decision.metatools import DEFAULT_META_TOOLS, resolve
from aarm_pdp.model.request import Action


def test_mcp_tool_resolves() -> None:
    a = Action(
        "mcp_tool",
        "call",
        {
            "mcp_server_name": "db",
            "mcp_tool_name": "drop_database",
            "arguments": {"database": "production"},
        },
    )
    r = resolve(a, DEFAULT_META_TOOLS)
    assert (r.tool, r.operation, r.parameters) == (
        "db",
        "drop_database",
        {"database": "production"},
    )
    assert r.original_tool == "mcp_tool.call"


def test_nested_wrappers_and_dotted_names() -> None:
    inner = {"server": "db.drop_database", "arguments": {"database": "production"}}
    a = Action(
        "mcp_tool",
        "call",
        {"mcp_server_name": "mcp", "mcp_tool_name": "invoke", "arguments": inner},
    )
    r = resolve(a, DEFAULT_META_TOOLS)
    assert (r.tool, r.operation) == ("db", "drop_database")
    assert r.original_tool == "mcp_tool.call"


def test_unresolvable_wrapper_left_alone() -> None:
    for params in (
        {},
        {"mcp_server_name": "db"},
        {"mcp_server_name": "d b", "mcp_tool_name": "x"},
        {"mcp_server_name": 1, "mcp_tool_name": "x"},
    ):
        a = Action("mcp_tool", "call", params)
        assert resolve(a, DEFAULT_META_TOOLS) is a


def test_plain_tools_untouched() -> None:
    a = Action("db", "query", {"table": "t"})
    assert resolve(a, DEFAULT_META_TOOLS) is a
