"""A draft overlay catalogue from the upstream servers' tools (PURE).

For an operator to review, never trusted automatically: the gateway does not load
it. Each upstream tool becomes a catalogue entry ``<server>.<tool>`` from its input
schema and its MCP annotations, read with the protocol's defaults (``readOnlyHint``
false, ``destructiveHint`` true, ``openWorldHint`` true), so a tool that declares
nothing drafts as the most cautious entry:

| hints | category | risk_tier |
|---|---|---|
| readOnlyHint | read | low (medium when openWorld) |
| not read-only, destructiveHint (the default) | destructive | critical (every call STEP_UP) |
| not read-only, not destructive, openWorld (the default) | external_communication | medium |
| not read-only, not destructive, closed world | write | medium |

``output_trust`` is always ``untrusted``: trust is the operator's call, never drafted
from a server's own claims (a closed-world file read still returns what anyone wrote).
Hints are the server's claims: the description of every entry says which were given.
"""

from __future__ import annotations

from typing import Any

from mcp import types

from aarm_pdp.gateway.naming import ToolName

_TYPES = {"string", "integer", "number", "boolean", "array", "object"}
_COPIED = {
    "maxLength": "max_length",
    "minimum": "minimum",
    "maximum": "maximum",
    "pattern": "pattern",
    "maxItems": "max_items",
}


def entry(tool: types.Tool) -> dict[str, Any]:
    """The draft catalogue entry of one upstream tool."""
    hints = tool.annotations
    read_only = _hint(hints, "readOnlyHint", default=False)
    destructive = _hint(hints, "destructiveHint", default=True)
    open_world = _hint(hints, "openWorldHint", default=True)
    if read_only:
        category, tier = "read", "medium" if open_world else "low"
    elif destructive:
        category, tier = "destructive", "critical"
    elif open_world:
        category, tier = "external_communication", "medium"
    else:
        category, tier = "write", "medium"
    given = [
        f"{k}={getattr(hints, k)}"
        for k in ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
        if hints is not None and getattr(hints, k) is not None
    ]
    summary = (tool.description or tool.title or tool.name).strip().splitlines()
    text = summary[0] if summary else tool.name
    note = f"hints: {', '.join(given)}" if given else "no hints: protocol defaults"
    out: dict[str, Any] = {
        "category": category,
        "risk_tier": tier,
        "output_trust": "untrusted",
        "description": f"DRAFT, review before use ({note}). {text}"[:1024],
        "parameters": parameters(tool.inputSchema),
    }
    if tool.inputSchema.get("additionalProperties") is False:
        out["additional_parameters"] = False
    return out


def parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """Catalogue parameter specs from a JSON-schema object's properties."""
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    out: dict[str, Any] = {}
    for name, spec in props.items():
        if not isinstance(spec, dict):
            continue
        param: dict[str, Any] = {}
        kinds = _types(spec)
        if kinds:
            param["type"] = kinds[0] if len(kinds) == 1 else kinds
        if name in required:
            param["required"] = True
        for theirs, ours in _COPIED.items():
            if theirs in spec and not isinstance(spec[theirs], bool):
                param[ours] = spec[theirs]
        if isinstance(spec.get("enum"), list):
            param["enum"] = list(spec["enum"])
        items = spec.get("items")
        if isinstance(items, dict):
            item_kinds = _types(items)
            if len(item_kinds) == 1:
                param["items_type"] = item_kinds[0]
        out[name] = param
    return out


def catalogue(tools: list[tuple[ToolName, types.Tool]]) -> dict[str, Any]:
    """The overlay catalogue document ``{"tools": {...}}``, keys sorted."""
    return {"tools": {n.exposed: entry(t) for n, t in sorted(tools, key=lambda x: x[0].exposed)}}


def manifest(name: str) -> dict[str, Any]:
    """The ``.manifest`` of an overlay bundle named ``name``."""
    return {"revision": "draft", "roots": [f"aarm/overlays/{name}"], "rego_version": 1}


def _hint(hints: types.ToolAnnotations | None, key: str, *, default: bool) -> bool:
    value = getattr(hints, key, None) if hints is not None else None
    return default if value is None else bool(value)


def _types(spec: dict[str, Any]) -> list[str]:
    raw = spec.get("type")
    kinds: list[str] = []
    if isinstance(raw, str):
        kinds = [raw]
    elif isinstance(raw, list):
        kinds = [k for k in raw if isinstance(k, str)]
    for alt in spec.get("anyOf") or spec.get("oneOf") or []:
        if isinstance(alt, dict) and isinstance(alt.get("type"), str):
            kinds.append(alt["type"])
    seen: list[str] = []
    for k in kinds:
        if k in _TYPES and k not in seen:
            seen.append(k)
    return seen
