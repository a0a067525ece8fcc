"""Amount facts: numbers from strings with currencies, signs and separators."""

from __future__ import annotations

import pytest
from aarm_pdp.analysis import Limits, analyse_value


@pytest.mark.parametrize(
    ("value", "number", "currency", "strict"),
    [
        (9999, 9999.0, None, True),
        (9999.99, 9999.99, None, True),
        (1.5e4, 15000.0, None, True),
        ("15000", 15000.0, None, True),
        ("1.5e4", 15000.0, None, True),
        ("1e5", 100000.0, None, True),
        ("EUR 15000", 15000.0, "EUR", True),
        ("eur 12", 12.0, "EUR", True),
        ("9999.99 EUR", 9999.99, "EUR", True),
        ("USD -50", -50.0, "USD", True),
        ("-20000", -20000.0, None, True),
        ("CHF 1'000.50", 1000.5, "CHF", True),
        ("15,000.00", 15000.0, None, False),
        ("\u20ac15.000,00", 15000.0, "EUR", False),
        ("15 000", 15000.0, None, False),
        ("1.234.567,89 \u20ac", 1234567.89, "EUR", False),
        ("\u00a51,000,000", 1000000.0, "JPY", False),
        ("(1,200.00)", -1200.0, None, False),
    ],
)
def test_amounts(value: object, number: float, currency: str | None, strict: bool) -> None:
    facts = analyse_value("amount", value)
    assert facts["parsed"] is True
    assert (facts["value"], facts["currency"], facts["strict"]) == (number, currency, strict)
    assert facts["negative"] is (number < 0)


@pytest.mark.parametrize(
    ("value", "larger"), [("15.000", 15000.0), ("1,500", 1500.0), ("$25,000", 25000.0)]
)
def test_ambiguous_separator_reads_the_larger_amount(value: str, larger: float) -> None:
    facts = analyse_value("amount", value)
    assert facts["ambiguous"] is True and facts["value"] == larger


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("NaN", "not_finite"),
        ("Infinity", "not_finite"),
        ("12abc", "extra_text"),
        ("", "no_number"),
        ("1_000", "no_number"),
        ("--5", "no_number"),
        ("EUR 5 USD", "two_currencies"),
        (True, "not_a_number"),
        ([1], "not_a_number"),
        (float("inf"), "not_finite"),
    ],
)
def test_unparseable_amounts_have_no_value(value: object, reason: str) -> None:
    facts = analyse_value("amount", value)
    assert facts["parsed"] is False and facts["reason"] == reason and facts["value"] is None


def test_currency_companion_parameter() -> None:
    conflict = analyse_value("amount", "USD 100", context={"currency": "eur"})
    assert conflict["currency_param"] == "EUR" and conflict["currency_conflict"] is True
    same = analyse_value("amount", 100, context={"currency": "EUR"})
    assert same["currency_conflict"] is False


def test_length_limit() -> None:
    assert (
        analyse_value("amount", "1" * 10, limits=Limits(max_amount_chars=5))["reason"] == "too_long"
    )


def test_deterministic() -> None:
    assert analyse_value("amount", "\u20ac15.000,00") == analyse_value("amount", "\u20ac15.000,00")
