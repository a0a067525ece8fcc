"""Upstream server and tool names to catalogue names (PURE).

A tool ``read_file`` of the server ``fs`` is exposed to MCP clients as ``fs.read_file``
and decided as the catalogue entry ``fs.read_file``: the action's ``tool`` is the
server, its ``operation`` the upstream tool, which is the catalogue's
``tool.operation`` naming. Both halves are sanitised to ``[a-z][a-z0-9_]*``
(lower case, every other character ``_``, runs folded, a leading digit or ``_``
prefixed with ``t``); two upstream tools that sanitise to the same name are an error,
never a silent shadowing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_OTHER = re.compile(r"[^a-z0-9]+")


class NameClash(ValueError):
    """Two upstream tools map to one exposed name."""


def sanitise(name: str) -> str:
    """``name`` as ``[a-z][a-z0-9_]*`` (``Read-File`` -> ``read_file``, ``2fa`` -> ``t2fa``)."""
    out = _OTHER.sub("_", name.lower()).strip("_")
    if not out:
        return "t"
    return out if out[0].isalpha() else "t" + out


def valid(name: str) -> bool:
    """Whether ``name`` is already a sanitised name."""
    return bool(_NAME.match(name))


@dataclass(frozen=True, slots=True)
class ToolName:
    """One upstream tool as the gateway exposes and decides it."""

    server: str
    """The upstream server's configured name (already valid)."""
    upstream: str
    """The tool's name on its server, verbatim (what the gateway calls)."""
    operation: str
    """The sanitised tool name: the action's ``operation``."""

    @property
    def exposed(self) -> str:
        """The name MCP clients see and call, and the catalogue key: ``server.operation``."""
        return f"{self.server}.{self.operation}"


def tool_names(server: str, upstream_tools: list[str]) -> list[ToolName]:
    """The exposed names of one server's tools; :class:`NameClash` on a collision."""
    seen: dict[str, str] = {}
    out = []
    for tool in upstream_tools:
        name = ToolName(server, tool, sanitise(tool))
        if name.operation in seen:
            raise NameClash(
                f"server {server!r}: tools {seen[name.operation]!r} and {tool!r} "
                f"both map to {name.exposed!r}"
            )
        seen[name.operation] = tool
        out.append(name)
    return out
