"""E-mail facts (email-validator, no DNS): the delivery domain, however the address is dressed."""

from __future__ import annotations

import pytest
from aarm_pdp.analysis import Limits, analyse_value


@pytest.mark.parametrize(
    ("address", "local", "domain", "registrable"),
    [
        ("attacker@evil.com", "attacker", "evil.com", "evil.com"),
        ("ATTACKER@Evil.Com", "ATTACKER", "evil.com", "evil.com"),
        ("drop@mail.evil.com", "drop", "mail.evil.com", "evil.com"),
        ("attacker+acme.example@evil.com", "attacker+acme.example", "evil.com", "evil.com"),
        ('"alice@acme.example"@evil.com', '"alice@acme.example"', "evil.com", "evil.com"),
        ("Alice Acme <attacker@evil.com>", "attacker", "evil.com", "evil.com"),
        ('"bob@partner.example" <spy@webhook.site>', "spy", "webhook.site", "webhook.site"),
        ("attacker@evil\u3002com", "attacker", "evil.com", "evil.com"),
        ("attacker@\u0435vil.com", "attacker", "xn--vil-qdd.com", "xn--vil-qdd.com"),
        ("carol%partner.example@evil.com", "carol%partner.example", "evil.com", "evil.com"),
        ("evil.com@acme.example", "evil.com", "acme.example", "acme.example"),
        ("first.last@eu.acme.example", "first.last", "eu.acme.example", "acme.example"),
    ],
)
def test_delivery_domain(address: str, local: str, domain: str, registrable: str) -> None:
    facts = analyse_value("email", address)
    assert facts["parsed"] is True
    assert (facts["local_part"], facts["ascii_domain"], facts["registrable_domain"]) == (
        local,
        domain,
        registrable,
    )


def test_parts_and_flags() -> None:
    facts = analyse_value("email", '"Bob" <bob+invoices@partner.example>')
    assert facts["display_name"] == "Bob"
    assert facts["subaddress"] == "invoices"
    assert facts["quoted_local"] is False
    quoted = analyse_value("email", '"a b"@acme.example')
    assert quoted["quoted_local"] is True and quoted["subaddress"] is None


def test_homoglyph_domain_skeleton() -> None:
    facts = analyse_value("email", "carol@acm\u0435.example")
    assert facts["idn"] is True
    assert facts["registrable_skeleton"] == "acme.example"
    assert facts["smtputf8"] is False


def test_domain_literal() -> None:
    facts = analyse_value("email", "carol@[203.0.113.7]")
    assert facts["domain_literal"] is True
    assert facts["ip"]["address"] == "203.0.113.7"
    assert facts["registrable_domain"] is None


@pytest.mark.parametrize(
    ("value", "fallback"),
    [
        ("attacker@evil.com.", "evil.com"),
        ("x@localhost", "localhost"),
        ("a@@EVIL.com", "evil.com"),
        ("Name <a@evil\u3002com", "evil.com"),
        ("no-at-sign", None),
    ],
)
def test_unparseable_address_keeps_a_fallback_domain(value: str, fallback: str | None) -> None:
    facts = analyse_value("email", value)
    assert facts["parsed"] is False
    assert facts["ascii_domain"] is None
    assert facts["fallback_domain"] == fallback


def test_limits_and_types() -> None:
    assert (
        analyse_value("email", "a@b.example", limits=Limits(max_email_chars=3))["reason"]
        == "too_long"
    )
    assert analyse_value("email", ["a@b.example"])["reason"] == "not_a_string"


def test_deterministic() -> None:
    value = "Alice <alice+x@\u0435vil.com>"
    assert analyse_value("email", value) == analyse_value("email", value)
