"""The engine fails closed on every error and replays decisions by request_id."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aarm_pdp.api.validation import to_action_request
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.engine import RECORD_SHARE, DecisionEngine
from aarm_pdp.errors import (
    OpaBadResponse,
    OpaTimeout,
    OpaUnavailable,
    RequestInvalid,
)
from aarm_pdp.model.decision import Decision
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.opa.fake import FakePolicyEngine

from tests.support.messages import decide_request, verdict_doc


def _engine(handler: Any) -> tuple[DecisionEngine, FakePolicyEngine, Metrics]:
    fake = FakePolicyEngine(handler)
    metrics = Metrics()
    ids = iter(f"d-{i}" for i in range(1000))
    engine = DecisionEngine(
        fake, metrics, clock_ns=lambda: 1_795_658_400_000_000_000, new_id=lambda: next(ids)
    )
    return engine, fake, metrics


def _req(**kw: Any) -> Any:
    return to_action_request(decide_request("db", "query", {"limit": 1}, **kw), LimitsConfig())


def _sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_allow_from_policy() -> None:
    engine, fake, metrics = _engine(lambda _: verdict_doc("ALLOW"))
    rec = await engine.decide(_req())
    assert rec.result.decision is Decision.ALLOW
    assert rec.decision_id == "d-0"
    assert fake.calls[0]["action"]["name"] == "db.query"
    assert (
        _sample(metrics, "aarm_decisions_total", {"decision": "ALLOW", "code": "catalogued"}) == 1
    )


def _raise(exc: Exception) -> Any:
    def handler(_: dict[str, Any]) -> Any:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("handler", "code"),
    [
        (_raise(OpaUnavailable("refused")), "opa_unavailable"),
        (_raise(OpaTimeout("slow")), "opa_timeout"),
        (_raise(OpaBadResponse("500")), "opa_bad_response"),
        (lambda _: {}, "decision_undefined"),
        (lambda _: {"result": {"decision": "ALLOW"}}, "decision_malformed"),
        (lambda _: {"result": {"decision": "PERMIT"}}, "decision_malformed"),
        (_raise(ZeroDivisionError()), "internal"),
    ],
)
async def test_every_failure_is_deny_with_code(handler: Any, code: str) -> None:
    engine, _, metrics = _engine(handler)
    rec = await engine.decide(_req())
    d = rec.result
    assert d.decision is Decision.DENY
    assert d.fail_closed
    assert d.reasons[0].code == code
    assert _sample(metrics, "aarm_fail_closed_total", {"code": code}) == 1
    assert _sample(metrics, "aarm_decisions_total", {"decision": "DENY", "code": code}) == 1


@pytest.mark.parametrize(
    "identity",
    [
        {"session_id": "s", "human": "h"},
        {"agent": "a", "human": "h"},
        {"agent": "a", "session_id": "s"},
        {},
    ],
)
async def test_missing_identity_denied_without_asking_policy(identity: dict[str, str]) -> None:
    engine, fake, _ = _engine(lambda _: verdict_doc("ALLOW"))
    rec = await engine.decide(_req(identity=identity))
    assert rec.result.decision is Decision.DENY
    assert rec.result.reasons[0].code == "identity_missing"
    assert fake.calls == []


async def test_request_id_replays_same_decision() -> None:
    answers = iter([verdict_doc("ALLOW"), verdict_doc("DENY")])
    engine, fake, metrics = _engine(lambda _: next(answers))
    first = await engine.decide(_req(request_id="r-1"))
    second = await engine.decide(_req(request_id="r-1"))
    assert second == first
    assert len(fake.calls) == 1
    assert _sample(metrics, "aarm_idempotent_replays_total", {}) == 1


async def test_request_id_reuse_with_other_content_is_invalid() -> None:
    engine, _, _ = _engine(lambda _: verdict_doc("ALLOW"))
    await engine.decide(_req(request_id="r-1"))
    other = to_action_request(
        decide_request("db", "query", {"limit": 2}, request_id="r-1"), LimitsConfig()
    )
    with pytest.raises(RequestInvalid, match="reused"):
        await engine.decide(other)


async def test_concurrent_duplicates_share_one_evaluation() -> None:
    gate = asyncio.Event()

    async def slow(_: dict[str, Any]) -> Any:
        await gate.wait()
        return verdict_doc("ALLOW")

    engine, fake, _ = _engine(slow)
    tasks = [asyncio.create_task(engine.decide(_req(request_id="r-9"))) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    records = await asyncio.gather(*tasks)
    assert len({r.decision_id for r in records}) == 1
    assert len(fake.calls) == 1


async def test_fail_closed_is_not_cached() -> None:
    answers = iter([OpaUnavailable("down"), verdict_doc("ALLOW")])

    def handler(_: dict[str, Any]) -> Any:
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    engine, _, _ = _engine(handler)
    first = await engine.decide(_req(request_id="r-2"))
    assert first.result.decision is Decision.DENY
    second = await engine.decide(_req(request_id="r-2"))
    assert second.result.decision is Decision.ALLOW


async def test_request_ids_scoped_by_session() -> None:
    engine, fake, _ = _engine(lambda _: verdict_doc("ALLOW"))
    other_session = {
        "tenant": "acme",
        "human": "alice@acme.example",
        "agent": "agent-7",
        "session_id": "s-2",
    }
    a = await engine.decide(_req(request_id="same"))
    b = await engine.decide(_req(request_id="same", identity=other_session))
    assert a.decision_id != b.decision_id
    assert len(fake.calls) == 2


async def test_deadline_caps_opa_timeout() -> None:
    seen: list[float] = []

    class Spy(FakePolicyEngine):
        async def evaluate(self, input_doc: dict[str, Any], *, timeout: float) -> Any:
            seen.append(timeout)
            return verdict_doc("ALLOW")

    engine = DecisionEngine(Spy(lambda _: None), Metrics(), opa_timeout=1.0)
    await engine.decide(_req(), deadline=0.25)
    await engine.decide(_req(), deadline=None)
    # The judging part of the deadline: a quarter is kept for the receipt and commit.
    assert 0 < seen[0] <= 0.25 * (1 - RECORD_SHARE)
    assert seen[1] == 1.0


def test_metric_code_labels_are_bounded() -> None:
    m = Metrics()
    assert m.code_label("Bad Code!") == "other"
    labels = {m.code_label(f"code_{i}") for i in range(200)}
    assert "other" in labels
    assert len(labels) == 65
