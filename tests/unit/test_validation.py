"""Request validation bounds every input and names what is wrong."""

from __future__ import annotations

from typing import Any

import pytest
from aarm_pdp.api.validation import to_action_request
from aarm_pdp.config import LimitsConfig
from aarm_pdp.errors import ErrorCode, RequestInvalid
from google.protobuf import struct_pb2

from tests.support.messages import decide_request

LIM = LimitsConfig()


def nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        doc = {"n": doc}
    return doc


def test_valid_request_round_trips() -> None:
    req = to_action_request(decide_request("db", "query", {"limit": 5}, request_id="r"), LIM)
    assert req.action.name == "db.query"
    assert req.action.parameters == {"limit": 5}
    assert req.identity.missing() == ()
    assert len(req.fingerprint) == 64


def test_depth_at_limit_passes_and_beyond_fails() -> None:
    to_action_request(decide_request("t", "o", nested(LIM.max_depth)), LIM)
    with pytest.raises(RequestInvalid, match="nested deeper than 32") as err:
        to_action_request(decide_request("t", "o", nested(LIM.max_depth + 1)), LIM)
    assert err.value.code is ErrorCode.REQUEST_INVALID


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"s": "x" * 70_000}, "string longer than"),
        ({"s": "é" * 40_000}, "string longer than"),
        ({"k" * 300: 1}, "key longer than"),
        ({"l": list(range(1_001))}, "list longer than"),
        ({f"k{i}": [0] * 900 for i in range(12)}, "more than 10000 values"),
    ],
)
def test_size_limits(params: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestInvalid, match=message):
        to_action_request(decide_request("t", "o", params), LIM)


def test_non_finite_numbers_rejected() -> None:
    msg = decide_request("t", "o")
    msg.action.parameters.fields["x"].number_value = float("nan")
    with pytest.raises(RequestInvalid, match="finite"):
        to_action_request(msg, LIM)
    msg = decide_request("t", "o")
    msg.risk_signals["injection_score"] = float("inf")
    with pytest.raises(RequestInvalid, match="finite"):
        to_action_request(msg, LIM)


def test_value_without_kind_rejected() -> None:
    msg = decide_request("t", "o")
    msg.action.parameters.fields["x"].CopyFrom(struct_pb2.Value())
    with pytest.raises(RequestInvalid, match="no kind"):
        to_action_request(msg, LIM)


@pytest.mark.parametrize(
    ("tool", "operation"),
    [
        ("", "q"),
        ("db", ""),
        ("d b", "q"),
        ("db", "q/../x"),
        ("db.x", "q"),
        ("db", "x" * 65),
        ('db"]; allow', "q"),
    ],
)
def test_names_are_bounded_patterns(tool: str, operation: str) -> None:
    with pytest.raises(RequestInvalid, match="must match"):
        to_action_request(decide_request(tool, operation), LIM)


def test_identity_fields_bounded_and_control_chars_rejected() -> None:
    ident = {"agent": "a" * 300, "session_id": "s", "human": "h"}
    with pytest.raises(RequestInvalid, match=r"identity\.agent longer"):
        to_action_request(decide_request("t", "o", identity=ident), LIM)
    ident = {"agent": "a\nb", "session_id": "s", "human": "h"}
    with pytest.raises(RequestInvalid, match="control characters"):
        to_action_request(decide_request("t", "o", identity=ident), LIM)


def test_missing_identity_is_reported_not_rejected() -> None:
    req = to_action_request(decide_request("t", "o", identity={}), LIM)
    assert req.identity.missing() == ("agent", "session_id", "human_or_service")
    req = to_action_request(
        decide_request("t", "o", identity={"agent": "a", "session_id": "s", "service": "svc"}),
        LIM,
    )
    assert req.identity.missing() == ()


def test_fact_names_and_duplicates() -> None:
    with pytest.raises(RequestInvalid, match="dotted lowercase"):
        to_action_request(decide_request("t", "o", facts=[{"name": "Bad Name"}]), LIM)
    with pytest.raises(RequestInvalid, match="repeated"):
        to_action_request(
            decide_request("t", "o", facts=[{"name": "a", "value": 1}, {"name": "a", "value": 2}]),
            LIM,
        )


def test_fingerprint_changes_with_content() -> None:
    a = to_action_request(decide_request("db", "query", {"limit": 5}, request_id="r"), LIM)
    b = to_action_request(decide_request("db", "query", {"limit": 6}, request_id="r"), LIM)
    assert a.fingerprint != b.fingerprint
