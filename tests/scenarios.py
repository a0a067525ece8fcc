"""Replay scenario files (tests/cases/scenarios/*.yaml) as black-box gRPC calls."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aarm.v1 import decision_pb2, session_pb2
from google.protobuf import json_format

SCENARIOS = Path(__file__).resolve().parent / "cases" / "scenarios"
SCHEMA = SCENARIOS.parent / "scenario.schema.json"

BASE_IDENTITY: dict[str, Any] = {
    "tenant": "acme",
    "human": "alice@acme.example",
    "service": "agent-platform",
    "agent": "agent-7",
    "roles": ["analyst"],
}


def load_all() -> list[dict[str, Any]]:
    """Every scenario document, sorted by file name."""
    return [yaml.safe_load(p.read_text()) for p in sorted(SCENARIOS.glob("*.yaml"))]


@dataclass
class StepResult:
    """What one step returned, for assertions and evidence."""

    index: int
    want: list[str]
    got: str
    codes: list[str]
    trigger: str
    decision_id: str
    ok: bool
    problem: str = ""


@dataclass
class ScenarioResult:
    """A scenario's steps; ``ok`` when every step matched."""

    id: str
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    def explain(self) -> str:
        return "; ".join(
            f"step {s.index}: want {s.want} got {s.got} {s.codes} {s.trigger} {s.problem}"
            for s in self.steps
            if not s.ok
        )


def _identity(doc: dict[str, Any], step: dict[str, Any], session_id: str) -> dict[str, Any]:
    ident = {**BASE_IDENTITY, **doc.get("identity", {}), **step.get("identity", {})}
    ident["session_id"] = step.get("session_id", session_id)
    return ident


def _pb_identity(ident: dict[str, Any]) -> Any:
    return json_format.ParseDict(ident, decision_pb2.Identity())


async def run(
    doc: dict[str, Any], decisions: Any, sessions: Any, session_id: str
) -> ScenarioResult:
    """Run one scenario against stubs of DecisionService and SessionService."""
    result = ScenarioResult(doc["id"])
    if "session" in doc:
        s = doc["session"]
        req = session_pb2.StartSessionRequest(
            identity=_pb_identity(_identity(doc, {}, session_id)),
            original_request=s["original_request"],
            intent_class=s.get("intent_class", ""),
            expected_scope=s.get("expected_scope", []),
        )
        if "max_classification" in s:
            req.max_classification = session_pb2.Classification.Value(
                f"CLASSIFICATION_{s['max_classification']}"
            )
        await sessions.StartSession(req)
    ids: dict[str, str] = {}
    for i, step in enumerate(doc["steps"], start=1):
        ident = _identity(doc, step, session_id)
        dec = step["decide"]
        body = {
            "identity": ident,
            "action": {
                "tool": dec["tool"],
                "operation": dec["operation"],
                "parameters": dec.get("parameters", {}),
                "dependsOn": [ids[d] for d in dec.get("depends_on", [])],
            },
            "facts": [
                {"name": k, "value": v, "source": "scenario"}
                for k, v in sorted(dec.get("facts", {}).items())
            ],
            "riskSignals": dec.get("risk_signals", {}),
        }
        resp = await decisions.Decide(json_format.ParseDict(body, decision_pb2.DecideRequest()))
        ids[f"${i}"] = resp.decision_id
        got = decision_pb2.Decision.Name(resp.decision).removeprefix("DECISION_")
        want = step["want"] if isinstance(step["want"], list) else [step["want"]]
        codes = [r.code for r in resp.reasons]
        trigger = resp.deferral.trigger
        ok, problem = got in want, ""
        if ok and "want_code" in step and step["want_code"] not in codes:
            ok, problem = False, f"missing code {step['want_code']}"
        if ok and "want_trigger" in step and trigger != step["want_trigger"]:
            ok, problem = False, f"trigger {trigger!r} != {step['want_trigger']!r}"
        result.steps.append(StepResult(i, want, got, codes, trigger, resp.decision_id, ok, problem))
        out = step.get("outcome")
        if out is not None and got in ("ALLOW", "MODIFY"):
            text = out.get("text", "")
            rec = session_pb2.RecordOutcomeRequest(
                identity=_pb_identity(ident),
                decision_id=resp.decision_id,
                status=session_pb2.OutcomeStatus.Value(
                    f"OUTCOME_STATUS_{out.get('status', 'EXECUTED')}"
                ),
                labels=out.get("labels", []),
                output_text=text,
                output_values=out.get("values", []),
                output_digest=hashlib.sha256(text.encode()).hexdigest(),
            )
            if "classification" in out:
                rec.classification = session_pb2.Classification.Value(
                    f"CLASSIFICATION_{out['classification']}"
                )
            if "trust" in out:
                rec.source_trust = session_pb2.Trust.Value(f"TRUST_{out['trust'].upper()}")
            await sessions.RecordOutcome(rec)
    return result


def schema() -> dict[str, Any]:
    """The scenario JSON schema."""
    return dict(json.loads(SCHEMA.read_text()))
