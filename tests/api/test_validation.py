"""Requests that break the contract are INVALID_ARGUMENT, counted, and never reach OPA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from aarm.v1 import decision_pb2, receipt_pb2, session_pb2
from aarm_pdp.config import ServerConfig
from aarm_pdp.opa.fake import FakePolicyEngine
from google.protobuf import json_format

from tests.api.conftest import Api
from tests.support.messages import IDENTITY, decide_request, verdict_doc
from tests.support.service import fake_config, running

pytestmark = pytest.mark.api
D = decision_pb2
QUERY = ("db", "query", {"table": "orders", "limit": 10})


def _nested(depth: int) -> dict[str, Any]:
    """Parameters holding lists ``depth`` deep (nested Structs hit protobuf's own decode
    depth limit first, which is INVALID_ARGUMENT too, but without our message)."""
    doc: Any = 1
    for _ in range(depth):
        doc = [doc]
    return {"n": doc}


def _with(**changes: Any) -> Any:
    """A valid DecideRequest with fields of its JSON form replaced."""
    body = json_format.MessageToDict(decide_request(*QUERY))
    for path, value in changes.items():
        node = body
        *parents, leaf = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return json_format.ParseDict(body, D.DecideRequest())


BAD_DECIDE: dict[str, tuple[Any, str]] = {
    "tool with a space": (decide_request("db query", "read"), "action.tool"),
    "no tool": (decide_request("", "read"), "action.tool"),
    "no operation": (decide_request("db", ""), "action.operation"),
    "control character in identity": (
        decide_request(*QUERY, identity={**IDENTITY, "human": "alice\x00@acme.example"}),
        "identity.human",
    ),
    "identity field too long": (
        decide_request(*QUERY, identity={**IDENTITY, "agent": "a" * 300}),
        "identity.agent",
    ),
    "parameters nested too deep": (decide_request("db", "query", _nested(33)), "nested deeper"),
    "fact name not dotted lowercase": (
        decide_request(*QUERY, facts=[{"name": "Ticket State", "value": "x", "source": "s"}]),
        "facts[].name",
    ),
    "fact name repeated": (
        decide_request(
            *QUERY,
            facts=[
                {"name": "ticket", "value": "a", "source": "s"},
                {"name": "ticket", "value": "b", "source": "s"},
            ],
        ),
        "repeated",
    ),
    "risk signal name": (decide_request(*QUERY, risk_signals={"Bad-Name": 0.5}), "risk_signals"),
    "malformed approval token": (_with(approvalToken="not a token!"), "approval_token"),
}


@pytest.mark.parametrize("name", list(BAD_DECIDE))
async def test_invalid_decide_request(api: Api, name: str) -> None:
    request, fragment = BAD_DECIDE[name]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.c.decide.Decide(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in (err.value.details() or "")
    assert api.engine.calls == []
    assert api.metric("aarm_requests_rejected_total", code="request_invalid") == 1


@pytest.mark.parametrize(
    "method",
    [
        "/aarm.v1.DecisionService/Decide",
        "/aarm.v1.SessionService/StartSession",
        "/aarm.v1.ReceiptService/GetReceipt",
    ],
)
async def test_undecodable_bytes_are_invalid_argument(api: Api, method: str) -> None:
    call = api.c.channel.unary_unary(method)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(b"\xff\xff\xff\xff")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not decode" in (err.value.details() or "")
    assert api.engine.calls == []


async def test_oversized_request_is_invalid_argument(tmp_path: Path) -> None:
    cfg = fake_config(tmp_path, server=ServerConfig(listen="127.0.0.1:0", max_request_bytes=2048))
    engine = FakePolicyEngine(lambda _: verdict_doc("ALLOW"))
    async with running(cfg, policy_engine=engine) as (_, c):
        small = await c.decide.Decide(decide_request(*QUERY))
        assert small.decision == D.DECISION_ALLOW
        big = decide_request("db", "query", {"q": "x" * 3000})
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.decide.Decide(big)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "larger than 2048 bytes" in (err.value.details() or "")
    assert len(engine.calls) == 1


def _identity(**over: Any) -> Any:
    return json_format.ParseDict({**IDENTITY, **over}, D.Identity())


BAD_SESSION: dict[str, tuple[str, Any, str]] = {
    "start without original request": (
        "StartSession",
        session_pb2.StartSessionRequest(identity=_identity(), original_request="  "),
        "original_request is required",
    ),
    "start without agent": (
        "StartSession",
        session_pb2.StartSessionRequest(identity=_identity(agent=""), original_request="hi"),
        "identity missing agent",
    ),
    "start with a sentence as intent class": (
        "StartSession",
        session_pb2.StartSessionRequest(
            identity=_identity(), original_request="hi", intent_class="clean up everything"
        ),
        "intent_class",
    ),
    "outcome without decision id": (
        "RecordOutcome",
        session_pb2.RecordOutcomeRequest(
            identity=_identity(), status=session_pb2.OUTCOME_STATUS_EXECUTED
        ),
        "decision_id is required",
    ),
    "outcome without status": (
        "RecordOutcome",
        session_pb2.RecordOutcomeRequest(identity=_identity(), decision_id="d-1"),
        "status",
    ),
    "outcome digest not hex": (
        "RecordOutcome",
        session_pb2.RecordOutcomeRequest(
            identity=_identity(),
            decision_id="d-1",
            status=session_pb2.OUTCOME_STATUS_EXECUTED,
            output_digest="not-a-digest",
        ),
        "output_digest",
    ),
    "outcome label not a name": (
        "RecordOutcome",
        session_pb2.RecordOutcomeRequest(
            identity=_identity(),
            decision_id="d-1",
            status=session_pb2.OUTCOME_STATUS_EXECUTED,
            labels=["has space"],
        ),
        "labels",
    ),
    "end without session id": (
        "EndSession",
        session_pb2.EndSessionRequest(identity=_identity(session_id="")),
        "session_id",
    ),
}


@pytest.mark.parametrize("name", list(BAD_SESSION))
async def test_invalid_session_request(api: Api, name: str) -> None:
    method, request, fragment = BAD_SESSION[name]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(api.c.sessions, method)(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in (err.value.details() or "")


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        ("GetReceipt", receipt_pb2.GetReceiptRequest()),
        ("ListReceipts", receipt_pb2.ListReceiptsRequest(tenant="acme")),
    ],
)
async def test_invalid_receipt_request(api: Api, method: str, request_: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(api.c.receipts, method)(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
