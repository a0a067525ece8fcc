"""The checks. Each probe drives one flow over gRPC and records checks on the items
(rows and scenarios) it gives evidence for. A probe that raises records a failure on
every item it covers, so a crash can never read as a pass."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import rfc8785
from aarm.v1 import (
    approval_pb2,
    decision_pb2,
    deferral_pb2,
    receipt_pb2,
    session_pb2,
)
from google.protobuf import json_format

from conformance import receipts as rc
from conformance import scenarios
from conformance.harness import ROOT, Clients, Redis, Service, Tokens, scrape
from conformance.model import Item, Result

D = decision_pb2
P, F, NI, NC, NA = (
    Result.PASS,
    Result.FAIL,
    Result.NOT_IMPLEMENTED,
    Result.NOT_CHECKABLE,
    Result.NOT_APPLICABLE,
)
EXTERNAL = "not checkable against an external target"


@dataclass
class Ctx:
    """Everything a probe needs."""

    c: Clients
    items: dict[str, Item]
    tokens: Tokens
    run: str
    managed: Service | None = None
    metrics_url: str | None = None
    short: Clients | None = None
    short_service: Service | None = None
    redis: Redis | None = None
    broken: Clients | None = None
    scen: dict[str, scenarios.ScenarioResult] = field(default_factory=dict)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    jwks: dict[str, Any] | None = None
    jwks_error: str = ""

    def record(
        self, item: str, description: str, result: Result, evidence: list[str] | str = ""
    ) -> None:
        ev = [evidence] if isinstance(evidence, str) else evidence
        from conformance.model import Check

        self.items[item].checks.append(Check(description, result, [e for e in ev if e]))

    def expect(self, item: str, description: str, ok: bool, evidence: list[str] | str = "") -> bool:
        self.record(item, description, P if ok else F, evidence)
        return ok

    def session(self, name: str) -> str:
        return f"cf-{self.run}-{name}"

    def approver_md(self) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self.tokens.approver}"),)


# --- request helpers -------------------------------------------------------------------

BASE = scenarios.BASE_IDENTITY


def ident(session: str, **over: Any) -> dict[str, Any]:
    return {**BASE, "session_id": session, **over}


def request(
    tool: str,
    op: str,
    params: dict[str, Any] | None,
    session: str,
    *,
    identity: dict[str, Any] | None = None,
    facts: dict[str, Any] | None = None,
    risk: dict[str, float] | None = None,
    depends_on: list[str] | None = None,
    token: str = "",
    request_id: str = "",
) -> Any:
    body: dict[str, Any] = {
        "requestId": request_id,
        "identity": identity if identity is not None else ident(session),
        "action": {
            "tool": tool,
            "operation": op,
            "parameters": params or {},
            "dependsOn": depends_on or [],
        },
        "facts": [
            {"name": k, "value": v, "source": "conformance"}
            for k, v in sorted((facts or {}).items())
        ],
        "riskSignals": risk or {},
        "approvalToken": token,
    }
    return json_format.ParseDict(body, D.DecideRequest())


def decide(c: Clients, *args: Any, **kw: Any) -> Any:
    return c.decide.Decide(request(*args, **kw), timeout=10)


def verdict(resp: Any) -> str:
    return str(D.Decision.Name(resp.decision).removeprefix("DECISION_"))


def codes(resp: Any) -> list[str]:
    return [r.code for r in resp.reasons]


def ev(resp: Any, label: str = "") -> str:
    trig = f" trigger={resp.deferral.trigger}" if resp.deferral.trigger else ""
    pre = f"{label}: " if label else ""
    return f"{pre}{verdict(resp)} {codes(resp)}{trig} decision_id={resp.decision_id}"


def ident_pb(session: str, **over: Any) -> Any:
    return json_format.ParseDict(ident(session, **over), D.Identity())


def rpc_code(fn: Callable[[], Any]) -> grpc.StatusCode | None:
    try:
        fn()
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return None


def receipt_obj(resp: Any) -> dict[str, Any] | None:
    return rc.parse(resp.receipt.payload) if resp.HasField("receipt") else None


# --- the probe registry ------------------------------------------------------------------

Probe = Callable[[Ctx], None]
PROBES: list[tuple[str, tuple[str, ...], Probe]] = []


def probe(*covers: str) -> Callable[[Probe], Probe]:
    def register(fn: Probe) -> Probe:
        PROBES.append((fn.__name__, covers, fn))
        return fn

    return register


def run_probes(ctx: Ctx, log: Callable[[str], None]) -> None:
    for name, covers, fn in PROBES:
        started = time.monotonic()
        try:
            fn(ctx)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError):
                detail = f"gRPC {exc.code().name}: {exc.details()}"
            else:
                detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            frames = [
                f for f in traceback.extract_tb(exc.__traceback__) if "conformance" in f.filename
            ]
            where = frames[-1] if frames else traceback.extract_tb(exc.__traceback__)[-1]
            for item in covers:
                ctx.record(
                    item,
                    f"probe {name} crashed",
                    F,
                    f"{detail} at {Path(where.filename).name}:{where.lineno}",
                )
        log(f"  {name}: {time.monotonic() - started:.1f}s")


# --- scenarios ---------------------------------------------------------------------------


@probe(*[f"S{n:02d}" for n in range(1, 38)])
def scenario_replay(ctx: Ctx) -> None:
    """Replay every scenario file that has steps; declare the gaps."""
    ctx.docs = scenarios.load_all()
    for sid, doc in sorted(ctx.docs.items()):
        if sid not in ctx.items:
            continue  # X-scenarios: project extras, not in the checklist
        if doc.get("not_implemented"):
            ctx.record(sid, f"{doc['title']} ({doc['_file']})", NI, doc["not_implemented"])
        if not doc.get("steps"):
            continue
        res = scenarios.run(doc, ctx.c, ctx.session(sid), ctx.session(sid))
        ctx.scen[sid] = res
        ctx.expect(
            sid,
            f"replay {doc['_file']}: expected {doc.get('expected', 'per-step verdicts')}",
            res.ok,
            [s.evidence() for s in res.steps],
        )


def scen_ok(ctx: Ctx, sid: str) -> tuple[bool, list[str]]:
    res = ctx.scen.get(sid)
    if res is None:
        return False, [f"{sid} did not run"]
    return res.ok, [f"{sid} {s.evidence()}" for s in res.steps]


def scen_step(ctx: Ctx, sid: str, index: int) -> Any:
    res = ctx.scen.get(sid)
    if res is None or len(res.steps) < index:
        return None
    return res.steps[index - 1]


@probe(
    "row 5",
    "row 12",
    "row 15",
    "row 13",
    "row 14",
    "row 16",
    "row 18",
    "row 20",
    "row 22",
    "row 33",
    "row 34",
    "row 35",
    "row 10",
    "row 58",
)
def rows_from_scenarios(ctx: Ctx) -> None:
    """Rows whose test is exactly a replayed scenario."""

    def from_scen(item: str, desc: str, sids: list[str]) -> None:
        oks, evidence = [], []
        for sid in sids:
            ok, e = scen_ok(ctx, sid)
            oks.append(ok)
            evidence.extend(e)
        ctx.expect(item, desc, all(oks), evidence)

    def from_step(item: str, desc: str, sid: str, index: int) -> None:
        step = scen_step(ctx, sid, index)
        ok = step is not None and step.ok
        ctx.expect(item, desc, ok, f"{sid} " + (step.evidence() if step else "no step"))

    from_scen(
        "row 5", "meta-tool (S28) and shell fallback (S29) paths get the same rules", ["S28", "S29"]
    )
    from_scen("row 13", "'CEO says drop production' session context: DENY forbidden (S26)", ["S26"])
    from_scen(
        "row 14",
        "ALLOWed read of customers, then an external send: DENY (S11, S01)",
        ["S11", "S01"],
    )
    from_step(
        "row 16",
        "conflicting facts (ticket approved, monitor frozen): DEFER conflict (S21)",
        "S21",
        1,
    )
    from_step(
        "row 18",
        "credentials.rotate without maintenance_window: DEFER missing_context, "
        "not the default posture (S35 step 1)",
        "S35",
        1,
    )
    from_step(
        "row 20",
        "intent_confidence 0.4 (threshold 0.6): DEFER low_confidence (S35 step 3)",
        "S35",
        3,
    )
    from_scen(
        "row 22",
        "intent-aware predicates: goal hijack (S19), scope creep (S17), drift (S16)",
        ["S19", "S17", "S16"],
    )
    from_step(
        "row 33",
        "an action consuming a deferred action's output: DEFER dependency (S32 step 2)",
        "S32",
        2,
    )
    from_step(
        "row 34", "an independent action in the same session: ALLOW at once (S32 step 3)", "S32", 3
    )
    from_step(
        "row 35",
        "deferral cascade deeper than the cap (3): DENY defer_depth_exceeded (S32 step 6)",
        "S32",
        6,
    )
    from_scen(
        "row 10",
        "policies decide on accumulated context.* (S11 exfiltration, S15 rate, "
        "S36 unclassified, S12 artifact taint)",
        ["S11", "S15", "S36", "S12"],
    )
    from_scen(
        "row 58", "mcp_tool wrapping db.drop_database is resolved and DENY forbidden (S28)", ["S28"]
    )
    step = scen_step(ctx, "S27", 1)
    ctx.expect(
        "row 15",
        "row delete is baseline-denied (context rule), but the original request supports it: "
        "STEP_UP context_supported, not a silent ALLOW (S27)",
        step is not None and step.ok and "context_supported" in step.codes,
        "S27 " + (step.evidence() if step else "no step"),
    )
    s15 = ctx.session("row15-control")
    control = decide(
        ctx.c, "database", "delete", {"table": "test_records", "created_by": BASE["human"]}, s15
    )
    ctx.expect(
        "row 15",
        "control: the same delete without a supporting request is DENY context_rule_denied",
        verdict(control) == "DENY" and "context_rule_denied" in codes(control),
        ev(control),
    )
    # Row 12: one fixture per class.
    classes = [
        ("forbidden", "S26", 1, "DENY"),
        ("context-dependent deny", "S11", 2, "DENY"),
        ("context-dependent allow", "S27", 1, "STEP_UP"),
        ("context-dependent defer", "S21", 1, "DEFER"),
    ]
    evidence, all_ok = [], True
    for name, sid, idx, want in classes:
        step = scen_step(ctx, sid, idx)
        ok = step is not None and step.ok and step.got == want
        all_ok &= ok
        evidence.append(f"{name}: {sid} " + (step.evidence() if step else "missing"))
    ctx.expect("row 12", "forbidden / ctx-deny / ctx-allow / ctx-defer fixtures", all_ok, evidence)


# --- verdicts, parameters, posture, determinism ------------------------------------------

VERDICT_CASES: list[tuple[str, str, str, dict[str, Any], str]] = [
    ("ALLOW", "db", "query", {"table": "customers", "limit": 10}, "catalogued"),
    ("DENY", "database", "drop", {"database": "production"}, "forbidden"),
    (
        "MODIFY",
        "db",
        "query",
        {"table": "customers", "limit": 5000, "columns": ["id"]},
        "parameter_modified",
    ),
    (
        "STEP_UP",
        "payments",
        "transfer",
        {"amount": 25000, "currency": "USD", "to_account": "DE89370400440532"},
        "high_impact",
    ),
    ("DEFER", "credentials", "rotate", {"target": "prod-payments"}, "missing_context"),
]


@probe("row 1", "row 23", "row 24", "row 17", "row 19", "row 55", "row 56", "row 60", "row 21")
def verdicts(ctx: Ctx) -> None:
    got: dict[str, Any] = {}
    evidence = []
    for want, tool, op, params, code in VERDICT_CASES:
        sess = ctx.session(f"verdict-{want.lower()}")
        resp = decide(ctx.c, tool, op, params, sess)
        got[want] = resp
        evidence.append(ev(resp, f"{tool}.{op}"))
        ok = verdict(resp) == want and code in codes(resp)
        ok &= bool(resp.decision_id) and all(r.rule_id and r.code for r in resp.reasons)
        ok &= bool(resp.policy.revision) and len(resp.policy.hash) == 64
    ok_all = all(verdict(got[w]) == w for w in got)
    ctx.expect(
        "row 23",
        "one request per verdict yields exactly that one verdict, with reasons and policy version",
        ok_all,
        evidence,
    )
    allow, deny, modify = got["ALLOW"], got["DENY"], got["MODIFY"]
    step_up, defer = got["STEP_UP"], got["DEFER"]
    mod = json_format.MessageToDict(modify.modified_parameters)
    ok = (
        not allow.HasField("modified_parameters")
        and mod == {"table": "customers", "limit": 1000, "columns": ["id"]}
        and not deny.HasField("modified_parameters")
        and not deny.approval.approval_id
        and bool(step_up.approval.approval_id)
        and list(step_up.approval.approvers) == ["finance-approvers"]
        and bool(defer.deferral.deferral_id)
    )
    ctx.expect(
        "row 24",
        "ALLOW carries no modification; MODIFY returns the whole parameter object with "
        "only the cap applied (limit 5000 -> 1000); DENY carries no approval or modification",
        ok,
        [ev(allow), ev(modify, f"modified={mod}"), ev(deny)],
    )
    ctx.expect(
        "row 1",
        "a matching forbidden rule gives DENY (block) and a missing-context rule DEFER "
        "(suspend), before execution; no ALLOW issued",
        verdict(deny) == "DENY" and verdict(defer) == "DEFER",
        [ev(deny), ev(defer)],
    )
    ctx.expect(
        "row 60",
        "Decide is a synchronous unary call that returns the verdict before the enforcement "
        "point runs anything (the verdicts above); fail-closed DENY is checked in row 3",
        ok_all,
        [ev(allow), ev(deny)],
    )
    # Row 21: triggers documented and carried in the response (receipt part: receipt probe).
    readme = ROOT / "docs" / "policies" / "README.md"
    doc_ok = (
        readme.is_file()
        and all(
            f"`{t}`" in readme.read_text()
            for t in ("dependency", "conflict", "missing_context", "low_confidence")
        )
        and "DEFER triggers" in readme.read_text()
    )
    ctx.expect(
        "row 21",
        "the docs list the DEFER triggers (docs/policies/README.md 'DEFER triggers')",
        doc_ok,
        "docs/policies/README.md" if doc_ok else "trigger table missing",
    )
    ctx.expect(
        "row 21",
        "the DEFER verdict names its trigger and the context needed",
        bool(defer.deferral.trigger)
        and list(defer.deferral.context_needed) == ["maintenance_window"],
        ev(defer),
    )

    # Row 17: parameter validation.
    sess = ctx.session("params")
    pay = {"currency": "USD", "to_account": "DE89370400440532"}
    cases: list[tuple[str, str, str, dict[str, Any], str]] = [
        ("wrong type", "payments", "transfer", {**pay, "amount": "lots"}, "parameter_invalid"),
        ("out of range", "payments", "transfer", {**pay, "amount": -5}, "parameter_invalid"),
        (
            "pattern miss",
            "payments",
            "transfer",
            {**pay, "amount": 5, "to_account": "de89 bad!"},
            "parameter_invalid",
        ),
        (
            "enum miss",
            "payments",
            "transfer",
            {**pay, "amount": 5, "currency": "XXX"},
            "parameter_invalid",
        ),
        (
            "blocklisted domain",
            "email",
            "send",
            {"to": ["x@evil.com"], "body": "hi"},
            "parameter_blocked",
        ),
        (
            "off the allowlist",
            "http",
            "post",
            {"url": "https://unknown-host.example/x", "body": "x"},
            "parameter_blocked",
        ),
    ]
    evidence, all_ok = [], True
    for name, tool, op, params, code in cases:
        resp = decide(ctx.c, tool, op, params, sess)
        ok = verdict(resp) == "DENY" and code in codes(resp)
        all_ok &= ok
        evidence.append(ev(resp, name))
    evidence.append(ev(modify, "range cap"))
    ctx.expect(
        "row 17",
        "type, range, pattern, enum, block list and allow list violations give DENY; "
        "an over-cap limit gives MODIFY",
        all_ok and verdict(modify) == "MODIFY",
        evidence,
    )

    # Row 19: two same-priority context rules (ALLOW change_ticket approved, DENY change_freeze).
    resp = decide(
        ctx.c,
        "credentials",
        "rotate",
        {"target": "prod-payments"},
        ctx.session("conflict"),
        facts={"maintenance_window": True, "change_ticket": "approved", "change_freeze": True},
    )
    ctx.expect(
        "row 19",
        "same-priority ALLOW (change ticket approved) and DENY (change freeze) rules: "
        "DEFER conflict",
        verdict(resp) == "DEFER"
        and resp.deferral.trigger == "conflict"
        and set(resp.deferral.context_needed) >= {"change_ticket", "change_freeze"},
        ev(resp),
    )

    # Row 56: default posture documented and observed.
    resp = decide(ctx.c, "teleport", "engage", {}, ctx.session("posture"))
    doc = ROOT / "docs" / "policies" / "README.md"
    documented = (
        doc.is_file()
        and "## Default posture" in doc.read_text()
        and "Unknown tools are denied" in doc.read_text()
    )
    ctx.expect(
        "row 56",
        "default posture documented (docs/policies/README.md 'Default posture': DENY)",
        documented,
        "docs/policies/README.md" if documented else "not found",
    )
    ctx.expect(
        "row 56",
        "an unknown tool gets the documented posture",
        verdict(resp) == "DENY" and codes(resp)[:1] == ["default_posture"],
        ev(resp),
    )

    # Row 55: determinism - the same history in two fresh sessions, compared field by field.
    def trace(name: str) -> list[tuple[Any, ...]]:
        s = ctx.session(name)
        out = []
        for tool, op, params in (
            ("db", "query", {"table": "customers", "limit": 10}),
            ("email", "send", {"to": ["analyst@partner.example"], "body": "r"}),
            (
                "payments",
                "transfer",
                {"amount": 25000, "currency": "USD", "to_account": "DE89370400440532"},
            ),
        ):
            r = decide(ctx.c, tool, op, params, s)
            out.append(
                (
                    r.decision,
                    tuple(codes(r)),
                    tuple(r.matched_rules),
                    r.risk.level,
                    round(r.risk.score, 9),
                    r.policy.hash,
                )
            )
        return out

    a, b = trace("determinism-a"), trace("determinism-b")
    ctx.expect(
        "row 55",
        "same action, same accumulated context, same policy in two sessions: identical "
        "verdicts, reasons, matched rules and risk",
        a == b,
        [
            f"run A {[(D.Decision.Name(x[0]), list(x[1])) for x in a]}",
            "run B identical" if a == b else f"run B {b}",
        ],
    )
    rid = f"cf-{ctx.run}-idem"
    r1 = decide(
        ctx.c, "db", "query", {"table": "orders", "limit": 3}, ctx.session("idem"), request_id=rid
    )
    r2 = decide(
        ctx.c, "db", "query", {"table": "orders", "limit": 3}, ctx.session("idem"), request_id=rid
    )
    ctx.expect(
        "row 55",
        "an idempotent retry (same request_id) returns the same decision",
        r1.decision_id == r2.decision_id and r1.decision == r2.decision,
        [ev(r1), ev(r2)],
    )


# --- session context ---------------------------------------------------------------------

HEX64 = set("0123456789abcdef")


def is_hex64(s: str) -> bool:
    return len(s) == 64 and set(s) <= HEX64


def outcome(
    ctx: Ctx,
    session: str,
    decision_id: str,
    text: str,
    cls: str | None,
    labels: list[str] | None = None,
) -> Any:
    req = session_pb2.RecordOutcomeRequest(
        identity=ident_pb(session),
        decision_id=decision_id,
        status=session_pb2.OUTCOME_STATUS_EXECUTED,
        output_text=text,
        labels=labels or [],
    )
    if cls:
        req.classification = scenarios.enum_value(
            session_pb2.Classification, f"CLASSIFICATION_{cls}"
        )
    return ctx.c.sessions.RecordOutcome(req, timeout=10)


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


# --- STEP_UP approvals --------------------------------------------------------------------

CLEANUP = ("database", "delete", {"table": "test_records", "created_by": BASE["human"]})


def start_cleanup(ctx: Ctx, c: Clients, s: str, **over: Any) -> None:
    c.sessions.StartSession(
        session_pb2.StartSessionRequest(
            identity=ident_pb(s, **over),
            original_request="clean up the test data I created yesterday",
            intent_class="data_cleanup",
        ),
        timeout=10,
    )


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
            metadata=(("authorization", f"Bearer {ctx.tokens.outsider}"),),
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
        "no credential (agent-controlled channel)": (),
        "made-up token": (("authorization", "Bearer forged-token"),),
        "the agent's own credential": (("authorization", f"Bearer {ctx.tokens.agent}"),),
        "approver outside the group": (("authorization", f"Bearer {ctx.tokens.outsider}"),),
    }
    want = {
        "no credential (agent-controlled channel)": grpc.StatusCode.UNAUTHENTICATED,
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


def provide(c: Clients, session: str, deferral_id: str, facts: dict[str, Any], **over: Any) -> Any:
    return c.deferrals.ProvideContext(
        deferral_pb2.ProvideContextRequest(
            identity=ident_pb(session, **over),
            deferral_id=deferral_id,
            facts=[
                json_format.ParseDict(
                    {"name": k, "value": v, "source": "conformance-resolver"}, D.Fact()
                )
                for k, v in facts.items()
            ],
        ),
        timeout=10,
    )


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


# --- identity -------------------------------------------------------------------------------


@probe("row 46", "row 47", "S30")
def identity_checks(ctx: Ctx) -> None:
    c = ctx.c
    q = ("db", "query", {"table": "orders", "limit": 10})
    s = ctx.session("identity")
    cases = {
        "no human, no service": ident(s, human="", service=""),
        "no agent": ident(s, agent=""),
        "no session id": ident("", session_id=""),
        "no identity at all": {},
    }
    evid, ok = [], True
    for name, idn in cases.items():
        r = decide(c, *q, s, identity=idn)
        ok &= verdict(r) == "DENY" and codes(r)[:1] == ["identity_missing"]
        evid.append(ev(r, name))
    ctx.expect(
        "row 47",
        "actions without human/service principal, agent or session are DENY identity_missing",
        ok,
        evid,
    )
    expired = decide(c, *q, s, identity=ident(s, expires_at="2020-01-01T00:00:00Z"))
    ok_exp = verdict(expired) == "DENY" and codes(expired)[:1] == ["identity_expired"]
    if not ctx.tokens.approver:
        ctx.expect("row 46", "an expired credential is DENY identity_expired", ok_exp, ev(expired))
        ctx.record("row 46", "revocation", NC, EXTERNAL + " without --approver-token")
        ctx.record("S30", "revocation", NC, EXTERNAL + " without --approver-token")
        return
    agent = f"agent-revoke-{ctx.run}"
    cred = f"cred-{ctx.run}"
    before = decide(c, *q, s, identity=ident(s, agent=agent))
    refused = rpc_code(
        lambda: c.approvals.RevokeIdentity(
            approval_pb2.RevokeIdentityRequest(tenant="acme", subject=agent, reason="x"),
            metadata=(("authorization", f"Bearer {ctx.tokens.outsider}"),),
            timeout=10,
        )
    )
    c.approvals.RevokeIdentity(
        approval_pb2.RevokeIdentityRequest(
            tenant="acme", subject=agent, reason="conformance: leaked"
        ),
        metadata=ctx.approver_md(),
        timeout=10,
    )
    c.approvals.RevokeIdentity(
        approval_pb2.RevokeIdentityRequest(
            tenant="acme", subject=cred, reason="conformance: leaked"
        ),
        metadata=ctx.approver_md(),
        timeout=10,
    )
    after = decide(c, *q, s, identity=ident(s, agent=agent))
    by_cred = decide(c, *q, s, identity=ident(s, credential_id=cred))
    ok_rev = (
        verdict(before) == "ALLOW"
        and refused == grpc.StatusCode.PERMISSION_DENIED
        and codes(after)[:1] == ["identity_revoked"]
        and codes(by_cred)[:1] == ["identity_revoked"]
    )
    evid = [
        ev(expired, "expired credential"),
        ev(before, "before revocation"),
        f"revocation by a non-admin: {refused.name if refused else 'ACCEPTED'}",
        ev(after, "revoked agent"),
        ev(by_cred, "revoked credential id"),
    ]
    ctx.expect(
        "row 46",
        "expired credential and revoked agent / credential id are DENY",
        ok_exp and ok_rev,
        evid,
    )
    ctx.expect(
        "S30", "revoked agent and revoked credential id are DENY identity_revoked", ok_rev, evid[1:]
    )


# --- timeouts -------------------------------------------------------------------------------

SHORT_TIMEOUT = 2


def session_receipts(c: Clients, session: str) -> list[dict[str, Any]]:
    resp = c.receipts.ListReceipts(
        receipt_pb2.ListReceiptsRequest(tenant="acme", session_id=session), timeout=10
    )
    return [r for r in (rc.parse(x.payload) for x in resp.receipts) if r is not None]


@probe("row 27", "row 32", "row 59", "S33", "S21")
def timeouts(ctx: Ctx) -> None:
    c = ctx.c
    # Configured and finite on the deployment under test.
    s = ctx.session("timeout-config")
    pay = decide(
        c,
        "payments",
        "transfer",
        {"amount": 25000, "currency": "USD", "to_account": "DE89370400440532"},
        s,
    )
    rot = decide(c, "credentials", "rotate", {"target": "prod-payments"}, s)
    ctx.expect(
        "row 27",
        "every STEP_UP carries a finite approval timeout (policy configuration)",
        0 < pay.approval.timeout_seconds <= 86400,
        ev(pay) + f" timeout={pay.approval.timeout_seconds}s",
    )
    ctx.expect(
        "row 32",
        "every DEFER carries a finite deferral timeout (policy configuration)",
        0 < rot.deferral.timeout_seconds <= 86400,
        ev(rot) + f" timeout={rot.deferral.timeout_seconds}s",
    )
    # Re-validation: approved while the identity was valid, re-submitted after it expired.
    if ctx.tokens.approver:
        s33 = ctx.session("S33-expired")
        soon = int(time.time()) + 2
        stamp = datetime.fromtimestamp(soon, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        start_cleanup(ctx, c, s33, expires_at=stamp)
        first = decide(c, *CLEANUP, s33, identity=ident(s33, expires_at=stamp))
        granted = c.approvals.ResolveApproval(
            approval_pb2.ResolveApprovalRequest(
                approval_id=first.approval.approval_id, grant=True, reason="ok"
            ),
            metadata=ctx.approver_md(),
            timeout=10,
        )
        time.sleep(max(0.0, soon - time.time()) + 0.3)
        late = decide(
            c, *CLEANUP, s33, identity=ident(s33, expires_at=stamp), token=granted.approval_token
        )
        ok = (
            verdict(first) == "STEP_UP"
            and verdict(late) == "DENY"
            and codes(late)[:1] == ["identity_expired"]
        )
        evid = [ev(first), "granted token while valid", ev(late, "re-submitted after expiry")]
        ctx.expect(
            "S33",
            "approved, then the identity expired: re-validated at re-submission, DENY",
            ok,
            evid,
        )
        ctx.expect("row 59", "identity re-validated before executing an approved action", ok, evid)
    else:
        ctx.record("S33", "approval after token expiry", NC, EXTERNAL + " without --approver-token")
    if ctx.short is None:
        for item in ("row 27", "row 32", "S33", "S21"):
            ctx.record(
                item,
                "a timeout actually elapses and ends in DENY",
                NC,
                EXTERNAL + ": the reference timeouts are 300-3600 s; the managed run shortens them",
            )
        return
    sc = ctx.short
    sa, sd = ctx.session("short-approval"), ctx.session("short-defer")
    start_cleanup(ctx, sc, sa)
    step_up = decide(sc, *CLEANUP, sa)
    deferred = decide(
        sc,
        "credentials",
        "rotate",
        {"target": "prod-payments"},
        sd,
        facts={"maintenance_window": True, "environment_state_conflict": True},
    )
    time.sleep(SHORT_TIMEOUT + 1.2)
    md = ctx.approver_md()
    st = sc.approvals.GetApproval(
        approval_pb2.GetApprovalRequest(approval_id=step_up.approval.approval_id),
        metadata=md,
        timeout=10,
    ).approval.status
    late = rpc_code(
        lambda: sc.approvals.ResolveApproval(
            approval_pb2.ResolveApprovalRequest(
                approval_id=step_up.approval.approval_id, grant=True, reason="late"
            ),
            metadata=md,
            timeout=10,
        )
    )
    resub = decide(sc, *CLEANUP, sa, request_id=f"{sa}-after")
    ok27 = (
        step_up.approval.timeout_seconds == SHORT_TIMEOUT
        and st == approval_pb2.APPROVAL_STATUS_EXPIRED
        and late == grpc.StatusCode.FAILED_PRECONDITION
        and verdict(resub) != "ALLOW"
    )
    evid27 = [
        ev(step_up),
        f"after {SHORT_TIMEOUT}s: {approval_pb2.ApprovalStatus.Name(st)}",
        f"late grant: {late.name if late else 'ACCEPTED'}",
        ev(resub, "re-submitted"),
    ]
    ctx.expect(
        "row 27",
        f"configured to {SHORT_TIMEOUT}s: no answer, the approval EXPIRES (DENY); a late "
        "grant is refused",
        ok27,
        evid27,
    )
    ctx.expect("S33", "STEP_UP with no answer: DENY at timeout", ok27, evid27)
    gd = sc.deferrals.GetDeferral(
        deferral_pb2.GetDeferralRequest(
            identity=ident_pb(sd), deferral_id=deferred.deferral.deferral_id
        ),
        timeout=10,
    )
    dep = decide(
        sc, "db", "query", {"table": "orders", "limit": 5}, sd, depends_on=[deferred.decision_id]
    )
    late_code: grpc.StatusCode | None = None
    try:
        late_ctx = provide(
            sc, sd, deferred.deferral.deferral_id, {"environment_state_conflict": False}
        )
        late_text = ev(late_ctx.decision, "late context")
        late_ok = verdict(late_ctx.decision) != "ALLOW"
    except grpc.RpcError as exc:
        late_code = exc.code()
        late_text = f"late context refused: {late_code.name}"
        late_ok = late_code == grpc.StatusCode.FAILED_PRECONDITION
    ok32 = (
        gd.status == deferral_pb2.DEFERRAL_STATUS_EXPIRED
        and verdict(dep) == "DENY"
        and "dependency_denied" in codes(dep)
        and late_ok
    )
    evid32 = [
        ev(deferred),
        f"after {SHORT_TIMEOUT}s: {deferral_pb2.DeferralStatus.Name(gd.status)}",
        ev(dep, "dependant"),
        late_text,
    ]
    ctx.expect(
        "row 32",
        f"configured to {SHORT_TIMEOUT}s: no resolution, the deferral EXPIRES as DENY; "
        "dependants DENY; late context cannot revive it",
        ok32,
        evid32,
    )
    ctx.expect("S21", "no resolution: DENY at timeout", ok32, evid32)
    # The timeout's receipt.
    try:
        recs = session_receipts(sc, sa)
        kinds = [r.get("kind") for r in recs]
        ok = sum(rc.has_leaf(r, step_up.decision_id) for r in recs) >= 2
        ctx.expect(
            "row 27",
            "the timeout produces a receipt (ListReceipts for the session)",
            ok,
            f"receipt kinds {kinds}",
        )
    except grpc.RpcError as exc:
        ctx.expect(
            "row 27",
            "the timeout produces a receipt (ListReceipts for the session)",
            False,
            f"ListReceipts: {exc.code().name}",
        )


# --- receipts -------------------------------------------------------------------------------

RECEIPT_ITEMS = (
    "row 4",
    "row 9",
    "row 21",
    "row 37",
    "row 38",
    "row 39",
    "row 40",
    "row 41",
    "row 42",
    "row 43",
    "row 44",
    "row 48",
    "S25",
    "S28",
    "S37",
)


@probe(*RECEIPT_ITEMS)
def receipt_checks(ctx: Ctx) -> None:
    c = ctx.c
    try:
        ctx.jwks, keys = rc.keys_from(
            c.receipts.GetPublicKeys(receipt_pb2.GetPublicKeysRequest(), timeout=10).jwks
        )
    except (grpc.RpcError, ValueError) as exc:
        what = exc.code().name if isinstance(exc, grpc.RpcError) else str(exc)
        ctx.jwks_error = f"ReceiptService.GetPublicKeys: {what}"
        keys = None
    s = ctx.session("receipts")
    c.sessions.StartSession(
        session_pb2.StartSessionRequest(
            identity=ident_pb(s),
            original_request="reconcile the Q3 customer invoices",
            intent_class="accounts_payable",
        ),
        timeout=10,
    )
    resp: dict[str, Any] = {}
    for want, tool, op, params, _code in VERDICT_CASES:
        resp[want] = decide(c, tool, op, params, s)
    recs = {w: receipt_obj(r) for w, r in resp.items()}
    evid = [
        f"{w}: decision_id={r.decision_id} receipt_id={r.receipt.receipt_id or 'none'}"
        for w, r in resp.items()
    ]
    if ctx.jwks_error:
        evid.append(ctx.jwks_error)
    present = {w: r is not None for w, r in recs.items()}
    ctx.expect(
        "row 37",
        "DecideResponse.receipt carries a receipt for each of ALLOW, DENY, MODIFY, STEP_UP, DEFER",
        all(present.values()),
        evid,
    )
    if not any(present.values()):
        why = "no receipt in DecideResponse.receipt (receipts not wired into Decide)"
        for item in RECEIPT_ITEMS:
            if item not in ("row 37", "row 21", "row 9", "S25", "S28", "S37"):
                ctx.record(item, "receipt content and signature", F, [why, *evid[:2]])
        ctx.record("row 21", "the DEFER receipt names the trigger type", F, why)
        ctx.record("row 9", "the original request appears in the receipt context", F, why)
        ctx.record(
            "S25", "the DENY receipt keeps the original human and the delegation chain", F, why
        )
        ctx.record("S28", "the receipt keeps the wrapper name", F, why)
        ctx.record("S37", "changing a receipt's policy hash is detected", F, why)
        return
    allr = [r for r in recs.values() if r is not None]
    # Row 40: offline verification, two verifiers.
    if keys is None or ctx.jwks is None:
        ctx.record(
            "row 40", "verify offline against the published JWKS", F, ctx.jwks_error or "no JWKS"
        )
    else:
        project = [verify_one(r, keys) for r in allr]
        indep = [rc.independent_verify(r, ctx.jwks) for r in allr]
        ctx.expect(
            "row 40",
            "every receipt verifies offline with aarm_pdp.receipts.verify and with an "
            "independent JCS+Ed25519 verifier, using only the JWKS from GetPublicKeys",
            all(p is None for p in project) and all(i is None for i in indep),
            [
                f"project verifier: {project}",
                f"independent verifier: {indep}",
                f"key ids {sorted(k.get('kid', '') for k in ctx.jwks.get('keys', []))}",
            ],
        )
        try:
            chain = session_receipts(c, s)
            res = rc.verify_chain(chain, keys)
            ctx.expect(
                "row 40",
                "the session's chain (ListReceipts) verifies offline",
                res.ok and len(chain) >= 5,
                f"{len(chain)} receipts: {res}",
            )
        except grpc.RpcError as exc:
            ctx.expect(
                "row 40",
                "the session's chain (ListReceipts) verifies offline",
                False,
                f"ListReceipts: {exc.code().name}",
            )
        # Row 41 / S37: tampering.
        base = recs["DENY"] or allr[0]
        t1 = rc.tampered(base, "human", "mallory@evil.example")
        t2 = rc.tampered(base, "hash", "0" * 64, parent="policy")
        t3 = rc.tampered(base, "key_id", "no-such-key", parent="signature")
        r1 = verify_one(t1, keys) if t1 else "field not found"
        r2 = verify_one(t2, keys) if t2 else "field not found"
        r3 = verify_one(t3, keys) if t3 else "field not found"
        ctx.expect(
            "row 41",
            "changing the requester (identity.human) or the policy hash breaks verification",
            t1 is not None and t2 is not None and r1 is not None and r2 is not None,
            [f"human changed: {r1}", f"policy hash changed: {r2}"],
        )
        ctx.expect(
            "S37",
            "a receipt with a changed policy hash or an unknown key id fails verification",
            t2 is not None and r2 is not None and r3 is not None,
            [f"policy hash changed: {r2}", f"unknown key id: {r3}"],
        )
        got = c.receipts.GetReceipt(
            receipt_pb2.GetReceiptRequest(receipt_id=resp["ALLOW"].receipt.receipt_id), timeout=10
        ).receipt
        ctx.expect(
            "row 40",
            "GetReceipt returns the same signed bytes as the Decide response",
            got.payload == resp["ALLOW"].receipt.payload,
            f"receipt_id={got.receipt_id}",
        )
    # Row 42: algorithm and canonical form.
    algs = {str((r.get("signature") or {}).get("algorithm")) for r in allr}
    canon = all(
        rfc8785.dumps(r).decode() == resp[w].receipt.payload
        for w, r in recs.items()
        if r is not None
    )
    ctx.expect(
        "row 42",
        "signature algorithm is Ed25519 and the payload is exactly its RFC 8785 "
        "re-canonicalization (independent rfc8785 package)",
        algs <= {"Ed25519", "EdDSA"} and canon,
        [
            f"algorithms {sorted(algs)}",
            f"canonical={canon}",
            f"canonicalization={sorted({str(r.get('canonicalization')) for r in allr})}",
        ],
    )
    # Row 38: content.
    problems: dict[str, list[str]] = {}
    for w, r in recs.items():
        if r is None:
            problems[w] = ["no receipt"]
            continue
        d = resp[w]
        missing = []
        for label, ok in (
            (
                "action.tool",
                rc.has_leaf(r, VERDICT_CASES[[v[0] for v in VERDICT_CASES].index(w)][1]),
            ),
            ("timestamp", bool(rc.find_values(r, "issued_at") or rc.find_values(r, "timestamp"))),
            ("session id", rc.has_leaf(r, s)),
            ("human", rc.has_leaf(r, BASE["human"])),
            ("service", rc.has_leaf(r, BASE["service"])),
            ("agent", rc.has_leaf(r, BASE["agent"])),
            ("roles", rc.has_leaf(r, "analyst")),
            ("decision result", rc.has_leaf(r, w) or rc.has_leaf(r, f"DECISION_{w}")),
            ("matched rule", rc.has_leaf(r, d.reasons[0].rule_id)),
            ("reason", rc.has_leaf(r, d.reasons[0].code) or rc.has_leaf(r, d.reasons[0].message)),
            ("decision id", rc.has_leaf(r, d.decision_id)),
            ("signature", isinstance(r.get("signature"), dict)),
        ):
            if not ok:
                missing.append(label)
        if w == "MODIFY" and not rc.has_leaf(r, 1000):
            missing.append("modified parameters")
        if missing:
            problems[w] = missing
    ctx.expect(
        "row 38",
        "each receipt binds action (tool, timestamp), context (session), identity (human, "
        "service, agent, roles), decision (result, matched rule, reason) and a signature; MODIFY "
        "records the modified parameters",
        not problems,
        [f"missing per verdict: {problems}"] if problems else [f"{len(allr)} receipts complete"],
    )
    r_defer = recs["DEFER"]
    ctx.expect(
        "row 21",
        "the DEFER receipt names the trigger type",
        r_defer is not None and rc.has_leaf(r_defer, "missing_context"),
        f"receipt_id={resp['DEFER'].receipt.receipt_id or 'none'}",
    )
    for w in ("DENY", "DEFER"):
        r = recs[w]
        ok = (
            r is not None
            and rc.has_leaf(r, resp[w].reasons[0].rule_id)
            and rc.has_leaf(r, resp[w].policy.hash)
        )
        ctx.expect(
            "row 4",
            f"the {w} receipt records the matching rule id, reason and policy hash",
            ok,
            f"receipt_id={resp[w].receipt.receipt_id or 'none'} rule={resp[w].reasons[0].rule_id}",
        )
    r_allow = recs["ALLOW"] or allr[0]
    text_in = any(rc.has_leaf(r, "reconcile the Q3 customer invoices") for r in allr)
    by_ref = bool(rc.find_values(r_allow, "context_hash")) and any(
        v is True for v in rc.find_values(r_allow, "original_request_present")
    )
    ctx.expect(
        "row 9",
        "the original request is in the receipt context, verbatim or by reference (the context "
        "log's hash, whose StartSession entry holds it)",
        text_in or by_ref,
        f"receipt_id={resp['ALLOW'].receipt.receipt_id or 'none'} verbatim={text_in} "
        f"by_reference={by_ref}",
    )
    # Row 39 / S25: delegation chain and policy version.
    s25 = ctx.session("S25-receipt")
    chain = [
        {"delegator": BASE["human"], "delegatee": "orchestrator-1", "scopes": ["email.read"]},
        {
            "delegator": "orchestrator-1",
            "delegatee": "sub-agent-3",
            "scopes": ["email.read", "email.send"],
        },
    ]
    deleg = decide(
        c,
        "email",
        "send",
        {"to": ["colleague@acme.example"], "body": "x"},
        s25,
        identity=ident(s25, agent="sub-agent-3", delegation_chain=chain),
    )
    rd = receipt_obj(deleg)
    has_chain = (
        rd is not None and rc.has_leaf(rd, "orchestrator-1") and rc.has_leaf(rd, "email.send")
    )
    has_policy = (
        rd is not None
        and rc.has_leaf(rd, deleg.policy.hash)
        and rc.has_leaf(rd, deleg.policy.revision)
    )
    ctx.expect(
        "row 39",
        "the receipt holds the requester context, the delegation chain and the policy "
        "revision and hash",
        has_chain and has_policy and rc.has_leaf(rd, BASE["human"]),
        [
            ev(deleg),
            f"receipt_id={deleg.receipt.receipt_id or 'none'} chain={has_chain} "
            f"policy={has_policy}",
        ],
    )
    ctx.expect(
        "S25",
        "the DENY receipt keeps the original human and the delegation chain",
        verdict(deleg) == "DENY"
        and has_chain
        and rd is not None
        and rc.has_leaf(rd, BASE["human"]),
        [ev(deleg), f"receipt_id={deleg.receipt.receipt_id or 'none'}"],
    )
    s28 = ctx.session("S28-receipt")
    wrapped = decide(
        c,
        "mcp_tool",
        "call",
        {
            "mcp_server_name": "db",
            "mcp_tool_name": "drop_database",
            "arguments": {"database": "production"},
        },
        s28,
    )
    rw = receipt_obj(wrapped)
    ctx.expect(
        "S28",
        "the DENY receipt keeps the wrapper name (mcp_tool) beside the resolved tool",
        rw is not None and rc.has_leaf(rw, "mcp_tool") and rc.has_leaf(rw, "drop_database"),
        [ev(wrapped), f"receipt_id={wrapped.receipt.receipt_id or 'none'}"],
    )
    # Row 43: context hash, append-only API.
    ctx_hashes = [h for r in allr for h in rc.find_values(r, "context_hash")]
    ctx.expect(
        "row 43",
        "each receipt carries a context_hash (sha256 of the context log head)",
        len(ctx_hashes) >= len(allr)
        and all(isinstance(h, str) and is_hex64(h) for h in ctx_hashes),
        f"context_hash values: {[str(h)[:12] for h in ctx_hashes]}",
    )
    methods = [m for m in dir(c.receipts) if not m.startswith("_")]
    ctx.expect(
        "row 43",
        "ReceiptService offers no update or delete RPC (append-only API surface)",
        all(m in ("GetReceipt", "ListReceipts", "GetPublicKeys") for m in methods),
        f"RPCs {methods}",
    )
    ctx.record(
        "row 43",
        "the store itself rejects updates",
        NC,
        "store-level immutability is not observable over gRPC (covered by tests/integration/"
        "test_receipt_stores.py)",
    )
    # Row 44 / 48: attribution and binding to the agent.
    s44 = ctx.session("principals")
    other = ident(
        s44, human="bob@acme.example", agent="agent-9", service="batch-platform", roles=["ops"]
    )
    ra = decide(c, "db", "query", {"table": "orders", "limit": 2}, s44)
    rb = decide(c, "db", "query", {"table": "orders", "limit": 2}, s44, identity=other)
    oa, ob = receipt_obj(ra), receipt_obj(rb)
    ok = (
        oa is not None
        and ob is not None
        and rc.has_leaf(oa, BASE["human"])
        and not rc.has_leaf(oa, "bob@acme.example")
        and rc.has_leaf(ob, "bob@acme.example")
        and rc.has_leaf(ob, "agent-9")
        and rc.has_leaf(ob, "batch-platform")
        and rc.has_leaf(ob, "ops")
        and not rc.has_leaf(ob, BASE["human"])
    )
    ctx.expect(
        "row 44",
        "two principals in one session: each receipt attributes its own human, service, "
        "agent and roles",
        ok,
        [f"{ra.receipt.receipt_id or 'none'} / {rb.receipt.receipt_id or 'none'}"],
    )
    agent_bound = (
        ob is not None
        and keys is not None
        and verify_one(ob, keys) is None
        and bool(rc.find_values(ob, "agent"))
    )
    forged = rc.tampered(ob, "agent", "agent-7") if ob is not None else None
    ctx.expect(
        "row 48",
        "the agent id is inside the signed payload: swapping it breaks the signature",
        agent_bound
        and forged is not None
        and keys is not None
        and verify_one(forged, keys) is not None,
        f"receipt_id={rb.receipt.receipt_id or 'none'}",
    )


def verify_one(receipt: dict[str, Any], keys: Any) -> str | None:
    res = rc.verify_receipt(receipt, keys)
    return None if res.ok else str(res)


# --- fail closed ----------------------------------------------------------------------------


@probe("row 3", "row 57", "row 60", "S31")
def fail_closed(ctx: Ctx) -> None:
    c = ctx.c
    q = ("db", "query", {"table": "customers", "limit": 10})
    if ctx.broken is not None:
        b = ctx.broken
        s = ctx.session("broken")
        ok_resp = decide(b, "only", "this", {}, s)
        undefined = decide(b, *q, s)
        permit = decide(b, "permit", "x", {}, s)
        bare = decide(b, "bare", "x", {}, s)
        ok = (
            verdict(ok_resp) == "ALLOW"
            and codes(undefined)[:1] == ["decision_undefined"]
            and codes(permit)[:1] == ["decision_malformed"]
            and codes(bare)[:1] == ["decision_malformed"]
            and verdict(undefined) == verdict(permit) == verdict(bare) == "DENY"
        )
        evid = [
            ev(ok_resp, "valid verdict"),
            ev(undefined, "no decision"),
            ev(permit, "verdict PERMIT"),
            ev(bare, "ALLOW without its parts"),
        ]
        ctx.expect(
            "row 57",
            "a policy with no decision or a malformed one is DENY, never a pass-through",
            ok,
            evid,
        )
        ctx.expect("row 3", "undefined / malformed policy results are DENY", ok, evid)
    else:
        ctx.record("row 57", "undefined / malformed policy results", NC, EXTERNAL)
    svc = ctx.managed
    if svc is None:
        for item in ("row 3", "S31"):
            ctx.record(item, "kill the PDP (managed OPA) / the context store", NC, EXTERNAL)
        ctx.record("row 60", "fail-closed DENY when the policy engine is gone", NC, EXTERNAL)
        return
    import os
    import signal

    s = ctx.session("kill-opa")
    before = decide(c, *q, s)
    pids = svc.opa_children()
    if not pids:
        ctx.expect("row 3", "kill the managed OPA child", False, "no OPA child process found")
        return
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.05)
    seen: list[Any] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = decide(c, *q, s, request_id=f"{s}-{len(seen)}")
        seen.append(r)
        if verdict(r) == "ALLOW":
            break
        time.sleep(0.1)
    down = [r for r in seen if verdict(r) != "ALLOW"]
    codes_down = sorted({codes(r)[0] for r in down})
    ok = (
        verdict(before) == "ALLOW"
        and bool(down)
        and all(verdict(r) == "DENY" for r in down)
        and "opa_unavailable" in codes_down
        and verdict(seen[-1]) == "ALLOW"
    )
    metrics = scrape(svc.metrics_url) if svc.metrics_port else ""
    counted = 'aarm_fail_closed_total{code="opa_unavailable"}' in metrics
    evid = [
        ev(before, "before"),
        f"killed OPA pid(s) {pids}",
        f"{len(down)} decisions while down: all DENY {codes_down}"
        if down
        else "no decision while down",
        ev(seen[-1], "after restart"),
        f"aarm_fail_closed_total{{code=opa_unavailable}} exported={counted}",
    ]
    for item in ("row 3", "row 57", "S31"):
        ctx.expect(
            item,
            "PDP (managed OPA) killed: every decision is DENY opa_unavailable until it is back",
            ok and counted,
            evid,
        )
    ctx.expect("row 60", "fail-closed DENY is supported (OPA killed)", ok, evid[:3])
    for item in ("row 3", "S31"):
        ctx.record(
            item,
            "receipt store down",
            NC,
            "the embedded receipt store cannot be taken down from outside the process",
        )


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
    res = scenarios.run(doc, ctx.short, sid, sid)
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


# --- R7 drift ---------------------------------------------------------------------------------


@probe("row 49", "row 50", "row 51")
def drift(ctx: Ctx) -> None:
    doc = ROOT / "docs" / "drift-calibration.md"
    ctx.expect(
        "row 50",
        "the aggregation is documented (docs/opa-contract.md, service drift/score.py)",
        "ema" in (ROOT / "docs" / "opa-contract.md").read_text(),
        "docs/opa-contract.md",
    )
    ctx.expect(
        "row 51",
        "a calibration report exists (docs/drift-calibration.md)",
        doc.is_file() and "calibrat" in doc.read_text().lower(),
        str(doc.relative_to(ROOT)),
    )
    s = ctx.session("drift-probe")
    ctx.c.sessions.StartSession(
        session_pb2.StartSessionRequest(
            identity=ident_pb(s),
            original_request="look up the Johnson account in the CRM",
            expected_scope=["crm"],
            max_classification=session_pb2.CLASSIFICATION_INTERNAL,
        ),
        timeout=10,
    )
    first = decide(ctx.c, "crm", "query", {"query": "account Johnson"}, s)
    outcome(ctx, s, first.decision_id, "Johnson account", "CONFIDENTIAL")
    r = decide(ctx.c, "documents", "search", {"query": "competitor pricing"}, s)
    fired = [
        f"{sid} step {st.index}: {st.codes}"
        for sid in ("S16", "S17", "S18")
        for st in (ctx.scen[sid].steps if sid in ctx.scen else [])
        if "drift" in st.codes
    ]
    ctx.expect(
        "row 49",
        "a session that leaves its expected scope and classification crosses the drift threshold "
        "(0.7): STEP_UP with code drift",
        verdict(r) == "STEP_UP" and "drift" in codes(r),
        [ev(first, "in scope"), ev(r, "out of scope, above max classification"), *fired],
    )
    dr: dict[str, Any] = {}
    if r.approval.approval_id and ctx.tokens.approver:
        cx = json_format.MessageToDict(
            ctx.c.approvals.GetApproval(
                approval_pb2.GetApprovalRequest(approval_id=r.approval.approval_id),
                metadata=ctx.approver_md(),
                timeout=10,
            ).approval.context
        )
        dr = cx.get("drift", {})
    if not dr:
        for item in ("row 49", "row 50"):
            ctx.record(
                item,
                "drift scores in the approval context",
                NC,
                EXTERNAL + " without --approver-token" if not ctx.tokens.approver else ev(r),
            )
        return
    semantic = isinstance(dr.get("semantic"), dict)
    ctx.record(
        "row 49",
        "d = 1 - cos(embed(r0), embed(an)) is computed by this deployment",
        P if semantic else NI,
        f"drift components {sorted(dr)}"
        + (
            ""
            if semantic
            else "; the embedded defaults score drift symbolically (scope, classification, "
            "novelty, chain); the "
            "embedding scorer is opt-in (serve --semantic-drift) and is not what this run exercised"
        ),
    )
    ctx.expect(
        "row 50",
        "cumulative drift is tracked (running max and EMA) beside the per-action score",
        {"max", "ema", "action"} <= set(dr),
        f"drift={ {k: dr[k] for k in sorted(dr) if k != 'components'} }",
    )


# --- R8, R9, side channels -------------------------------------------------------------------


@probe("row 52", "row 53", "row 54", "S24")
def not_implemented(ctx: Ctx) -> None:
    ctx.record(
        "row 52",
        "AARM telemetry events exported to a SIEM in OCSF/CEF/documented schema",
        NI,
        "no telemetry exporter: the service exposes Prometheus metrics and structured logs only "
        "(no aarm.action/decision/approval/drift events, no sink)",
    )
    ctx.record(
        "row 53",
        "JIT credentials scoped to the operation",
        NI,
        "the decision service issues no credentials (no credential broker)",
    )
    ctx.record(
        "row 54",
        "credentials scoped per action",
        NI,
        "the decision service issues no credentials (no credential broker)",
    )
    url = ctx.metrics_url
    if not url:
        ctx.record(
            "S24",
            "exposed signals carry no raw parameters",
            NC,
            "no metrics endpoint given (--metrics)",
        )
        return
    s = ctx.session("S24")
    pii_sql = "SELECT ssn FROM customers WHERE name = 'Zed Conformance'"
    decide(ctx.c, "db", "query", {"table": "customers", "sql": pii_sql, "limit": 5}, s)
    decide(
        ctx.c,
        "email",
        "send",
        {"to": ["zed.conformance@partner.example"], "body": "ssn 123-45-6789"},
        s,
    )
    text = scrape(url)
    leaks = [
        v
        for v in (pii_sql, "Zed Conformance", "zed.conformance@partner.example", "123-45-6789")
        if v in text
    ]
    ctx.expect(
        "S24",
        "the Prometheus endpoint carries no raw SQL or PII parameter values (labels are bounded "
        "codes)",
        not leaks and "aarm_decisions_total" in text,
        f"leaked: {leaks}"
        if leaks
        else f"{len(text.splitlines())} metric lines, none with parameter values",
    )


# --- row 61 (after everything else) ------------------------------------------------------------

THREATS = {
    "T1": ["S01", "S02", "S03", "S04", "S06", "S07"],
    "T2": ["S08", "S09", "S10", "S26"],
    "T3": ["S11", "S12", "S13", "S14", "S15"],
    "T4": ["S19"],
    "T5": ["S20"],
    "T6": ["S16", "S17", "S18"],
    "T7": ["S25"],
    "T8": ["S22", "S23"],
    "T9": ["S24"],
    "T10": ["S21"],
    "T11": ["S05"],
}


def threat_coverage(ctx: Ctx) -> None:
    missing, evid = [], []
    for t, sids in THREATS.items():
        passing = [sid for sid in sids if ctx.items[sid].result is P]
        partial = [sid for sid in sids if any(ch.result is P for ch in ctx.items[sid].checks)]
        evid.append(
            f"{t}: {','.join(passing) or ('partly ' + ','.join(partial) if partial else 'none')}"
        )
        if not passing:
            missing.append(t)
    ctx.expect(
        "row 61",
        "each threat class T1-T11 has at least one fully passing scenario",
        not missing,
        [f"not addressed: {missing}" if missing else "all addressed", *evid],
    )


@probe("row 3", "S31")
def context_store_down(ctx: Ctx) -> None:
    """Last: it kills the auxiliary instance's Redis."""
    if ctx.short is None or ctx.redis is None:
        for item in ("row 3", "S31"):
            ctx.record(item, "kill the context store", NC, EXTERNAL)
        return
    q = ("db", "query", {"table": "customers", "limit": 10})
    sc, s2 = ctx.short, ctx.session("kill-redis")
    up = decide(sc, *q, s2)
    ctx.redis.kill()
    gone = [decide(sc, *q, s2, request_id=f"{s2}-{i}") for i in range(3)]
    ok = verdict(up) == "ALLOW" and all(
        verdict(r) == "DENY" and codes(r)[:1] == ["session_store_unavailable"] for r in gone
    )
    evid = [
        ev(up, "before"),
        "killed redis-server (context store)",
        *[ev(r, "after") for r in gone],
    ]
    for item in ("row 3", "S31"):
        ctx.expect(item, "context store (Redis) killed: DENY session_store_unavailable", ok, evid)
