"""What the service needs to know about tools, read from the policy's own catalogue."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aarm_pdp.analysis import TYPES, analyse_value

_NO_ANALYSIS: Mapping[str, str | Mapping[str, str]] = MappingProxyType({})
PAYMENT_CATEGORY = "financial"
"""Tools of this category move money: their ``amount``-typed parameters are payments."""


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """A tool's category, whether its output is trusted content, and its analysed parameters."""

    category: str
    trusted_output: bool
    analysis: Mapping[str, str | Mapping[str, str]] = field(default_factory=lambda: _NO_ANALYSIS)
    """Parameter name -> analysed type (``"sql"``) or ``{"type": ..., <role>: <param>}``:
    the ``analysis`` key of each catalogue parameter, in the shape
    :func:`aarm_pdp.analysis.analyse` takes. Empty for a tool with no analysed parameter
    (its decisions cost no analysis)."""


def _analysis_spec(spec: object) -> str | Mapping[str, str] | None:
    """A parameter's ``analysis`` declaration, or None when absent or malformed.

    The policy's catalogue lint (``aarm.catalogue.errors``) rejects malformed ones; a
    parameter skipped here is left without facts, and the pack denies a declared
    parameter that has none (``aarm.analysis.missing``).
    """
    if isinstance(spec, str):
        return spec if spec in TYPES else None
    if (
        isinstance(spec, Mapping)
        and spec.get("type") in TYPES
        and all(isinstance(k, str) and isinstance(v, str) for k, v in spec.items())
    ):
        return MappingProxyType(dict(spec))
    return None


def _analysis(parameters: object) -> Mapping[str, str | Mapping[str, str]]:
    if not isinstance(parameters, Mapping):
        return _NO_ANALYSIS
    out: dict[str, str | Mapping[str, str]] = {}
    for name, pspec in sorted(parameters.items()):
        if isinstance(name, str) and isinstance(pspec, Mapping):
            declared = _analysis_spec(pspec.get("analysis"))
            if declared is not None:
                out[name] = declared
    return MappingProxyType(out) if out else _NO_ANALYSIS


def _kind(spec: str | Mapping[str, str]) -> str:
    return spec if isinstance(spec, str) else spec["type"]


class Catalogue:
    """An immutable snapshot of ``data.aarm.catalogue.tools``, refreshed with the policy."""

    def __init__(
        self,
        tools: dict[str, ToolInfo] | None = None,
        request_scope: Mapping[str, str] | None = None,
    ) -> None:
        self._tools = tools or {}
        self.request_scope: Mapping[str, str] = MappingProxyType(dict(request_scope or {}))
        """Category -> pattern over a request's text (the policy's ``request_scope``):
        what a request without a declared scope implies (:mod:`aarm_pdp.drift.scope`)."""

    @classmethod
    def from_policy_data(cls, doc: Any, request_scope: Any = None) -> Catalogue:
        """Build from the catalogue document (and the config's request patterns);
        malformed entries are skipped."""
        tools: dict[str, ToolInfo] = {}
        if isinstance(doc, dict):
            for name, entry in doc.items():
                if isinstance(name, str) and isinstance(entry, dict):
                    category = entry.get("category")
                    tools[name] = ToolInfo(
                        category=category if isinstance(category, str) else "",
                        trusted_output=entry.get("output_trust") == "trusted",
                        analysis=_analysis(entry.get("parameters")),
                    )
        patterns = {}
        if isinstance(request_scope, dict):
            patterns = {
                k: v for k, v in request_scope.items() if isinstance(k, str) and isinstance(v, str)
            }
        return cls(tools, patterns)

    def categories(self) -> dict[str, str]:
        """Every catalogued ``tool.operation`` and its category."""
        return {name: info.category for name, info in self._tools.items()}

    def get(self, name: str) -> ToolInfo:
        """The tool's info; unknown tools have no category and untrusted output."""
        return self._tools.get(name, ToolInfo(category="", trusted_output=False))

    def analysis_types(self, name: str) -> Mapping[str, str | Mapping[str, str]]:
        """The analysed parameters of tool ``name`` (empty for an unknown tool)."""
        return self.get(name).analysis

    def payment(self, name: str, parameters: object) -> tuple[str, float] | None:
        """``(currency, amount)`` of a call that pays, for the session's payment totals.

        A call pays when its tool's category is ``financial`` and a parameter it
        types ``amount`` holds a value that parses to a positive number; the currency
        is the amount's own (``EUR 15000``) or its ``currency`` companion parameter's,
        ``""`` when neither says. Deterministic: the same analysis as the input's.
        """
        info = self.get(name)
        if info.category != PAYMENT_CATEGORY or not isinstance(parameters, Mapping):
            return None
        for param, spec in info.analysis.items():
            if _kind(spec) != "amount" or parameters.get(param) is None:
                continue
            companions = {} if isinstance(spec, str) else spec
            context = {r: parameters.get(p) for r, p in companions.items() if r != "type"}
            facts = analyse_value("amount", parameters[param], context=context)
            value = facts.get("value")
            if facts.get("parsed") and isinstance(value, int | float) and value > 0:
                currency = facts.get("currency") or facts.get("currency_param") or ""
                return str(currency), float(value)
        return None

    def __len__(self) -> int:
        return len(self._tools)
