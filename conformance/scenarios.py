"""Replay scenario files as black-box gRPC calls (the runner of tests/scenarios.py, blocking).

Scenario files come from ``tests/cases/scenarios`` (read as data) and from
``conformance/scenarios`` (the ones the test suite lacks). Both are validated against
``conformance/scenario.schema.json``, a superset of the test schema that also allows
``probe`` (a flow scripted in Python) and ``not_implemented`` (a declared gap).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import yaml
from aarm.v1 import decision_pb2, session_pb2
from google.protobuf import json_format

from conformance.harness import HERE, ROOT, Clients

DIRS = (ROOT / "tests" / "cases" / "scenarios", HERE / "scenarios")
SCHEMA = HERE / "scenario.schema.json"

BASE_IDENTITY: dict[str, Any] = {
    "tenant": "acme",
    "human": "alice@acme.example",
    "service": "agent-platform",
    "agent": "agent-7",
    "roles": ["analyst"],
}


def enum_value(enum: Any, name: str) -> Any:
    """An enum value by name (the generated stubs type ``Value`` as int)."""
    return enum.Value(name)


def load_all() -> dict[str, dict[str, Any]]:
    """Every scenario document by id; conformance/scenarios wins over tests/cases."""
    schema = json.loads(SCHEMA.read_text())
    docs: dict[str, dict[str, Any]] = {}
    for d in DIRS:
        for path in sorted(d.glob("*.yaml")):
            doc = yaml.safe_load(path.read_text())
            jsonschema.validate(doc, schema)
            doc["_file"] = str(path.relative_to(ROOT))
            docs[doc["id"]] = doc
    return docs


@dataclass
class StepResult:
    """What one step returned."""

    index: int
    want: list[str]
    got: str
    codes: list[str]
    trigger: str
    decision_id: str
    ok: bool
    problem: str = ""
    response: Any = None

    def evidence(self) -> str:
        trig = f" trigger={self.trigger}" if self.trigger else ""
        bad = (
            ""
            if self.ok
            else f" (want {'|'.join(self.want)}{' ' + self.problem if self.problem else ''})"
        )
        return (
            f"step {self.index}: {self.got} {self.codes}{trig} decision_id={self.decision_id}{bad}"
        )


@dataclass
class ScenarioResult:
    """A scenario's steps; ``ok`` when every step matched."""

    id: str
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)


def _identity(
    doc: dict[str, Any], step: dict[str, Any], session_id: str, prefix: str
) -> dict[str, Any]:
    ident = {**BASE_IDENTITY, **doc.get("identity", {}), **step.get("identity", {})}
    ident["session_id"] = f"{prefix}-{step['session_id']}" if "session_id" in step else session_id
    return ident


def run(doc: dict[str, Any], c: Clients, session_id: str, prefix: str) -> ScenarioResult:
    """Run one scenario's steps against a deployment."""
    result = ScenarioResult(doc["id"])
    if "session" in doc:
        s = doc["session"]
        req = session_pb2.StartSessionRequest(
            identity=json_format.ParseDict(
                _identity(doc, {}, session_id, prefix), decision_pb2.Identity()
            ),
            original_request=s["original_request"],
            intent_class=s.get("intent_class", ""),
            expected_scope=s.get("expected_scope", []),
        )
        if "max_classification" in s:
            req.max_classification = enum_value(
                session_pb2.Classification, f"CLASSIFICATION_{s['max_classification']}"
            )
        c.sessions.StartSession(req, timeout=10)
    ids: dict[str, str] = {}
    for i, step in enumerate(doc.get("steps", []), start=1):
        ident = _identity(doc, step, session_id, prefix)
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
        resp = c.decide.Decide(
            json_format.ParseDict(body, decision_pb2.DecideRequest()), timeout=10
        )
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
        result.steps.append(
            StepResult(i, want, got, codes, trigger, resp.decision_id, ok, problem, resp)
        )
        out = step.get("outcome")
        if out is not None and got in ("ALLOW", "MODIFY"):
            text = out.get("text", "")
            rec = session_pb2.RecordOutcomeRequest(
                identity=json_format.ParseDict(ident, decision_pb2.Identity()),
                decision_id=resp.decision_id,
                status=enum_value(
                    session_pb2.OutcomeStatus, f"OUTCOME_STATUS_{out.get('status', 'EXECUTED')}"
                ),
                labels=out.get("labels", []),
                output_text=text,
                output_values=out.get("values", []),
                output_digest=hashlib.sha256(text.encode()).hexdigest(),
            )
            if "classification" in out:
                rec.classification = enum_value(
                    session_pb2.Classification, f"CLASSIFICATION_{out['classification']}"
                )
            if "trust" in out:
                rec.source_trust = enum_value(session_pb2.Trust, f"TRUST_{out['trust'].upper()}")
            c.sessions.RecordOutcome(rec, timeout=10)
    return result
