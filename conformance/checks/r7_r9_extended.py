"""Extended requirements R7 (drift, rows 49-51) and R9 (credentials, rows 53, 54).

R8 (telemetry, row 52) is in ``r8_telemetry``."""

from __future__ import annotations

from typing import Any

from aarm.v1 import approval_pb2, session_pb2
from google.protobuf import json_format

from conformance.checks.base import (
    EXTERNAL,
    NC,
    NI,
    Ctx,
    P,
    codes,
    decide,
    ev,
    ident_pb,
    outcome,
    probe,
    verdict,
)
from conformance.harness import ROOT

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
            else "; drift is scored symbolically (scope, declared or derived from the request, "
            "classification, novelty, chain, expansion); the embedding scorer was retired, "
            "measured not to help (docs/drift-calibration.md)"
        ),
    )
    ctx.expect(
        "row 50",
        "cumulative drift is tracked (running max and EMA) beside the per-action score",
        {"max", "ema", "action"} <= set(dr),
        f"drift={ {k: dr[k] for k in sorted(dr) if k != 'components'} }",
    )


# --- R9 ------------------------------------------------------------------------------------


@probe("row 53", "row 54")
def credentials(ctx: Ctx) -> None:
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
