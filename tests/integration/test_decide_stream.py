"""DecideStream against a real managed OPA loading the reference pack, over real sockets:
the same verdicts and receipts as unary Decide for the same inputs, per-message deadlines,
the trust boundary (credential at open, tenant per message), overload per message."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from aarm.v1 import decision_pb2, receipt_pb2
from aarm_pdp.receipts.verify import PublicKeys, verify_receipt
from aarm_pdp_client import ActionDenied, AsyncClient, Client, Identity

from tests.integration.test_decide import CASES
from tests.support.grpc_clients import Clients, aio_channel, bearer, opened
from tests.support.messages import IDENTITY, decide_request
from tests.support.principals import OUTSIDER_TOKEN, PLATFORM_TOKEN
from tests.support.service import running, service_config

pytestmark = pytest.mark.integration
D = decision_pb2
AUTH = bearer(PLATFORM_TOKEN)
WAIT = 30.0
_VARYING = frozenset(
    {
        "decision_id",
        "receipt_id",
        "request_id",
        "approval_id",
        "deferral_id",
        "issued_at",
        "signature",
        "input_sha256",
        "session_id",
        "expires_at",
    }
)


def _alike(doc: Any) -> Any:
    """A receipt body without what differs between two alike decisions (ids, times, the
    session's name, the signature over them)."""
    if isinstance(doc, dict):
        return {k: _alike(v) for k, v in doc.items() if k not in _VARYING}
    if isinstance(doc, list):
        return [_alike(v) for v in doc]
    return doc


def _request(case: tuple[str, str, dict[str, Any], int, str], session: str) -> Any:
    tool, op, params, _, _ = case
    return decide_request(tool, op, params, identity={**IDENTITY, "session_id": session})


async def _stream(c: Clients, messages: list[Any], metadata: Any = AUTH) -> list[Any]:
    call = c.decide.DecideStream(iter(messages), metadata=metadata, timeout=WAIT)
    return [a async for a in call]


@pytest.fixture
async def svc(opa_binary: str, external_opa_url: str | None) -> AsyncIterator[Clients]:
    async with running(service_config(opa_binary, url=external_opa_url)) as (_app, c):
        yield c


async def test_a_stream_decides_and_receipts_like_unary_decide(svc: Clients) -> None:
    cases = CASES * 3
    unary = [await svc.decide.Decide(_request(case, f"u-{i}")) for i, case in enumerate(cases)]
    answers = await _stream(
        svc,
        [
            D.DecideStreamRequest(message_id=i + 1, request=_request(case, f"s-{i}"))
            for i, case in enumerate(cases)
        ],
    )
    assert len(answers) == len(cases)
    by_id = {a.message_id: a.response for a in answers}
    assert not any(a.HasField("error") for a in answers)
    jwks = (await svc.receipts.GetPublicKeys(receipt_pb2.GetPublicKeysRequest())).jwks
    keys = PublicKeys.from_jwks(jwks)
    for i, (case, want) in enumerate(zip(cases, unary, strict=True)):
        got = by_id[i + 1]
        assert got.decision == want.decision == case[3]
        assert [(r.code, r.rule_id, r.message) for r in got.reasons] == [
            (r.code, r.rule_id, r.message) for r in want.reasons
        ]
        assert list(got.matched_rules) == list(want.matched_rules)
        assert got.policy == want.policy and got.risk == want.risk
        assert got.modified_parameters == want.modified_parameters
        assert list(got.approval.approvers) == list(want.approval.approvers)
        assert list(got.deferral.context_needed) == list(want.deferral.context_needed)
        assert bool(got.approval.approval_id) == bool(want.approval.approval_id)
        assert bool(got.deferral.deferral_id) == bool(want.deferral.deferral_id)
        # Its own receipt, signed, verifying offline, and alike the unary one's.
        assert got.receipt.receipt_id not in {"", want.receipt.receipt_id}
        assert got.receipt.sequence == want.receipt.sequence == 1
        assert verify_receipt(got.receipt.payload, keys).ok
        assert verify_receipt(want.receipt.payload, keys).ok
        body = json.loads(got.receipt.payload)
        assert body["decision_id"] == got.decision_id
        assert body["chain"]["session_id"] == f"s-{i}"
        assert _alike(body) == _alike(json.loads(want.receipt.payload))


async def test_a_session_decided_over_a_stream_chains_its_receipts(svc: Clients) -> None:
    """Messages of one session on one stream: one receipt each, in one chain."""
    reads = [_request(CASES[0], "one-session") for _ in range(5)]
    for n, req in enumerate(reads):
        req.request_id = f"r-{n}"
    answers = await _stream(
        svc, [D.DecideStreamRequest(message_id=n, request=r) for n, r in enumerate(reads)]
    )
    assert sorted(a.response.receipt.sequence for a in answers) == [1, 2, 3, 4, 5]
    listed = await svc.receipts.ListReceipts(
        receipt_pb2.ListReceiptsRequest(tenant="acme", session_id="one-session")
    )
    assert {r.receipt_id for r in listed.receipts} == {
        a.response.receipt.receipt_id for a in answers
    }


async def test_an_expired_deadline_is_deny_never_allow(svc: Clients) -> None:
    allow = CASES[0]
    answers = await _stream(
        svc,
        [
            D.DecideStreamRequest(message_id=1, request=_request(allow, "dl-1"), timeout_ms=1),
            D.DecideStreamRequest(message_id=2, request=_request(allow, "dl-2"), timeout_ms=20_000),
        ],
    )
    by_id = {a.message_id: a for a in answers}
    rushed = by_id[1].response
    assert rushed.decision == D.DECISION_DENY  # 1 ms: too short for any decision here
    assert rushed.reasons and rushed.reasons[0].code in {
        "deadline_exceeded",
        "opa_timeout",
        "session_store_unavailable",
        "receipt_store_unavailable",
    }
    if by_id[1].HasField("error"):
        assert by_id[1].error.code == "deadline_exceeded"
        assert by_id[1].error.status == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert by_id[2].response.decision == D.DECISION_ALLOW


async def test_an_unauthenticated_stream_is_refused(
    opa_binary: str, external_opa_url: str | None
) -> None:
    async with (
        running(service_config(opa_binary, url=external_opa_url)) as (app, _),
        aio_channel(f"127.0.0.1:{app.port}", None) as channel,  # no credential at all
    ):
        call = Clients(channel).decide.DecideStream(timeout=WAIT)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await opened(call)  # refused as it opens, before any message
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_another_tenants_session_is_refused_per_message(svc: Clients) -> None:
    victim = _request(CASES[0], "victim")
    assert (await svc.decide.Decide(victim)).decision == D.DECISION_ALLOW
    answers = await _stream(
        svc, [D.DecideStreamRequest(message_id=9, request=victim)], bearer(OUTSIDER_TOKEN)
    )
    (refused,) = answers
    assert refused.error.code == "permission_denied"
    assert refused.error.status == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert refused.response.decision == D.DECISION_DENY
    assert not refused.response.HasField("receipt")
    listed = await svc.receipts.ListReceipts(
        receipt_pb2.ListReceiptsRequest(tenant="acme", session_id="victim")
    )
    assert len(listed.receipts) == 1  # nothing was decided for the outsider


async def test_overload_is_answered_per_message(opa_binary: str) -> None:
    cfg = service_config(opa_binary)
    cfg = dataclasses.replace(
        cfg, server=dataclasses.replace(cfg.server, max_inflight_per_stream=2)
    )
    n = 40
    messages = [
        D.DecideStreamRequest(message_id=i, request=_request(CASES[i % 5], f"o-{i}"))
        for i in range(n)
    ]
    async with running(cfg) as (_app, c):
        answers = await _stream(c, messages)
    assert sorted(a.message_id for a in answers) == list(range(n))  # none dropped
    refused = [a for a in answers if a.HasField("error")]
    decided = [a for a in answers if not a.HasField("error")]
    assert refused and decided
    for a in refused:
        assert a.error.code == "overloaded"
        assert a.error.status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert a.response.decision == D.DECISION_DENY
    assert all(a.response.receipt.receipt_id for a in decided)


# --- the client SDK against the real service -------------------------------------------


def _me(session: str) -> Identity:
    return Identity(
        tenant="acme",
        human="alice@acme.example",
        service="agent-platform",
        agent="agent-7",
        session_id=session,
    )


def _blocking_guard(target: str) -> tuple[str, str]:
    with Client(target, token=PLATFORM_TOKEN) as client:
        allowed = client.decide(_me("sdk-sync"), "db", "query", {"table": "orders", "limit": 10})
        try:
            client.decide(_me("sdk-sync"), "database", "drop", {"database": "production"})
        except ActionDenied as exc:
            return allowed.decision, exc.codes[0]
    return allowed.decision, ""


async def test_the_client_decides_over_the_stream(opa_binary: str) -> None:
    async with running(service_config(opa_binary)) as (app, _c):
        target = f"127.0.0.1:{app.port}"
        streams = app.metrics.registry.get_sample_value
        async with AsyncClient(target, token=PLATFORM_TOKEN) as client:
            async with client.guard(
                _me("sdk-aio"), "db", "query", {"table": "orders", "limit": 5000}
            ) as g:
                assert g.verdict is not None and g.verdict.decision == "MODIFY"
                assert g.parameters["limit"] == 1000
                await g.record([{"id": 1}])
            assert streams("aarm_decide_streams") == 1  # the Guard's decision: streamed
            with pytest.raises(ActionDenied) as denied:
                await client.decide(_me("sdk-aio"), "database", "drop", {"database": "production"})
            assert denied.value.codes == ("forbidden",)
            assert streams("aarm_decide_streams") == 1  # the same stream
        assert await asyncio.to_thread(_blocking_guard, target) == ("ALLOW", "forbidden")
        decided = streams("aarm_decisions_total", {"decision": "DENY", "code": "forbidden"})
        assert decided == 2
