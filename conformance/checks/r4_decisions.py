"""R4 STEP_UP and DEFER flows: approvals, forged approvals, deferral ordering and
resolution (rows 2, 25, 26, 29-31, 36, 38, 45, 58, 59; S21, S27, S34)."""

from __future__ import annotations

from typing import Any

import grpc
from aarm.v1 import approval_pb2, deferral_pb2
from google.protobuf import json_format

from conformance import receipts as rc
from conformance.checks.base import (
    BASE,
    CLEANUP,
    EXTERNAL,
    NC,
    Ctx,
    codes,
    decide,
    ev,
    ident_pb,
    probe,
    provide,
    receipt_obj,
    rpc_code,
    session_receipts,
    start_cleanup,
    verdict,
)
from tests.support.grpc_clients import bearer

# --- STEP_UP approvals --------------------------------------------------------------------


@probe("S27", "row 25", "row 26", "row 38", "row 58")
def approval_flow(ctx: Ctx) -> None:
    c = ctx.c
    s = ctx.session("S27-flow")
    start_cleanup(ctx, c, s)
    first = decide(c, *CLEANUP, s)
    if not ctx.tokens.approver:
        ctx.expect(
            "row 25",
            "a STEP_UP re-submitted without a token stays STEP_UP",
            verdict(decide(c, *CLEANUP, s)) == "STEP_UP",
            ev(first),
        )
        for item in ("S27", "row 26", "row 58"):
            ctx.record(item, "approve and re-submit", NC, EXTERNAL + " without --approver-token")
        return
    aid = first.approval.approval_id
    again = decide(c, *CLEANUP, s)
    outsider = rpc_code(
        lambda: c.approvals.ResolveApproval(
            approval_pb2.ResolveApprovalRequest(approval_id=aid, grant=True, reason="x"),
            metadata=bearer(ctx.tokens.outsider),
            timeout=10,
        )
    )
    pending = c.approvals.ListPendingApprovals(
        approval_pb2.ListPendingApprovalsRequest(tenant="acme"),
        metadata=ctx.approver_md(),
        timeout=10,
    )
    listed = aid in [a.approval_id for a in pending.approvals]
    granted = c.approvals.ResolveApproval(
        approval_pb2.ResolveApprovalRequest(
            approval_id=aid, grant=True, reason="owner confirmed (conformance)"
        ),
        metadata=ctx.approver_md(),
        timeout=10,
    )
    ok_resp = decide(c, *CLEANUP, s, token=granted.approval_token)
    replay = decide(c, *CLEANUP, s, token=granted.approval_token, request_id=f"{s}-replay")
    ctx.expect(
        "row 25",
        "no ALLOW before the approval: re-submitting without a token is STEP_UP again; "
        "ALLOW only with the granted single-use token",
        verdict(first) == "STEP_UP"
        and verdict(again) == "STEP_UP"
        and verdict(ok_resp) == "ALLOW"
        and verdict(replay) == "DENY",
        [
            ev(first, "first"),
            ev(again, "again, no token"),
            ev(ok_resp, "with token"),
            ev(replay, "token replay"),
        ],
    )
    ctx.expect(
        "row 26",
        "routed to the policy's approver group: the approval names data-owners, a member "
        "lists it as pending, a real approver outside the group is refused",
        list(first.approval.approvers) == ["data-owners"]
        and listed
        and outsider == grpc.StatusCode.PERMISSION_DENIED,
        [
            f"approvers={list(first.approval.approvers)} approval_id={aid}",
            f"listed={listed}",
            f"outsider: {outsider.name if outsider else 'accepted'}",
        ],
    )
    msg = ok_resp.reasons[0].message if ok_resp.reasons else ""
    ctx.expect(
        "S27",
        "STEP_UP (context_supported), approve, re-submit: ALLOW naming the approver",
        verdict(first) == "STEP_UP"
        and "context_supported" in codes(first)
        and verdict(ok_resp) == "ALLOW"
        and "conformance-approver@acme.example" in msg,
        [ev(first), ev(ok_resp), f"reason: {msg[:120]}"],
    )
    rec = rc.parse(granted.receipt.payload) if granted.HasField("receipt") else None
    rec_ok = receipt_obj(ok_resp)
    who = "conformance-approver@acme.example"
    try:
        chain = session_receipts(c, s)
    except grpc.RpcError:
        chain = []
    sources = [("ResolveApproval receipt", rec), ("approved ALLOW receipt", rec_ok)]
    sources += [(f"chain receipt kind={r.get('kind')} seq={r['chain']['seq']}", r) for r in chain]
    found = [
        name
        for name, r in sources
        if r is not None and rc.has_leaf(r, who) and rc.has_leaf(r, "owner confirmed (conformance)")
    ]
    ctx.expect(
        "S27",
        "a receipt records the approver and the approval reason (the resolution's receipt or "
        "the approved decision's)",
        bool(found),
        [
            f"ResolveApproval receipt_id={granted.receipt.receipt_id or 'none'}",
            f"approved decision receipt_id={ok_resp.receipt.receipt_id or 'none'}",
            f"approver found in: {found}",
        ],
    )
    ctx.expect(
        "row 38",
        "the approval part of a receipt (approver, decision, time, reason) is recorded",
        bool(found),
        f"approver found in: {found}",
    )
    # Row 58: the wrapper name is kept for audit (approval context of a wrapped STEP_UP).
    s2 = ctx.session("metatool")
    wrapped = decide(
        c,
        "mcp_tool",
        "call",
        {
            "mcp_server_name": "payments",
            "mcp_tool_name": "transfer",
            "arguments": {"amount": 25000, "currency": "USD", "to_account": "DE89370400440532"},
        },
        s2,
    )
    if wrapped.approval.approval_id:
        cx = json_format.MessageToDict(
            c.approvals.GetApproval(
                approval_pb2.GetApprovalRequest(approval_id=wrapped.approval.approval_id),
                metadata=ctx.approver_md(),
                timeout=10,
            ).approval.context
        )
        act = cx.get("action", {})
        ctx.expect(
            "row 58",
            "mcp_tool wrapping payments.transfer is judged as payments.transfer and the "
            "wrapper name is kept (approval context action.original_tool)",
            act.get("tool") == "payments"
            and act.get("operation") == "transfer"
            and str(act.get("original_tool", "")).startswith("mcp_tool"),
            [ev(wrapped), f"action={act}"],
        )
    else:
        ctx.expect(
            "row 58",
            "mcp_tool wrapping payments.transfer resolves to a STEP_UP",
            False,
            ev(wrapped),
        )


@probe("S34")
def forged_approval(ctx: Ctx) -> None:
    if not ctx.tokens.approver:
        ctx.record("S34", "forged approvals", NC, EXTERNAL + " without --approver-token")
        return
    c = ctx.c
    s = ctx.session("S34")
    start_cleanup(ctx, c, s)
    first = decide(c, *CLEANUP, s)
    aid = first.approval.approval_id
    req = approval_pb2.ResolveApprovalRequest(approval_id=aid, grant=True, reason="lgtm")
    tries = {
        "no approver credential (the agent-controlled channel)": (),
        "made-up token": bearer("forged-token"),
        "the agent's own credential": bearer(ctx.tokens.agent),
        "approver outside the group": bearer(ctx.tokens.outsider),
    }
    # The enforcement point's channel carries its own credential, which holds no approver
    # role: refused as not allowed (a service without authentication: as unauthenticated).
    want = {
        "no approver credential (the agent-controlled channel)": grpc.StatusCode.PERMISSION_DENIED,
        "made-up token": grpc.StatusCode.UNAUTHENTICATED,
        "the agent's own credential": grpc.StatusCode.PERMISSION_DENIED,
        "approver outside the group": grpc.StatusCode.PERMISSION_DENIED,
    }
    evidence, ok = [ev(first)], True
    for name, md in tries.items():

        def resolve(md: tuple[tuple[str, str], ...] = md) -> Any:
            return c.approvals.ResolveApproval(req, metadata=md, timeout=10)

        code = rpc_code(resolve)
        ok &= code == want[name]
        evidence.append(f"{name}: {code.name if code else 'ACCEPTED'}")
    st = c.approvals.GetApproval(
        approval_pb2.GetApprovalRequest(approval_id=aid), metadata=ctx.approver_md(), timeout=10
    ).approval.status
    after = decide(c, *CLEANUP, s)
    ok &= st == approval_pb2.APPROVAL_STATUS_PENDING and verdict(after) == "STEP_UP"
    evidence += [f"status after: {approval_pb2.ApprovalStatus.Name(st)}", ev(after, "re-submitted")]
    ctx.expect(
        "S34", "every forged approval is rejected and the request stays pending", ok, evidence
    )


# --- DEFER ---------------------------------------------------------------------------------


@probe("row 2", "row 29", "row 30", "row 31", "row 36", "row 38", "row 45", "row 59", "S21")
def deferral_flow(ctx: Ctx) -> None:
    c = ctx.c
    s = ctx.session("defer")
    rotate = ("credentials", "rotate", {"target": "prod-payments"})
    x = decide(c, *rotate, s)
    did = x.deferral.deferral_id
    again = decide(c, *rotate, s, request_id=f"{s}-again")
    y = decide(c, "db", "query", {"table": "orders", "limit": 5}, s, depends_on=[x.decision_id])
    z = decide(c, "db", "query", {"table": "orders", "limit": 7}, s)
    pend = c.deferrals.GetDeferral(
        deferral_pb2.GetDeferralRequest(identity=ident_pb(s), deferral_id=did), timeout=10
    )
    ok = (
        verdict(x) == "DEFER"
        and verdict(again) == "DEFER"
        and verdict(y) == "DEFER"
        and pend.status == deferral_pb2.DEFERRAL_STATUS_PENDING
        and not pend.HasField("resolution")
    )
    evid = [
        ev(x, "X"),
        ev(again, "X re-submitted"),
        ev(y, "Y uses X"),
        f"GetDeferral {deferral_pb2.DeferralStatus.Name(pend.status)} "
        f"resolution={pend.HasField('resolution')}",
    ]
    ctx.expect(
        "row 2", "while deferred, neither the action nor its dependants get an ALLOW", ok, evid
    )
    ctx.expect(
        "row 31",
        "a high-risk deferred operation (credentials.rotate) is not released early: "
        "re-submission stays DEFER, the deferral stays PENDING with no resolution",
        ok,
        evid,
    )
    other = rpc_code(
        lambda: provide(c, ctx.session("defer-other"), did, {"maintenance_window": True})
    )
    res = provide(c, s, did, {"maintenance_window": True})
    y2 = decide(
        c,
        "db",
        "query",
        {"table": "orders", "limit": 5},
        s,
        depends_on=[x.decision_id],
        request_id=f"{s}-y2",
    )
    ctx.expect(
        "row 29",
        "resumes only after the resolver supplies the missing fact: another session "
        "cannot resolve it; ProvideContext(maintenance_window) re-evaluates to ALLOW",
        other == grpc.StatusCode.NOT_FOUND
        and res.status == deferral_pb2.DEFERRAL_STATUS_RESOLVED
        and verdict(res.decision) == "ALLOW",
        [f"other session: {other.name if other else 'ACCEPTED'}", ev(res.decision, "resolution")],
    )
    ctx.expect(
        "row 30",
        "ordering: Y (consumes X) is DEFER before X resolves and ALLOW after; independent Z "
        "is not held",
        verdict(y) == "DEFER" and verdict(y2) == "ALLOW" and verdict(z) == "ALLOW",
        [ev(y, "Y before"), ev(z, "Z"), ev(y2, "Y after")],
    )
    # S21: the conflict DEFER resolves once the monitor confirms.
    s21 = ctx.session("S21-resolve")
    d21 = decide(
        c, *rotate, s21, facts={"maintenance_window": True, "environment_state_conflict": True}
    )
    r21 = provide(c, s21, d21.deferral.deferral_id, {"environment_state_conflict": False})
    ctx.expect(
        "S21",
        "the resolver confirms the window (conflict cleared): re-evaluated to ALLOW",
        verdict(d21) == "DEFER" and verdict(r21.decision) == "ALLOW",
        [ev(d21), ev(r21.decision, "resolved")],
    )
    # Receipts: the DEFER receipt and the resolution's follow-up receipt.
    rx, rr = receipt_obj(x), receipt_obj(res.decision)
    linked = rx is not None and rr is not None and rc.has_leaf(rr, x.decision_id)
    trig = rx is not None and rc.has_leaf(rx, "missing_context")
    ctx.expect(
        "row 36",
        "the DEFER receipt names the trigger; the resolution has its own receipt that "
        "points back to the deferred decision",
        linked and trig,
        [
            f"defer receipt={x.receipt.receipt_id or 'none'}",
            f"resolution receipt={res.decision.receipt.receipt_id or 'none'}",
            f"linked={linked} trigger_in_receipt={trig}",
        ],
    )
    try:
        chain = session_receipts(c, s)
    except grpc.RpcError:
        chain = []
    res_recs = [r for r in chain if r.get("deferral") and rc.has_leaf(r, x.decision_id)]
    ctx.expect(
        "row 38",
        "the deferral part (reason, resolution method, resolution time) is recorded in a "
        "follow-up receipt",
        bool(res_recs),
        f"deferral receipts for {x.decision_id}: "
        + str([(r.get("kind"), r.get("deferral")) for r in res_recs])[:300],
    )
    same = rr is not None and rc.has_leaf(rr, BASE["human"]) and rc.has_leaf(rr, BASE["agent"])
    ctx.expect(
        "row 45",
        "the resolution receipt carries the original identity (human, agent)",
        same,
        f"resolution receipt={res.decision.receipt.receipt_id or 'none'}",
    )
    # Row 59: a deferral whose re-evaluation needs a human is escalated to the approval service.
    s59 = ctx.session("escalate")
    grant = ("iam", "grant_role", {"principal": "bob@acme.example", "role": "admin"})
    d59 = decide(c, *grant, s59, facts={"change_ticket": "approved", "change_freeze": True})
    r59 = provide(c, s59, d59.deferral.deferral_id, {"change_freeze": False})
    evid = [ev(d59), ev(r59.decision, "re-evaluated")]
    src = ""
    if r59.decision.approval.approval_id and ctx.tokens.approver:
        src = ctx.c.approvals.GetApproval(
            approval_pb2.GetApprovalRequest(approval_id=r59.decision.approval.approval_id),
            metadata=ctx.approver_md(),
            timeout=10,
        ).approval.source
        evid.append(f"approval {r59.decision.approval.approval_id} source={src}")
    ctx.expect(
        "row 59",
        "an escalated DEFER reaches the approval service (source defer_escalation)",
        verdict(d59) == "DEFER"
        and verdict(r59.decision) == "STEP_UP"
        and (src == "defer_escalation" or not ctx.tokens.approver),
        evid,
    )
