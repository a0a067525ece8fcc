"""STEP_UP approvals, identity revocation and DEFER resolution over gRPC, OPA scripted."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from aarm.v1 import approval_pb2, decision_pb2, deferral_pb2, receipt_pb2
from google.protobuf import json_format

from tests.api.conftest import Api
from tests.support.grpc_clients import bearer
from tests.support.messages import IDENTITY, decide_request, opa_answer

pytestmark = pytest.mark.api
D = decision_pb2
A = approval_pb2
CLEANUP = ("database", "delete", {"table": "test_records", "created_by": "alice@acme.example"})
BOB = bearer("bob-token")


def _with_token(request: Any, token: str, request_id: str = "") -> Any:
    out = D.DecideRequest()
    out.CopyFrom(request)
    out.approval_token = token
    out.request_id = request_id
    return out


async def _step_up(api: Api) -> tuple[Any, str]:
    api.opa.returns(opa_answer("STEP_UP"))
    req = decide_request(*CLEANUP)
    first = await api.c.decide.Decide(req)
    assert first.decision == D.DECISION_STEP_UP
    return req, first.approval.approval_id


async def test_grant_then_resubmit_allows_once(api: Api) -> None:
    req, approval_id = await _step_up(api)
    got = await api.c.approvals.GetApproval(
        A.GetApprovalRequest(approval_id=approval_id), metadata=BOB
    )
    assert got.approval.status == A.APPROVAL_STATUS_PENDING
    assert list(got.approval.approvers) == ["data-owners"]
    ctx = json_format.MessageToDict(got.approval.context)
    assert ctx["action"]["tool"] == "database"
    assert ctx["identity"]["human"] == "alice@acme.example"
    assert ctx["reasons"][0]["code"] == "catalogued"
    pending = await api.c.approvals.ListPendingApprovals(
        A.ListPendingApprovalsRequest(tenant="acme"), metadata=BOB
    )
    assert [a.approval_id for a in pending.approvals] == [approval_id]
    granted = await api.c.approvals.ResolveApproval(
        A.ResolveApprovalRequest(approval_id=approval_id, grant=True, reason="owner confirmed"),
        metadata=BOB,
    )
    assert granted.status == A.APPROVAL_STATUS_GRANTED
    assert granted.approval_token.startswith(f"{approval_id}.")
    ok = await api.c.decide.Decide(_with_token(req, granted.approval_token))
    assert ok.decision == D.DECISION_ALLOW
    assert ok.reasons[0].code == "approved"
    assert "bob@acme.example" in ok.reasons[0].message
    replay = await api.c.decide.Decide(_with_token(req, granted.approval_token, "again"))
    assert replay.decision == D.DECISION_DENY
    assert replay.reasons[0].code == "approval_rejected"
    listed = await api.c.receipts.ListReceipts(
        receipt_pb2.ListReceiptsRequest(tenant="acme", session_id=IDENTITY["session_id"])
    )
    docs = [json.loads(r.payload) for r in listed.receipts]
    approval = next(d for d in docs if d["kind"] == "approval")
    assert approval["approval"]["approver"] == "bob@acme.example"
    assert approval["approval"]["granted"] is True
    assert approval["approval"]["reason"] == "owner confirmed"
    allowed = next(d for d in docs if d.get("decision_id") == ok.decision_id)
    assert allowed["links"]["approval_id"] == approval_id


async def test_without_a_token_the_action_stays_step_up(api: Api) -> None:
    req, approval_id = await _step_up(api)
    again = await api.c.decide.Decide(req)
    assert again.decision == D.DECISION_STEP_UP
    assert again.approval.approval_id != approval_id


async def test_token_is_bound_to_the_exact_action(api: Api) -> None:
    _, approval_id = await _step_up(api)
    granted = await api.c.approvals.ResolveApproval(
        A.ResolveApprovalRequest(approval_id=approval_id, grant=True, reason="ok"), metadata=BOB
    )
    other = decide_request("database", "delete", {"table": "customers"})
    resp = await api.c.decide.Decide(_with_token(other, granted.approval_token))
    assert resp.decision == D.DECISION_DENY
    assert resp.reasons[0].code == "approval_rejected"


async def test_rejected_approval_gives_no_token(api: Api) -> None:
    _, approval_id = await _step_up(api)
    rejected = await api.c.approvals.ResolveApproval(
        A.ResolveApprovalRequest(approval_id=approval_id, grant=False, reason="no"), metadata=BOB
    )
    assert rejected.status == A.APPROVAL_STATUS_REJECTED
    assert rejected.approval_token == ""
    got = await api.c.approvals.GetApproval(
        A.GetApprovalRequest(approval_id=approval_id), metadata=BOB
    )
    assert got.approval.status == A.APPROVAL_STATUS_REJECTED


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        # No approver credential: the channel's own (the enforcement point's) holds no
        # approver role.
        ((), grpc.StatusCode.PERMISSION_DENIED),
        (bearer("forged"), grpc.StatusCode.UNAUTHENTICATED),
        (bearer("agent-token"), grpc.StatusCode.PERMISSION_DENIED),  # the agent itself
        (bearer("carol-token"), grpc.StatusCode.PERMISSION_DENIED),  # outside the groups
    ],
)
async def test_only_an_approver_in_the_named_groups_resolves(
    api: Api, metadata: Any, code: grpc.StatusCode
) -> None:
    _, approval_id = await _step_up(api)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.c.approvals.ResolveApproval(
            A.ResolveApprovalRequest(approval_id=approval_id, grant=True, reason="lgtm"),
            metadata=metadata,
        )
    assert err.value.code() == code
    got = await api.c.approvals.GetApproval(
        A.GetApprovalRequest(approval_id=approval_id), metadata=BOB
    )
    assert got.approval.status == A.APPROVAL_STATUS_PENDING


async def test_revoked_identity_is_denied(api: Api) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.c.approvals.RevokeIdentity(
            A.RevokeIdentityRequest(tenant="acme", subject="agent-7"),
            metadata=bearer("carol-token"),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    revoked = await api.c.approvals.RevokeIdentity(
        A.RevokeIdentityRequest(tenant="acme", subject="agent-7", reason="compromised"),
        metadata=BOB,
    )
    assert revoked.subject == "agent-7"
    resp = await api.c.decide.Decide(decide_request("db", "query", {"table": "t", "limit": 1}))
    assert resp.decision == D.DECISION_DENY
    assert resp.reasons[0].code == "identity_revoked"
    assert api.engine.calls == []


# --- deferrals -----------------------------------------------------------------------

ROTATE = ("credentials", "rotate", {"target": "prod-payments"})


def _identity(**over: Any) -> Any:
    return json_format.ParseDict({**IDENTITY, **over}, D.Identity())


def _fact(name: str, value: Any) -> Any:
    return json_format.ParseDict(
        {"name": name, "value": value, "source": "change-calendar"}, D.Fact()
    )


def _allow_once_known(api: Api) -> None:
    """DEFER until the input carries ``maintenance_window``, then ALLOW."""
    api.opa.answer = lambda doc: opa_answer(
        "ALLOW" if "maintenance_window" in doc["facts"] else "DEFER"
    )


async def _deferred(api: Api) -> str:
    _allow_once_known(api)
    resp = await api.c.decide.Decide(decide_request(*ROTATE))
    assert resp.decision == D.DECISION_DEFER
    return str(resp.deferral.deferral_id)


async def test_provide_context_resolves_the_deferral(api: Api) -> None:
    deferral_id = await _deferred(api)
    got = await api.c.deferrals.GetDeferral(
        deferral_pb2.GetDeferralRequest(identity=_identity(), deferral_id=deferral_id)
    )
    assert got.status == deferral_pb2.DEFERRAL_STATUS_PENDING
    assert got.deferral.trigger == "missing_context"
    assert list(got.deferral.context_needed) == ["maintenance_window"]
    resolved = await api.c.deferrals.ProvideContext(
        deferral_pb2.ProvideContextRequest(
            identity=_identity(),
            deferral_id=deferral_id,
            facts=[_fact("maintenance_window", True)],
        )
    )
    assert resolved.status == deferral_pb2.DEFERRAL_STATUS_RESOLVED
    assert resolved.decision.decision == D.DECISION_ALLOW
    # The re-evaluation saw the original action with the new fact.
    last = api.engine.calls[-1]
    assert last["action"]["name"] == "credentials.rotate"
    assert last["facts"]["maintenance_window"]["value"] is True
    again = await api.c.deferrals.GetDeferral(
        deferral_pb2.GetDeferralRequest(identity=_identity(), deferral_id=deferral_id)
    )
    assert again.status == deferral_pb2.DEFERRAL_STATUS_RESOLVED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.c.deferrals.ProvideContext(
            deferral_pb2.ProvideContextRequest(
                identity=_identity(),
                deferral_id=deferral_id,
                facts=[_fact("maintenance_window", True)],
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_still_missing_context_keeps_the_deferral_pending(api: Api) -> None:
    deferral_id = await _deferred(api)
    resp = await api.c.deferrals.ProvideContext(
        deferral_pb2.ProvideContextRequest(
            identity=_identity(), deferral_id=deferral_id, facts=[_fact("ticket", "CHG-1")]
        )
    )
    assert resp.status == deferral_pb2.DEFERRAL_STATUS_PENDING
    assert resp.decision.decision == D.DECISION_DEFER
    assert resp.decision.deferral.deferral_id == deferral_id


async def test_a_deferral_belongs_to_its_session(api: Api) -> None:
    deferral_id = await _deferred(api)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.c.deferrals.GetDeferral(
            deferral_pb2.GetDeferralRequest(
                identity=_identity(session_id="another"), deferral_id=deferral_id
            )
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_provide_context_needs_facts(api: Api) -> None:
    deferral_id = await _deferred(api)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.c.deferrals.ProvideContext(
            deferral_pb2.ProvideContextRequest(identity=_identity(), deferral_id=deferral_id)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
