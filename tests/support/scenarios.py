"""Scenario files replayed as black-box gRPC calls: one schema, one runner, two transports.

A scenario (``tests/cases/scenarios/*.yaml``, and the conformance suite's extras in
``conformance/scenarios/``) is checked against ``tests/cases/scenario.schema.json``.
:func:`replay` is the runner: a generator that yields each gRPC :class:`Call` and is
sent its response, so it does no I/O itself. :func:`run` drives it over grpc.aio stubs
(the tests), :func:`run_blocking` over blocking stubs with a deadline (the conformance
suite); both return the same :class:`ScenarioResult`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from aarm.v1 import decision_pb2, session_pb2
from google.protobuf import json_format

from tests.support.paths import CASES

SCENARIOS = CASES / "scenarios"
SCHEMA = CASES / "scenario.schema.json"

BASE_IDENTITY: dict[str, Any] = {
    "tenant": "acme",
    "human": "alice@acme.example",
    "service": "agent-platform",
    "agent": "agent-7",
    "roles": ["analyst"],
}


def schema() -> dict[str, Any]:
    """The scenario JSON schema."""
    return dict(json.loads(SCHEMA.read_text()))


def files(*dirs: Path) -> list[Path]:
    """The scenario files of ``dirs`` (default: the test suite's), sorted by name per dir."""
    return [p for d in dirs or (SCENARIOS,) for p in sorted(d.glob("*.yaml"))]


def load(path: Path, *, validate: bool = False) -> dict[str, Any]:
    """One scenario document; ``validate`` checks it against the schema first."""
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    if validate:
        jsonschema.validate(doc, schema())
    return doc


def load_all(*dirs: Path, validate: bool = False) -> list[dict[str, Any]]:
    """Every scenario document of ``dirs`` (default: the test suite's), in file order."""
    return [load(p, validate=validate) for p in files(*dirs)]


def enum_value(enum: Any, name: str) -> Any:
    """An enum value by name (the generated stubs type ``Value`` as int)."""
    return enum.Value(name)


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
    """A scenario's steps; ``ok`` when there was one and every step matched."""

    id: str
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def explain(self) -> str:
        return "; ".join(
            f"step {s.index}: want {s.want} got {s.got} {s.codes} {s.trigger} {s.problem}"
            for s in self.steps
            if not s.ok
        )


@dataclass(frozen=True)
class Call:
    """One unary RPC the runner wants made: ``decisions`` or ``sessions``, method, request."""

    service: str
    method: str
    request: Any


def _identity(
    doc: dict[str, Any], step: dict[str, Any], session_id: str, prefix: str | None
) -> dict[str, Any]:
    ident = {**BASE_IDENTITY, **doc.get("identity", {}), **step.get("identity", {})}
    if "session_id" not in step:
        ident["session_id"] = session_id
    elif prefix is None:
        ident["session_id"] = step["session_id"]
    else:
        ident["session_id"] = f"{prefix}-{step['session_id']}"
    return ident


def _pb_identity(ident: dict[str, Any]) -> Any:
    return json_format.ParseDict(ident, decision_pb2.Identity())


def replay(
    doc: dict[str, Any], session_id: str, *, prefix: str | None = None
) -> Generator[Call, Any, ScenarioResult]:
    """The runner: yields every call of scenario ``doc`` and is sent each response.

    Steps run in session ``session_id``; a step naming its own ``session_id`` runs in
    that one, prefixed with ``prefix-`` when ``prefix`` is given (runs sharing a target).
    """
    result = ScenarioResult(doc["id"])
    if "session" in doc:
        s = doc["session"]
        req = session_pb2.StartSessionRequest(
            identity=_pb_identity(_identity(doc, {}, session_id, prefix)),
            original_request=s["original_request"],
            intent_class=s.get("intent_class", ""),
            expected_scope=s.get("expected_scope", []),
        )
        if "max_classification" in s:
            req.max_classification = enum_value(
                session_pb2.Classification, f"CLASSIFICATION_{s['max_classification']}"
            )
        yield Call("sessions", "StartSession", req)
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
        resp = yield Call(
            "decisions", "Decide", json_format.ParseDict(body, decision_pb2.DecideRequest())
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
                identity=_pb_identity(ident),
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
            yield Call("sessions", "RecordOutcome", rec)
    return result


async def run(
    doc: dict[str, Any],
    decisions: Any,
    sessions: Any,
    session_id: str,
    *,
    prefix: str | None = None,
) -> ScenarioResult:
    """Replay ``doc`` over grpc.aio stubs of DecisionService and SessionService."""
    stubs = {"decisions": decisions, "sessions": sessions}
    runner = replay(doc, session_id, prefix=prefix)
    response: Any = None
    try:
        while True:
            call = runner.send(response)
            response = await getattr(stubs[call.service], call.method)(call.request)
    except StopIteration as done:
        return done.value


def run_blocking(
    doc: dict[str, Any],
    decisions: Any,
    sessions: Any,
    session_id: str,
    *,
    prefix: str | None = None,
    timeout: float = 10.0,
) -> ScenarioResult:
    """Replay ``doc`` over blocking stubs, each call with a ``timeout`` deadline."""
    stubs = {"decisions": decisions, "sessions": sessions}
    runner = replay(doc, session_id, prefix=prefix)
    response: Any = None
    try:
        while True:
            call = runner.send(response)
            response = getattr(stubs[call.service], call.method)(call.request, timeout=timeout)
    except StopIteration as done:
        return done.value
