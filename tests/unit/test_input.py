"""The input builder is pure and total."""

from __future__ import annotations

from aarm_pdp.api.validation import to_action_request
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.input import (
    INPUT_VERSION,
    RECENT_MEMBERS,
    UNSENT_SESSION_MEMBERS,
    build_input,
    empty_context,
)
from aarm_pdp.model.timestamps import rfc3339
from aarm_pdp.opa.layers import UNSENT_INPUT

from tests.support.messages import decide_request

NOW = 1_795_658_400_123_456_000


def _input(**kw: object) -> dict[str, object]:
    req = to_action_request(
        decide_request("db", "query", {"table": "customers", "limit": 10}, **kw), LimitsConfig()
    )
    return build_input(req, now_ns=NOW)


def test_versioned_and_complete() -> None:
    doc = _input(request_id="r-1")
    assert doc["version"] == INPUT_VERSION == "aarm.v1"
    assert doc["request_id"] == "r-1"
    assert doc["now_ns"] == NOW
    assert doc["now"] == "2026-11-26T02:00:00.123456Z"
    assert doc["action"] == {
        "tool": "db",
        "operation": "query",
        "name": "db.query",
        "parameters": {"table": "customers", "limit": 10},
        "depends_on": [],
        "original_tool": "",
    }
    assert doc["facts"] == {}
    assert doc["risk_signals"] == {}
    assert doc["identity"]["delegation_chain"] == []  # type: ignore[index]


def test_same_request_same_input() -> None:
    assert _input(request_id="r") == _input(request_id="r")


def test_integral_numbers_become_ints_and_facts_keep_source() -> None:
    doc = _input(
        facts=[
            {
                "name": "maintenance_window",
                "value": True,
                "source": "ticketing",
                "observedAt": "2026-11-26T01:59:00Z",
            }
        ],
        risk_signals={"injection_score": 0.25},
    )
    assert doc["facts"] == {
        "maintenance_window": {
            "value": True,
            "source": "ticketing",
            "observed_at": "2026-11-26T01:59:00.000000Z",
        }
    }
    assert doc["risk_signals"] == {"injection_score": 0.25}
    assert isinstance(doc["action"]["parameters"]["limit"], int)  # type: ignore[index]


def test_rfc3339_epoch() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000000Z"


def test_the_session_part_carries_what_policy_reads() -> None:
    """No open deferrals of the whole session, recent actions cut to what the pack
    reads (docs/opa-contract.md); the context itself is left as it was."""
    req = to_action_request(decide_request("db", "query", {"table": "t"}), LimitsConfig())
    context = empty_context()
    session = context["session"]
    session["pending_deferrals"] = ["d-1", "d-2"]
    session["recent"] = [
        {
            "decision_id": "d-1",
            "name": "credentials.rotate",
            "category": "security_control",
            "decision": "DEFER",
            "classification": "NONE",
            "outcome": "pending",
        }
    ]
    session["payments"] = {"session": {"count": 0, "total": 0, "by_currency": {}}, "windows": {}}
    doc = build_input(req, now_ns=NOW, context=context)
    sent = doc["session"]
    assert "pending_deferrals" not in sent and "payments" not in sent  # type: ignore[operator]
    assert sent["recent"] == [  # type: ignore[index]
        {"decision_id": "d-1", "name": "credentials.rotate", "outcome": "pending"}
    ]
    assert tuple(sent["recent"][0]) == RECENT_MEMBERS  # type: ignore[index]
    assert doc["analysis"]["amounts"] == session["payments"]  # type: ignore[index]
    assert len(session["recent"][0]) == 6 and session["pending_deferrals"] == ["d-1", "d-2"]
    # The layer check refuses a policy that names a member the input no longer has.
    assert set(UNSENT_INPUT) <= UNSENT_SESSION_MEMBERS
