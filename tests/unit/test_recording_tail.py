"""The one recording tail: receipt first, then session and ticket with the verdict given.

Recording fakes of the engine's ports (``decision/ports.py``) log the order of calls;
the real session, ticket and receipt rooms are exercised end to end in
tests/integration (test_approvals.py, test_receipts_e2e.py, test_fail_closed.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aarm_pdp.api.validation import to_action_request
from aarm_pdp.approvals.tickets import Ticket
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.engine import DecisionEngine
from aarm_pdp.decision.ports import NoSessions
from aarm_pdp.errors import ReceiptStoreUnavailable, SessionStoreUnavailable
from aarm_pdp.model.decision import Decision, DecisionResult, PolicyVersion
from aarm_pdp.model.request import ActionRequest
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.opa.fake import FakePolicyEngine
from aarm_pdp.session.context import Prepared

from tests.support.messages import decide_request, verdict_doc

NOW = 1_795_658_400_000_000_000
_PARTS: dict[str, dict[str, Any]] = {
    "STEP_UP": {"approval": {"approvers": ["finance"], "timeout_seconds": 60}}
}


class Log(list[tuple[str, Any]]):
    def kinds(self) -> list[str]:
        return [k for k, _ in self]


class Sessions(NoSessions):
    def __init__(self, log: Log, fail_commit: bool = False) -> None:
        self.log = log
        self.fail_commit = fail_commit

    async def prepare(self, request: ActionRequest, now_ns: int) -> Prepared:
        prepared = await super().prepare(request, now_ns)
        prepared.context_hash = "c" * 64
        return prepared

    async def commit(
        self,
        prepared: Prepared,
        request: ActionRequest,
        decision_id: str,
        decision: DecisionResult,
        now_ns: int,
    ) -> None:
        self.log.append(("commit", decision.decision.value))
        if self.fail_commit:
            raise SessionStoreUnavailable("store went away")


class Receipts:
    def __init__(self, log: Log, fail: bool = False) -> None:
        self.log = log
        self.fail = fail

    async def append(
        self, body: Mapping[str, Any], *, record: str | None = None
    ) -> dict[str, Any] | None:
        if self.fail:
            raise ReceiptStoreUnavailable("disk full")
        self.log.append(("receipt", dict(body)))
        return {**body, "chain": {"seq": len(self.log)}}


class Tickets:
    def __init__(self, log: Log) -> None:
        self.log = log

    def new_ticket_id(self) -> str:
        return "t-1"

    async def room(self, kind: str, request: ActionRequest) -> None:
        return None

    async def open(self, *, ticket_id: str = "", **kw: Any) -> str:
        self.log.append(("ticket", ticket_id))
        return ticket_id

    async def redeem(
        self, token: str, request: ActionRequest, policy: PolicyVersion, now_ns: int
    ) -> DecisionResult:
        raise AssertionError("not used")

    async def record_attempt(self, ticket_id: str, **kw: Any) -> Ticket:
        raise AssertionError("not used")


class Events:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, ev: dict[str, Any]) -> None:
        self.events.append(ev)


def _engine(
    verdict: str, *, fail_receipt: bool = False, fail_commit: bool = False
) -> tuple[DecisionEngine, Log, Events]:
    log = Log()
    events = Events()
    ids = iter(f"id-{i}" for i in range(100))
    engine = DecisionEngine(
        FakePolicyEngine(lambda _: verdict_doc(verdict, **_PARTS.get(verdict, {}))),
        Metrics(),
        clock_ns=lambda: NOW,
        new_id=lambda: next(ids),
        sessions=Sessions(log, fail_commit),
        workflow=Tickets(log),
        receipts=Receipts(log, fail_receipt),
        telemetry=events,
    )
    return engine, log, events


def _req() -> ActionRequest:
    return to_action_request(decide_request("payments", "transfer", {"amount": 5}), LimitsConfig())


async def test_step_up_receipt_first_then_session_then_ticket_named_in_the_receipt() -> None:
    engine, log, events = _engine("STEP_UP")
    rec = await engine.decide(_req())
    assert rec.result.decision is Decision.STEP_UP
    assert log.kinds() == ["receipt", "commit", "ticket"]
    receipt = log[0][1]
    assert receipt["decision"]["approval_request"]["approval_id"] == "t-1"
    assert receipt["context"]["context_hash"] == "c" * 64
    assert rec.result.approval is not None and rec.result.approval.approval_id == "t-1"
    assert [e["type"] for e in events.events] == ["aarm.action", "aarm.decision"]


async def test_no_receipt_means_deny_and_the_session_records_the_deny_no_ticket() -> None:
    engine, log, events = _engine("STEP_UP", fail_receipt=True)
    rec = await engine.decide(_req())
    assert rec.result.decision is Decision.DENY
    assert rec.result.reasons[0].code == "receipt_store_unavailable"
    assert rec.receipt is None
    assert log == [("commit", "DENY")]  # the verdict the client gets; no ticket opened
    assert events.events[-1]["reason_codes"] == ["receipt_store_unavailable"]


async def test_session_failure_after_the_receipt_overturns_to_deny_with_a_receipt() -> None:
    engine, log, _ = _engine("ALLOW", fail_commit=True)
    rec = await engine.decide(_req())
    assert rec.result.decision is Decision.DENY
    assert rec.result.reasons[0].code == "session_store_unavailable"
    assert log.kinds() == ["receipt", "commit", "receipt"]
    first, overturn = log[0][1], log[2][1]
    assert first["decision"]["result"] == "ALLOW"
    assert overturn["kind"] == "overturned"
    assert overturn["decision_id"] == first["decision_id"] == rec.decision_id
    assert overturn["decision"]["result"] == "DENY"
    assert rec.receipt is not None and rec.receipt["kind"] == "overturned"
