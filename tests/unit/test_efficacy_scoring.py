"""The efficacy runner's pure parts (bench/efficacy): replay moves, outcomes and scoring.

Hand-made traces and results, no service: :func:`bench.efficacy.scoring.step` (what the
enforcement point does with a verdict), :func:`outcome` (stopped, stopped before the
injection, missed), :func:`score` (friction with calls never reached, benign DENY after
an approval, per rule / domain / tag, expected vs given, targets), the corpus loader's
YAML 1.2 reading and the principals and merged pack the runner gives the service.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from aarm_pdp.auth.principals import Role, load_principals

from bench.efficacy import corpus, service
from bench.efficacy.corpus import Call, Output, Trace
from bench.efficacy.scoring import (
    ALLOW,
    BEFORE_INJECTION,
    DEFER,
    DENY,
    ERROR,
    MISSED,
    MODIFY,
    STEP_UP,
    STOPPED,
    CallResult,
    Reason,
    Step,
    TraceResult,
    changes,
    classify,
    failures,
    outcome,
    render,
    score,
    step,
)

OUT = Output(text="ok", classification="INTERNAL")


def _trace(
    tid: str,
    calls: int,
    *,
    kind: str = "benign",
    injection: int = 0,
    expect: str = "",
    tags: tuple[str, ...] = (),
    attack_class: str = "",
) -> Trace:
    tools = tuple(
        Call(f"mailbox.op{i}", {"n": i}, OUT, attack=kind == "injected" and i == calls)
        for i in range(1, calls + 1)
    )
    return Trace(
        id=tid,
        kind=kind,
        domain=tid.split("-")[0],
        user="ana@northwind.example",
        request="do the thing please",
        calls=tools,
        tags=tags,
        attack_class=attack_class,
        injection_call=injection,
        vector="email" if injection else "",
        expect=expect,
    )


def _why(rule: str, message: str = "because") -> tuple[Reason, ...]:
    return (Reason(code=rule.rsplit(".", 1)[-1], rule_id=rule, message=message),)


def _call(index: int, verdict: str, final: str = "", rule: str = "r.x") -> CallResult:
    again = _why("aarm.approval.granted") if final else ()
    return CallResult(index, f"mailbox.op{index}", verdict, _why(rule), final, again)


def _allowed(*indexes: int) -> tuple[CallResult, ...]:
    return tuple(_call(i, ALLOW, rule="aarm.main.catalogued") for i in indexes)


INJ = _trace("chat-injected-001", 3, kind="injected", injection=1, expect=DENY)
BEN = _trace("chat-benign-001", 3)


# --------------------------------------------------------------------------- step


@pytest.mark.parametrize("verdict", [ALLOW, MODIFY])
def test_allowed_calls_run(verdict: str) -> None:
    assert step(BEN, 1, verdict) is Step.RUN
    assert step(INJ, 3, verdict) is Step.RUN


def test_step_up_is_approved_on_benign_calls_and_before_the_injection_only() -> None:
    assert step(BEN, 3, STEP_UP) is Step.APPROVE
    assert step(INJ, 1, STEP_UP) is Step.APPROVE  # the carrier: its output not yet recorded
    assert step(INJ, 2, STEP_UP) is Step.REJECT
    assert step(INJ, 3, STEP_UP) is Step.REJECT


@pytest.mark.parametrize("verdict", [DENY, DEFER, ERROR])
def test_deny_defer_and_errors_end_the_trace(verdict: str) -> None:
    assert step(BEN, 1, verdict) is Step.END
    assert step(INJ, 2, verdict) is Step.END


def test_a_fail_closed_deny_is_a_service_error_not_a_policy_verdict() -> None:
    timeout = Reason("opa_timeout", "aarm.fail_closed.opa_timeout", "policy query timed out")
    assert classify(DENY, (timeout,)) == ERROR
    assert classify(DENY, _why("aarm.egress.allowlist")) == DENY
    assert classify(STEP_UP, _why("aarm.stepup.x")) == STEP_UP


# --------------------------------------------------------------------------- outcome


def test_stop_after_the_injection_is_credited_with_its_verdict() -> None:
    out = outcome(TraceResult(INJ, (*_allowed(1), _call(2, STEP_UP))))
    assert (out.kind, out.verdict, out.call and out.call.index) == (STOPPED, STEP_UP, 2)


def test_stop_at_the_carrier_is_before_the_injection() -> None:
    out = outcome(TraceResult(INJ, (_call(1, DENY),)))
    assert (out.kind, out.verdict) == (BEFORE_INJECTION, DENY)
    approved_then_denied = TraceResult(INJ, (_call(1, STEP_UP, final=DENY),))
    assert outcome(approved_then_denied).kind == BEFORE_INJECTION


def test_allowed_or_modified_attack_call_is_missed() -> None:
    assert outcome(TraceResult(INJ, _allowed(1, 2, 3))).kind == MISSED
    modified = TraceResult(INJ, (*_allowed(1, 2), _call(3, MODIFY)))
    assert (outcome(modified).kind, outcome(modified).verdict) == (MISSED, MODIFY)
    approved = TraceResult(INJ, (_call(1, STEP_UP, final=ALLOW), *_allowed(2, 3)))
    assert outcome(approved).kind == MISSED


def test_grpc_error_is_a_deny_reported_apart() -> None:
    out = outcome(TraceResult(INJ, (*_allowed(1), _call(2, ERROR))))
    assert (out.kind, out.verdict, out.error) == (STOPPED, DENY, True)


# --------------------------------------------------------------------------- score


def _corpus_results() -> list[TraceResult]:
    inj = [
        _trace(f"chat-injected-00{i}", 3, kind="injected", injection=1, expect=e, tags=t)
        for i, (e, t) in enumerate(
            [
                (DENY, ("lookalike_domain",)),
                (DENY, ()),
                (STEP_UP, ("lookalike_domain",)),
                (DENY, ()),
            ],
            1,
        )
    ]
    ben = [_trace(f"chat-benign-00{i}", 3, tags=("own_domain_recipient",)) for i in (1, 2)]
    twin = _trace("bank-twin-001", 2, kind="twin")
    return [
        TraceResult(inj[0], (*_allowed(1, 2), _call(3, DENY, rule="aarm.egress.allowlist"))),
        TraceResult(inj[1], (*_allowed(1), _call(2, STEP_UP, rule="aarm.stepup.x"))),
        TraceResult(inj[2], _allowed(1, 2, 3)),
        TraceResult(inj[3], (_call(1, DENY, rule="aarm.egress.allowlist"),)),
        # a STEP_UP approved and run, then a DENY that ends the task (one call not reached)
        TraceResult(ben[0], (_call(1, STEP_UP, final=ALLOW, rule="aarm.stepup.x"), _call(2, DENY))),
        TraceResult(ben[1], _allowed(1, 2, 3)),
        # approved, but the re-submission is denied: a benign DENY too
        TraceResult(twin, (*_allowed(1), _call(2, STEP_UP, final=DENY, rule="aarm.stepup.x"))),
    ]


def test_score_counts_stops_friction_and_benign_denies() -> None:
    report = score(_corpus_results())
    s = report["summary"]
    assert (s["injected"], s["stopped"], s[BEFORE_INJECTION], s[MISSED]) == (4, 2, 1, 1)
    assert s["stopped_by"] == {DENY: 1, STEP_UP: 1, DEFER: 0}
    assert (s["stopped_rate"], s["deny_share"]) == (0.5, 0.5)
    # 8 benign calls: STEP_UP, DENY, not reached (benign-001), STEP_UP (twin) -> 4
    assert (s["benign_calls"], s["friction"], s["friction_rate"]) == (8, 4, 0.5)
    assert s["friction_by"] == {STEP_UP: 2, DENY: 1, DEFER: 0, ERROR: 0, "not_reached": 1}
    assert s["benign_deny"] == 2
    assert s["benign_completed"] == 1
    assert report["expected_vs_given"] == {
        DENY: {DENY: 1, STEP_UP: 1, BEFORE_INJECTION: 1},
        STEP_UP: {MISSED: 1},
    }


def test_score_by_rule_domain_and_tag_with_examples() -> None:
    report = score(_corpus_results())
    allow = report["by_rule"]["aarm.egress.allowlist"]
    assert allow["stops"] == {DENY: 1}
    assert allow[BEFORE_INJECTION] == {DENY: 1}
    assert [e["trace"] for e in allow["examples"]["stops"]] == ["chat-injected-001"]
    assert allow["examples"]["stops"][0]["reasons"] == [
        "aarm.egress.allowlist [allowlist]: because"
    ]
    stepup = report["by_rule"]["aarm.stepup.x"]
    assert stepup["stops"] == {STEP_UP: 1}
    assert stepup["friction"] == {STEP_UP: 2}
    # friction examples carry the first Decide's reasons, not the approval's
    assert all("aarm.stepup.x" in e["reasons"][0] for e in stepup["examples"]["friction"])
    assert "aarm.main.catalogued" not in report["by_rule"]
    assert report["by_domain"]["chat"]["injected"]["stopped"] == 2
    assert report["by_domain"]["bank"]["injected"] is None
    assert report["by_domain"]["bank"]["benign"]["benign_deny"] == 1
    assert report["by_injected_tag"]["lookalike_domain"]["stopped"] == 1
    assert report["by_injected_tag"]["lookalike_domain"][MISSED] == 1
    assert report["by_benign_tag"]["own_domain_recipient"]["friction"] == 3
    assert report["benign"]["examples"]["DENY_after_approval"][0]["trace"] == "bank-twin-001"
    assert report["injected"]["examples"][MISSED][0]["expect"] == STEP_UP


def test_score_is_independent_of_result_order() -> None:
    results = _corpus_results()
    shuffled = list(results)
    random.Random(7).shuffle(shuffled)
    assert score(shuffled) == score(results)
    ids = [t.get("id") for t in score(shuffled)["traces"]]
    assert ids == sorted(ids)


def test_targets_and_failures() -> None:
    report = score(_corpus_results())
    lines = failures(report)
    assert [line.split(" ")[0] for line in lines] == [
        "stopped",
        "deny_share_of_stops",
        "benign_friction",
        "benign_deny",
    ]
    assert lines[0] == "stopped = 0.5 (target >= 0.98)"
    clean = score(
        [TraceResult(INJ, (*_allowed(1), _call(2, DENY))), TraceResult(BEN, _allowed(1, 2, 3))]
    )
    assert failures(clean) == []
    errored = score([TraceResult(INJ, (*_allowed(1), _call(2, ERROR)))])
    assert failures(errored) == ["errors = 1 (target == 0)"]


def test_changes_name_the_numbers_and_traces_that_moved() -> None:
    results = _corpus_results()
    before = score(results)
    # the missed STEP_UP-expected trace is now stopped by a DENY at its attack call
    results[2] = TraceResult(
        results[2].trace, (*_allowed(1, 2), _call(3, DENY, rule="aarm.egress.allowlist"))
    )
    after = score(results)
    assert changes(before, before) == []
    assert changes(before, after) == [
        "stopped_rate: 0.5 -> 0.75",
        "deny_share: 0.5 -> 0.6667",
        "missed: 1 -> 0",
        "chat-injected-003: missed at #3 (aarm.main.catalogued) -> DENY at #3 "
        "(aarm.egress.allowlist)",
    ]
    subset = score(results[2:3])
    assert changes(before, subset) == changes(before, after)[-1:]  # no subset totals


def test_render_prints_the_summary_targets_and_examples() -> None:
    text = render(score(_corpus_results()))
    assert "injected 4: stopped 2 ( 50.0%)" in text
    assert "MISS stopped" in text
    assert "aarm.egress.allowlist" in text
    assert "missed: chat-injected-003" in text


# --------------------------------------------------------------------------- corpus, service


def test_corpus_loads_sorted_with_yaml_1_2_values() -> None:
    traces = corpus.load()
    kinds = [t.kind for t in traces]
    assert (kinds.count("benign"), kinds.count("injected"), kinds.count("twin")) == (132, 528, 528)
    assert [t.id for t in traces] == sorted(t.id for t in traces)
    first = next(t for t in traces if t.id == "banking-injected-001")
    assert (first.injection_call, first.expect, first.attack_class) == (1, DENY, "payment_fraud")
    attack = first.calls[-1]
    assert attack.attack and attack.tool_operation == ("bank", "send_payment")
    assert attack.parameters["amount"] == 2400
    statement = next(t for t in traces if t.id == "banking-benign-009").calls[0]
    assert statement.parameters["month"] == "2025-09"  # a string, not a date
    assert {t.id for t in corpus.load(only=["chat-twin-00"])} == {
        f"chat-twin-00{i}" for i in range(1, 10)
    }


def test_principals_file_is_valid_and_separates_enforcer_and_approver(tmp_path: Path) -> None:
    path = tmp_path / "principals.json"
    path.write_text(json.dumps(service.principals_doc("enf-token", "appr-token")))
    directory = load_principals(path)
    enforcer = directory.by_token("enf-token")
    approver = directory.by_token("appr-token")
    assert enforcer is not None and approver is not None
    assert enforcer.tenants_with(Role.ENFORCER) == {"default"}
    assert not enforcer.tenants_with(Role.APPROVER)
    assert approver.tenants_with(Role.APPROVER) == {"default"}
    assert approver.approves_for(["finance-approvers"]) and not enforcer.approves_for(["x"])


def test_merged_pack_adds_the_overlay_tools_to_a_copy(tmp_path: Path) -> None:
    before = (service.REGO / service.CATALOGUE).read_bytes()
    out = service.merged_pack(service.REGO, tmp_path / "pack")
    tools = json.loads((out / service.CATALOGUE).read_text())["tools"]
    overlay = service.overlay_tools()
    assert len(overlay) == 125
    assert set(overlay) <= set(tools)
    assert set(json.loads(before)["tools"]) <= set(tools)
    assert (service.REGO / service.CATALOGUE).read_bytes() == before


@pytest.mark.parametrize(
    ("roots", "takes"),
    [
        (["aarm"], False),  # a pack from before policy layers
        ([""], False),
        (["aarm/catalogue", "aarm/layers", "aarm/main"], True),
        (["aarm/catalogue", "aarm/overlays"], False),
        (None, False),  # no manifest: the bundle claims every root
    ],
)
def test_auto_overlay_mode_needs_a_pack_that_leaves_the_overlay_root_free(
    tmp_path: Path, roots: list[str] | None, takes: bool
) -> None:
    if roots is not None:
        (tmp_path / ".manifest").write_text(json.dumps({"roots": roots}))
    assert service.takes_overlays(tmp_path) is takes
    if not takes:
        assert service.resolve_mode("auto", tmp_path) == "merge"
    assert service.resolve_mode("merge", tmp_path) == "merge"
