"""SessionService: what StartSession, RecordOutcome and EndSession put in front of policy."""

from __future__ import annotations

import json
import re
from typing import Any

import grpc
import pytest
from aarm.v1 import decision_pb2, receipt_pb2, session_pb2
from google.protobuf import json_format

from tests.api.conftest import Api
from tests.support.messages import IDENTITY, decide_request, verdict_doc

pytestmark = pytest.mark.api
D = decision_pb2
S = session_pb2
HEX64 = re.compile(r"[0-9a-f]{64}")
READ = ("db", "query", {"table": "orders", "limit": 10})


def _identity(**over: Any) -> Any:
    return json_format.ParseDict({**IDENTITY, **over}, D.Identity())


def _start(**fields: Any) -> Any:
    return S.StartSessionRequest(identity=_identity(), **fields)


def _outcome(decision_id: str, **fields: Any) -> Any:
    return S.RecordOutcomeRequest(
        identity=_identity(),
        decision_id=decision_id,
        status=S.OUTCOME_STATUS_EXECUTED,
        **fields,
    )


async def test_start_session_binds_the_original_request(api: Api) -> None:
    started = await api.c.sessions.StartSession(
        _start(
            original_request="summarise the Q3 orders",
            intent_class="reporting",
            expected_scope=["db.query"],
            max_classification=S.CLASSIFICATION_INTERNAL,
        )
    )
    assert started.session_id == IDENTITY["session_id"]
    assert HEX64.fullmatch(started.context_hash)
    await api.c.decide.Decide(decide_request(*READ))
    session = api.engine.calls[0]["session"]
    assert session["known"] is True
    assert session["original_request"] == {
        "text": "summarise the Q3 orders",
        "intent_class": "reporting",
        "expected_scope": ["db.query"],
        "max_classification": "INTERNAL",
        "derived_scope": [],  # a scope was declared: nothing derived
    }


async def test_a_session_starts_once(api: Api) -> None:
    await api.c.sessions.StartSession(_start(original_request="first"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.c.sessions.StartSession(_start(original_request="second"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_without_start_the_session_is_unknown_to_policy(api: Api) -> None:
    await api.c.decide.Decide(decide_request(*READ))
    session = api.engine.calls[0]["session"]
    assert session["known"] is False
    assert session["original_request"] is None
    assert session["action_count"] == 0


async def test_outcome_raises_the_session_classification(api: Api) -> None:
    read = await api.c.decide.Decide(decide_request(*READ))
    before = api.engine.calls[0]["session"]
    assert before["highest_classification"] == "NONE"
    recorded = await api.c.sessions.RecordOutcome(
        _outcome(read.decision_id, classification=S.CLASSIFICATION_CONFIDENTIAL, labels=["PII"])
    )
    assert recorded.highest_classification == S.CLASSIFICATION_CONFIDENTIAL
    assert HEX64.fullmatch(recorded.context_hash)
    await api.c.decide.Decide(decide_request("email", "send", {"to": ["x@partner.example"]}))
    after = api.engine.calls[1]["session"]
    assert after["highest_classification"] == "CONFIDENTIAL"
    assert after["labels"] == ["PII"]
    assert after["action_count"] == 1
    assert after["tools_used"] == ["db.query"]


async def test_classification_the_policy_predicts_is_recorded_at_decision_time(
    api: Api,
) -> None:
    api.opa.returns(verdict_doc("ALLOW", data_classification="RESTRICTED", data_labels=["PII"]))
    await api.c.decide.Decide(decide_request(*READ))
    await api.c.decide.Decide(decide_request("email", "send", {"to": ["x@partner.example"]}))
    after = api.engine.calls[1]["session"]
    assert after["highest_classification"] == "RESTRICTED"
    assert after["labels"] == ["PII"]


async def test_outcome_for_an_unknown_decision_is_not_found(api: Api) -> None:
    await api.c.decide.Decide(decide_request(*READ))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.c.sessions.RecordOutcome(_outcome("no-such-decision"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_end_session_counts_actions_and_closes_the_receipt_chain(api: Api) -> None:
    for limit in (1, 2, 3):
        await api.c.decide.Decide(decide_request("db", "query", {"table": "t", "limit": limit}))
    ended = await api.c.sessions.EndSession(S.EndSessionRequest(identity=_identity()))
    assert ended.action_count == 3
    assert HEX64.fullmatch(ended.context_hash)
    listed = await api.c.receipts.ListReceipts(
        receipt_pb2.ListReceiptsRequest(tenant="acme", session_id=IDENTITY["session_id"])
    )
    kinds = [json.loads(r.payload)["kind"] for r in listed.receipts]
    assert kinds == ["decision", "decision", "decision", "session_end"]


async def test_ending_an_unknown_session_is_not_found(api: Api) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.c.sessions.EndSession(S.EndSessionRequest(identity=_identity(session_id="nope")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
