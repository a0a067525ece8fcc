"""The engine cuts every store wait at the decision's deadline (issue 14 item 3).

A session store or receipt store that does not answer in time is an OK DENY with its
reason code, decided inside the deadline; a receipt that lands after it is followed in
the chain by an ``overturned`` receipt saying the answer was DENY; a cancellation that
is not the deadline's still propagates. The fakes hold their calls on events, so
nothing depends on the machine's speed (the deadlines only bound a broken build).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from aarm_pdp.decision.engine import Deadline, DecisionEngine, _within
from aarm_pdp.errors import ReceiptStoreUnavailable, SessionStoreUnavailable
from aarm_pdp.model.decision import Decision, DecisionResult
from aarm_pdp.model.request import ActionRequest
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.opa.fake import FakePolicyEngine
from aarm_pdp.session.context import Prepared

from tests.support.messages import verdict_doc
from tests.unit.test_recording_tail import NOW, Events, Log, Receipts, Sessions, Tickets, _req

WAIT = 30.0
SHORT = 0.2
"""The decisions' deadline: the fakes below never answer within it unless let go."""


class SlowSessions(Sessions):
    """Sessions whose ``prepare`` or ``commit`` waits for its event."""

    def __init__(self, log: Log, *, prepare: bool = False, commit: bool = False) -> None:
        super().__init__(log)
        self.hold_prepare = asyncio.Event() if prepare else None
        self.hold_commit = asyncio.Event() if commit else None

    async def prepare(self, request: ActionRequest, now_ns: int) -> Prepared:
        if self.hold_prepare is not None:
            await self.hold_prepare.wait()
        return await super().prepare(request, now_ns)

    async def commit(
        self,
        prepared: Prepared,
        request: ActionRequest,
        decision_id: str,
        decision: DecisionResult,
        now_ns: int,
    ) -> None:
        if self.hold_commit is not None:
            await self.hold_commit.wait()
        await super().commit(prepared, request, decision_id, decision, now_ns)


class QueuedReceipts(Receipts):
    """Receipts written in the order appended, whoever stops waiting (like the receipt
    log's queue); nothing is written before ``let_go`` when ``held``."""

    def __init__(self, log: Log, *, held: bool = False) -> None:
        super().__init__(log)
        self.let_go = asyncio.Event()
        if not held:
            self.let_go.set()
        self._order = asyncio.Lock()
        self.appended = asyncio.Condition()

    async def append(
        self, body: Mapping[str, Any], *, record: str | None = None
    ) -> dict[str, Any] | None:
        # Queued: a caller that stops waiting does not take the append back.
        return await asyncio.shield(self._write(body))

    async def _write(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        async with self._order:
            await self.let_go.wait()
            out = await super().append(body)
        async with self.appended:
            self.appended.notify_all()
        return out

    async def until(self, n: int) -> None:
        async def written() -> None:
            async with self.appended:
                await self.appended.wait_for(lambda: len(self.receipts()) >= n)

        await asyncio.wait_for(written(), WAIT)

    def receipts(self) -> list[dict[str, Any]]:
        return [body for kind, body in self.log if kind == "receipt"]


def _engine(sessions: Sessions, receipts: Receipts) -> DecisionEngine:
    ids = iter(f"id-{i}" for i in range(100))
    return DecisionEngine(
        FakePolicyEngine(lambda _: verdict_doc("ALLOW")),
        Metrics(),
        clock_ns=lambda: NOW,
        new_id=lambda: next(ids),
        sessions=sessions,
        workflow=Tickets(sessions.log),
        receipts=receipts,
        telemetry=Events(),
    )


async def _decide(engine: DecisionEngine, deadline: float | None = SHORT) -> Any:
    return await asyncio.wait_for(engine.decide(_req(), deadline=deadline), WAIT)


# --- the cut itself ---------------------------------------------------------------------------


async def test_a_wait_past_the_deadline_becomes_the_stores_error() -> None:
    loop = asyncio.get_running_loop()
    never = asyncio.Event()
    with pytest.raises(SessionStoreUnavailable, match="session store did not answer within"):
        await _within(never.wait(), loop.time() + 0.01, SessionStoreUnavailable, "session store")
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # not left half-cancelled
    await asyncio.sleep(0)


async def test_an_answer_in_time_passes_and_other_cancellations_propagate() -> None:
    loop = asyncio.get_running_loop()

    async def seven() -> int:
        await asyncio.sleep(0)
        return 7

    assert await _within(seven(), loop.time() + WAIT, SessionStoreUnavailable, "s") == 7
    assert await _within(seven(), None, SessionStoreUnavailable, "s") == 7
    waiting = asyncio.ensure_future(
        _within(asyncio.Event().wait(), loop.time() + WAIT, SessionStoreUnavailable, "s")
    )
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_swallowed_cut_leaves_the_task_uncancelled() -> None:
    loop = asyncio.get_running_loop()

    async def stubborn() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "kept going"
        return "unreachable"

    assert await _within(stubborn(), loop.time() + 0.01, SessionStoreUnavailable, "s") == (
        "kept going"
    )
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_the_recording_share_is_kept_from_judging() -> None:
    loop = asyncio.get_running_loop()
    by = Deadline.after(4.0)
    assert by is not None
    assert by.record_by - by.judge_by == pytest.approx(0.5)  # a quarter, at most 0.5 s
    short = Deadline.after(0.4)
    assert short is not None
    assert short.record_by - short.judge_by == pytest.approx(0.1)
    assert short.record_by <= loop.time() + 0.4
    assert Deadline.after(None) is None


# --- the stores under a decision ------------------------------------------------------------


async def test_a_hung_session_store_is_deny_inside_the_deadline() -> None:
    log = Log()
    sessions = SlowSessions(log, prepare=True)
    receipts = QueuedReceipts(log)
    rec = await _decide(_engine(sessions, receipts))
    assert rec.result.decision is Decision.DENY
    assert [r.code for r in rec.result.reasons] == ["session_store_unavailable"]
    assert rec.receipt is not None  # the DENY is receipted (its store answers)
    assert receipts.receipts()[0]["decision"]["result"] == "DENY"


async def test_without_a_deadline_the_engine_waits_for_the_store() -> None:
    log = Log()
    sessions = SlowSessions(log, prepare=True)
    engine = _engine(sessions, QueuedReceipts(log))
    pending = asyncio.ensure_future(engine.decide(_req(), deadline=None))
    await asyncio.sleep(0.05)
    assert not pending.done()
    assert sessions.hold_prepare is not None
    sessions.hold_prepare.set()
    rec = await asyncio.wait_for(pending, WAIT)
    assert rec.result.decision is Decision.ALLOW


async def test_a_receipt_not_stored_in_time_is_deny_and_an_overturn_follows_it() -> None:
    log = Log()
    receipts = QueuedReceipts(log, held=True)
    rec = await _decide(_engine(Sessions(log), receipts))
    assert rec.result.decision is Decision.DENY
    assert [r.code for r in rec.result.reasons] == ["receipt_store_unavailable"]
    assert rec.receipt is None
    assert ("commit", "DENY") in log  # the session records the verdict given
    receipts.let_go.set()  # the store answers late: both land, in order
    await receipts.until(2)
    late, overturn = receipts.receipts()
    assert late["decision"]["result"] == "ALLOW"
    assert overturn["kind"] == "overturned"
    assert overturn["decision_id"] == late["decision_id"] == rec.decision_id
    assert overturn["decision"]["result"] == "DENY"
    assert overturn["detail"]["reason_code"] == "receipt_store_unavailable"


async def test_a_hung_commit_after_the_receipt_is_deny_and_the_answer_names_no_allow() -> None:
    log = Log()
    sessions = SlowSessions(log, commit=True)
    receipts = QueuedReceipts(log)
    rec = await _decide(_engine(sessions, receipts))
    assert rec.result.decision is Decision.DENY
    assert [r.code for r in rec.result.reasons] == ["session_store_unavailable"]
    # The overturn is in the chain (now or once the queue gets to it); the answer carries
    # it or no receipt, never the ALLOW receipt it replaced.
    assert rec.receipt is None or rec.receipt["kind"] == "overturned"
    await receipts.until(2)
    first, overturn = receipts.receipts()
    assert first["decision"]["result"] == "ALLOW"
    assert overturn["kind"] == "overturned"


async def test_the_receipt_store_error_is_kept_when_the_deny_cannot_be_committed() -> None:
    log = Log()

    class Failing(Receipts):
        async def append(
            self, body: Mapping[str, Any], *, record: str | None = None
        ) -> dict[str, Any] | None:
            raise ReceiptStoreUnavailable("down")

    class FailingCommit(Sessions):
        async def commit(self, *args: Any) -> None:
            raise SessionStoreUnavailable("down too")

    rec = await _decide(_engine(FailingCommit(log), Failing(log)))
    assert [r.code for r in rec.result.reasons] == ["receipt_store_unavailable"]
    assert rec.receipt is None
