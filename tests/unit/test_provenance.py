"""Indicator extraction and argument provenance are pure and bounded."""

from __future__ import annotations

from aarm_pdp.provenance import classify as prov
from aarm_pdp.provenance.indicators import fingerprint, indicators_in_text


def test_indicators_found_and_normalised() -> None:
    text = (
        "Send it to Compliance@Attacker.com and see https://steal-keys.com/form?x=1. "
        "IBAN DE89 3704 0044 0532 0130 00, call +44 20 7946 0958, file /tmp/report.csv"
    )
    found = set(indicators_in_text(text))
    assert ("email", "compliance@attacker.com") in found
    assert ("domain", "attacker.com") in found
    assert ("url", "https://steal-keys.com/form?x=1") in found
    assert ("domain", "steal-keys.com") in found
    assert ("account", "DE89370400440532013000") in found
    assert ("phone", "442079460958") in found
    assert ("path", "/tmp/report.csv") in found


def test_fingerprints_hide_values() -> None:
    fp = fingerprint(("email", "alice@acme.example"))
    assert len(fp) == 32
    assert "alice" not in fp
    assert fp == fingerprint(("email", "alice@acme.example"))


def test_classify_origins() -> None:
    params = {
        "to": "payee@vendor.example",
        "amount": "25000",
        "memo": "from the user",
        "nested": {"url": "https://evil.example/x"},
    }
    per_param = prov.parameter_fingerprints(params)
    user = prov.fingerprints_of(["please pay 25000 to our vendor"])
    untrusted = prov.fingerprints_of(["remit to payee@vendor.example", "https://evil.example/x"])
    seen = dict.fromkeys(user, prov.USER)
    for fp in untrusted:
        seen[fp] = seen.get(fp, 0) | prov.TOOL_UNTRUSTED
    out = prov.classify(per_param, seen)
    assert out["parameters"]["to"]["origins"] == ["tool_untrusted"]
    assert out["parameters"]["amount"]["origins"] == ["user"]
    assert out["parameters"]["memo"]["origins"] == ["unseen"]
    assert out["untrusted_only"] == ["nested.url", "to"]
    assert out["unseen"] == ["memo"]


def test_mixed_origins_are_not_untrusted_only() -> None:
    per_param = prov.parameter_fingerprints({"to": "bob@partner.example"})
    fps = {fp for _, fp in per_param["to"]}
    seen = dict.fromkeys(fps, prov.USER | prov.TOOL_UNTRUSTED)
    out = prov.classify(per_param, seen)
    assert out["untrusted_only"] == []
    assert out["parameters"]["to"]["origins"] == ["user", "tool_untrusted"]


def test_bounded_walk() -> None:
    params = {"xs": [f"user{i}@x.example" for i in range(1000)]}
    assert len(prov.parameter_fingerprints(params)) <= 64
