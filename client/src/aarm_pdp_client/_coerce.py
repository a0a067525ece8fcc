"""MODIFY parameters back to the tool's declared JSON types.

A ``google.protobuf.Struct`` has one number type, the double: a MODIFY verdict's
``{"limit": 1000}`` arrives as ``{"limit": 1000.0}``. Before the tool sees it, every
value is converted back to the type the tool declares, by one of two rules:

1. **A JSON Schema, when the caller gives one** (the tool's parameters schema, as
   OpenAI function tools and LangChain tools publish it): ``integer`` takes an integral
   number as ``int``, ``number`` a ``float`` (or ``int``), ``string``, ``boolean``,
   ``null``, ``array`` (``items``) and ``object`` (``properties``,
   ``additionalProperties``) are checked recursively; a union (``type`` list,
   ``anyOf``/``oneOf``) takes the first branch the value fits. Local ``$ref``s
   (``#/$defs/...``) are followed.
2. **Otherwise, the original call's Python values**: where the agent passed an ``int``
   (not a ``bool``) at the same place, an integral number stays an ``int``; everything
   else keeps the type the Struct gives it. A key the policy added has no original, so
   its numbers stay ``float`` (nothing is guessed).

A value the declared type cannot take (``2.5`` for an ``integer``, ``"x"`` for a
``boolean``) raises :class:`CoercionError`: the tool cannot be run as the policy
decided, so the guard refuses the action (it fails closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["CoercionError", "coerce_like", "coerce_to_schema"]

_MAX_EXACT = 2**53
"""Integers past this are not exact in a double; such a value is refused, not rounded."""


class CoercionError(ValueError):
    """A MODIFY value that the tool's declared type cannot take."""


def _integral(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) <= _MAX_EXACT:
        return int(value)
    return None


def coerce_like(value: Any, original: Any) -> Any:
    """``value`` with integral numbers made ``int`` where ``original`` had an ``int``."""
    if isinstance(value, dict):
        like: Mapping[str, Any] = original if isinstance(original, Mapping) else {}
        return {k: coerce_like(v, like.get(k)) for k, v in value.items()}
    if isinstance(value, list):
        items = list(original) if isinstance(original, list | tuple) else []
        # A list's items share one type: an int anywhere in the original list stands for all.
        item_like = next((o for o in items if isinstance(o, int) and not isinstance(o, bool)), None)
        return [
            coerce_like(v, items[i] if i < len(items) and item_like is None else item_like)
            for i, v in enumerate(value)
        ]
    if isinstance(original, int) and not isinstance(original, bool):
        as_int = _integral(value)
        if as_int is not None:
            return as_int
    return value


def coerce_to_schema(value: Any, schema: Mapping[str, Any], *, path: str = "$") -> Any:
    """``value`` converted to ``schema`` (a JSON Schema); CoercionError when it cannot be."""
    return _Coercer(schema).coerce(value, schema, path)


class _Coercer:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self._root = root

    def _resolve(self, schema: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        seen = 0
        while "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/") or seen > 32:
                raise CoercionError(f"{path}: unsupported $ref {ref!r}")
            node: Any = self._root
            for part in ref[2:].split("/"):
                node = node.get(part.replace("~1", "/").replace("~0", "~"), None)
                if not isinstance(node, Mapping):
                    raise CoercionError(f"{path}: unresolved $ref {ref!r}")
            schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
        return schema

    def coerce(self, value: Any, schema: Mapping[str, Any], path: str) -> Any:
        schema = self._resolve(schema, path)
        branches = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(branches, list) and branches:
            for branch in branches:
                try:
                    return self.coerce(value, branch, path)
                except CoercionError:
                    continue
            raise CoercionError(f"{path}: {value!r} fits none of the declared types")
        declared = schema.get("type")
        if declared is None:
            return value  # no declared type: any JSON value
        types = declared if isinstance(declared, list) else [declared]
        for t in types:
            try:
                return self._one(value, t, schema, path)
            except CoercionError:
                if len(types) == 1:
                    raise
        raise CoercionError(f"{path}: {value!r} is not {' or '.join(map(str, types))}")

    def _one(self, value: Any, t: str, schema: Mapping[str, Any], path: str) -> Any:
        if t == "integer":
            as_int = _integral(value)
            if as_int is None:
                raise CoercionError(f"{path}: {value!r} is not an integer")
            return as_int
        if t == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CoercionError(f"{path}: {value!r} is not a number")
            return value
        if t == "string":
            if not isinstance(value, str):
                raise CoercionError(f"{path}: {value!r} is not a string")
            return value
        if t == "boolean":
            if not isinstance(value, bool):
                raise CoercionError(f"{path}: {value!r} is not a boolean")
            return value
        if t == "null":
            if value is not None:
                raise CoercionError(f"{path}: {value!r} is not null")
            return None
        if t == "array":
            if not isinstance(value, list):
                raise CoercionError(f"{path}: {value!r} is not an array")
            items = schema.get("items")
            if isinstance(items, Mapping):
                return [self.coerce(v, items, f"{path}[{i}]") for i, v in enumerate(value)]
            return list(value)
        if t == "object":
            if not isinstance(value, dict):
                raise CoercionError(f"{path}: {value!r} is not an object")
            props = schema.get("properties")
            props = props if isinstance(props, Mapping) else {}
            extra = schema.get("additionalProperties", True)
            out: dict[str, Any] = {}
            for k, v in value.items():
                sub = props.get(k)
                if isinstance(sub, Mapping):
                    out[k] = self.coerce(v, sub, f"{path}.{k}")
                elif isinstance(extra, Mapping):
                    out[k] = self.coerce(v, extra, f"{path}.{k}")
                elif extra is False:
                    raise CoercionError(f"{path}: {k!r} is not a declared parameter")
                else:
                    out[k] = v
            return out
        raise CoercionError(f"{path}: unknown JSON type {t!r}")
