"""R2 session context: prior actions, classifications, the original request, the
approval payload, and the hash-chained context log (rows 6-11, 28, 38, 59; S37)."""

from __future__ import annotations

import json

import grpc
from aarm.v1 import approval_pb2, session_pb2
from google.protobuf import json_format

from conformance import receipts as rc
from conformance.checks.base import (
    BASE,
    EXTERNAL,
    NC,
    Ctx,
    D,
    F,
    decide,
    ev,
    ident_pb,
    is_hex64,
    outcome,
    probe,
    scen_ok,
    scen_step,
    session_receipts,
    verdict,
)
from tests.support import scenarios

# --- session context ---------------------------------------------------------------------


@probe("row 6", "row 7", "row 8", "row 9", "row 11", "row 28", "row 38", "row 59")
def session_context(ctx: Ctx) -> None:
    s = ctx.session("context")
    text = "pay the Q3 supplier invoice after checking the customer list"
    started = ctx.c.sessions.StartSession(
        session_pb2.StartSessionRequest(
            identity=ident_pb(s), original_request=text, intent_class="accounts_payable"
        ),
        timeout=10,
    )
    r1 = decide(ctx.c, "db", "query", {"table": "customers", "limit": 10}, s)
    o1 = outcome(ctx, s, r1.decision_id, "alice@acme.example", "CONFIDENTIAL", ["PII"])
    r2 = decide(ctx.c, "file", "read", {"path": "/shared/notes.txt"}, s)
    o2 = outcome(ctx, s, r2.decision_id, "notes", None)  # no classification at all
    r3 = decide(
        ctx.c,
        "payments",
        "transfer",
        {"amount": 25000, "currency": "USD", "to_account": "DE89370400440532"},
        s,
    )
    ended_hash = ""
    ctx.expect(
        "row 8",
        "an outcome reported without any classification raises the session to RESTRICTED",
        o2.highest_classification == session_pb2.CLASSIFICATION_RESTRICTED,
        f"after an unlabelled read: {session_pb2.Classification.Name(o2.highest_classification)}",
    )
    ok, e = scen_ok(ctx, "S36")
    ctx.expect("row 8", "an unlabelled read then an external send is DENY (S36)", ok, e)
    try:
        chain = session_receipts(ctx.c, s)
    except grpc.RpcError as exc:
        chain = []
        ctx.record("row 38", "outcome receipt", F, f"ListReceipts: {exc.code().name}")
    outs = [r for r in chain if r.get("outcome") and rc.has_leaf(r, r1.decision_id)]
    ctx.expect(
        "row 38",
        "RecordOutcome adds an outcome receipt (result, times, output digest) for the decision",
        bool(outs)
        and bool(
            rc.find_values(outs[0], "output_digest")
            or rc.find_values(outs[0], "output_sha256")
            or rc.find_values(outs[0], "output_hash")
        ),
        f"outcome receipts for {r1.decision_id}: "
        + str([(r.get("receipt_id"), sorted((r.get("outcome") or {}).keys())) for r in outs]),
    )
    heads = [started.context_hash, o1.context_hash, o2.context_hash]
    chained = all(is_hex64(h) for h in heads) and len(set(heads)) == 3
    ctx.expect(
        "row 11",
        "the context log head (sha256) advances with every append (StartSession, RecordOutcome)",
        chained,
        [f"heads {[h[:12] for h in heads]}"],
    )
    ctx.expect(
        "row 7",
        "a PII/CONFIDENTIAL read is tracked: RecordOutcome reports the session at CONFIDENTIAL",
        o1.highest_classification == session_pb2.CLASSIFICATION_CONFIDENTIAL,
        session_pb2.Classification.Name(o1.highest_classification),
    )
    ok, e = scen_ok(ctx, "S11")
    ctx.expect(
        "row 7",
        "a later external send sees the PII read (S11 DENY exfiltration_risk)",
        ok and "exfiltration_risk" in (scen_step(ctx, "S11", 2).codes if ok else []),
        e,
    )
    if verdict(r3) != "STEP_UP" or not ctx.tokens.approver:
        why = EXTERNAL + " without --approver-token" if not ctx.tokens.approver else ev(r3)
        for item in ("row 6", "row 9", "row 28"):
            ctx.record(
                item, "approval context holds the session (needs an approver credential)", NC, why
            )
        return
    got = ctx.c.approvals.GetApproval(
        approval_pb2.GetApprovalRequest(approval_id=r3.approval.approval_id),
        metadata=ctx.approver_md(),
        timeout=10,
    ).approval
    cx = json_format.MessageToDict(got.context)
    prior = [p.get("decision_id") for p in cx.get("prior_actions", [])]
    ctx.expect(
        "row 6",
        "at step 3 the evaluation context holds steps 1..2 (approval context prior_actions)",
        prior[-2:] == [r1.decision_id, r2.decision_id],
        [ev(r3), f"prior_actions {prior}"],
    )
    ok, e = scen_ok(ctx, "S15")
    ctx.expect(
        "row 6",
        "history is counted across the session (S15: the 11th send is DENY rate_limited)",
        ok,
        e[-1:],
    )
    orig = cx.get("original_request") or {}
    ctx.expect(
        "row 9",
        "the original request and intent class reach policy evaluation (approval context)",
        orig.get("text") == text and orig.get("intent_class") == "accounts_payable",
        f"original_request={orig}",
    )
    want_keys = {
        "original_request",
        "action",
        "prior_actions",
        "highest_classification",
        "labels",
        "identity",
        "reasons",
        "matched_rules",
        "policy",
        "risk",
        "drift",
        "source",
    }
    missing = sorted(want_keys - set(cx))
    ok = (
        not missing
        and cx["action"].get("tool") == "payments"
        and cx["identity"].get("human") == BASE["human"]
        and "PII" in cx.get("labels", [])
        and cx.get("highest_classification") == "RESTRICTED"
        and cx["policy"].get("hash") == r3.policy.hash
        and cx.get("source") == "step_up"
    )
    ctx.expect(
        "row 28",
        "the approval payload holds request, action, history, classifications and labels, "
        "drift, identity chain, policy version and reasons, risk, and source",
        ok,
        [
            f"approval_id={got.approval_id}",
            f"context keys {sorted(cx)}",
            f"missing {missing}" if missing else "",
            f"labels={cx.get('labels')} highest={cx.get('highest_classification')}",
        ],
    )
    ctx.expect(
        "row 59",
        "the approval exposes the risk level",
        got.risk_level != D.RISK_LEVEL_UNSPECIFIED and got.risk_level == r3.risk.level,
        f"risk_level={D.RiskLevel.Name(got.risk_level)}",
    )
    del ended_hash


# --- tamper (context log) ---------------------------------------------------------------------


@probe("row 11", "S37")
def context_log_tamper(ctx: Ctx) -> None:
    if ctx.short is None or ctx.redis is None:
        for item in ("row 11", "S37"):
            ctx.record(
                item,
                "change context log entry k: verification fails from k",
                NC,
                EXTERNAL + " (the log lives in the service's store)",
            )
        return
    import redis as redis_lib
    from aarm_pdp.session import state as st
    from aarm_pdp.session.store import session_key

    doc = ctx.docs["S16"]
    sid = ctx.session("log-check")
    res = scenarios.run_blocking(doc, ctx.short.decide, ctx.short.sessions, sid, prefix=sid)
    key = session_key("acme", sid)
    r = redis_lib.Redis.from_url(ctx.redis.url)
    try:
        entries = [json.loads(e) for e in r.lrange(f"aarm:l:{key}", 0, -1)]
        intact = st.verify_chain(entries)
        k = 3
        entries_t = json.loads(json.dumps(entries))
        entries_t[k]["at_ns"] += 1
        r.lset(f"aarm:l:{key}", k, json.dumps(entries_t[k]))
        tampered = [json.loads(e) for e in r.lrange(f"aarm:l:{key}", 0, -1)]
        found = st.verify_chain(tampered)
    finally:
        r.close()
    ok = res.ok and len(entries) >= 6 and intact is None and found == k
    evid = [
        f"S16 replayed in a Redis-backed instance: {len(entries)} log entries, "
        f"intact verify -> {intact}",
        f"entry {k} changed by 1 ns -> first bad entry {found}",
    ]
    ctx.expect(
        "row 11",
        "the context log is a hash chain: changing entry k fails verification at k",
        ok,
        evid,
    )
    ctx.expect("S37", "changing context log entry k is detected at k", ok, evid)
