"""The default scope derived from a plain request, and drift reaching its threshold from it."""

from __future__ import annotations

import json
from typing import Any

from aarm_pdp.drift.scope import ALWAYS_IN_SCOPE, derive_scope, request_words
from aarm_pdp.drift.score import DriftWeights, score

from tests.support.paths import REGO

_DATA = json.loads((REGO / "aarm" / "config" / "data.json").read_text())
PATTERNS: dict[str, str] = _DATA["intents"]["request_scope"]
TOOLS = {
    "email.read": "read",
    "email.send": "external_communication",
    "payments.transfer": "financial",
    "security.update_firewall_rule": "security_control",
    "travel.reserve_table": "financial",
    "sales.export_contacts": "external_communication",
    "bank.list_transactions": "read",
    "people.update_bank_details": "identity",
}
THRESHOLD = _DATA["intents"]["default"]["drift_threshold"]


def _session(scope: list[str], actions: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Drift of each action of a session whose request derived ``scope``."""
    out: list[dict[str, Any]] = []
    used: set[str] = set()
    outside: list[str] = []
    prev_max = prev_ema = 0.0
    for i, (name, category) in enumerate(actions):
        drift = score(
            tool=name.partition(".")[0],
            name=name,
            category=category,
            expected_scope=(),
            derived_scope=tuple(scope),
            outside=tuple(outside),
            max_classification=None,
            highest_seen=-1,
            predicted=-1,
            tools_used=used,
            action_count=i,
            previous_max=prev_max,
            previous_ema=prev_ema,
            weights=DriftWeights(),
        )
        used.add(name)
        if drift["scope_expansion"] and (category or name) not in outside:
            outside.append(category or name)
        prev_max, prev_ema = float(drift["max"]), float(drift["ema"])
        out.append(drift)
    return out


def test_plain_requests_imply_categories_and_reads() -> None:
    assert derive_scope("summarise my unread emails", PATTERNS, TOOLS) == [
        "external_communication",
        "read",
    ]
    assert derive_scope("pay the Oakridge invoice", PATTERNS, TOOLS) == ["financial", "read"]
    assert set(ALWAYS_IN_SCOPE) <= set(derive_scope("what is on today?", PATTERNS, TOOLS))


def test_tools_named_by_the_request_words_join_the_scope() -> None:
    scope = derive_scope("Export the Q4 renewals segment to the agency", PATTERNS, TOOLS)
    assert "external_communication" not in scope
    assert "sales.export_contacts" in scope
    scope = derive_scope("Export the segment and e-mail the agency", PATTERNS, TOOLS)
    assert "external_communication" in scope
    assert "sales.export_contacts" not in scope  # its category is in scope already
    scope = derive_scope("Find a quiet place near the river and a table for 4", PATTERNS, TOOLS)
    assert "travel.reserve_table" in scope
    assert "financial" not in scope


def test_generic_and_short_words_name_no_tool() -> None:
    # "update" and "details" are too generic, "bank" is not in the request.
    scope = derive_scope("Update the details of the offsite page", PATTERNS, TOOLS)
    assert "people.update_bank_details" not in scope


def test_no_text_no_scope() -> None:
    assert derive_scope("", PATTERNS, TOOLS) == []
    assert derive_scope("   ", PATTERNS, TOOLS) == []
    assert derive_scope("pay Anna", {}, TOOLS) == []  # a pack without request patterns


def test_deterministic_and_bad_patterns_skipped() -> None:
    patterns = {**PATTERNS, "broken": "(unclosed"}
    text = "pay Anna and e-mail her the receipt"
    assert derive_scope(text, patterns, TOOLS) == derive_scope(text, dict(PATTERNS), TOOLS)
    assert "broken" not in derive_scope(text, patterns, list(TOOLS.items()))


def test_word_stems() -> None:
    assert request_words("Reserved reserving reserves") == {"reserv"}
    assert "the" not in request_words("the cat")


def test_out_of_scope_payment_and_firewall_reach_the_threshold() -> None:
    scope = derive_scope("summarise my unread emails", PATTERNS, TOOLS)
    drift = _session(
        scope,
        [
            ("email.read", "read"),
            ("payments.transfer", "financial"),
            ("security.update_firewall_rule", "security_control"),
        ],
    )
    assert [d["components"]["scope"] for d in drift] == [0.0, 1.0, 1.0]
    assert all(d["scope_source"] == "derived" for d in drift)
    assert float(drift[1]["max"]) <= THRESHOLD  # one step outside: a loose request
    assert float(drift[2]["max"]) > THRESHOLD  # a second kind nobody asked for
    assert drift[2]["components"]["expansion"] == 1.0


def test_the_requested_payment_stays_in_scope() -> None:
    scope = derive_scope("pay the Oakridge invoice", PATTERNS, TOOLS)
    drift = _session(
        scope, [("bank.list_transactions", "read"), ("payments.transfer", "financial")]
    )
    assert [d["components"]["scope"] for d in drift] == [0.0, 0.0]
    assert float(drift[-1]["max"]) < THRESHOLD


def test_a_declared_scope_wins_over_the_derived_one() -> None:
    drift = score(
        tool="payments",
        name="payments.transfer",
        category="financial",
        expected_scope=("payments",),
        derived_scope=("read",),
        max_classification=None,
        highest_seen=-1,
        predicted=-1,
        tools_used=set(),
        action_count=0,
        previous_max=0.0,
        previous_ema=0.0,
        weights=DriftWeights(),
    )
    assert drift["components"]["scope"] == 0.0
    assert drift["scope_source"] == "declared"


def test_without_any_scope_nothing_is_out_of_scope() -> None:
    drift = _session([], [("email.read", "read"), ("payments.transfer", "financial")])
    assert drift[-1]["components"]["scope"] == 0.0
    assert drift[-1]["scope_source"] == "none"


def test_the_same_category_twice_is_one_expansion() -> None:
    drift = _session(
        ["read"],
        [
            ("email.read", "read"),
            ("payments.transfer", "financial"),
            ("payments.refund", "financial"),
        ],
    )
    assert drift[-1]["components"]["expansion"] == 0.0
    assert float(drift[-1]["max"]) <= THRESHOLD
