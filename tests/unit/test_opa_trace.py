"""The deciding rules kept from OPA's trace (aarm_pdp.opa.trace, pure part), on events
shaped as ``opa eval --format json --explain debug`` writes them."""

from __future__ import annotations

from typing import Any

from aarm_pdp.opa.trace import MAX_INSTANCES, deciding_rules, term_value

FILE = "/tmp/b/0-aarm/aarm/stepup/policy.rego"
SOURCE = {
    78: "_findings contains _finding(rego.metadata.rule(), sprintf(",
    82: "\trule := _cfg.large_payment",
    83: "\tsome payment in _payments",
    84: "\tpayment.value > payment.threshold",
}
RULE = {
    "annotations": [{"scope": "rule", "custom": {"rule_id": "aarm.stepup.large_payment"}}],
    "head": {"name": "_findings"},
}
OTHER = {"annotations": [{"custom": {"rule_id": "aarm.other"}}], "head": {"name": "x"}}


def _loc(row: int, col: int = 2) -> dict[str, Any]:
    return {"file": FILE, "row": row, "col": col}


def _num(n: float) -> dict[str, Any]:
    return {"type": "number", "value": n}


def _evaluation(query: int, value: float) -> list[dict[str, Any]]:
    """Enter the rule, evaluate its body (and a generated head term), exit with bindings."""
    payment = {"type": "object", "value": [[{"type": "string", "value": "value"}, _num(value)]]}
    return [
        {"Op": "Enter", "Node": RULE, "Location": _loc(78, 1), "QueryID": query},
        {"Op": "Eval", "Node": {"generated": True}, "Location": _loc(78, 29), "QueryID": query},
        {"Op": "Eval", "Node": {"index": 1}, "Location": _loc(82), "QueryID": query},
        {"Op": "Eval", "Node": {"index": 2}, "Location": _loc(83), "QueryID": query},
        {"Op": "Eval", "Node": {"index": 9}, "Location": _loc(84), "QueryID": query + 100},
        {"Op": "Eval", "Node": {"index": 3}, "Location": _loc(84), "QueryID": query},
        {
            "Op": "Exit",
            "Node": RULE,
            "Location": _loc(78, 1),
            "QueryID": query,
            "Locals": [
                {"name": "__local1__", **payment},
                {"name": "__local7__", **_num(value)},
                {"name": "__local8__", **_num(10000)},
                {"name": "__local9__", "type": "string", "value": "head only"},
            ],
            "LocalMetadata": {
                "__local1__": {"name": "payment", "location": _loc(83, 7)},
                "__local7__": {"name": "__local7__", "location": _loc(84, 2)},
                "__local8__": {"name": "__local8__", "location": _loc(84, 18)},
                "__local9__": {"name": "__local9__", "location": _loc(78, 29)},
            },
        },
    ]


def _rules(events: list[dict[str, Any]], *ids: str) -> list[dict[str, Any]]:
    return deciding_rules(
        events,
        ids,
        source_line=lambda file, row: SOURCE.get(row, "") if file == FILE else "",
        shown=lambda file: "rego/aarm/stepup/policy.rego" if file == FILE else file,
    )


def test_term_values() -> None:
    obj = {
        "type": "object",
        "value": [
            [{"type": "string", "value": "a"}, {"type": "array", "value": [_num(1), _num(2)]}],
            [{"type": "string", "value": "s"}, {"type": "set", "value": [_num(2), _num(1)]}],
            [{"type": "string", "value": "n"}, {"type": "null"}],
        ],
    }
    assert term_value(obj) == {"a": [1, 2], "s": [1, 2], "n": None}
    assert term_value({"type": "var", "value": "x"}) == "<x>"
    assert term_value({"type": "call", "value": []}) == "<call>"


def test_a_deciding_rule_shows_the_body_lines_that_held_with_their_values() -> None:
    [rule] = _rules(_evaluation(5, 25000), "aarm.stepup.large_payment")
    assert rule["location"] == "rego/aarm/stepup/policy.rego:78"
    [inst] = rule["instances"]
    assert inst["rule"] == "_findings"
    assert inst["expressions"] == [
        {"location": "rego/aarm/stepup/policy.rego:82", "text": SOURCE[82].strip(), "values": {}},
        {
            "location": "rego/aarm/stepup/policy.rego:83",
            "text": "some payment in _payments",
            "values": {"payment": '{"value":25000}'},
        },
        {
            "location": "rego/aarm/stepup/policy.rego:84",
            "text": "payment.value > payment.threshold",
            "values": {"payment.value": "25000", "payment.threshold": "10000"},
        },
    ]


def test_each_evaluation_is_an_instance_and_other_rules_are_left_out() -> None:
    events = _evaluation(5, 25000) + _evaluation(6, 30000)
    events.append({"Op": "Exit", "Node": OTHER, "Location": _loc(90, 1), "QueryID": 7})
    [rule] = _rules(events, "aarm.stepup.large_payment")
    assert [i["expressions"][1]["values"] for i in rule["instances"]] == [
        {"payment": '{"value":25000}'},
        {"payment": '{"value":30000}'},
    ]
    many = [e for q in range(MAX_INSTANCES + 2) for e in _evaluation(q * 10, q)]
    [capped] = _rules(many, "aarm.stepup.large_payment")
    assert len(capped["instances"]) == MAX_INSTANCES and capped["more"] == 2


def test_a_rule_that_did_not_hold_is_listed_without_instances() -> None:
    assert _rules(_evaluation(5, 1), "aarm.missing") == [
        {"rule_id": "aarm.missing", "instances": []}
    ]
