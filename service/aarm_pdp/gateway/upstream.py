"""Connections to the upstream MCP servers (stdio children, streamable HTTP endpoints).

:func:`connect` opens one MCP client session per configured server on an
``AsyncExitStack`` (closed with it: children stopped, HTTP sessions deleted), lists
its tools (every page) and maps their names (:mod:`.naming`). Every MCP client of the
gateway shares these connections.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from aarm_pdp.gateway.config import UpstreamConfig
from aarm_pdp.gateway.naming import ToolName, tool_names

log = logging.getLogger("aarm_pdp.gateway")


class UpstreamError(RuntimeError):
    """An upstream server could not be started, reached or listed."""


@dataclass(frozen=True, slots=True)
class UpstreamTool:
    name: ToolName
    tool: types.Tool
    """The tool as its server lists it (upstream name)."""
    server: UpstreamConfig


@dataclass(slots=True)
class Upstream:
    """One connected upstream server and its tools."""

    cfg: UpstreamConfig
    session: ClientSession
    tools: list[UpstreamTool]


async def connect(stack: contextlib.AsyncExitStack, cfg: UpstreamConfig) -> Upstream:
    """Start or reach ``cfg``'s server, initialise the MCP session, list its tools."""
    try:
        if cfg.command:
            params = StdioServerParameters(
                command=cfg.command,
                args=list(cfg.args),
                env=dict(cfg.env) or None,
                cwd=cfg.cwd,
            )
            read, write = await stack.enter_async_context(stdio_client(params, errlog=sys.stderr))
        else:
            client = await stack.enter_async_context(
                create_mcp_http_client(headers=dict(cfg.headers) or None)
            )
            read, write, _ = await stack.enter_async_context(
                streamable_http_client(cfg.url, http_client=client)
            )
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        listed = await list_all(session)
    except Exception as exc:
        raise UpstreamError(f"upstream {cfg.name!r} ({_where(cfg)}): {exc}") from exc
    names = tool_names(cfg.name, [t.name for t in listed])
    tools = [UpstreamTool(n, t, cfg) for n, t in zip(names, listed, strict=True)]
    log.info("upstream %s (%s): %d tools", cfg.name, _where(cfg), len(tools))
    return Upstream(cfg, session, tools)


async def list_all(session: ClientSession) -> list[types.Tool]:
    """Every tool of a session, following ``nextCursor``."""
    tools: list[types.Tool] = []
    cursor: str | None = None
    while True:
        page = await session.list_tools(
            params=types.PaginatedRequestParams(cursor=cursor) if cursor else None
        )
        tools.extend(page.tools)
        cursor = page.nextCursor
        if not cursor:
            return tools


def _where(cfg: UpstreamConfig) -> str:
    return f"stdio {cfg.command}" if cfg.command else cfg.url
