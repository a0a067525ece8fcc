"""A real MCP server for the gateway's tests: FastMCP over stdio or streamable HTTP.

``python -m tests.support.mcp_upstream [--http PORT] --log FILE``: notes to read and
search, a security control to switch off and records to purge. Every call that ran
appends one JSON line ``{"tool": ..., "arguments": ...}`` to ``--log``, so a test
sees what the gateway really forwarded (and what it held back).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

NOTES = {
    "roadmap": "Q3: ship the MCP gateway. Q4: overlays for every team.",
    "oncall": "This week: bob@acme.example.",
}


def build(log: Path, port: int) -> FastMCP:
    mcp = FastMCP("aarm-test-upstream", host="127.0.0.1", port=port, log_level="WARNING")

    def ran(tool: str, **arguments: object) -> None:
        with log.open("a") as f:
            f.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    def read_note(name: str) -> str:
        """Read one note by name."""
        ran("read_note", name=name)
        return NOTES.get(name, f"no note {name!r}")

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    def search_notes(query: str, limit: int = 5) -> str:
        """Search the notes; at most ``limit`` hits."""
        ran("search_notes", query=query, limit=limit)
        hits = [n for n, text in NOTES.items() if query.lower() in text.lower()][:limit]
        return json.dumps({"hits": hits, "limit": limit})

    @mcp.tool(annotations=ToolAnnotations(destructiveHint=True, openWorldHint=False))
    def disable_audit_logging(reason: str) -> str:
        """Switch the audit log off."""
        ran("disable_audit_logging", reason=reason)
        return "audit logging disabled"

    @mcp.tool(annotations=ToolAnnotations(destructiveHint=True, openWorldHint=False))
    def purge_records(table: str) -> str:
        """Delete every record of a table."""
        ran("purge_records", table=table)
        return f"purged {table}"

    return mcp


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--http", type=int, help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    p.add_argument("--log", type=Path, required=True)
    args = p.parse_args()
    mcp = build(args.log, args.http or 0)
    mcp.run(transport="streamable-http" if args.http else "stdio")


if __name__ == "__main__":
    main()
