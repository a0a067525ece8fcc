"""R1 mediation and fail-closed: broken policy, killed PDP, killed context store
(rows 3, 57, 60; S31)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from conformance.checks.base import (
    EXTERNAL,
    NC,
    Ctx,
    codes,
    decide,
    ev,
    probe,
    verdict,
)
from conformance.harness import scrape

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
