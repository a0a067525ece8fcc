"""Row 61 (every threat class addressed), evaluated after all probes."""

from __future__ import annotations

from conformance.checks.base import (
    NA,
    NC,
    Ctx,
    P,
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
    """Row 61. A class none of whose scenarios passes is not addressed (fail); a class
    whose scenarios all cannot be observed here (e.g. T9 against an external target
    without its telemetry sink) leaves the row not-checkable rather than passing."""
    missing, unobservable, evid = [], [], []
    for t, sids in THREATS.items():
        passing = [sid for sid in sids if ctx.items[sid].result is P]
        partial = [sid for sid in sids if any(ch.result is P for ch in ctx.items[sid].checks)]
        evid.append(
            f"{t}: {','.join(passing) or ('partly ' + ','.join(partial) if partial else 'none')}"
        )
        if passing:
            continue
        if all(ctx.items[sid].result in (NC, NA) for sid in sids):
            unobservable.append(t)
            evid[-1] += f" ({'/'.join(ctx.items[sid].result.value for sid in sids)})"
        else:
            missing.append(t)
    desc = "each threat class T1-T11 has at least one fully passing scenario"
    if missing:
        ctx.expect("row 61", desc, False, [f"not addressed: {missing}", *evid])
    elif unobservable:
        ctx.record("row 61", desc, NC, [f"not observable here: {unobservable}", *evid])
    else:
        ctx.expect("row 61", desc, True, ["all addressed", *evid])
