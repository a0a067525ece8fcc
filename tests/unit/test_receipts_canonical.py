"""RFC 8785 canonical JSON: the RFC's own examples, number formatting, key order."""

from __future__ import annotations

import json
import math
import random

import pytest
import rfc8785
from aarm_pdp.errors import ReceiptInvalid
from aarm_pdp.receipts.canonical import canonicalize, parse


def test_rfc8785_section_3_2_2_example() -> None:
    # RFC 8785 §3.2.2: the input as JSON text, parsed, then canonicalised.
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    want = (
        '{"literals":[null,true,false],'
        '"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonicalize(json.loads(text)) == want.encode("utf-8")


def test_rfc8785_section_3_2_3_sorting_by_utf16_code_units() -> None:
    obj = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    got = parse(canonicalize(obj))
    # U+1F600 is the surrogate pair D83D DE00, which sorts BEFORE U+FB33 in UTF-16
    # although it comes after it in code points (and in Python's default order).
    assert list(got) == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert sorted(obj) != list(got)


@pytest.mark.parametrize(
    ("value", "want"),
    [
        # RFC 8785 Appendix B (IEEE 754 -> ES6 Number.toString)
        (0.0, "0"),
        (-0.0, "0"),
        (5e-324, "5e-324"),
        (-5e-324, "-5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (-1.7976931348623157e308, "-1.7976931348623157e+308"),
        (9007199254740991.0, "9007199254740991"),
        (-9007199254740991.0, "-9007199254740991"),
        (295147905179352830000.0, "295147905179352830000"),
        (9.999999999999997e22, "9.999999999999997e+22"),
        (1e23, "1e+23"),
        (999999999999999700000.0, "999999999999999700000"),
        (999999999999999900000.0, "999999999999999900000"),
        (1e21, "1e+21"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (4.5, "4.5"),
        (4.0, "4"),
        (0.002, "0.002"),
        (1, "1"),
        (-42, "-42"),
        (9007199254740991, "9007199254740991"),
    ],
)
def test_number_formatting(value: float, want: str) -> None:
    assert canonicalize(value) == want.encode()


@pytest.mark.parametrize(
    "bad",
    [
        math.nan,
        math.inf,
        -math.inf,
        2**53 + 1,  # no double is 2**53 + 1: it would be written 9007199254740992
        -(2**53) - 1,
        1_777_600_000_000_000_001,  # a nanosecond timestamp
        10**400,  # beyond any double
        pytest.param(10**5000, id="10**5000"),  # beyond what str() converts
        {1: "non-string key"},
        "\ud800",
        {"a": {"\ud800": 1}},  # a lone surrogate in a nested key (rfc8785's own sort)
        object(),
    ],
)
def test_values_without_a_canonical_form_are_refused(bad: object) -> None:
    with pytest.raises(ReceiptInvalid):
        canonicalize(bad)


@pytest.mark.parametrize(
    ("value", "want"),
    [
        # An integral double of 2**53 or more is written in full below 1e21, so receipt
        # text holds such integers and every JSON parser reads them back as ints: an int
        # that is a double, or is written like one, is that double.
        (2**53, "9007199254740992"),
        (-(2**53), "-9007199254740992"),
        (10**20, "100000000000000000000"),
        (1_152_921_504_606_847_000, "1152921504606847000"),  # how the double 2**60 is written
        (2**60, "1152921504606847000"),  # exactly a double: its value is kept
        (2**63, "9223372036854776000"),
        (999_999_999_999_999_900_000, "999999999999999900000"),
        (
            {"é": [10**20, 1e20, 2.0**53]},
            '{"é":[100000000000000000000,100000000000000000000,9007199254740992]}',
        ),
    ],
)
def test_big_integers_that_are_canonical_doubles(value: object, want: str) -> None:
    assert canonicalize(value) == want.encode()
    assert canonicalize(parse(canonicalize(value))) == want.encode()


def test_strings_escape_only_what_json_requires() -> None:
    assert canonicalize("é\u2028\x7f\x1f</") == '"é\u2028\x7f\\u001f</"'.encode()


def test_canonical_form_is_a_fixed_point() -> None:
    obj = {"b": [1.5, {"y": None, "x": True}], "a": "ü", "c": 1e-9}
    once = canonicalize(obj)
    assert canonicalize(parse(once)) == once
    assert once == b'{"a":"\xc3\xbc","b":[1.5,{"x":true,"y":null}],"c":1e-9}'


@pytest.mark.parametrize("text", ['{"a":1,"a":2}', '{"a":NaN}', '{"a":Infinity}', "{"])
def test_parse_refuses_ambiguous_or_non_standard_json(text: str) -> None:
    with pytest.raises(ReceiptInvalid):
        parse(text)


def test_assembling_members_equals_canonicalising_the_whole() -> None:
    from aarm_pdp.receipts.envelope import assemble

    obj: dict[str, object] = {
        "\u20ac": 1,
        "\r": [1.5, None],
        "\ufb33": {"b": 1, "a": 2},
        "1": "One",
        "\U0001f600": True,
        "\u0080": 1e30,
        "\u00f6": "x",
        "signature": {"value": "AA=="},
        "chain": {"seq": 1},
    }
    members = {k: canonicalize(v) for k, v in obj.items()}
    assert assemble(members) == canonicalize(obj)


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kinds = ["int", "float", "str", "bool", "none"] + (["dict", "list"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, 1, -1, 7, 2**53 - 1, -(2**53) + 1, rng.randint(-(10**6), 10**6)])
    if kind == "float":
        return rng.choice(
            [
                0.5,
                -0.25,
                0.1,
                1e-6,
                9.9e20,
                1e21,
                1e-7,
                123.456,
                1.0,
                -3.0,
                rng.uniform(-1e6, 1e6),
                rng.random() * 1e-3,
                5e-324,
                1.7976931348623157e308,
            ]
        )
    if kind == "str":
        return rng.choice(
            [
                "",
                "a",
                "é",
                "\u2028",
                "\x00\x1f\x7f",
                'q"\\',
                "\n\t\b\f\r",
                "\U0001f600",
                "ab\ud7ff",
                "\ue000",
                "<script>",
            ]
        )
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "none":
        return None
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["a", "b", "A", "_", "z9", "é", "\U0001f600", "\ue000", "", "aa", "ab"]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def test_fast_path_is_byte_identical_to_rfc8785() -> None:
    rng = random.Random(8785)
    for _ in range(3000):
        value = _random_value(rng)
        assert canonicalize(value) == rfc8785.dumps(value), value


def _float_edges() -> list[float]:
    out: list[float] = [0.0, -0.0, 2.0**53, -(2.0**53) + 1, 0.1, 1 / 3, -2.5]
    for exp in range(-30, 31):
        for mantissa in (1.0, 1.5, 9.999999999999998, 4.35, 7.0):
            out.extend((mantissa * 10.0**exp, -mantissa * 10.0**exp))
    return out


@pytest.mark.parametrize("container", ["bare", "list", "object", "after_tricky_string"])
def test_fast_path_float_boundaries_match_rfc8785(container: str) -> None:
    # orjson and ECMAScript switch to exponents at different magnitudes (1e-5/1e16 vs
    # 1e-6/1e21) and write integral floats differently; every edge must still agree.
    for x in _float_edges():
        value: object = {
            "bare": x,
            "list": [x, 1, "1.0", x],
            "object": {"a": x, "b": {"c": [x]}, "s": "-0.0 1e5 2.0"},
            "after_tricky_string": ['q"\\" 3.0', x, "\\", x, '\\\\"', -0.0],
        }[container]
        assert canonicalize(value) == rfc8785.dumps(value), x


def test_fast_path_refuses_what_orjson_would_bend() -> None:
    # orjson writes NaN as null and serialises dataclasses; neither has a JCS form.
    import dataclasses

    @dataclasses.dataclass
    class Point:
        x: int

    for bad in ({"a": [1.5, math.nan]}, [None, math.inf], {"p": Point(1)}, [2**63 + 1]):
        with pytest.raises(ReceiptInvalid):
            canonicalize(bad)


def _integral_doubles(rng: random.Random) -> list[float]:
    """Integral doubles from 2**53 to past 1e21, where ECMAScript writes all the digits."""
    out = [2.0**53, 2.0**53 + 2, 2.0**60, 2.0**63, 2.0**64, 2.0**64 - 2048, 1e20, 1e21]
    out += [999999999999999900000.0, 999999999999999700000.0, 1.7956584e18]
    out += [float(rng.randint(2**53, 10**21)) for _ in range(3000)]
    out += [float(rng.randint(1, 10**6) * 10 ** rng.randint(10, 16)) for _ in range(1000)]
    return out + [-x for x in out]


def test_fast_path_integral_doubles_match_rfc8785() -> None:
    rng = random.Random(2**53)
    for x in _integral_doubles(rng):
        for value in (x, [x, 1.5, {"a": x}]):
            assert canonicalize(value) == rfc8785.dumps(value), x


def test_fast_path_big_ints_match_the_slow_path() -> None:
    # An int beyond +/-(2**53 - 1) is written as its double when that loses nothing
    # (else refused), whichever path takes it.
    from aarm_pdp.receipts import canonical

    rng = random.Random(2**63)
    ints = [2**53, 2**53 + 1, 2**60, 2**63, 2**64 - 1, 2**64, 10**20, 10**21, 10**22]
    ints += [rng.randint(2**53, 2**70) for _ in range(500)]
    ints += [int(float(rng.randint(2**53, 10**21))) for _ in range(500)]
    ints += [int(d) for d in (1152921504606847000, 1795658400000000000, 9223372036854776000)]
    for n in ints + [-n for n in ints]:
        try:
            slow = rfc8785.dumps(canonical._as_doubles([n]))
        except rfc8785.CanonicalizationError:
            slow = None
        if slow is None:
            with pytest.raises(ReceiptInvalid):
                canonicalize([n])
        else:
            assert canonicalize([n]) == slow, n


def test_the_decision_records_timestamp_takes_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # now_ns (an int beyond 2**53) is a double in the decision record: the fast path
    # must take it, or every record costs the pure-Python canonicaliser (~0.5 ms).
    def slow(value: object) -> bytes:
        raise AssertionError(f"slow path taken for {value!r}")

    monkeypatch.setattr(rfc8785, "dumps", slow)
    doc = {"now_ns": float(1_795_658_400_123_456_789), "now": "2026-11-26T01:00:00Z"}
    assert canonicalize(doc) == b'{"now":"2026-11-26T01:00:00Z","now_ns":1795658400123456800}'
    assert canonicalize([2**60, -(2**62)]) == b"[1152921504606847000,-4611686018427388000]"
