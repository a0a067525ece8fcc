"""R3/R4 verdict probes: one request per verdict, parameter validation, conflicts,
default posture and determinism (rows 1, 17, 19, 21, 23, 24, 55, 56, 60)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from conformance.checks.base import (
    Ctx,
    D,
    codes,
    decide,
    ev,
    probe,
    verdict,
)
from conformance.harness import ROOT

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
