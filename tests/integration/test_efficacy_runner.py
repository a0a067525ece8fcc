"""The efficacy runner's replay against the real service (bench/efficacy/replay.py).

The service runs as ``make efficacy`` runs it (``bench.efficacy.service.running``: a child
``aarm-pdp serve``, managed OPA, its own principals), on a tiny pack whose verdict is
named by the operation, so the test does not depend on the reference rules (which the
corpus measures, and which change). It checks the enforcement point's moves: a STEP_UP
approved through ResolveApproval by the approver principal while the enforcement point
waits on WatchApproval, re-submitted with the watch's token (ALLOW, "approved by
efficacy-approver"), a STEP_UP after the injection rejected,
DENY and DEFER ending a trace, every run call's outcome recorded, and the scores.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench.efficacy import service
from bench.efficacy.corpus import Call, Output, Trace
from bench.efficacy.run import replay_all
from bench.efficacy.scoring import ALLOW, DEFER, DENY, STEP_UP, STOPPED, outcome, score

pytestmark = pytest.mark.integration

PACK = """package aarm.main

_op := input.action.operation

_base := {
	"reasons": [{"code": "test", "rule_id": concat(".", ["t", _op]), "message": _op}],
	"matched_rules": [concat(".", ["t", _op])],
	"risk": {"level": "LOW", "score": 0.1},
}

decision := object.union(_base, {
	"decision": "STEP_UP",
	"approval": {"approvers": ["efficacy-test"], "timeout_seconds": 600},
}) if startswith(_op, "step")

else := object.union(_base, {"decision": "DENY"}) if _op == "deny"

else := object.union(_base, {
	"decision": "DEFER",
	"deferral": {"trigger": "missing_context", "context_needed": ["ticket"], "timeout_seconds": 60},
}) if _op == "defer"

else := object.union(_base, {"decision": "ALLOW"})
"""

OUT = Output(text="the tool's output", classification="INTERNAL", labels=("PII",), values=("v",))


def _trace(tid: str, ops: list[str], *, injection: int = 0) -> Trace:
    kind = "injected" if injection else tid.split("-")[1]
    calls = tuple(
        Call(f"x.{op}", {"n": i, "who": "a b"}, OUT, attack=bool(injection) and i == len(ops))
        for i, op in enumerate(ops, 1)
    )
    return Trace(
        id=tid,
        kind=kind,
        domain="chat",
        user="ana@northwind.example",
        request="please do the work",
        calls=calls,
        injection_call=injection,
        expect=STEP_UP if injection else "",
    )


TRACES = [
    _trace("chat-benign-901", ["read", "step_send", "read"]),
    _trace("chat-benign-902", ["read", "deny", "read"]),
    _trace("chat-twin-903", ["defer", "read"]),
    _trace("chat-injected-904", ["step_read", "read", "step_send"], injection=1),
]


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    root = tmp_path / "pack"
    (root / "aarm" / "main").mkdir(parents=True)
    (root / "aarm" / "main" / "main.rego").write_text(PACK)
    (root / ".manifest").write_text(json.dumps({"revision": "t", "roots": ["aarm"]}))
    return root


def test_replay_runs_the_approval_flow_and_ends_traces_on_stops(
    opa_binary: str, pack: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with service.running(work, mode="none", pack=pack, opa=Path(opa_binary)) as endpoint:
        results, stats = asyncio.run(replay_all(endpoint, TRACES, 2))
    by_id = {r.trace.id: r for r in results}
    assert [r.trace.id for r in results] == sorted(by_id)
    assert all(not r.error for r in results), [r.error for r in results]

    approved = by_id["chat-benign-901"]
    assert [(c.verdict, c.final) for c in approved.calls] == [
        (ALLOW, ""),
        (STEP_UP, ALLOW),
        (ALLOW, ""),
    ]
    assert approved.calls[1].final_reasons[0].code == "approved"
    assert service.APPROVER in approved.calls[1].final_reasons[0].message
    assert approved.calls[1].reasons[0].rule_id == "t.step_send"

    assert [c.verdict for c in by_id["chat-benign-902"].calls] == [ALLOW, DENY]
    assert [c.verdict for c in by_id["chat-twin-903"].calls] == [DEFER]

    injected = by_id["chat-injected-904"]
    # The carrier's STEP_UP comes before the injection: approved; the attack's: rejected.
    assert [(c.verdict, c.final) for c in injected.calls] == [
        (STEP_UP, ALLOW),
        (ALLOW, ""),
        (STEP_UP, ""),
    ]
    assert (outcome(injected).kind, outcome(injected).verdict) == (STOPPED, STEP_UP)

    # Decides: 3+1 (901), 2 (902), 1 (903), 3+1 (904); approvals: 2 granted, 1 rejected;
    # outcomes: every call that ran.
    assert (stats.decides, stats.approvals, stats.outcomes) == (11, 3, 6)
    assert stats.watched == 3  # each answer reached the enforcement point on WatchApproval
    report = score(results)
    assert report["summary"]["benign_deny"] == 1
    assert report["summary"]["friction_by"] == {
        STEP_UP: 1,
        DENY: 1,
        DEFER: 1,
        "ERROR": 0,
        "not_reached": 2,
    }
    assert report["summary"]["service_errors"] == 0
