"""What the service needs to know about tools, read from the policy's own catalogue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """A tool's category and whether its output is trusted content."""

    category: str
    trusted_output: bool


class Catalogue:
    """An immutable snapshot of ``data.aarm.catalogue.tools``, refreshed with the policy."""

    def __init__(self, tools: dict[str, ToolInfo] | None = None) -> None:
        self._tools = tools or {}

    @classmethod
    def from_policy_data(cls, doc: Any) -> Catalogue:
        """Build from the catalogue document; malformed entries are skipped."""
        tools: dict[str, ToolInfo] = {}
        if isinstance(doc, dict):
            for name, entry in doc.items():
                if isinstance(name, str) and isinstance(entry, dict):
                    category = entry.get("category")
                    tools[name] = ToolInfo(
                        category=category if isinstance(category, str) else "",
                        trusted_output=entry.get("output_trust") == "trusted",
                    )
        return cls(tools)

    def get(self, name: str) -> ToolInfo:
        """The tool's info; unknown tools have no category and untrusted output."""
        return self._tools.get(name, ToolInfo(category="", trusted_output=False))

    def __len__(self) -> int:
        return len(self._tools)
