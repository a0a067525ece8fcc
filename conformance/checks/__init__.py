"""The checks, one module per area. Each probe drives one flow over gRPC and records
checks on the items (rows and scenarios) it gives evidence for; a probe that raises
records a failure on every item it covers, so a crash can never read as a pass.

Probes run in the order of ``ORDER``: scenarios first (later probes reuse their
results), the timeout probe before the probes that kill processes, and the context
store kill last. ``threat_coverage`` (row 61) runs after all of them.
"""

from __future__ import annotations

from collections.abc import Callable

from conformance.checks import (
    r1_mediation,
    r2_context,
    r3_policy,
    r4_decisions,
    r4_timeouts,
    r5_receipts,
    r6_identity,
    r7_r9_extended,
    r8_telemetry,
    scenarios,
)
from conformance.checks.base import REGISTRY, SHORT_TIMEOUT, Ctx, Probe, decide
from conformance.checks.base import run_probes as _run
from conformance.checks.components import threat_coverage

ORDER: tuple[Probe, ...] = (
    scenarios.scenario_replay,
    scenarios.rows_from_scenarios,
    r3_policy.verdicts,
    r2_context.session_context,
    r4_decisions.approval_flow,
    r4_decisions.forged_approval,
    r4_decisions.deferral_flow,
    r6_identity.identity_checks,
    r4_timeouts.timeouts,
    r5_receipts.receipt_checks,
    r1_mediation.fail_closed,
    r2_context.context_log_tamper,
    r7_r9_extended.drift,
    r7_r9_extended.credentials,
    r8_telemetry.telemetry,
    r1_mediation.context_store_down,
)
PROBES: list[tuple[str, tuple[str, ...], Probe]] = [
    (fn.__name__, REGISTRY[fn.__name__][0], fn) for fn in ORDER
]
assert {name for name, _, _ in PROBES} == set(REGISTRY), "a registered probe is not in ORDER"


def run_probes(ctx: Ctx, log: Callable[[str], None]) -> None:
    """Every probe, in order."""
    _run(ctx, PROBES, log)


__all__ = ["PROBES", "SHORT_TIMEOUT", "Ctx", "decide", "run_probes", "threat_coverage"]
