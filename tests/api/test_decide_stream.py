"""DecideStream over gRPC, against a scripted policy engine: N messages get N answers,
each the decision (and receipt) a unary Decide gives; answers in completion order;
deadlines, validation, tenants and admission per message, as per-message errors that
are DENYs; the stream's credential checked once, when it opens.

Slow policy answers are made with an event the test releases (not a sleep), so nothing
here depends on the machine's speed; ``WAIT`` only fails a broken build instead of
hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aarm.v1 import decision_pb2
from aarm_pdp import server
from aarm_pdp.api.auth import CallGuard
from aarm_pdp.api.handlers import ACCEPTED_METADATA, _checked
from aarm_pdp.auth import Authenticator, PrincipalDirectory
from aarm_pdp.config import ServerConfig
from aarm_pdp.errors import RequestInvalid, Unauthenticated
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.opa.fake import FakePolicyEngine
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.api.conftest import Api
from tests.api.test_tracing import PARENT_SPAN, TRACE_ID, TRACEPARENT
from tests.api.test_tracing import spans as spans  # the fixture: one SDK provider
from tests.support.grpc_clients import Clients, aio_channel, bearer, opened
from tests.support.messages import IDENTITY, decide_request, opa_answer, verdict_doc
from tests.support.principals import OPERATOR_TOKEN, OUTSIDER_TOKEN, PLATFORM_TOKEN
from tests.support.service import fake_config, running

pytestmark = pytest.mark.api
D = decision_pb2
WAIT = 30.0
AUTH = bearer(PLATFORM_TOKEN)
DECIDE_STREAM = "/aarm.v1.DecisionService/DecideStream"
VERDICT_BY_TOOL = {
    "db": "ALLOW",
    "database": "DENY",
    "warehouse": "MODIFY",
    "payments": "STEP_UP",
    "credentials": "DEFER",
}


def _by_tool(input_doc: dict[str, Any]) -> Any:
    return opa_answer(VERDICT_BY_TOOL[input_doc["action"]["tool"]])


def _request(tool: str, session: str, request_id: str = "", **identity: Any) -> Any:
    ident = {**IDENTITY, "session_id": session, **identity}
    return decide_request(
        tool, "query", {"table": "orders", "limit": 10}, identity=ident, request_id=request_id
    )


def _msg(message_id: int, request: Any, timeout_ms: int = 0) -> Any:
    return D.DecideStreamRequest(message_id=message_id, request=request, timeout_ms=timeout_ms)


async def _stream(c: Clients, messages: list[Any], metadata: Any = AUTH) -> list[Any]:
    """Send ``messages`` on one stream, half-close, and collect every answer."""
    call = c.decide.DecideStream(iter(messages), metadata=metadata, timeout=WAIT)
    return [answer async for answer in call]


def _receipt_body(payload: str) -> dict[str, Any]:
    """The parts of a receipt that must be alike for alike decisions in fresh sessions."""
    doc = json.loads(payload)
    return {"decision": doc["decision"], "seq": doc["chain"]["seq"], "kind": doc.get("kind")}


async def test_n_messages_get_n_answers_like_unary_decide(api: Api) -> None:
    api.opa.answer = _by_tool
    tools = list(VERDICT_BY_TOOL) * 2
    unary = [await api.c.decide.Decide(_request(t, f"u-{i}")) for i, t in enumerate(tools)]
    answers = await _stream(
        api.c, [_msg(100 + i, _request(t, f"s-{i}")) for i, t in enumerate(tools)]
    )
    assert len(answers) == len(tools)
    by_id = {a.message_id: a for a in answers}
    assert sorted(by_id) == [100 + i for i in range(len(tools))]
    for i, want in enumerate(unary):
        got = by_id[100 + i]
        assert not got.HasField("error")
        resp = got.response
        assert resp.decision == want.decision
        assert [(r.code, r.rule_id, r.message) for r in resp.reasons] == [
            (r.code, r.rule_id, r.message) for r in want.reasons
        ]
        assert list(resp.matched_rules) == list(want.matched_rules)
        assert resp.policy == want.policy and resp.risk == want.risk
        assert resp.modified_parameters == want.modified_parameters
        assert resp.approval.approvers == want.approval.approvers
        assert resp.deferral.context_needed == want.deferral.context_needed
        assert resp.decision_id and resp.decision_id != want.decision_id
        # Its own receipt, like the unary one: the same verdict, first in its session.
        assert resp.receipt.receipt_id and resp.receipt.receipt_id != want.receipt.receipt_id
        assert resp.receipt.sequence == want.receipt.sequence == 1
        assert (
            _receipt_body(resp.receipt.payload)["decision"]["result"] == (VERDICT_BY_TOOL[tools[i]])
        )
    for verdict in VERDICT_BY_TOOL.values():  # counted like Decide's: 2 unary + 2 streamed
        assert api.metric("aarm_decisions_total", decision=verdict, code="catalogued") == 4


async def test_a_replayed_request_id_gets_the_same_decision(api: Api) -> None:
    req = _request("db", "idem", request_id="r-1")
    first = await api.c.decide.Decide(req)
    answers = await _stream(api.c, [_msg(1, req), _msg(2, req)])
    assert {a.response.decision_id for a in answers} == {first.decision_id}
    reused = _request("database", "idem", request_id="r-1")  # same id, other content
    (bad,) = await _stream(api.c, [_msg(3, reused)])
    assert bad.error.status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert bad.error.code == "request_invalid"
    assert "reused" in bad.error.message


async def test_answers_come_in_the_order_decided(api: Api) -> None:
    release = asyncio.Event()

    async def slow_first(input_doc: dict[str, Any]) -> Any:
        if input_doc["identity"]["session_id"] == "slow":
            await release.wait()
        return verdict_doc("ALLOW")

    api.opa.answer = slow_first
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def requests() -> AsyncIterator[Any]:
        yield _msg(1, _request("db", "slow"))
        yield _msg(2, _request("db", "fast"))
        while (item := await queue.get()) is not None:
            yield item

    call = api.c.decide.DecideStream(requests(), metadata=AUTH, timeout=WAIT)
    first = await asyncio.wait_for(call.read(), WAIT)
    assert first.message_id == 2  # not held up by the slow one before it
    release.set()
    second = await asyncio.wait_for(call.read(), WAIT)
    assert second.message_id == 1
    assert first.response.decision == second.response.decision == D.DECISION_ALLOW
    await queue.put(None)
    assert await call.read() is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_a_message_past_its_deadline_is_deny_with_a_reason(api: Api) -> None:
    def blocking(input_doc: dict[str, Any]) -> Any:
        if input_doc["identity"]["session_id"] == "late":
            # Holds the event loop past the message's deadline (a loop that fell behind):
            # no timer can cut the query short, and the policy's answer is ALLOW.
            time.sleep(0.3)
        return verdict_doc("ALLOW")

    api.opa.answer = blocking
    answers = await _stream(
        api.c,
        [
            _msg(1, _request("db", "early")),
            _msg(2, _request("db", "late"), timeout_ms=50),
            _msg(3, _request("db", "patient"), timeout_ms=20_000),
        ],
    )
    by_id = {a.message_id: a for a in answers}
    late = by_id[2]
    assert late.error.status == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert late.error.code == "deadline_exceeded"
    assert late.response.decision == D.DECISION_DENY  # never an ALLOW
    assert [r.code for r in late.response.reasons] == ["deadline_exceeded"]
    assert late.response.reasons[0].rule_id == "aarm.fail_closed.deadline_exceeded"
    assert not late.response.decision_id and not late.response.HasField("receipt")
    assert by_id[1].response.decision == by_id[3].response.decision == D.DECISION_ALLOW
    assert api.metric("aarm_errors_total", code="deadline_exceeded") == 1


@pytest.mark.parametrize("metadata", [(), bearer("not-a-token")])
async def test_an_unauthenticated_stream_is_refused_when_it_opens(api: Api, metadata: Any) -> None:
    # A channel of its own that carries no credential but the metadata given.
    async with aio_channel(f"127.0.0.1:{api.app.port}", None) as channel:
        call = Clients(channel).decide.DecideStream(metadata=metadata, timeout=WAIT)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await opened(call)  # refused as it opens, before any message
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not api.engine.calls  # nothing was decided
    assert api.metric("aarm_auth_failures_total", code="unauthenticated") == 1


async def test_an_accepted_stream_says_so_before_its_first_message(api: Api) -> None:
    call = api.c.decide.DecideStream(metadata=AUTH, timeout=WAIT)
    await opened(call)  # the initial metadata arrived: nothing written, nothing answered
    assert ACCEPTED_METADATA[0] in tuple(await call.initial_metadata())
    assert not api.engine.calls
    await call.write(_msg(1, _request("db", "after-open")))
    answer = await call.read()
    assert answer.message_id == 1 and answer.response.decision == D.DECISION_ALLOW
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF


async def test_a_message_for_another_tenant_is_refused_and_the_stream_goes_on(api: Api) -> None:
    answers = await _stream(
        api.c,
        [
            _msg(1, _request("db", "mine")),
            _msg(2, _request("db", "theirs", tenant="globex")),
            _msg(3, _request("db", "mine-too")),
        ],
    )
    by_id = {a.message_id: a for a in answers}
    refused = by_id[2]
    assert refused.error.status == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert refused.error.code == "permission_denied"
    assert refused.response.decision == D.DECISION_DENY
    assert by_id[1].response.decision == by_id[3].response.decision == D.DECISION_ALLOW
    assert len(api.engine.calls) == 2
    # From the other tenant's own enforcement point: the acme session is not its to use.
    outsider = await _stream(
        api.c, [_msg(1, _request("db", "mine", tenant="acme"))], bearer(OUTSIDER_TOKEN)
    )
    assert outsider[0].error.code == "permission_denied"


async def test_another_principals_session_is_answered_as_decide_answers_it(api: Api) -> None:
    await api.c.decide.Decide(_request("db", "owned"))  # the platform's session
    operator = bearer(OPERATOR_TOKEN)  # another enforcer of the same tenant
    unary = await api.c.decide.Decide(_request("db", "owned"), metadata=operator)
    (streamed,) = await _stream(api.c, [_msg(1, _request("db", "owned"))], operator)
    assert unary.decision == D.DECISION_DENY
    assert streamed.response.decision == unary.decision
    assert [r.code for r in streamed.response.reasons] == [r.code for r in unary.reasons]
    assert streamed.response.receipt.receipt_id  # a decision, receipted like the unary one


async def test_an_invalid_message_is_invalid_argument_and_the_stream_goes_on(api: Api) -> None:
    bad = _request("db", "s")
    bad.action.tool = "no spaces allowed"
    answers = await _stream(api.c, [_msg(1, bad), _msg(2, _request("db", "s"))])
    by_id = {a.message_id: a for a in answers}
    assert by_id[1].error.status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert by_id[1].error.code == "request_invalid"
    assert by_id[1].error.message.startswith("action.tool must match")
    assert by_id[1].response.decision == D.DECISION_DENY
    assert by_id[2].response.decision == D.DECISION_ALLOW
    assert api.metric("aarm_requests_rejected_total", code="request_invalid") == 1


async def test_undecodable_bytes_end_the_stream_after_the_messages_in_flight(api: Api) -> None:
    good = _msg(1, _request("db", "s")).SerializeToString()
    call = api.c.channel.stream_stream(DECIDE_STREAM)(  # raw bytes on the wire
        iter([good, b"\x0f"]), metadata=AUTH, timeout=WAIT
    )
    got = [D.DecideStreamResponse.FromString(raw) async for raw in _until_error(call)]
    assert [a.message_id for a in got] == [1]
    assert got[0].response.decision == D.DECISION_ALLOW
    assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await call.details() or "").startswith("request does not decode")


async def _until_error(call: Any) -> AsyncIterator[Any]:
    with contextlib.suppress(grpc.aio.AioRpcError):
        async for raw in call:
            yield raw


# --- admission per message --------------------------------------------------------------


@contextlib.asynccontextmanager
async def _held(tmp_path: Path, **limits: Any) -> AsyncIterator[tuple[server.App, Clients, Any]]:
    """A server whose policy answers only once ``release`` is set."""
    release = asyncio.Event()
    entered: list[int] = []

    async def held(_input: dict[str, Any]) -> Any:
        entered.append(1)
        await release.wait()
        return verdict_doc("ALLOW")

    cfg = fake_config(
        tmp_path, server=ServerConfig(listen="127.0.0.1:0", grace_seconds=0.5, **limits)
    )
    async with running(cfg, policy_engine=FakePolicyEngine(held)) as (app, c):
        yield app, c, (release, entered)


async def _until(cond: Any) -> None:
    async def poll() -> None:
        while not cond():  # noqa: ASYNC110 - nothing to wait on but the value
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), WAIT)


async def test_past_the_streams_own_bound_a_message_is_overloaded(tmp_path: Path) -> None:
    async with _held(tmp_path, max_inflight_per_stream=2) as (app, c, (release, entered)):
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def requests() -> AsyncIterator[Any]:
            while (item := await queue.get()) is not None:
                yield item

        call = c.decide.DecideStream(requests(), metadata=AUTH, timeout=WAIT)
        for i in (1, 2):
            await queue.put(_msg(i, _request("db", f"b-{i}")))
        await _until(lambda: len(entered) == 2)
        await queue.put(_msg(3, _request("db", "b-3")))
        refused = await asyncio.wait_for(call.read(), WAIT)  # at once, not queued
        assert refused.message_id == 3
        assert refused.error.status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert refused.error.code == "overloaded"
        assert "on this stream" in refused.error.message
        assert refused.response.decision == D.DECISION_DENY
        release.set()
        rest = [await asyncio.wait_for(call.read(), WAIT) for _ in range(2)]
        assert sorted(a.message_id for a in rest) == [1, 2]
        assert {a.response.decision for a in rest} == {D.DECISION_ALLOW}
        await queue.put(None)
        assert await call.read() is grpc.aio.EOF
        samples = app.metrics.registry.get_sample_value
        rejected = {"method": "DecideStream", "reason": "stream"}
        assert samples("aarm_admission_rejected_total", rejected) == 1
        assert samples("aarm_inflight_requests") == 0


async def test_the_servers_decision_budget_applies_per_message(tmp_path: Path) -> None:
    async with _held(tmp_path, max_inflight_decisions=1) as (app, c, (release, entered)):
        unary = asyncio.ensure_future(c.decide.Decide(_request("db", "u"), timeout=WAIT))
        await _until(lambda: len(entered) == 1)
        assert app.metrics.registry.get_sample_value("aarm_decide_streams") == 0
        (refused,) = await _stream(c, [_msg(7, _request("db", "s"))])
        assert refused.message_id == 7
        assert refused.error.code == "overloaded"
        assert "too many decisions in flight" in refused.error.message
        release.set()
        assert (await unary).decision == D.DECISION_ALLOW
        (admitted,) = await _stream(c, [_msg(8, _request("db", "s"))])  # room again
        assert admitted.response.decision == D.DECISION_ALLOW
        rejected = {"method": "DecideStream", "reason": "decisions"}
        assert app.metrics.registry.get_sample_value("aarm_admission_rejected_total", rejected)


async def test_a_client_that_hangs_up_keeps_its_decisions_whole(tmp_path: Path) -> None:
    async with _held(tmp_path) as (app, c, (release, entered)):
        call = c.decide.DecideStream(
            iter([_msg(1, _request("db", "gone"))]), metadata=AUTH, timeout=WAIT
        )
        await _until(lambda: len(entered) == 1)
        call.cancel()
        samples = app.metrics.registry.get_sample_value
        assert samples("aarm_inflight_requests") == 1  # still deciding, slot held
        release.set()
        await _until(lambda: samples("aarm_inflight_requests") == 0)
        assert samples("aarm_decisions_total", {"decision": "ALLOW", "code": "catalogued"}) == 1


# --- the credential of a long stream --------------------------------------------------


async def test_a_message_after_the_credential_expired_ends_the_stream() -> None:
    now = [100.0]
    guard = CallGuard(
        Authenticator(PrincipalDirectory.build([]), client_certificates=False),
        Metrics(),
        clock=lambda: now[0],
    )

    async def messages() -> AsyncIterator[Any]:
        yield "first"
        now[0] = 160.0  # the JWT's exp (150) has passed
        yield "second"

    rejected: list[int] = []
    checked = _checked(messages(), lambda: rejected.append(1), guard, 150.0)
    assert await anext(checked) == "first"
    with pytest.raises(Unauthenticated, match="expired"):
        await anext(checked)
    assert not rejected


async def test_an_undecodable_message_raises_request_invalid() -> None:
    from aarm_pdp.api.handlers import Unparseable

    async def messages() -> AsyncIterator[Any]:
        yield Unparseable("request does not decode: x")

    guard = CallGuard(
        Authenticator(PrincipalDirectory.build([]), client_certificates=False), Metrics()
    )
    rejected: list[int] = []
    checked = _checked(messages(), lambda: rejected.append(1), guard, None)
    with pytest.raises(RequestInvalid, match="does not decode"):
        await anext(checked)
    assert rejected == [1]


async def test_each_message_has_its_span_in_the_streams_trace(
    api: Api, spans: InMemorySpanExporter
) -> None:
    metadata = (*AUTH, ("traceparent", TRACEPARENT))
    answers = await _stream(
        api.c, [_msg(1, _request("db", "t-1")), _msg(2, _request("db", "t-2"))], metadata
    )
    roots = [
        s for s in spans.get_finished_spans() if s.name == "aarm.v1.DecisionService/DecideStream"
    ]
    assert len(roots) == 2
    assert {s.attributes["aarm.decision_id"] for s in roots if s.attributes} == {
        a.response.decision_id for a in answers
    }
    for root in roots:
        assert root.context.trace_id == TRACE_ID
        assert root.parent is not None and root.parent.span_id == PARENT_SPAN
    children = [s for s in spans.get_finished_spans() if s.name == "aarm.opa.evaluate"]
    assert {c.parent.span_id for c in children if c.parent} == {r.context.span_id for r in roots}


async def test_a_bug_outside_the_engine_is_an_internal_error_for_that_message(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = api.app.engine.decide

    async def flaky(request: Any, **kw: Any) -> Any:
        if request.identity.session_id == "bug":
            raise RuntimeError("a bug")
        return await real(request, **kw)

    monkeypatch.setattr(api.app.engine, "decide", flaky)
    answers = await _stream(api.c, [_msg(1, _request("db", "bug")), _msg(2, _request("db", "ok"))])
    by_id = {a.message_id: a for a in answers}
    assert by_id[1].error.status == grpc.StatusCode.INTERNAL.value[0]
    assert by_id[1].error.code == "internal"
    assert by_id[1].error.message == "internal error"  # the detail only goes to the log
    assert by_id[1].response.decision == D.DECISION_DENY
    assert by_id[2].response.decision == D.DECISION_ALLOW
    assert api.metric("aarm_errors_total", code="internal") == 1
