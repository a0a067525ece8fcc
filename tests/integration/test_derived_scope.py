"""A plain request (no declared scope) through the real service: derived scope and drift."""

from __future__ import annotations

from typing import Any

import pytest
from aarm.v1 import decision_pb2, session_pb2
from aarm_pdp.session import state as st
from aarm_pdp.session.store import session_key
from google.protobuf import json_format

from tests.support.messages import decide_request
from tests.support.service import running, service_config

pytestmark = pytest.mark.integration

TENANT = "acme"


def _ident(session_id: str) -> dict[str, str]:
    return {
        "tenant": TENANT,
        "human": "alice@acme.example",
        "agent": "agent-7",
        "session_id": session_id,
    }


async def _start(c: Any, session_id: str, text: str) -> None:
    await c.sessions.StartSession(
        session_pb2.StartSessionRequest(
            identity=json_format.ParseDict(_ident(session_id), decision_pb2.Identity()),
            original_request=text,
        )
    )


async def _state(app: Any, session_id: str) -> st.SessionState:
    raw = (await app.store.load(session_key(TENANT, session_id), [], TENANT, [])).state
    assert raw is not None
    return st.SessionState.from_bytes(raw)


PAYMENT = (
    "payments",
    "transfer",
    {
        "amount": 120,
        "currency": "EUR",
        "to_account": "DE89370400440532013000",
        "memo": "Oakridge invoice",
    },
)
FIREWALL = (
    "security",
    "update_firewall_rule",
    {"rule_name": "allow-all", "action": "allow", "cidr": "0.0.0.0/0", "port": 22},
)


async def test_plain_request_reaches_the_drift_threshold(opa_binary: str) -> None:
    cfg = service_config(opa_binary).validate()
    async with running(cfg) as (app, c):
        sid = "drift-plain-1"
        await _start(c, sid, "summarise my unread emails")
        state = await _state(app, sid)
        assert state.original is not None
        assert {"read", "external_communication"} <= set(state.original.derived_scope)
        assert "financial" not in state.original.derived_scope

        read = await c.decide.Decide(
            decide_request("email", "search", {"query": "is:unread"}, identity=_ident(sid))
        )
        pay = await c.decide.Decide(decide_request(*PAYMENT, identity=_ident(sid)))
        fw = await c.decide.Decide(decide_request(*FIREWALL, identity=_ident(sid)))
        after = await _state(app, sid)

    assert read.decision == decision_pb2.DECISION_ALLOW
    # The payment alone is one step outside (0.5 + novelty + chain, not above 0.7); the
    # firewall change is a second kind of action nobody asked for: drift passes 0.7.
    assert after.drift_outside == ["financial", "security_control"]
    assert after.drift_max > 0.7
    # What results: the payment is a STEP_UP of its own (provenance: an account the
    # request never named), not a drift one; the firewall change is a drift STEP_UP.
    assert pay.decision == decision_pb2.DECISION_STEP_UP
    assert "aarm.intent.drift" not in {r.rule_id for r in pay.reasons}
    assert fw.decision == decision_pb2.DECISION_STEP_UP
    assert "aarm.intent.drift" in {r.rule_id for r in fw.reasons}


async def test_requested_payment_does_not_drift(opa_binary: str) -> None:
    cfg = service_config(opa_binary).validate()
    async with running(cfg) as (app, c):
        sid = "drift-plain-2"
        await _start(c, sid, "pay the Oakridge invoice, 120 EUR to DE89370400440532013000")
        pay = await c.decide.Decide(decide_request(*PAYMENT, identity=_ident(sid)))
        after = await _state(app, sid)
    assert after.original is not None and "financial" in after.original.derived_scope
    assert after.drift_outside == []
    assert after.drift_max < 0.7
    assert "drift" not in {r.code for r in pay.reasons}
