"""Memory bounds over gRPC: a full ticket budget is a DENY with its reason code, the
stores' bytes are metrics, and ProvideContext answers inside the client's deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aarm.v1 import decision_pb2, deferral_pb2
from aarm_pdp.config import ApprovalConfig
from aarm_pdp.opa.fake import FakePolicyEngine
from google.protobuf import json_format

from tests.api.conftest import APPROVERS, Api, ScriptedOpa
from tests.support.messages import IDENTITY, decide_request, opa_answer
from tests.support.service import fake_config, running, with_approvers

pytestmark = pytest.mark.api
D = decision_pb2
MIB = 1 << 20
# ~600 KB of parameters (each string under limits.max_string_bytes)
BIG = {f"k{i}": "y" * 60_000 for i in range(10)}


@pytest.fixture
async def small_tickets(tmp_path: Path, opa: ScriptedOpa) -> AsyncIterator[Api]:
    cfg = fake_config(
        tmp_path,
        auth=with_approvers(tmp_path, APPROVERS),
        approvals=ApprovalConfig(
            sweep_interval_seconds=0.05, ticket_tenant_bytes=2 * MIB, ticket_total_bytes=4 * MIB
        ),
    )
    engine = FakePolicyEngine(opa)
    async with running(cfg, policy_engine=engine) as (app, clients):
        yield Api(app, clients, opa, engine)


async def test_a_full_ticket_budget_is_a_deny_with_its_reason_code(small_tickets: Api) -> None:
    api = small_tickets
    api.opa.returns(opa_answer("DEFER"))
    verdicts = []
    for i in range(4):
        ident = {**IDENTITY, "session_id": f"s-{i}"}
        resp = await api.c.decide.Decide(
            decide_request("credentials", "rotate", BIG, identity=ident)
        )
        verdicts.append((resp.decision, resp.reasons[0].code))
    assert verdicts[:2] == [(D.DECISION_DEFER, "catalogued")] * 2
    assert verdicts[2:] == [(D.DECISION_DENY, "ticket_budget_exhausted")] * 2
    assert api.metric("aarm_store_refusals_total", store="tickets", reason="tenant") == 2
    assert api.metric("aarm_store_entries", store="tickets") == 2
    held = api.metric("aarm_store_bytes", store="tickets")
    assert 1 * MIB < held <= api.metric("aarm_store_budget_bytes", store="tickets", scope="tenant")
    assert api.metric("aarm_fail_closed_total", code="ticket_budget_exhausted") == 2
    # Refused before anything was recorded: the refused actions are not in their sessions
    # (a suspension without its ticket would be a DEFER the session waits on forever).
    assert api.metric("aarm_store_entries", store="sessions") == 2
    assert api.metric("aarm_store_bytes", store="idempotency") == 0


def _fact(name: str, value: Any) -> Any:
    return json_format.ParseDict({"name": name, "value": value, "source": "cal"}, D.Fact())


async def test_provide_context_answers_deny_inside_the_clients_deadline(api: Api) -> None:
    api.opa.returns(opa_answer("DEFER"))
    first = await api.c.decide.Decide(decide_request("credentials", "rotate", {"id": "k-1"}))
    assert first.decision == D.DECISION_DEFER
    hung = asyncio.Event()
    store = api.app.store
    real_load = store.load

    async def load(*args: Any, **kwargs: Any) -> Any:
        hung.set()
        await asyncio.Event().wait()  # the session store stops answering
        return await real_load(*args, **kwargs)

    store.load = load  # type: ignore[method-assign]
    try:
        started = time.monotonic()
        resp = await api.c.deferrals.ProvideContext(
            deferral_pb2.ProvideContextRequest(
                identity=json_format.ParseDict(IDENTITY, D.Identity()),
                deferral_id=first.deferral.deferral_id,
                facts=[_fact("maintenance_window", True)],
            ),
            timeout=1.0,
        )
        elapsed = time.monotonic() - started
    finally:
        store.load = real_load  # type: ignore[method-assign]
    assert hung.is_set()
    assert resp.decision.decision == D.DECISION_DENY
    assert resp.decision.reasons[0].code == "session_store_unavailable"
    assert elapsed < 1.0
