"""MODIFY values back to the tool's declared types (aarm_pdp_client._coerce)."""

from __future__ import annotations

from typing import Any

import pytest

from aarm_pdp_client import CoercionError, coerce_like, coerce_to_schema

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "limit": {"type": "integer"},
        "ratio": {"type": "number"},
        "name": {"type": "string"},
        "dry_run": {"type": "boolean"},
        "ids": {"type": "array", "items": {"type": "integer"}},
        "window": {"$ref": "#/$defs/Window"},
        "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "either": {"type": ["integer", "string"]},
    },
    "$defs": {"Window": {"type": "object", "properties": {"days": {"type": "integer"}}}},
}


def test_a_schema_turns_struct_doubles_back_into_integers() -> None:
    got = coerce_to_schema(
        {
            "limit": 1000.0,
            "ratio": 0.5,
            "name": "x",
            "dry_run": True,
            "ids": [1.0, 2.0],
            "window": {"days": 7.0},
            "maybe": 3.0,
            "either": 4.0,
        },
        SCHEMA,
    )
    assert got == {
        "limit": 1000,
        "ratio": 0.5,
        "name": "x",
        "dry_run": True,
        "ids": [1, 2],
        "window": {"days": 7},
        "maybe": 3,
        "either": 4,
    }
    assert type(got["limit"]) is int and all(type(i) is int for i in got["ids"])
    assert type(got["window"]["days"]) is int and type(got["maybe"]) is int
    unions = {"maybe": None, "either": "s"}
    assert coerce_to_schema(unions, SCHEMA) == unions


@pytest.mark.parametrize(
    "value",
    [
        {"limit": 2.5},
        {"limit": True},
        {"limit": "10"},
        {"dry_run": "yes"},
        {"ids": [1.5]},
        {"name": 3.0},
        {"limit": 2.0**60},
    ],
)
def test_a_value_the_declared_type_cannot_take_is_refused(value: dict[str, Any]) -> None:
    with pytest.raises(CoercionError):
        coerce_to_schema(value, SCHEMA)


def test_undeclared_keys_follow_additional_properties() -> None:
    closed = {**SCHEMA, "additionalProperties": False}
    with pytest.raises(CoercionError, match="not a declared parameter"):
        coerce_to_schema({"extra": 1.0}, closed)
    assert coerce_to_schema({"extra": 1.0}, SCHEMA) == {"extra": 1.0}
    typed = {"type": "object", "additionalProperties": {"type": "integer"}}
    assert coerce_to_schema({"a": 1.0}, typed) == {"a": 1}


def test_without_a_schema_the_original_call_decides() -> None:
    original = {"limit": 5000, "ratio": 0.25, "flag": True, "ids": [3, 4], "nested": {"n": 1}}
    modified = {
        "limit": 1000.0,
        "ratio": 0.5,
        "flag": False,
        "ids": [3.0, 4.0, 5.0],
        "nested": {"n": 2.0},
        "added": 7.0,
    }
    got = coerce_like(modified, original)
    assert got == {
        "limit": 1000,
        "ratio": 0.5,
        "flag": False,
        "ids": [3, 4, 5],
        "nested": {"n": 2},
        "added": 7.0,
    }
    assert type(got["limit"]) is int and type(got["nested"]["n"]) is int
    assert type(got["ratio"]) is float and type(got["added"]) is float  # nothing guessed
    # A value the policy made fractional stays as it is: the tool's own checks judge it.
    assert coerce_like({"limit": 2.5}, {"limit": 5}) == {"limit": 2.5}
