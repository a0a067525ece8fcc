"""Amounts of money as numbers, whatever shape the agent gave them.

A JSON number is taken as it is. A string is read in two steps:

1. strictly, with :class:`decimal.Decimal`, once a currency code or symbol at either
   end and the whitespace around it are removed: ``"15000"``, ``"-20000"``,
   ``"1.5e4"`` and ``"EUR 15000"`` are exact;
2. otherwise with price-parser (the price extractor of Zyte/Scrapinghub), which knows
   thousands separators and decimal commas: ``"15,000.00"``, ``"€15.000,00"``,
   ``"15 000"``, ``"CHF 1'000.50"``. price-parser drops signs, so a minus sign in the
   text is applied here; and it accepts text around the number, so anything left over
   once the number and the currency are removed makes the value ``parsed: false``.

A separator followed by exactly three digits (``"15.000"``, ``"1,500"``) can be a
decimal or a thousands separator: the value is then ``ambiguous`` and is read as the
larger of the two (the most dangerous reading for a threshold). NaN and infinities are
not amounts.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from price_parser import Price

# Symbols whose currency is unambiguous enough to name; "$" is read as USD and "¥" as
# JPY (the catalogue's currencies), with ``currency_symbol`` kept for the policy.
_SYMBOLS = {
    "US$": "USD",
    "SFr.": "CHF",
    "Fr.": "CHF",
    "€": "EUR",
    "£": "GBP",
    "$": "USD",
    "¥": "JPY",
    "円": "JPY",
}
# ISO 4217 active alphabetic codes (2024 list), so "12abc" is not 12 of currency ABC.
_ISO_4217_TEXT = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL
    BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK
    DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR
    ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD
    LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK
    NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD
    SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD
    USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XCD XCG XOF XPD XPF XPT XSU XUA
    YER ZAR ZMW ZWG
    """
ISO_4217 = frozenset(_ISO_4217_TEXT.split())
_CODE_PREFIX = re.compile(r"^([A-Za-z]{3})(?![A-Za-z])")
_CODE_SUFFIX = re.compile(r"(?<![A-Za-z])([A-Za-z]{3})$")
# Group separators that are never decimal marks: apostrophes and the thin/no-break spaces.
_GROUP = re.compile("(?<=\\d)['\u2019\u00a0\u202f\u2009](?=\\d)")
_AMBIGUOUS = re.compile(r"^\d{1,3}[.,]\d{3}$")


def _split_currency(text: str) -> tuple[str, str | None, str | None, int]:
    """(rest, currency code, symbol as written, how many currency marks were found)."""
    found: list[tuple[str, str]] = []
    for symbol, code in _SYMBOLS.items():
        if text.startswith(symbol):
            found.append((code, symbol))
            text = text[len(symbol) :].strip()
            break
    else:
        prefix = _CODE_PREFIX.match(text)
        if prefix and prefix.group(1).upper() in ISO_4217:
            found.append((prefix.group(1).upper(), prefix.group(1)))
            text = text[3:].strip()
    for symbol, code in _SYMBOLS.items():
        if text.endswith(symbol):
            found.append((code, symbol))
            text = text[: -len(symbol)].strip()
            break
    else:
        suffix = _CODE_SUFFIX.search(text)
        if suffix and suffix.group(1).upper() in ISO_4217:
            found.append((suffix.group(1).upper(), suffix.group(1)))
            text = text[:-3].strip()
    if not found:
        return text, None, None, 0
    return text, found[0][0], found[0][1], len(found)


def _split_sign(text: str) -> tuple[str, bool]:
    """(unsigned body, negative?) for -x, x-, (x) and +x."""
    if text.startswith("(") and text.endswith(")"):
        return text[1:-1].strip(), True
    if text.startswith("-"):
        return text[1:].strip(), True
    if text.endswith("-"):
        return text[:-1].strip(), True
    if text.startswith("+"):
        return text[1:].strip(), False
    return text, False


def _number(value: Decimal) -> float | None:
    as_float = float(value)
    return as_float if math.isfinite(as_float) else None


def analyse_amount(value: object, *, max_chars: int) -> dict[str, Any]:
    """Facts for a parameter typed ``amount``; see the module docstring."""
    if isinstance(value, bool):
        return _unparsed("not_a_number")
    if isinstance(value, int | float):
        if not math.isfinite(float(value)):
            return _unparsed("not_finite")
        return _facts(Decimal(str(value)), source="number", currency=None, symbol=None)
    if not isinstance(value, str):
        return _unparsed("not_a_number")
    if len(value) > max_chars:
        return _unparsed("too_long", length=len(value))
    rest, currency, symbol, marks = _split_currency(value.strip())
    if marks > 1:
        return _unparsed("two_currencies", text=value)
    body, negative = _split_sign(_GROUP.sub("", rest))
    if body == "" or "_" in body or body[:1] in "+-":
        return _unparsed("no_number", text=value)
    sign = Decimal(-1) if negative else Decimal(1)
    if _AMBIGUOUS.match(body):
        # "15.000" / "1,500": a decimal mark or a thousands separator; take the larger.
        whole = Decimal(re.sub(r"[.,]", "", body))
        fraction = Decimal(body.replace(",", "."))
        larger = max(whole, fraction)
        return _facts(
            sign * larger,
            source="string",
            currency=currency,
            symbol=symbol,
            strict=False,
            ambiguous=True,
        )
    try:
        strict = Decimal(body)
    except InvalidOperation:
        strict = None
    if strict is not None:
        if not strict.is_finite():
            return _unparsed("not_finite", text=value)
        return _facts(sign * strict, source="string", currency=currency, symbol=symbol)
    price = Price.fromstring(body)
    if price.amount is None or price.amount_text is None:
        return _unparsed("no_number", text=value)
    if price.amount_text.strip() != body or price.currency:
        return _unparsed("extra_text", text=value, reading=_number(price.amount))
    return _facts(
        sign * price.amount, source="string", currency=currency, symbol=symbol, strict=False
    )


def _facts(
    amount: Decimal,
    *,
    source: str,
    currency: str | None,
    symbol: str | None,
    strict: bool = True,
    ambiguous: bool = False,
) -> dict[str, Any]:
    number = _number(amount)
    if number is None:
        return _unparsed("not_finite")
    return {
        "type": "amount",
        "parsed": True,
        "value": number,
        "value_text": format(amount.normalize(), "f")
        if amount == amount.to_integral()
        else str(amount),
        "negative": amount < 0,
        "source": source,
        "strict": strict,
        "ambiguous": ambiguous,
        "currency": currency,
        "currency_symbol": symbol if symbol and symbol.upper() != currency else None,
    }


def _unparsed(reason: str, **extra: Any) -> dict[str, Any]:
    return {"type": "amount", "parsed": False, "reason": reason, **extra, "value": None}
