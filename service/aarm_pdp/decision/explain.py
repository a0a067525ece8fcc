"""``aarm-pdp explain DECISION_ID``: why a recorded decision came out as it did.

From the receipt store: the decision receipt (verdict, reasons with their rule ids,
matched rules, risk, the policy revision), the receipts that followed it (outcome,
approval, overturned, ...), and the decision record beside it (checked against the
receipt's ``decision.input_sha256``): the policy's own verdict and the parts of the
input the rules decide on. With ``--policy`` the recorded input is evaluated again on a
private OPA running those layers, to show what they would decide now.

Each reason carries the pack's explanation (docs/policies/explain.md): the parameter it
decided on, where that value came from (the session's calls whose untrusted output
carried it), and what would change the verdict (the approver group, the fact, the
threshold and the value compared). From the record, the inputs that mattered: those
parameters' values and provenance, the facts, signals and dependencies the reasons
name (as redacted as the record is). And OPA's own explanation of the deciding rules:
the recorded input evaluated by the real OPA with ``--explain debug`` on the installed
policy (:mod:`aarm_pdp.opa.trace`), the body lines of each deciding rule that held and
the values OPA bound on them; its revision is printed beside the one that decided.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from aarm_pdp.config import OpaConfig
from aarm_pdp.decision.result import parse_result
from aarm_pdp.errors import AarmError
from aarm_pdp.opa.client import OpaClient
from aarm_pdp.opa.sidecar import ManagedOpa, SidecarStartError
from aarm_pdp.opa.trace import TraceError, explain_rules
from aarm_pdp.receipts.body import input_sha256
from aarm_pdp.receipts.factory import open_store

__all__ = ["explain", "run"]

_INPUT_PARTS = ("action", "identity", "risk_signals", "analysis", "provenance", "drift")
_NOT_RULES = ("aarm.fail_closed.", "aarm.approval.")
"""Reasons the service itself gave (fail-closed, approvals): no rule of OPA's to explain."""


async def explain(
    store_url: str,
    decision_id: str,
    *,
    layers: list[Path] | None = None,
    binary: str = "opa",
    policy: list[Path] | None = None,
) -> dict[str, Any] | None:
    """The explanation document, or None when the store has no such decision.

    ``policy``: the layers OPA explains the deciding rules on (default: the installed
    pack, ``opa.policy_paths``'s default); ``layers``: a candidate to evaluate too."""
    store = open_store(store_url)
    try:
        receipts = await store.list_by_decision(decision_id)
        decision = next((r for r in receipts if r.get("kind") == "decision"), None)
        if decision is None:
            return None
        chain = decision.get("chain") or {}
        found = await store.decision_records(
            since=str(decision.get("issued_at", "")), tenant=str(chain.get("tenant", ""))
        )
    finally:
        await store.aclose()
    record = None
    for row in found:
        if json.loads(row.receipt).get("receipt_id") == decision.get("receipt_id"):
            record = json.loads(row.record)
            break
    verdict = decision.get("decision") or {}
    doc: dict[str, Any] = {
        "decision_id": decision_id,
        "issued_at": decision.get("issued_at"),
        "chain": {k: chain.get(k) for k in ("tenant", "session_id", "seq")},
        "action": {
            k: (decision.get("action") or {}).get(k) for k in ("tool", "operation", "parameters")
        },
        "principal": (decision.get("identity") or {}).get("principal"),
        "result": verdict.get("result"),
        "reasons": verdict.get("reasons") or [],
        "matched_rules": verdict.get("matched_rules") or [],
        "risk": verdict.get("risk"),
        "policy": verdict.get("policy"),
        "fail_closed": verdict.get("fail_closed"),
        "followed_by": [
            {"kind": r.get("kind"), "result": (r.get("decision") or {}).get("result")}
            for r in receipts
            if r is not decision
        ],
        "record": None,
    }
    if record is not None:
        bound = verdict.get("input_sha256") == input_sha256(record)
        doc["record"] = {
            "bound": bound,
            "policy_verdict": record.get("policy"),
            "input": {k: record["input"].get(k) for k in _INPUT_PARTS if k in record["input"]},
        }
        doc["inputs"] = inputs_that_mattered(doc["reasons"], record["input"])
        rule_ids = [
            str(r.get("rule_id"))
            for r in doc["reasons"]
            if not str(r.get("rule_id", "")).startswith(_NOT_RULES)
        ]
        if bound and rule_ids and not doc["fail_closed"]:
            doc["opa"] = await _opa_explanation(record["input"], rule_ids, policy, binary)
        if layers and bound:
            doc["now"] = await _evaluate(record["input"], layers, binary)
    return doc


def _top(path: str) -> str:
    return path.split(".", 1)[0].split("[", 1)[0]


def inputs_that_mattered(
    reasons: list[dict[str, Any]], input_doc: dict[str, Any]
) -> dict[str, Any]:
    """What of the recorded (redacted) input the reasons name: each parameter's value and
    the provenance of its values, and the facts, risk signals, dependencies and session
    counts their ``would_change`` refers to."""
    action = input_doc.get("action") or {}
    raw = action.get("parameters")
    given: dict[str, Any] = raw if isinstance(raw, dict) else {}
    seen = (input_doc.get("provenance") or {}).get("parameters") or {}
    out: dict[str, Any] = {}
    params: dict[str, Any] = {}
    facts: dict[str, Any] = {}
    kinds: set[str] = set()
    for r in reasons:
        param = r.get("param")
        if isinstance(param, str) and param not in params:
            params[param] = {
                "value": given.get(param),
                "provenance": {
                    path: doc.get("origins") for path, doc in seen.items() if _top(path) == param
                },
            }
        change = r.get("would_change") or {}
        kinds.add(str(change.get("kind", "")))
        for name in [change.get("fact"), *(change.get("context_needed") or [])]:
            if isinstance(name, str) and name and ":" not in name:
                facts[name] = (input_doc.get("facts") or {}).get(name)
    if params:
        out["parameters"] = params
    if facts:
        out["facts"] = facts
    if "signal" in kinds and input_doc.get("risk_signals"):
        out["risk_signals"] = input_doc["risk_signals"]
    if "resolution" in kinds and input_doc.get("dependencies"):
        out["dependencies"] = input_doc["dependencies"]
    if "session" in kinds:
        session = input_doc.get("session") or {}
        out["session"] = {k: session.get(k) for k in ("action_count", "counts") if k in session}
    return out


async def _opa_explanation(
    input_doc: dict[str, Any], rule_ids: list[str], policy: list[Path] | None, binary: str
) -> dict[str, Any]:
    paths = list(policy) if policy else list(OpaConfig().policy_paths)
    if not paths:
        return {"error": "no policy to explain with (no ./rego found; give --policy)"}
    try:
        return await explain_rules(binary, paths, input_doc, rule_ids)
    except TraceError as exc:
        return {"error": str(exc)}


async def _evaluate(input_doc: dict[str, Any], layers: list[Path], binary: str) -> dict[str, Any]:
    sidecar = ManagedOpa(binary=binary, policy_paths=layers)
    await sidecar.start()
    client = OpaClient(sidecar.url, max_connections=1)
    try:
        body = await client.evaluate(input_doc, timeout=10.0)
        result = parse_result(body)
        return {
            "policy": client.answer_policy(body).revision,
            "result": result.decision.value,
            "reasons": [r.to_doc() for r in result.reasons],
            "matched_rules": list(result.matched_rules),
        }
    finally:
        await client.aclose()
        await sidecar.stop()


def _provenance_text(prov: dict[str, Any]) -> str:
    origin = prov.get("origin")
    sources = prov.get("sources") or []
    calls = "; ".join(
        f"call {s.get('call')}, {s.get('tool')}"
        + (f" (decision {s['decision_id']})" if s.get("decision_id") else "")
        for s in sources
    )
    what = {
        "untrusted": "only from untrusted content",
        "pointed": "only from the untrusted document the request pointed at",
        "unseen": "from nowhere before (not the request, not any output)",
        "user": "from the user's request",
        "trusted": "from a trusted tool's output",
    }.get(str(origin), str(origin))
    return what + (f", in the output of {calls}" if calls else "")


def _change_text(change: dict[str, Any]) -> str:
    parts = [f"{k} {change[k]}" for k in ("approver_group", "fact") if change.get(k)]
    if change.get("threshold") is not None:
        parts.append(f"threshold {change['threshold']}, value {change.get('value')}")
    needed = change.get("context_needed") or []
    if needed:
        parts.append(f"context needed {', '.join(needed)}")
    extra = f" ({'; '.join(parts)})" if parts else ""
    return f"[{change.get('kind')}] {change.get('text')}{extra}"


def _print_reason(reason: dict[str, Any], out: TextIO) -> None:
    print(
        f"  reason {reason.get('rule_id')} [{reason.get('code')}]: {reason.get('message')}",
        file=out,
    )
    if reason.get("param") is not None:
        print(f"    parameter {reason['param']}", file=out)
    if reason.get("provenance"):
        print(f"    came {_provenance_text(reason['provenance'])}", file=out)
    if reason.get("would_change"):
        print(f"    would change it: {_change_text(reason['would_change'])}", file=out)


def _print_inputs(inputs: dict[str, Any], out: TextIO) -> None:
    if not inputs:
        return
    print("  inputs that mattered (redacted as the record is):", file=out)
    for name, seen in (inputs.get("parameters") or {}).items():
        value = json.dumps(seen["value"], sort_keys=True)[:300]
        origins = ", ".join(f"{p}: {'/'.join(o or [])}" for p, o in seen["provenance"].items())
        print(
            f"    parameter {name} = {value}" + (f"  (seen: {origins})" if origins else ""),
            file=out,
        )
    for name, fact in (inputs.get("facts") or {}).items():
        print(
            f"    fact {name} = {json.dumps(fact, sort_keys=True) if fact else 'absent'}", file=out
        )
    for key in ("risk_signals", "dependencies", "session"):
        if key in inputs:
            print(f"    {key} = {json.dumps(inputs[key], sort_keys=True)[:300]}", file=out)


def _print_opa(opa: dict[str, Any], recorded: str | None, out: TextIO) -> None:
    if "error" in opa:
        print(f"  OPA's explanation: not available ({opa['error']})", file=out)
        return
    same = "as recorded" if recorded is None or opa["policy"] == recorded else "NOT the recorded"
    print(
        f"  OPA's explanation (opa eval --explain debug, policy {opa['policy']}: {same}): "
        f"{opa['result']} {opa['matched_rules']}",
        file=out,
    )
    for rule in opa["rules"]:
        where = rule.get("location", "not reached under this policy")
        print(f"    rule {rule['rule_id']} ({where}): held {len(rule['instances'])}x", file=out)
        for n, inst in enumerate(rule["instances"], start=1):
            if len(rule["instances"]) > 1 or inst.get("rule"):
                print(f"      #{n} {inst.get('rule', '')}", file=out)
            for e in inst["expressions"]:
                vals = ", ".join(f"{k} = {v}" for k, v in e["values"].items())
                print(
                    f"      {e['location']}  {e['text']}" + (f"    [{vals}]" if vals else ""),
                    file=out,
                )


def _print(doc: dict[str, Any], out: TextIO) -> None:
    act = doc["action"]
    print(f"decision {doc['decision_id']} at {doc['issued_at']}: {doc['result']}", file=out)
    print(f"  {act['tool']}.{act['operation']} by {doc['principal']} in {doc['chain']}", file=out)
    print(f"  policy {(doc['policy'] or {}).get('revision')}", file=out)
    if doc["fail_closed"]:
        print("  fail closed (the service, not a rule, decided)", file=out)
    for reason in doc["reasons"]:
        _print_reason(reason, out)
    print(f"  matched rules {doc['matched_rules']}; risk {doc['risk']}", file=out)
    _print_inputs(doc.get("inputs") or {}, out)
    if "opa" in doc:
        _print_opa(doc["opa"], (doc["policy"] or {}).get("revision"), out)
    for follow in doc["followed_by"]:
        print(
            f"  then {follow['kind']}" + (f": {follow['result']}" if follow["result"] else ""),
            file=out,
        )
    record = doc["record"]
    if record is None:
        print("  no decision record (the policy was not asked, or it was archived)", file=out)
    else:
        bound = "bound to the receipt" if record["bound"] else "NOT bound to the receipt"
        print(f"  record ({bound}): the policy said {record['policy_verdict']}", file=out)
        for key, value in record["input"].items():
            print(f"    input.{key}: {json.dumps(value, sort_keys=True)[:400]}", file=out)
    if "now" in doc:
        now = doc["now"]
        print(f"  under {now['policy']}: {now['result']} {now['matched_rules']}", file=out)


def run(
    store_url: str,
    decision_id: str,
    *,
    layers: list[Path] | None = None,
    binary: str = "opa",
    as_json: bool = False,
    out: TextIO | None = None,
) -> int:
    """The command: 0 explained, 1 not found or cannot run."""
    out = out if out is not None else sys.stdout
    try:
        doc = asyncio.run(explain(store_url, decision_id, layers=layers, binary=binary))
    except (SidecarStartError, AarmError, OSError) as exc:
        print(f"error: {exc}", file=out)
        return 1
    if doc is None:
        print(f"error: no decision {decision_id!r} in {store_url}", file=out)
        return 1
    if as_json:
        print(json.dumps(doc, indent=2, sort_keys=True), file=out)
    else:
        _print(doc, out)
    return 0
