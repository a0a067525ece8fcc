"""Name facts: NFKC, case folding, trimming and the confusable skeleton."""

from __future__ import annotations

import pytest
from aarm_pdp.analysis import Limits, analyse_value


@pytest.mark.parametrize(
    ("value", "skeleton", "tokens"),
    [
        ("Production ", "production", ["production"]),
        (" PRODUCTION", "production", ["production"]),
        ("pr\u043eduction", "production", ["production"]),
        ("\uff50\uff52\uff4f\uff44", "prod", ["prod"]),
        ("\u24df\u24e1\u24de\u24d3", "prod", ["prod"]),
        ("production\u200b", "production", ["production"]),
        ("prod\u00aduction", "production", ["production"]),
        ("PR\u041eD-EU-1", "prod-eu-1", ["prod", "eu", "1"]),
        ("prod1", "prod1", ["prod", "1"]),
        ("proddb", "proddb", ["proddb"]),
        ("customers_prod", "customers_prod", ["customers", "prod"]),
        ("livestock_demo", "livestock_demo", ["livestock", "demo"]),
        ("\u0391\u03a1\u0399", "api", ["api"]),
        ("m\u00fcnchen", "m\u00fcnchen", ["m\u00fcnchen"]),
    ],
)
def test_skeletons_and_tokens(value: str, skeleton: str, tokens: list[str]) -> None:
    facts = analyse_value("name", value)
    assert facts["parsed"] is True
    assert (facts["skeleton"], facts["tokens"]) == (skeleton, tokens)


def test_flags() -> None:
    cyrillic = analyse_value("name", "pr\u043eduction")
    assert cyrillic["confusable"] is True and cyrillic["ascii"] is False
    assert cyrillic["normalized"] == "pr\u043eduction"
    plain = analyse_value("name", "Prod ")
    assert plain["confusable"] is False and plain["normalized"] == "prod"


def test_digits_are_not_remapped() -> None:
    assert analyse_value("name", "pr0d")["skeleton"] == "pr0d"


@pytest.mark.parametrize(("value", "reason"), [(1, "not_a_string"), ("x" * 300, "too_long")])
def test_unparseable_names(value: object, reason: str) -> None:
    facts = analyse_value("name", value, limits=Limits(max_name_chars=256))
    assert facts["parsed"] is False and facts["reason"] == reason


def test_deterministic() -> None:
    assert analyse_value("name", "PR\u041eD") == analyse_value("name", "PR\u041eD")
