"""ApprovalService/WatchApproval: the enforcement point that got STEP_UP waits for the
human's answer on a stream, against real OPA over real sockets."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from aarm.v1 import approval_pb2, decision_pb2, session_pb2
from aarm_pdp.config import ApprovalConfig
from google.protobuf import json_format

from tests.support.grpc_clients import Clients, bearer
from tests.support.paths import REGO
from tests.support.principals import OUTSIDER_TOKEN
from tests.support.processes import RedisServer
from tests.support.service import running as serving
from tests.support.service import service_config, with_approvers

pytestmark = pytest.mark.integration
D = decision_pb2
A = approval_pb2

IDENT = {
    "tenant": "acme",
    "human": "alice@acme.example",
    "service": "agent-platform",
    "agent": "agent-7",
    "sessionId": "s-watch",
}
APPROVERS = {"bob-token": ("bob@acme.example", ["data-owners", "finance-approvers"])}
TRANSFER = {
    "amount": 50000,
    "currency": "USD",
    "to_account": "GB29NWBK6016",
    "from_account": "ACME-OPS-1",
}


@contextlib.asynccontextmanager
async def running(
    opa_binary: str, tmp: Path, policy: Path | None = None, **server: Any
) -> AsyncIterator[Clients]:
    cfg = service_config(opa_binary, **({"policy": policy} if policy else {}))
    cfg = replace(
        cfg,
        auth=with_approvers(tmp, APPROVERS),
        approvals=ApprovalConfig(sweep_interval_seconds=0.1),
        server=replace(cfg.server, **server),
    )
    async with serving(cfg.validate()) as (_, clients):
        yield clients


def ident(**over: str) -> Any:
    return json_format.ParseDict({**IDENT, **over}, D.Identity())


def transfer(request_id: str, token: str = "", session: str = "s-watch") -> Any:
    req = json_format.ParseDict(
        {
            "requestId": request_id,
            "identity": {**IDENT, "sessionId": session},
            "action": {"tool": "payments", "operation": "transfer", "parameters": TRANSFER},
        },
        D.DecideRequest(),
    )
    req.approval_token = token
    return req


async def step_up(c: Clients, session: str = "s-watch") -> str:
    await c.sessions.StartSession(
        session_pb2.StartSessionRequest(
            identity=ident(sessionId=session), original_request="pay the supplier invoice"
        )
    )
    resp = await c.decide.Decide(transfer(f"{session}-1", session=session))
    assert resp.decision == D.DECISION_STEP_UP, json_format.MessageToDict(resp)
    return str(resp.approval.approval_id)


async def test_watch_sends_pending_then_the_grant_with_a_token_that_redeems_once(
    opa_binary: str, tmp_path: Path
) -> None:
    async with running(opa_binary, tmp_path) as c:
        approval_id = await step_up(c)
        stream = c.approvals.WatchApproval(
            A.WatchApprovalRequest(identity=ident(), approval_id=approval_id), timeout=30
        )
        first = await stream.read()
        assert first.status == A.APPROVAL_STATUS_PENDING
        assert first.expires_at.seconds > 0 and not first.approval_token
        # The watch is open: the approver answers now, and the stream wakes with it.
        await c.approvals.ResolveApproval(
            A.ResolveApprovalRequest(approval_id=approval_id, grant=True, reason="invoice ok"),
            metadata=bearer("bob-token"),
        )
        final = await stream.read()
        assert final.status == A.APPROVAL_STATUS_GRANTED
        assert final.approval_token.startswith(approval_id + ".")
        assert final.reason == "invoice ok" and final.token_expires_at.seconds > 0
        assert await stream.read() == grpc.aio.EOF
        assert await stream.code() == grpc.StatusCode.OK
        ok = await c.decide.Decide(transfer("s-watch-2", final.approval_token))
        assert ok.decision == D.DECISION_ALLOW, json_format.MessageToDict(ok)
        again = await c.decide.Decide(transfer("s-watch-3", final.approval_token))
        assert again.decision == D.DECISION_DENY
        # Watched after the grant was used: USED, no token.
        late = [
            m
            async for m in c.approvals.WatchApproval(
                A.WatchApprovalRequest(identity=ident(), approval_id=approval_id), timeout=30
            )
        ]
        assert [m.status for m in late] == [A.APPROVAL_STATUS_USED]
        assert not late[0].approval_token


async def test_a_rejection_ends_the_watch_without_a_token(opa_binary: str, tmp_path: Path) -> None:
    async with running(opa_binary, tmp_path) as c:
        approval_id = await step_up(c)
        stream = c.approvals.WatchApproval(
            A.WatchApprovalRequest(identity=ident(), approval_id=approval_id), timeout=30
        )
        assert (await stream.read()).status == A.APPROVAL_STATUS_PENDING
        await c.approvals.ResolveApproval(
            A.ResolveApprovalRequest(approval_id=approval_id, grant=False, reason="not today"),
            metadata=bearer("bob-token"),
        )
        final = await stream.read()
        assert final.status == A.APPROVAL_STATUS_REJECTED
        assert final.reason == "not today" and not final.approval_token
        assert await stream.read() == grpc.aio.EOF


async def test_an_unanswered_approval_ends_the_watch_expired(
    opa_binary: str, tmp_path: Path
) -> None:
    policy = tmp_path / "short"
    shutil.copytree(REGO, policy)
    data = policy / "aarm" / "config" / "data.json"
    cfg = json.loads(data.read_text())
    for group in cfg["stepup"]["approver_groups"].values():
        group["timeout_seconds"] = 1
    data.write_text(json.dumps(cfg))
    async with running(opa_binary, tmp_path, policy) as c:
        approval_id = await step_up(c)
        got = [
            m.status
            async for m in c.approvals.WatchApproval(
                A.WatchApprovalRequest(identity=ident(), approval_id=approval_id), timeout=30
            )
        ]
        assert got == [A.APPROVAL_STATUS_PENDING, A.APPROVAL_STATUS_EXPIRED]


async def test_the_callers_deadline_ends_the_wait(opa_binary: str, tmp_path: Path) -> None:
    async with running(opa_binary, tmp_path) as c:
        approval_id = await step_up(c)
        stream = c.approvals.WatchApproval(
            A.WatchApprovalRequest(identity=ident(), approval_id=approval_id), timeout=0.5
        )
        assert (await stream.read()).status == A.APPROVAL_STATUS_PENDING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.read()
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_only_the_submitting_session_may_watch(opa_binary: str, tmp_path: Path) -> None:
    async with running(opa_binary, tmp_path) as c:
        approval_id = await step_up(c)

        async def code(request: Any, **kw: Any) -> grpc.StatusCode:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in c.approvals.WatchApproval(request, timeout=5, **kw):
                    pass
            return err.value.code()

        watch = A.WatchApprovalRequest(identity=ident(), approval_id=approval_id)
        other_session = A.WatchApprovalRequest(
            identity=ident(sessionId="elsewhere"), approval_id=approval_id
        )
        assert await code(other_session) == grpc.StatusCode.NOT_FOUND
        # An approver is no enforcer; another tenant's enforcer is not this one's.
        assert await code(watch, metadata=bearer("bob-token")) == grpc.StatusCode.PERMISSION_DENIED
        outsider = A.WatchApprovalRequest(identity=ident(tenant="globex"), approval_id=approval_id)
        assert await code(outsider, metadata=bearer(OUTSIDER_TOKEN)) == grpc.StatusCode.NOT_FOUND
        missing = A.WatchApprovalRequest(identity=ident(), approval_id="nope")
        assert await code(missing) == grpc.StatusCode.NOT_FOUND


async def test_watches_have_their_own_admission_budget(opa_binary: str, tmp_path: Path) -> None:
    async with running(opa_binary, tmp_path, max_inflight_watches=1) as c:
        approval_id = await step_up(c)
        request = A.WatchApprovalRequest(identity=ident(), approval_id=approval_id)
        held = c.approvals.WatchApproval(request, timeout=30)
        assert (await held.read()).status == A.APPROVAL_STATUS_PENDING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in c.approvals.WatchApproval(request, timeout=5):
                pass
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "approval watches" in (err.value.details() or "")
        # The open watch does not hold the approver out: ResolveApproval gets through.
        await c.approvals.ResolveApproval(
            A.ResolveApprovalRequest(approval_id=approval_id, grant=True, reason="ok"),
            metadata=bearer("bob-token"),
        )
        assert (await held.read()).status == A.APPROVAL_STATUS_GRANTED
        assert await held.read() == grpc.aio.EOF
        # Its slot is back once it ended.
        after = [m.status async for m in c.approvals.WatchApproval(request, timeout=5)]
        assert after == [A.APPROVAL_STATUS_GRANTED]


async def test_a_grant_on_another_replica_reaches_the_watch(
    opa_binary: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Two replicas on one Redis: the watch on A sees the grant made on B (polled)."""

    def replica() -> Any:
        cfg = service_config(opa_binary, state=redis_server.url)
        return serving(replace(cfg, auth=with_approvers(tmp_path, APPROVERS)).validate())

    async with replica() as (_, a), replica() as (_, b):
        approval_id = await step_up(a, session="s-watch-2r")
        stream = a.approvals.WatchApproval(
            A.WatchApprovalRequest(identity=ident(sessionId="s-watch-2r"), approval_id=approval_id),
            timeout=30,
        )
        assert (await stream.read()).status == A.APPROVAL_STATUS_PENDING
        await b.approvals.ResolveApproval(
            A.ResolveApprovalRequest(approval_id=approval_id, grant=True, reason="ok"),
            metadata=bearer("bob-token"),
        )
        final = await stream.read()
        assert final.status == A.APPROVAL_STATUS_GRANTED
        ok = await b.decide.Decide(transfer("s-watch-2r-2", final.approval_token, "s-watch-2r"))
        assert ok.decision == D.DECISION_ALLOW, json_format.MessageToDict(ok)
