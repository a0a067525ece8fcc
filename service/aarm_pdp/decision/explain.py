"""``aarm-pdp explain DECISION_ID``: why a recorded decision came out as it did.

From the receipt store: the decision receipt (verdict, reasons with their rule ids,
matched rules, risk, the policy revision), the receipts that followed it (outcome,
approval, overturned, ...), and the decision record beside it (checked against the
receipt's ``decision.input_sha256``): the policy's own verdict and the parts of the
input the rules decide on. With ``--policy`` the recorded input is evaluated again on a
private OPA running those layers, to show what they would decide now.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from aarm_pdp.decision.result import parse_result
from aarm_pdp.errors import AarmError
from aarm_pdp.opa.client import OpaClient
from aarm_pdp.opa.sidecar import ManagedOpa, SidecarStartError
from aarm_pdp.receipts.body import input_sha256
from aarm_pdp.receipts.factory import open_store

__all__ = ["explain", "run"]

_INPUT_PARTS = ("action", "identity", "risk_signals", "analysis", "provenance", "drift")


async def explain(
    store_url: str, decision_id: str, *, layers: list[Path] | None = None, binary: str = "opa"
) -> dict[str, Any] | None:
    """The explanation document, or None when the store has no such decision."""
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
        if layers and bound:
            doc["now"] = await _evaluate(record["input"], layers, binary)
    return doc


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


def _print(doc: dict[str, Any], out: TextIO) -> None:
    act = doc["action"]
    print(f"decision {doc['decision_id']} at {doc['issued_at']}: {doc['result']}", file=out)
    print(f"  {act['tool']}.{act['operation']} by {doc['principal']} in {doc['chain']}", file=out)
    print(f"  policy {(doc['policy'] or {}).get('revision')}", file=out)
    if doc["fail_closed"]:
        print("  fail closed (the service, not a rule, decided)", file=out)
    for reason in doc["reasons"]:
        print(
            f"  reason {reason.get('rule_id')} [{reason.get('code')}]: {reason.get('message')}",
            file=out,
        )
    print(f"  matched rules {doc['matched_rules']}; risk {doc['risk']}", file=out)
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
