"""The Guard flow against a scripted service (tests/fake_service.py): every verdict,
STEP_UP and DEFER, retries keeping the request_id, deadlines, failing closed."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import grpc
import pytest
from fake_service import TOKEN, D, Script, fake_service, response

from aarm_pdp_client import (
    ActionDeferred,
    ActionDenied,
    ApprovalInfo,
    AsyncClient,
    Client,
    DeferralInfo,
    Fact,
    Identity,
    Trust,
)
from aarm_pdp_client._gen.aarm.v1 import approval_pb2, session_pb2

ME = Identity(tenant="acme", human="alice", agent="agent-1", service="svc", session_id="s-1")
ALLOW = response(D.DECISION_ALLOW, decisionId="d-allow")
SCHEMA = {"type": "object", "properties": {"limit": {"type": "integer"}}}


def client(target: str, **kw: Any) -> AsyncClient:
    return AsyncClient(target, token=TOKEN, **kw)


async def test_allow_runs_with_the_callers_parameters_and_records_the_output() -> None:
    script = Script(decide=[ALLOW])
    async with fake_service(script) as target, client(target) as c:
        params = {"limit": 7, "big": 2**60}
        async with c.guard(ME, "db", "query", params, trust=Trust.TRUSTED) as g:
            assert g.parameters == params  # ALLOW: the caller's own values, untouched
            await g.record({"rows": 3}, labels=["PII"], values=["a@b.example"])
    req = script.decide_requests[0]
    assert req.action.tool == "db" and req.action.operation == "query"
    assert req.identity.session_id == "s-1" and req.request_id
    (outcome,) = script.outcomes
    assert outcome.decision_id == "d-allow"
    assert outcome.status == session_pb2.OUTCOME_STATUS_EXECUTED
    assert outcome.output_text == '{"rows": 3}'
    assert outcome.output_digest == hashlib.sha256(b'{"rows": 3}').hexdigest()
    assert outcome.source_trust == session_pb2.TRUST_TRUSTED
    assert list(outcome.labels) == ["PII"] and list(outcome.output_values) == ["a@b.example"]
    assert script.metadata[0]["authorization"] == f"Bearer {TOKEN}"


async def test_modify_is_applied_in_the_declared_types() -> None:
    modify = response(D.DECISION_MODIFY, decisionId="d-m", modifiedParameters={"limit": 1000})
    script = Script(decide=[modify, modify])
    async with fake_service(script) as target, client(target) as c:
        with_schema = await c.decide(ME, "db", "query", {"limit": 5000}, schema=SCHEMA)
        inferred = await c.decide(ME, "db", "query", {"limit": 5000})
    for verdict in (with_schema, inferred):
        assert verdict.decision == "MODIFY" and verdict.parameters == {"limit": 1000}
        assert type(verdict.parameters["limit"]) is int


async def test_a_modify_the_tool_cannot_take_is_a_denial_and_reported_not_run() -> None:
    modify = response(D.DECISION_MODIFY, decisionId="d-m", modifiedParameters={"limit": 2.5})
    script = Script(decide=[modify])
    async with fake_service(script) as target, client(target) as c:
        with pytest.raises(ActionDenied) as denied:
            await c.decide(ME, "db", "query", {"limit": 5000}, schema=SCHEMA)
    assert denied.value.codes == ("modify_uncoercible",)
    (outcome,) = script.outcomes
    assert outcome.status == session_pb2.OUTCOME_STATUS_FAILED
    assert outcome.decision_id == "d-m" and outcome.error.startswith("not run")


async def test_deny_raises_with_the_reasons_and_the_tool_never_runs() -> None:
    deny = response(
        D.DECISION_DENY,
        decisionId="d-deny",
        reasons=[{"code": "forbidden", "ruleId": "aarm.forbidden.drop", "message": "no"}],
    )
    script = Script(decide=[deny])
    ran = []
    async with fake_service(script) as target, client(target) as c:
        with pytest.raises(ActionDenied) as denied:
            await c.run(ME, "database", "drop", {}, lambda: ran.append(1))
    assert denied.value.codes == ("forbidden",)
    assert denied.value.reasons[0].rule_id == "aarm.forbidden.drop"
    assert denied.value.decision_id == "d-deny" and not ran and not script.outcomes


async def test_a_failing_tool_is_reported_failed_and_its_error_propagates() -> None:
    script = Script(decide=[ALLOW])
    async with fake_service(script) as target, client(target) as c:
        with pytest.raises(ZeroDivisionError):
            async with c.guard(ME, "calc", "div", {}):
                _ = 1 / 0
    (outcome,) = script.outcomes
    assert outcome.status == session_pb2.OUTCOME_STATUS_FAILED
    assert outcome.error.startswith("ZeroDivisionError")


async def test_step_up_waits_on_the_watch_and_resubmits_with_the_token() -> None:
    step_up = response(
        D.DECISION_STEP_UP,
        decisionId="d-su",
        approval={"approvalId": "ap-1", "approvers": ["owners"], "timeoutSeconds": 60},
    )
    approved = response(D.DECISION_ALLOW, decisionId="d-ok", reasons=[{"code": "approved"}])
    script = Script(
        decide=[step_up, approved],
        watch_final=approval_pb2.WatchApprovalResponse(
            status=approval_pb2.APPROVAL_STATUS_GRANTED, approval_token="ap-1.secret"
        ),
    )
    seen: list[ApprovalInfo] = []
    async with fake_service(script) as target, client(target) as c:
        task = asyncio.create_task(
            c.decide(ME, "payments", "transfer", {"amount": 5}, on_step_up=seen.append)
        )
        await script.watch_open.wait()  # the guard is waiting on the open watch
        assert not task.done()
        script.release_watch.set()  # the approver grants
        verdict = await task
    assert verdict.decision == "ALLOW" and verdict.decision_id == "d-ok"
    assert [i.approval_id for i in seen] == ["ap-1"] and seen[0].approvers == ("owners",)
    first, resubmitted = script.decide_requests
    assert script.watched[0].approval_id == "ap-1"
    assert script.watched[0].identity.session_id == "s-1"
    assert resubmitted.approval_token == "ap-1.secret"
    assert resubmitted.request_id == first.request_id + ".approved"
    assert resubmitted.action == first.action


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (approval_pb2.APPROVAL_STATUS_REJECTED, "approval_rejected"),
        (approval_pb2.APPROVAL_STATUS_EXPIRED, "approval_expired"),
    ],
)
async def test_an_approval_not_granted_is_a_denial(status: int, code: str) -> None:
    step_up = response(D.DECISION_STEP_UP, decisionId="d", approval={"approvalId": "ap-1"})
    script = Script(
        decide=[step_up],
        watch_final=approval_pb2.WatchApprovalResponse(status=status, reason="no"),  # type: ignore[arg-type]
    )
    script.release_watch.set()
    async with fake_service(script) as target, client(target) as c:
        with pytest.raises(ActionDenied) as denied:
            await c.decide(ME, "payments", "transfer", {})
    assert denied.value.codes == (code,) and denied.value.decision == "STEP_UP"
    assert len(script.decide_requests) == 1


async def test_the_approval_wait_is_bounded_by_the_callers_deadline() -> None:
    step_up = response(D.DECISION_STEP_UP, decisionId="d", approval={"approvalId": "ap-1"})
    script = Script(decide=[step_up])  # never released: nobody answers
    async with fake_service(script) as target, client(target, approval_wait=0.3) as c:
        with pytest.raises(ActionDenied) as denied:
            await c.decide(ME, "payments", "transfer", {})
    assert denied.value.codes == ("pdp_timeout",)


async def test_defer_asks_the_provider_and_reports_against_the_deferred_decision() -> None:
    defer = response(
        D.DECISION_DEFER,
        decisionId="d-defer",
        deferral={
            "deferralId": "df-1",
            "trigger": "missing_context",
            "contextNeeded": ["maintenance_window"],
        },
    )
    resolved = response(D.DECISION_ALLOW, decisionId="d-reeval")
    script = Script(decide=[defer], provide=[resolved])
    asked: list[DeferralInfo] = []

    async def provider(info: DeferralInfo) -> list[Fact]:
        asked.append(info)
        return [Fact("maintenance_window", True, source="calendar", observed_at=1.0)]

    async with (
        fake_service(script) as target,
        client(target) as c,
        c.guard(ME, "credentials", "rotate", {}, context_provider=provider) as g,
    ):
        await g.record("rotated")
    assert asked[0].context_needed == ("maintenance_window",)
    (provided,) = script.provided
    assert provided.deferral_id == "df-1" and provided.identity.session_id == "s-1"
    assert provided.facts[0].name == "maintenance_window" and provided.facts[0].value.bool_value
    assert provided.facts[0].source == "calendar"
    assert g.verdict is not None and g.verdict.decision_id == "d-reeval"
    assert script.outcomes[0].decision_id == "d-defer"


async def test_defer_without_a_provider_raises_deferred() -> None:
    defer = response(
        D.DECISION_DEFER,
        decisionId="d",
        deferral={"deferralId": "df-1", "trigger": "missing_context", "contextNeeded": ["x"]},
    )
    script = Script(decide=[defer, defer])
    async with fake_service(script) as target, client(target) as c:
        with pytest.raises(ActionDeferred) as deferred:
            await c.decide(ME, "credentials", "rotate", {})
        with pytest.raises(ActionDeferred):  # a provider with nothing to add: the same
            await c.decide(ME, "credentials", "rotate", {}, context_provider=lambda i: None)
    assert deferred.value.deferral.context_needed == ("x",)
    assert deferred.value.decision == "DEFER" and not script.provided


async def test_retries_reuse_the_request_id() -> None:
    unavailable = grpc.StatusCode.UNAVAILABLE
    script = Script(decide=[unavailable, grpc.StatusCode.RESOURCE_EXHAUSTED, ALLOW])
    async with fake_service(script) as target, client(target, retries=2) as c:
        verdict = await c.decide(ME, "db", "query", {}, request_id="req-42")
    assert [r.request_id for r in script.decide_requests] == ["req-42"] * 3
    assert verdict.request_id == "req-42"


async def test_errors_and_timeouts_fail_closed() -> None:
    script = Script(
        decide=[grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, "hang", "hang"]
    )
    async with fake_service(script) as target:
        async with client(target, retries=1) as c:
            with pytest.raises(ActionDenied) as down:
                await c.decide(ME, "db", "query", {})
        assert down.value.codes == ("pdp_unavailable",)
        async with client(target, retries=1, timeout=0.2) as c:
            with pytest.raises(ActionDenied) as slow:
                await c.decide(ME, "db", "query", {})
        assert slow.value.codes == ("pdp_timeout",)
        assert len({r.request_id for r in script.decide_requests[2:]}) == 1
        async with AsyncClient(target) as anonymous:  # no token: refused, so denied
            with pytest.raises(ActionDenied) as refused:
                await anonymous.decide(ME, "db", "query", {})
        assert refused.value.codes == ("pdp_refused",)


async def test_sessions_start_and_end() -> None:
    script = Script(decide=[ALLOW])
    async with (
        fake_service(script) as target,
        client(target) as c,
        await c.start_session(ME, "tidy my inbox") as session,
    ):
        await session.run("mail", "list", {}, lambda: ["m1"])
    assert script.sessions == ["start:s-1:tidy my inbox", "end:s-1"]
    assert script.outcomes[0].output_text == '["m1"]'


async def test_the_blocking_client() -> None:
    step_up = response(D.DECISION_STEP_UP, decisionId="d", approval={"approvalId": "ap-9"})
    modify = response(D.DECISION_MODIFY, decisionId="d-m", modifiedParameters={"limit": 10})
    script = Script(
        decide=[modify, step_up, ALLOW],
        watch_final=approval_pb2.WatchApprovalResponse(
            status=approval_pb2.APPROVAL_STATUS_GRANTED, approval_token="ap-9.t"
        ),
    )
    script.release_watch.set()

    def agent(target: str) -> list[Any]:
        with (
            Client(target, token=lambda: TOKEN) as c,
            c.start_session(ME, "report") as session,
        ):
            with session.guard("db", "query", {"limit": 500}) as g:
                out: list[Any] = [g.parameters]
                g.record("ok")
            out.append(session.run("pay", "send", {"n": 1}, lambda n: n + 1))
            return out

    async with fake_service(script) as target:
        got = await asyncio.to_thread(agent, target)
    assert got == [{"limit": 10}, 2]
    assert type(got[0]["limit"]) is int
    assert script.decide_requests[-1].approval_token == "ap-9.t"
    assert [o.decision_id for o in script.outcomes] == ["d-m", "d-allow"]


async def test_a_modify_without_parameters_is_a_denial() -> None:
    script = Script(decide=[response(D.DECISION_MODIFY, decisionId="d")])
    async with fake_service(script) as target, client(target) as c:
        with pytest.raises(ActionDenied) as denied:
            await c.decide(ME, "db", "query", {"limit": 5})
    assert denied.value.codes == ("modify_malformed",)


async def test_an_unknown_verdict_is_a_denial() -> None:
    script = Script(decide=[response(D.DECISION_UNSPECIFIED, decisionId="d")])
    async with fake_service(script) as target, client(target) as c:
        with pytest.raises(ActionDenied):
            await c.decide(ME, "db", "query", {})
