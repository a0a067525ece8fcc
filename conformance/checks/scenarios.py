"""Scenario replay (S01-S37) and the rows whose test is exactly a replayed scenario."""

from __future__ import annotations

from typing import Any

from conformance.checks.base import (
    BASE,
    NI,
    Ctx,
    codes,
    decide,
    ev,
    probe,
    scen_ok,
    scen_step,
    verdict,
)
from conformance.harness import HERE, ROOT
from tests.support import scenarios

DIRS = (scenarios.SCENARIOS, HERE / "scenarios")
"""The test suite's scenario files (read as data), then the ones it lacks."""


def load_all() -> dict[str, dict[str, Any]]:
    """Every scenario document by id, validated; conformance/scenarios wins over tests/cases."""
    docs: dict[str, dict[str, Any]] = {}
    for path in scenarios.files(*DIRS):
        doc = scenarios.load(path, validate=True)
        doc["_file"] = str(path.relative_to(ROOT))
        docs[doc["id"]] = doc
    return docs


# --- scenarios ---------------------------------------------------------------------------


@probe(*[f"S{n:02d}" for n in range(1, 38)])
def scenario_replay(ctx: Ctx) -> None:
    """Replay every scenario file that has steps; declare the gaps."""
    ctx.docs = load_all()
    for sid, doc in sorted(ctx.docs.items()):
        if sid not in ctx.items:
            continue  # X-scenarios: project extras, not in the checklist
        if doc.get("not_implemented"):
            ctx.record(sid, f"{doc['title']} ({doc['_file']})", NI, doc["not_implemented"])
        if not doc.get("steps"):
            continue
        session = ctx.session(sid)
        res = scenarios.run_blocking(doc, ctx.c.decide, ctx.c.sessions, session, prefix=session)
        ctx.scen[sid] = res
        ctx.expect(
            sid,
            f"replay {doc['_file']}: expected {doc.get('expected', 'per-step verdicts')}",
            res.ok,
            [s.evidence() for s in res.steps],
        )


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
