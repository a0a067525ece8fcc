"""The Guard's Decides over DecideStream (tests/fake_service.py with ``stream=True``), and
the fallback to unary Decide, found once, when the service answers UNIMPLEMENTED; for
the asyncio and the blocking client alike, with the public API unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from fake_service import TOKEN, D, Script, fake_service, response

from aarm_pdp_client import ActionDenied, AsyncClient, Client, Identity

ME = Identity(tenant="acme", human="alice", agent="agent-1", service="svc", session_id="s-1")
ALLOW = response(D.DECISION_ALLOW, decisionId="d-allow")


def _allow(n: int) -> Any:
    return response(D.DECISION_ALLOW, decisionId=f"d-{n}")


async def test_decisions_go_over_one_stream_when_the_service_offers_it() -> None:
    deny = response(D.DECISION_DENY, decisionId="d-deny", reasons=[{"code": "forbidden"}])
    script = Script(stream=True, decide=[ALLOW, deny, ALLOW])
    async with fake_service(script) as target, AsyncClient(target, token=TOKEN) as c:
        first = await c.decide(ME, "db", "query", {"limit": 1}, request_id="r-1")
        with pytest.raises(ActionDenied) as denied:
            await c.decide(ME, "database", "drop", {})
        async with c.guard(ME, "db", "query", {}) as g:
            await g.record("rows")
    assert first.decision == "ALLOW" and first.decision_id == "d-allow"
    assert first.request_id == "r-1"
    assert denied.value.codes == ("forbidden",)
    assert len(script.streams) == 1  # one stream for every decision
    assert script.streams[0]["authorization"] == f"Bearer {TOKEN}"
    assert not script.metadata  # no unary Decide at all
    ids = [m.message_id for m in script.stream_messages]
    assert len(set(ids)) == 3
    assert {m.timeout_ms for m in script.stream_messages} == {5000}  # the client's timeout
    assert script.stream_messages[0].request.request_id == "r-1"
    assert script.outcomes[0].decision_id == "d-allow"  # the rest of the flow unchanged


async def test_concurrent_decisions_share_the_stream_and_get_their_own_answers() -> None:
    script = Script(stream=True, decide=[_allow(n) for n in range(3)])
    script.delays = {"slow": 0.2, "medium": 0.1}
    async with fake_service(script) as target, AsyncClient(target, token=TOKEN) as c:
        verdicts = await asyncio.gather(
            c.decide(ME, "slow", "op", {}, request_id="slow"),
            c.decide(ME, "medium", "op", {}, request_id="medium"),
            c.decide(ME, "fast", "op", {}, request_id="fast"),
        )
    # Answered fast first; each caller still gets the answer to its own request.
    assert [v.request_id for v in verdicts] == ["slow", "medium", "fast"]
    assert len({v.decision_id for v in verdicts}) == 3
    assert len(script.streams) == 1


async def test_without_decide_stream_the_client_falls_back_to_unary_once() -> None:
    script = Script(stream=False, decide=[_allow(n) for n in range(3)])
    async with fake_service(script) as target, AsyncClient(target, token=TOKEN) as c:
        verdicts = [await c.decide(ME, "db", "query", {}) for _ in range(3)]
    assert [v.decision_id for v in verdicts] == ["d-0", "d-1", "d-2"]
    assert len(script.decide_requests) == 3  # each decided once, unary
    assert len(script.metadata) == 3
    assert not script.streams  # UNIMPLEMENTED: the stream was tried once, never again


async def test_a_per_message_error_is_retried_with_the_same_request_id() -> None:
    script = Script(stream=True, decide=[grpc.StatusCode.RESOURCE_EXHAUSTED, ALLOW])
    async with fake_service(script) as target, AsyncClient(target, token=TOKEN, retries=2) as c:
        verdict = await c.decide(ME, "db", "query", {}, request_id="req-7")
    assert verdict.decision == "ALLOW"
    assert [r.request_id for r in script.decide_requests] == ["req-7", "req-7"]
    assert len(script.streams) == 1  # a per-message error leaves the stream open


async def test_per_message_errors_and_timeouts_fail_closed() -> None:
    script = Script(
        stream=True,
        decide=[grpc.StatusCode.PERMISSION_DENIED, "hang", "hang"],
    )
    async with fake_service(script) as target:
        async with AsyncClient(target, token=TOKEN) as c:
            with pytest.raises(ActionDenied) as refused:
                await c.decide(ME, "db", "query", {})
        assert refused.value.codes == ("pdp_refused",)
        async with AsyncClient(target, token=TOKEN, retries=1, timeout=0.2) as c:
            with pytest.raises(ActionDenied) as slow:
                await c.decide(ME, "db", "query", {})
        assert slow.value.codes == ("pdp_timeout",)
        assert len({r.request_id for r in script.decide_requests[1:]}) == 1
        assert [m.timeout_ms for m in script.stream_messages[1:]] == [200, 200]
        async with AsyncClient(target) as anonymous:  # no token: the stream is refused
            with pytest.raises(ActionDenied) as anon:
                await anonymous.decide(ME, "db", "query", {})
        assert anon.value.codes == ("pdp_refused",)


async def test_a_new_token_opens_a_new_stream() -> None:
    tokens = iter([TOKEN, TOKEN, "rotated", "rotated"])
    script = Script(stream=True, decide=[_allow(n) for n in range(4)], tokens=(TOKEN, "rotated"))
    async with fake_service(script) as target, AsyncClient(target, token=lambda: next(tokens)) as c:
        verdicts = [await c.decide(ME, "db", "query", {}) for _ in range(4)]
    assert [v.decision_id for v in verdicts] == ["d-0", "d-1", "d-2", "d-3"]
    assert [s["authorization"] for s in script.streams] == ["Bearer " + TOKEN, "Bearer rotated"]


async def test_a_broken_stream_is_retried_on_a_new_one_with_the_same_request_id() -> None:
    script = Script(stream=True, decide=[ALLOW, "break", _allow(2)])
    async with fake_service(script) as target, AsyncClient(target, token=TOKEN, retries=1) as c:
        assert (await c.decide(ME, "db", "query", {})).decision == "ALLOW"
        again = await c.decide(ME, "db", "query", {}, request_id="r-2")
    assert again.decision_id == "d-2"
    assert len(script.streams) == 2  # the broken one, then a new one
    assert [r.request_id for r in script.decide_requests[1:]] == ["r-2", "r-2"]


async def test_a_stream_that_ends_before_any_answer_gives_way_to_unary() -> None:
    # grpc.aio can end the stream of a service without DecideStream INTERNAL instead of
    # UNIMPLEMENTED: a client whose streams were never answered resends the message over
    # unary Decide (same request_id) and stays there; no retry is spent on it.
    script = Script(stream=True, decide=["break", ALLOW, ALLOW])
    async with fake_service(script) as target, AsyncClient(target, token=TOKEN, retries=0) as c:
        assert (await c.decide(ME, "db", "query", {}, request_id="r-1")).decision == "ALLOW"
        assert (await c.decide(ME, "db", "query", {})).decision == "ALLOW"
    assert len(script.streams) == 1  # the one that broke; then unary only
    assert [r.request_id for r in script.decide_requests[:2]] == ["r-1", "r-1"]
    assert len(script.metadata) == 2  # the two unary calls


def _blocking(target: str, n: int) -> list[str]:
    with Client(target, token=lambda: TOKEN) as c:
        return [c.decide(ME, "db", "query", {}).decision_id for _ in range(n)]


async def test_the_blocking_client_uses_the_stream() -> None:
    script = Script(stream=True, decide=[_allow(n) for n in range(3)])
    async with fake_service(script) as target:
        got = await asyncio.to_thread(_blocking, target, 3)
    assert got == ["d-0", "d-1", "d-2"]
    assert len(script.streams) == 1 and not script.metadata
    assert len(script.stream_messages) == 3


async def test_the_blocking_client_falls_back_to_unary_once() -> None:
    script = Script(stream=False, decide=[_allow(n) for n in range(3)])
    async with fake_service(script) as target:
        got = await asyncio.to_thread(_blocking, target, 3)
    assert got == ["d-0", "d-1", "d-2"]
    assert len(script.metadata) == 3 and not script.streams


def _blocking_threads(target: str) -> list[str]:
    from concurrent.futures import ThreadPoolExecutor

    with Client(target, token=TOKEN) as c, ThreadPoolExecutor(4) as pool:
        tools = ["slow", "medium", "fast", "fast"]
        futures = [
            pool.submit(
                lambda t, i: c.decide(ME, t, "op", {}, request_id=f"{t}{i}").request_id, t, i
            )
            for i, t in enumerate(tools)
        ]
        return [f.result() for f in futures]


async def test_the_blocking_client_from_many_threads_gets_each_its_answer() -> None:
    script = Script(stream=True, decide=[_allow(n) for n in range(4)])
    script.delays = {"slow": 0.2, "medium": 0.1}
    async with fake_service(script) as target:
        got = await asyncio.to_thread(_blocking_threads, target)
    assert got == ["slow0", "medium1", "fast2", "fast3"]
    assert len(script.streams) == 1


def _blocking_timeout(target: str) -> tuple[str, ...]:
    with Client(target, token=TOKEN, retries=1, timeout=0.2) as c:
        try:
            c.decide(ME, "db", "query", {})
        except ActionDenied as exc:
            return exc.codes
    return ()


async def test_the_blocking_client_times_out_closed() -> None:
    script = Script(stream=True, decide=["hang", "hang"])
    async with fake_service(script) as target:
        assert await asyncio.to_thread(_blocking_timeout, target) == ("pdp_timeout",)
    assert len({r.request_id for r in script.decide_requests}) == 1


async def test_past_the_streams_bound_decisions_go_unary() -> None:
    from aarm_pdp_client._stream import MAX_IN_FLIGHT

    n = MAX_IN_FLIGHT + 8
    script = Script(stream=True, decide=[_allow(i) for i in range(n)])
    script.delays = {"db": 0.2}  # answered only once all are in flight
    async with fake_service(script) as target, AsyncClient(target, token=TOKEN) as c:
        verdicts = await asyncio.gather(*(c.decide(ME, "db", "query", {}) for _ in range(n)))
    assert len({v.decision_id for v in verdicts}) == n
    assert len(script.stream_messages) == MAX_IN_FLIGHT
    assert len(script.metadata) == n - MAX_IN_FLIGHT  # the rest unary, none refused
