"""STEP_UP approvals and DEFER resolution end to end, over gRPC, against real OPA."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from aarm.v1 import (
    approval_pb2,
    decision_pb2,
    deferral_pb2,
    receipt_pb2,
    session_pb2,
)
from aarm_pdp import server
from aarm_pdp.config import ApprovalConfig
from google.protobuf import json_format

from tests.support.grpc_clients import Clients, aio_channel, bearer
from tests.support.service import running as serving
from tests.support.service import service_config, with_approvers

pytestmark = pytest.mark.integration
D = decision_pb2

IDENT = {
    "tenant": "acme",
    "human": "alice@acme.example",
    "service": "agent-platform",
    "agent": "agent-7",
    "sessionId": "s-appr",
}
APPROVERS = {
    "bob-token": ("bob@acme.example", ["data-owners", "finance-approvers", "identity-admins"]),
    "agent-token": ("agent-7", ["data-owners"]),  # an agent's identity: never an approver
    "carol-token": ("carol@acme.example", ["marketing"]),
}


@contextlib.asynccontextmanager
async def running(opa_binary: str, tmp: Path, **approvals: Any) -> AsyncIterator[Clients]:
    cfg = service_config(opa_binary)
    cfg = replace(
        cfg,
        auth=with_approvers(tmp, APPROVERS),
        approvals=ApprovalConfig(sweep_interval_seconds=0.1, **approvals),
    )
    async with serving(cfg.validate()) as (_, clients):
        yield clients


def request(tool: str, op: str, params: dict[str, Any], **extra: Any) -> Any:
    body = {
        "identity": {**IDENT, **extra.pop("identity", {})},
        "action": {"tool": tool, "operation": op, "parameters": params},
        **extra,
    }
    return json_format.ParseDict(body, D.DecideRequest())


CLEANUP = ("database", "delete", {"table": "test_records", "created_by": "alice@acme.example"})


async def _start_cleanup_session(c: Clients, session_id: str) -> None:
    await c.sessions.StartSession(
        session_pb2.StartSessionRequest(
            identity=json_format.ParseDict({**IDENT, "sessionId": session_id}, D.Identity()),
            original_request="clean up the test data I created yesterday",
            intent_class="data_cleanup",
        )
    )


async def test_s27_step_up_approve_then_resubmit_allows_once(
    opa_binary: str, tmp_path: Path
) -> None:
    async with running(opa_binary, tmp_path) as c:
        await _start_cleanup_session(c, "s-27")
        req = request(*CLEANUP, identity={"sessionId": "s-27"})
        first = await c.decide.Decide(req)
        assert first.decision == D.DECISION_STEP_UP
        approval_id = first.approval.approval_id
        assert approval_id
        # The approver sees the full context.
        got = await c.approvals.GetApproval(
            approval_pb2.GetApprovalRequest(approval_id=approval_id), metadata=bearer("bob-token")
        )
        ctx = json_format.MessageToDict(got.approval.context)
        assert ctx["original_request"]["text"] == "clean up the test data I created yesterday"
        assert ctx["action"]["tool"] == "database"
        assert ctx["identity"]["human"] == "alice@acme.example"
        assert ctx["reasons"]
        assert "prior_actions" in ctx
        assert got.approval.status == approval_pb2.APPROVAL_STATUS_PENDING
        pending = await c.approvals.ListPendingApprovals(
            approval_pb2.ListPendingApprovalsRequest(tenant="acme"), metadata=bearer("bob-token")
        )
        assert [a.approval_id for a in pending.approvals] == [approval_id]
        # No ALLOW before the approval: re-submitting without a token is STEP_UP again.
        again = await c.decide.Decide(req)
        assert again.decision == D.DECISION_STEP_UP
        granted = await c.approvals.ResolveApproval(
            approval_pb2.ResolveApprovalRequest(
                approval_id=approval_id, grant=True, reason="owner confirmed"
            ),
            metadata=bearer("bob-token"),
        )
        assert granted.status == approval_pb2.APPROVAL_STATUS_GRANTED
        token = granted.approval_token
        resubmitted = request(*CLEANUP, identity={"sessionId": "s-27"}, approvalToken=token)
        ok = await c.decide.Decide(resubmitted)
        assert ok.decision == D.DECISION_ALLOW, json_format.MessageToDict(ok)
        assert ok.reasons[0].code == "approved"
        assert "bob@acme.example" in ok.reasons[0].message
        # Single use.
        replay = await c.decide.Decide(replace_request_id(resubmitted, "again"))
        assert replay.decision == D.DECISION_DENY
        assert replay.reasons[0].code == "approval_rejected"
        # Receipts: the STEP_UP, the approval (approver, decision, time, reason), the ALLOW.
        listed = await c.receipts.ListReceipts(
            receipt_pb2.ListReceiptsRequest(tenant="acme", session_id="s-27")
        )
        docs = [json.loads(r.payload) for r in listed.receipts]
        approval = next(d for d in docs if d["kind"] == "approval")
        assert approval["approval"]["approver"] == "bob@acme.example"
        assert approval["approval"]["granted"] is True
        assert approval["approval"]["reason"] == "owner confirmed"
        assert approval["approval"]["identity_verified"] is True
        assert approval["issued_at"]
        assert approval["identity"]["human"] == "alice@acme.example"
        allowed = next(d for d in docs if d.get("decision_id") == ok.decision_id)
        assert allowed["links"]["approval_id"] == approval_id
        assert allowed["decision"]["result"] == "ALLOW"


def replace_request_id(req: Any, rid: str) -> Any:
    out = D.DecideRequest()
    out.CopyFrom(req)
    out.request_id = rid
    return out


async def test_token_bound_to_exact_action(opa_binary: str, tmp_path: Path) -> None:
    async with running(opa_binary, tmp_path) as c:
        await _start_cleanup_session(c, "s-bind")
        first = await c.decide.Decide(request(*CLEANUP, identity={"sessionId": "s-bind"}))
        granted = await c.approvals.ResolveApproval(
            approval_pb2.ResolveApprovalRequest(
                approval_id=first.approval.approval_id, grant=True, reason="ok"
            ),
            metadata=bearer("bob-token"),
        )
        other = request(
            "database",
            "delete",
            {"table": "customers", "created_by": "alice@acme.example"},
            identity={"sessionId": "s-bind"},
            approvalToken=granted.approval_token,
        )
        resp = await c.decide.Decide(other)
        assert resp.decision != D.DECISION_ALLOW


async def test_s34_forged_approvals_rejected(opa_binary: str, tmp_path: Path) -> None:
    async with running(opa_binary, tmp_path) as c:
        await _start_cleanup_session(c, "s-34")
        first = await c.decide.Decide(request(*CLEANUP, identity={"sessionId": "s-34"}))
        aid = first.approval.approval_id
        resolve = approval_pb2.ResolveApprovalRequest(approval_id=aid, grant=True, reason="lgtm")
        # The agent-controlled channel: the enforcement point's credential, no approver role.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.approvals.ResolveApproval(resolve)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # A made-up token.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.approvals.ResolveApproval(resolve, metadata=bearer("forged"))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # The agent's own identity, even holding a credential in the right group.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.approvals.ResolveApproval(resolve, metadata=bearer("agent-token"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # A real approver outside the groups the policy named.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.approvals.ResolveApproval(resolve, metadata=bearer("carol-token"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Still pending: nothing above counted.
        got = await c.approvals.GetApproval(
            approval_pb2.GetApprovalRequest(approval_id=aid), metadata=bearer("bob-token")
        )
        assert got.approval.status == approval_pb2.APPROVAL_STATUS_PENDING


def _short_policy(tmp: Path, section: str) -> Path:
    import shutil

    from tests.support.paths import REGO

    policy = tmp / f"short-{section}"
    shutil.copytree(REGO, policy)
    cfg_path = policy / "aarm" / "config" / "data.json"
    cfg = json.loads(cfg_path.read_text())
    if section == "stepup":
        for group in cfg["stepup"]["approver_groups"].values():
            group["timeout_seconds"] = 1
    else:
        cfg["deferral"]["timeout_seconds"] = 1
    cfg_path.write_text(json.dumps(cfg))
    return policy


async def test_s33_no_answer_times_out_to_deny(opa_binary: str, tmp_path: Path) -> None:
    base = service_config(opa_binary, policy=_short_policy(tmp_path, "stepup"))
    cfg = replace(
        base,
        auth=with_approvers(tmp_path, APPROVERS),
        approvals=ApprovalConfig(sweep_interval_seconds=0.1),
    )
    app = await server.start(cfg.validate())
    try:
        async with aio_channel(f"127.0.0.1:{app.port}") as ch:
            c = Clients(ch)
            await _start_cleanup_session(c, "s-33t")
            first = await c.decide.Decide(request(*CLEANUP, identity={"sessionId": "s-33t"}))
            assert first.decision == D.DECISION_STEP_UP
            assert first.approval.timeout_seconds == 1
            await asyncio.sleep(1.0)
            # The sweeper (every 0.1 s) expires it just after the 1 s deadline; poll
            # rather than guess how long a loaded machine takes.
            for _ in range(50):
                got = await c.approvals.GetApproval(
                    approval_pb2.GetApprovalRequest(approval_id=first.approval.approval_id),
                    metadata=bearer("bob-token"),
                )
                if got.approval.status != approval_pb2.APPROVAL_STATUS_PENDING:
                    break
                await asyncio.sleep(0.1)
            assert got.approval.status == approval_pb2.APPROVAL_STATUS_EXPIRED
            # A late grant is refused; nothing can turn the timeout into an allow.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await c.approvals.ResolveApproval(
                    approval_pb2.ResolveApprovalRequest(
                        approval_id=first.approval.approval_id, grant=True, reason="late"
                    ),
                    metadata=bearer("bob-token"),
                )
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            text = app.metrics.registry.get_sample_value(
                "aarm_tickets_expired_total", {"kind": "approval"}
            )
            assert text == 1
    finally:
        await app.stop()


async def test_s33_explicit_rejection_is_deny(opa_binary: str, tmp_path: Path) -> None:
    async with running(opa_binary, tmp_path) as c:
        await _start_cleanup_session(c, "s-33")
        first = await c.decide.Decide(request(*CLEANUP, identity={"sessionId": "s-33"}))
        aid = first.approval.approval_id
        # Rejection path: an explicit reject is a DENY too.
        rejected = await c.approvals.ResolveApproval(
            approval_pb2.ResolveApprovalRequest(approval_id=aid, grant=False, reason="no"),
            metadata=bearer("bob-token"),
        )
        assert rejected.status == approval_pb2.APPROVAL_STATUS_REJECTED
        assert rejected.approval_token == ""


async def test_s33_approved_after_identity_expired_is_denied(
    opa_binary: str, tmp_path: Path
) -> None:
    async with running(opa_binary, tmp_path) as c:
        await _start_cleanup_session(c, "s-33b")
        soon = int(time.time()) + 2
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(soon))
        ident = {"sessionId": "s-33b", "expiresAt": stamp}
        first = await c.decide.Decide(request(*CLEANUP, identity=ident))
        assert first.decision == D.DECISION_STEP_UP
        granted = await c.approvals.ResolveApproval(
            approval_pb2.ResolveApprovalRequest(
                approval_id=first.approval.approval_id, grant=True, reason="ok"
            ),
            metadata=bearer("bob-token"),
        )
        await asyncio.sleep(max(0.0, soon - time.time()) + 0.2)
        late = await c.decide.Decide(
            request(*CLEANUP, identity=ident, approvalToken=granted.approval_token)
        )
        assert late.decision == D.DECISION_DENY
        assert late.reasons[0].code == "identity_expired"


async def test_revoked_identity_denied(opa_binary: str, tmp_path: Path) -> None:
    async with running(opa_binary, tmp_path) as c:
        ok = await c.decide.Decide(request("db", "query", {"table": "orders", "limit": 5}))
        assert ok.decision == D.DECISION_ALLOW
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.approvals.RevokeIdentity(
                approval_pb2.RevokeIdentityRequest(tenant="acme", subject="agent-7"),
                metadata=bearer("carol-token"),
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await c.approvals.RevokeIdentity(
            approval_pb2.RevokeIdentityRequest(tenant="acme", subject="agent-7", reason="leak"),
            metadata=bearer("bob-token"),
        )
        denied = await c.decide.Decide(request("db", "query", {"table": "orders", "limit": 5}))
        assert denied.decision == D.DECISION_DENY
        assert denied.reasons[0].code == "identity_revoked"


async def test_defer_resolve_with_context_and_dependants(opa_binary: str, tmp_path: Path) -> None:
    async with running(opa_binary, tmp_path) as c:
        rotate = request("credentials", "rotate", {"target": "prod-payments"})
        deferred = await c.decide.Decide(rotate)
        assert deferred.decision == D.DECISION_DEFER
        did = deferred.deferral.deferral_id
        assert list(deferred.deferral.context_needed) == ["maintenance_window"]
        dep = D.DecideRequest()
        dep.CopyFrom(request("db", "query", {"table": "orders", "limit": 5}))
        dep.action.depends_on.append(deferred.decision_id)
        assert (await c.decide.Decide(dep)).decision == D.DECISION_DEFER
        independent = await c.decide.Decide(request("db", "query", {"table": "orders", "limit": 7}))
        assert independent.decision == D.DECISION_ALLOW
        # Another session cannot resolve it.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.deferrals.ProvideContext(
                deferral_pb2.ProvideContextRequest(
                    identity=json_format.ParseDict({**IDENT, "sessionId": "other"}, D.Identity()),
                    deferral_id=did,
                    facts=[
                        json_format.ParseDict(
                            {"name": "maintenance_window", "value": True}, D.Fact()
                        )
                    ],
                )
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        resolved = await c.deferrals.ProvideContext(
            deferral_pb2.ProvideContextRequest(
                identity=json_format.ParseDict(IDENT, D.Identity()),
                deferral_id=did,
                facts=[
                    json_format.ParseDict(
                        {"name": "maintenance_window", "value": True, "source": "change-calendar"},
                        D.Fact(),
                    )
                ],
            )
        )
        assert resolved.status == deferral_pb2.DEFERRAL_STATUS_RESOLVED
        assert resolved.decision.decision == D.DECISION_ALLOW
        # The dependant can now proceed.
        dep2 = D.DecideRequest()
        dep2.CopyFrom(dep)
        dep2.request_id = "after-resolution"
        assert (await c.decide.Decide(dep2)).decision == D.DECISION_ALLOW
        got = await c.deferrals.GetDeferral(
            deferral_pb2.GetDeferralRequest(
                identity=json_format.ParseDict(IDENT, D.Identity()), deferral_id=did
            )
        )
        assert got.status == deferral_pb2.DEFERRAL_STATUS_RESOLVED
        # The DEFER receipt, the re-evaluation's receipt and the resolution follow-up, linked.
        listed = await c.receipts.ListReceipts(
            receipt_pb2.ListReceiptsRequest(tenant="acme", session_id=IDENT["sessionId"])
        )
        docs = [json.loads(r.payload) for r in listed.receipts]
        first = next(
            d
            for d in docs
            if d.get("decision_id") == deferred.decision_id and d["kind"] == "decision"
        )
        assert first["decision"]["result"] == "DEFER"
        rerun = next(
            d for d in docs if d["kind"] == "decision" and d["links"].get("deferral_id") == did
        )
        assert rerun["decision"]["result"] == "ALLOW"
        assert rerun["identity"]["human"] == first["identity"]["human"]
        follow = next(d for d in docs if d["kind"] == "deferral_resolution")
        assert follow["decision_id"] == deferred.decision_id
        assert follow["links"]["deferral_id"] == did
        assert follow["deferral"]["result"] == "ALLOW"


async def test_defer_timeout_is_deny(opa_binary: str, tmp_path: Path) -> None:
    base = service_config(opa_binary, policy=_short_policy(tmp_path, "deferral"))
    app = await server.start(
        replace(base, approvals=ApprovalConfig(sweep_interval_seconds=0.1)).validate()
    )
    try:
        async with aio_channel(f"127.0.0.1:{app.port}") as ch:
            c = Clients(ch)
            deferred = await c.decide.Decide(request("credentials", "rotate", {"target": "x-1"}))
            assert deferred.decision == D.DECISION_DEFER
            assert deferred.deferral.timeout_seconds == 1
            await asyncio.sleep(1.6)
            got = await c.deferrals.GetDeferral(
                deferral_pb2.GetDeferralRequest(
                    identity=json_format.ParseDict(IDENT, D.Identity()),
                    deferral_id=deferral_id(deferred),
                )
            )
            assert got.status == deferral_pb2.DEFERRAL_STATUS_EXPIRED
            late = (
                await c.deferrals.ProvideContext(
                    deferral_pb2.ProvideContextRequest(
                        identity=json_format.ParseDict(IDENT, D.Identity()),
                        deferral_id=deferral_id(deferred),
                        facts=[
                            json_format.ParseDict(
                                {"name": "maintenance_window", "value": True}, D.Fact()
                            )
                        ],
                    )
                )
                if False
                else None
            )
            assert late is None
            dep = D.DecideRequest()
            dep.CopyFrom(request("db", "query", {"table": "orders", "limit": 5}))
            dep.action.depends_on.append(deferred.decision_id)
            after = await c.decide.Decide(dep)
            assert after.decision == D.DECISION_DENY
            assert "dependency_denied" in {r.code for r in after.reasons}
    finally:
        await app.stop()


def deferral_id(resp: Any) -> str:
    return str(resp.deferral.deferral_id)
