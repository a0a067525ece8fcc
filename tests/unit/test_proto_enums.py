"""Python and proto spell the same things alike: proto ``<PREFIX>_X`` is Python ``X``.

``aarm_pdp.model.decision.Decision`` is the proto ``aarm.v1.Decision`` (ALLOW..DEFER),
``RiskLevel`` the proto ``RiskLevel``, ``aarm_pdp.model.levels.LEVELS`` the proto
``Classification``; same members, same order (lowest first), 0 is ``_UNSPECIFIED``.
The API translators derive their maps from these names, so they cover every member.
"""

from __future__ import annotations

from typing import Any

import pytest
from aarm.v1 import approval_pb2, decision_pb2, deferral_pb2, session_pb2
from aarm_pdp.api import approval_service, decision_service, session_service
from aarm_pdp.approvals import tickets
from aarm_pdp.model.decision import Decision, RiskLevel
from aarm_pdp.model.levels import LEVELS


def _members(enum: Any, prefix: str) -> list[str]:
    """The proto enum's members past ``_UNSPECIFIED``, in number order, prefix removed."""
    values = sorted(enum.DESCRIPTOR.values, key=lambda v: v.number)
    assert (values[0].number, values[0].name) == (0, f"{prefix}UNSPECIFIED")
    assert [v.number for v in values] == list(range(len(values)))
    assert all(v.name.startswith(prefix) for v in values)
    return [v.name.removeprefix(prefix) for v in values[1:]]


@pytest.mark.parametrize(
    ("python", "proto", "prefix"),
    [
        (Decision, decision_pb2.Decision, "DECISION_"),
        (RiskLevel, decision_pb2.RiskLevel, "RISK_LEVEL_"),
    ],
    ids=["Decision", "RiskLevel"],
)
def test_python_enum_is_the_proto_enum(python: Any, proto: Any, prefix: str) -> None:
    assert [m.name for m in python] == _members(proto, prefix)
    assert [m.value for m in python] == [m.name for m in python]


def test_levels_are_the_proto_classifications() -> None:
    assert list(LEVELS) == _members(session_pb2.Classification, "CLASSIFICATION_")


def test_decide_response_maps_cover_both_enums() -> None:
    for python, proto, pb_map, prefix in (
        (Decision, decision_pb2.Decision, decision_service.DECISION_PB, "DECISION_"),
        (RiskLevel, decision_pb2.RiskLevel, decision_service.RISK_PB, "RISK_LEVEL_"),
    ):
        assert set(pb_map) == set(python)
        assert {proto.Name(v) for v in pb_map.values()} == {
            prefix + m for m in _members(proto, prefix)
        }
        assert all(proto.Name(pb_map[m]) == prefix + m.name for m in python)


def test_session_level_maps_round_trip() -> None:
    assert sorted(session_service._LEVEL_OF) == list(range(1, len(LEVELS) + 1))
    for name in LEVELS:
        number = session_service._LEVEL_PB[name]
        assert session_pb2.Classification.Name(number) == f"CLASSIFICATION_{name}"
        assert session_service._LEVEL_OF[number] == name


@pytest.mark.parametrize(
    ("status_map", "proto", "prefix"),
    [
        (approval_service._STATUS, approval_pb2.ApprovalStatus, "APPROVAL_STATUS_"),
        (approval_service._DEFER_STATUS, deferral_pb2.DeferralStatus, "DEFERRAL_STATUS_"),
    ],
    ids=["ApprovalStatus", "DeferralStatus"],
)
def test_ticket_status_maps_cover_the_proto_statuses(
    status_map: dict[str, Any], proto: Any, prefix: str
) -> None:
    known = {v for k, v in vars(tickets).items() if k.isupper() and isinstance(v, str)}
    assert set(status_map) <= known
    assert sorted(status_map) == sorted(_members(proto, prefix))
    assert all(proto.Name(v) == prefix + k for k, v in status_map.items())
