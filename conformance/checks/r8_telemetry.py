"""R8 telemetry export (row 52) and the T9 side channel (S24).

The managed services append events to a JSONL file in the scratch dir and POST batches
to the suite's SIEM mock on 127.0.0.1. Against an external target the checks read the
operator's sink (``--telemetry-file``); without it they are not-checkable.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from aarm.v1 import approval_pb2

from conformance import receipts as rc
from conformance.checks import telemetry_schema as ts
from conformance.checks.base import EXTERNAL, NC, Ctx, D, decide, ev, ident, probe, receipt_obj
from conformance.harness import scrape

LATENCY_LIMIT = 5.0
"""'Within seconds': the documented flush interval is 1 s."""
WAIT = 10.0
PII_SQL = "SELECT ssn FROM customers WHERE name = 'Zed Conformance'"
PII_VALUES = (PII_SQL, "Zed Conformance", "zed.conformance@partner.example", "123-45-6789")


def _metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else None


def _leaves(v: Any) -> list[str]:
    if isinstance(v, dict):
        return [x for k, w in v.items() for x in (str(k), *_leaves(w))]
    if isinstance(v, list):
        return [x for w in v for x in _leaves(w)]
    return [str(v)]


def _prometheus_leaks(ctx: Ctx) -> tuple[bool, str]:
    """The Prometheus text carries no parameter values (bounded label codes only)."""
    assert ctx.metrics_url is not None
    text = scrape(ctx.metrics_url)
    leaks = [v for v in PII_VALUES if v in text]
    ok = not leaks and "aarm_decisions_total" in text
    return ok, (
        f"leaked: {leaks}"
        if leaks
        else f"{len(text.splitlines())} metric lines, none with parameter values"
    )


@probe("row 52", "S24")
def telemetry(ctx: Ctx) -> None:
    text = ts.DOC.read_text() if ts.DOC.is_file() else ""
    undocumented = ts.undocumented_names(text)
    doc_ok = bool(text) and not undocumented
    doc_ev = (
        f"docs/telemetry.md: {ts.SCHEMA}, 3 event types, every field documented"
        if doc_ok
        else f"docs/telemetry.md: not documented {undocumented or 'missing file'}"
    )
    tail = (
        ts.FileTail(ctx.telemetry_file, b"" if ctx.managed else f"cf-{ctx.run}-".encode())
        if ctx.telemetry_file is not None
        else None
    )
    # The sinks get the whole run's events; this probe adds its own, tagged by agent.
    agent = f"agent-telemetry-{ctx.run}"
    s = ctx.session("telemetry")
    idn = ident(s, agent=agent)
    defer = decide(ctx.c, "credentials", "rotate", {"target": "prod-payments"}, s, identity=idn)
    returned = time.time()
    allow = decide(ctx.c, "db", "query", {"table": "orders", "limit": 3}, s, identity=idn)
    deny = decide(ctx.c, "database", "drop", {"database": "production"}, s, identity=idn)
    s24 = ctx.session("S24")
    pii = [
        decide(ctx.c, "db", "query", {"table": "customers", "sql": PII_SQL, "limit": 5}, s24),
        decide(
            ctx.c,
            "email",
            "send",
            {"to": ["zed.conformance@partner.example"], "body": "ssn 123-45-6789"},
            s24,
        ),
    ]
    ours = [defer, allow, deny]
    rejected: Any = None
    if ctx.tokens.approver:
        pay = {"amount": 25000, "currency": "USD", "to_account": "DE89370400440532"}
        rejected = decide(ctx.c, "payments", "transfer", pay, s, identity=idn)
        ours.append(rejected)
    if rejected is not None and rejected.approval.approval_id:
        ctx.c.approvals.ResolveApproval(
            approval_pb2.ResolveApprovalRequest(
                approval_id=rejected.approval.approval_id, grant=False, reason="conformance: no"
            ),
            metadata=ctx.approver_md(),
            timeout=10,
        )
    else:
        rejected = None
    if ctx.siem is None and tail is None:
        prom = (
            "Prometheus: " + _prometheus_leaks(ctx)[1] if ctx.metrics_url else "no --metrics given"
        )
        why = EXTERNAL + " without --telemetry-file (the operator's SIEM sink)"
        ctx.record("row 52", "events exported to the operator's SIEM sink", NC, [why, doc_ev])
        ctx.record(
            "S24", "exported events carry parameters only as parameters_hash", NC, [why, prom]
        )
        return
    ctx.expect("row 52", "the event schema is documented (docs/telemetry.md)", doc_ok, doc_ev)

    want = {("aarm.action", r.decision_id) for r in [*ours, *pii]}
    want |= {
        ("aarm.decision", r.decision_id) for r in [*ours, *pii] if r.decision != D.DECISION_ALLOW
    }
    if rejected is not None:
        want.add(("aarm.approval", rejected.decision_id))
    first: dict[str, dict[tuple[str, str], float]] = {}
    deadline = time.monotonic() + WAIT
    while True:
        sinks = [ts.from_siem(ctx.siem, ctx.siem_path)] if ctx.siem is not None else []
        sinks += [tail.read()] if tail is not None else []
        for sink in sinks:
            seen = first.setdefault(sink.name, {})
            for at, e in sink.events:
                seen.setdefault(ts.key(e), at)
        if all(want <= set(v) for v in first.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    # Row 52: within seconds.
    dkey = ("aarm.decision", defer.decision_id)
    lat = {n: first[n][dkey] - returned for n in first if dkey in first[n]}
    ctx.expect(
        "row 52",
        f"a DEFER decision reaches every sink ({', '.join(k.name for k in sinks)}) "
        f"within {LATENCY_LIMIT:.0f} s",
        len(lat) == len(sinks) and all(v <= LATENCY_LIMIT for v in lat.values()),
        [ev(defer)]
        + [
            f"{n}: after {lat[n]:.2f} s" if n in lat else f"{n}: not within {WAIT:.0f} s"
            for n in first
        ],
    )
    main = sinks[0]
    # Row 52: the DEFER events in the declared schema, matching the decision.
    dev = {e.get("type"): e for _, e in main.events if ts.key(e)[1] == defer.decision_id}
    act, dec = dev.get("aarm.action"), dev.get("aarm.decision")
    bad = [f"{t}: {p}" for t, e in dev.items() for p in ts.problems(e)]
    exp_actor = {k: idn.get(k, "") for k in ts.SUBFIELDS["actor"]}
    content = (
        act is not None
        and dec is not None
        and all(
            e["decision"] == "DEFER"
            and e.get("actor") == exp_actor
            and e.get("api") == {"tool": "credentials", "operation": "rotate", "original_tool": ""}
            and e.get("receipt_id") == defer.receipt.receipt_id
            and e.get("policy") == {"revision": defer.policy.revision, "hash": defer.policy.hash}
            and e.get("severity") == D.RiskLevel.Name(defer.risk.level).removeprefix("RISK_LEVEL_")
            and abs(e.get("time", 0) / 1000 - returned) < 60
            for e in (act, dec)
        )
        and dec.get("defer_trigger") == defer.deferral.trigger == "missing_context"
        and "missing_context" in dec.get("reason_codes", [])
        and set(dec.get("policy_id", [])) == set(defer.matched_rules)
    )
    ctx.expect(
        "row 52",
        f"{main.name}: the DEFER's aarm.action and aarm.decision events are in the declared "
        "schema and match the decision (verdict, trigger, actor, api, policy, receipt id)",
        not bad and content,
        [*bad, json.dumps(dec, sort_keys=True)[:600] if dec else "no aarm.decision event"],
    )
    # Row 52: every exported event of the run in the declared schema.
    for sink in sinks:
        found: dict[str, list[str]] = {}
        for _, e in sink.events:
            for p in ts.problems(e):
                found.setdefault(f"{e.get('type')}: {p}", []).append(str(e.get("decision_id")))
        kinds: dict[str, int] = {}
        for _, e in sink.events:
            label = f"{e.get('type')}/{e.get('decision') or e.get('status')}"
            kinds[label] = kinds.get(label, 0) + 1
        ctx.expect(
            "row 52",
            f"{sink.name}: every event exported during the run is in the declared schema",
            bool(sink.events) and not found and not sink.malformed,
            [
                *sink.malformed[:3],
                *(
                    f"{p} ({len(ids)} events, e.g. decision_id={ids[0]})"
                    for p, ids in found.items()
                ),
                f"{len(sink.events)} events: {dict(sorted(kinds.items()))}",
            ],
        )
    # Row 52: a SIEM can filter by action type, decision (incl. DEFER) and identity.
    mine = [e for _, e in main.events if (e.get("actor") or {}).get("agent") == agent]
    acts = {e["decision_id"] for e in mine if e.get("type") == "aarm.action"}
    defers = {e["decision_id"] for e in mine if e.get("decision") == "DEFER"}
    rotates = {
        e["decision_id"]
        for e in mine
        if (e.get("api") or {}).get("tool") == "credentials"
        and (e.get("api") or {}).get("operation") == "rotate"
    }
    decs = {e["decision_id"] for e in mine if e.get("type") == "aarm.decision"}
    non_allow = {r.decision_id for r in ours if r.decision != D.DECISION_ALLOW}
    ctx.expect(
        "row 52",
        "filtering the received events by identity (actor.agent), decision (DEFER) and action "
        "type (api.tool/operation, event type) selects exactly this probe's actions",
        acts == {r.decision_id for r in ours}
        and defers == rotates == {defer.decision_id}
        and decs == non_allow,
        [
            f"actor.agent={agent}: {len(acts)} actions of {len(ours)}",
            f"decision=DEFER: {sorted(defers)}; api=credentials.rotate: {sorted(rotates)}",
            f"type=aarm.decision: {len(decs)} (non-ALLOW sent: {len(non_allow)})",
        ],
    )
    ctx.record(
        "row 52",
        "the exporter's own verdict filter (telemetry.decisions)",
        NC,
        "not settable through `aarm-pdp serve` flags or AARM_PDP_* env, so not exercised",
    )
    if rejected is not None:
        appr = [e for e in mine if e.get("type") == "aarm.approval"]
        ctx.expect(
            "row 52",
            "a rejected STEP_UP is exported as aarm.approval with status 'rejected' and the "
            "approver (documented statuses: granted, rejected, expired)",
            len(appr) == 1
            and appr[0].get("status") == "rejected"
            and appr[0].get("approver") == "conformance-approver@acme.example",
            [ev(rejected), *(json.dumps(e, sort_keys=True)[:400] for e in appr)]
            + ([] if appr else ["no aarm.approval event"]),
        )
    if ctx.siem is not None and ctx.short_service is not None:
        name = ctx.short_service.name
        short = ts.from_siem(ctx.siem, name)
        expired = [
            e
            for _, e in short.events
            if e.get("type") == "aarm.approval" and e.get("status") == "expired"
        ]
        ctx.expect(
            "row 52",
            f"a STEP_UP left to time out ({name} instance) is exported as aarm.approval with "
            "status 'expired'",
            bool(expired),
            f"{len(short.events)} events posted to /{name}; expired approvals: {len(expired)}",
        )
    # Row 52: batch export.
    if ctx.siem is not None:
        batches = ctx.siem.received(ctx.siem_path)
        sizes = [len(b.events) for b in batches if b.events is not None]
        posted = {json.dumps(e, sort_keys=True) for _, e in main.events}
        filed = {json.dumps(e, sort_keys=True) for _, e in sinks[-1].events} if tail else set()
        ctx.expect(
            "row 52",
            "exported in batches: each POST is a JSON array of events, several per POST, and "
            "every posted event is also in the JSONL file",
            bool(sizes)
            and len(sizes) == len(batches)
            and max(sizes) > 1
            and (tail is None or posted <= filed),
            f"{len(batches)} POSTs, {sum(sizes)} events, largest batch {max(sizes, default=0)}; "
            f"posted but not in the file: {len(posted - filed) if tail else 'n/a'}",
        )
    else:
        ctx.record("row 52", "webhook batches", NC, EXTERNAL + ": only the JSONL sink is given")
    if ctx.metrics_url:
        mt = scrape(ctx.metrics_url)
        emitted = _metric(mt, "aarm_telemetry_events_emitted_total")
        failed = _metric(mt, "aarm_telemetry_export_failures_total")
        dropped = _metric(mt, "aarm_telemetry_dropped_events_total")
        ctx.expect(
            "row 52",
            "the exporter's counters show events exported, no failed export, nothing dropped",
            bool(emitted) and failed == 0 and dropped == 0,
            f"emitted={emitted} failures={failed} dropped={dropped}",
        )

    # S24: PII parameters leave only as parameters_hash.
    for sink in sinks:
        evs = [e for _, e in sink.events if ts.key(e)[1] in {r.decision_id for r in pii}]
        rows = []
        ok = len(evs) >= len(pii)
        for r in pii:
            rec = receipt_obj(r)
            signed = rc.find_values(rec, "parameters_sha256") if rec else []
            hashes = {
                e.get("parameters_hash") for e in evs if e.get("decision_id") == r.decision_id
            }
            ok &= bool(signed) and hashes == {signed[0]}
            rows.append(f"{ev(r)}: parameters_hash {sorted(map(str, hashes))} signed {signed}")
        ok &= all("parameters" not in e and "modified_parameters" not in e for e in evs)
        ctx.expect(
            "S24",
            f"{sink.name}: the PII actions' events carry parameters only as parameters_hash "
            "(equal to the signed receipt's parameters_sha256), no parameters object",
            ok,
            rows,
        )
        raw = b"".join(sink.blobs)
        leaks = [v for v in PII_VALUES if v.encode() in raw]
        leaks += [v for v in PII_VALUES if any(v in x for _, e in sink.events for x in _leaves(e))]
        ctx.expect(
            "S24",
            f"{sink.name}: no raw SQL or PII value in any exported event of the run",
            bool(sink.events) and not leaks,
            f"leaked: {sorted(set(leaks))}"
            if leaks
            else f"{len(sink.events)} events ({len(raw)} bytes) searched for {len(PII_VALUES)} "
            "values: none",
        )
    if ctx.metrics_url:
        ok, prom = _prometheus_leaks(ctx)
        ctx.expect(
            "S24",
            "the Prometheus endpoint carries no raw SQL or PII parameter values (labels are "
            "bounded codes)",
            ok,
            prom,
        )
    else:
        ctx.record("S24", "Prometheus text", NC, "no metrics endpoint given (--metrics)")
