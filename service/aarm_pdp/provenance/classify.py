"""Where did each argument come from? PURE: lookups come in as a dict.

A value's origin is decided by what it *is*, not by the words it shares with a source:

- an address, URL, account or phone number inside it is matched as that whole
  indicator (a public provider's domain seen somewhere never vouches for an unseen
  address on it: domains are reported, never decisive);
- otherwise the whole value is matched as a phrase (a multi-word name, hotel or title
  is one phrase of up to three words; a longer value counts as seen in a source only
  when every three-word shingle of it was seen there);
- ``user``: seen in the original user request; ``tool_trusted``: in the output of a
  tool whose output the catalogue trusts; ``tool_untrusted``: in untrusted content
  (web pages, e-mails, documents...); ``unseen``: nowhere before.

Policy reads ``input.provenance``; e.g. "a payment whose recipient came only from
untrusted content needs a human", "a link in a message body that appeared only in a
web page is a finding".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aarm_pdp.provenance.indicators import (
    Indicator,
    fingerprint,
    indicators_in_text,
    parameter_strings,
    phrases_in_text,
    value_phrases,
)

USER = 1
TOOL_TRUSTED = 2
TOOL_UNTRUSTED = 4
USER_POINTED = 8
"""Set with TOOL_UNTRUSTED on the output of a read whose arguments the user's request
named (the document the user pointed at): still untrusted content, but what the user
asked the agent to work from."""
ALL_SOURCES = USER | TOOL_TRUSTED | TOOL_UNTRUSTED | USER_POINTED
_NAMES = (
    (USER, "user"),
    (TOOL_TRUSTED, "tool_trusted"),
    (TOOL_UNTRUSTED, "tool_untrusted"),
    (USER_POINTED, "user_pointed"),
)
MAX_WHOLE_VALUE = 256
STRUCTURED = ("email", "url", "account", "phone")
"""Indicator kinds that decide a value's origin on their own."""
WHOLE = ("value", "phrase", "shingle")
OUTPUTS = TOOL_TRUSTED | TOOL_UNTRUSTED
MIN_NAME_WORD = 4
MAX_NAME_WORDS = 8
_NAME_SPLIT = re.compile(r"[^a-z0-9]+")

# One parameter path's lookups: (kind, fingerprint, detail); detail is the domain of an
# e-mail address or URL (reported to policy), "" otherwise.
Lookup = tuple[str, str, str]


def origin_names(mask: int) -> list[str]:
    """Sorted origin names of a bit mask."""
    return [name for bit, name in _NAMES if mask & bit]


def _domain(kind: str, value: str) -> str:
    if kind == "email":
        return value.rsplit("@", 1)[1]
    if kind == "url" and "://" in value:
        host = value.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        return host.rsplit("@", 1)[-1].split(":", 1)[0].rstrip(".")
    return ""


def value_lookups(value: str) -> list[Lookup]:
    """What to look up for one string: its indicators, the whole value, its phrases."""
    out: list[Lookup] = [
        (kind, fingerprint((kind, val)), _domain(kind, val))
        for kind, val in indicators_in_text(value)
    ]
    stripped = value.strip()
    if 3 <= len(stripped) <= MAX_WHOLE_VALUE:
        out.append(("value", fingerprint(("value", stripped.lower())), ""))
    phrases, shingled = value_phrases(value)
    kind = "shingle" if shingled else "phrase"
    out.extend((kind, fingerprint(ind), "") for ind in phrases)
    if not shingled:
        out.extend(("word", fingerprint(("phrase", w)), "") for w in name_words(value))
    return out


def name_words(value: str) -> list[str]:
    """The name-like words of a short value ("@david.cho" -> david, cho; "Lumen
    Analytics Ltd" -> lumen, analytics): matched one by one to tell whether the user's
    request named part of it."""
    out: dict[str, None] = {}
    for word in _NAME_SPLIT.split(value.lower()):
        if len(word) >= MIN_NAME_WORD and not word.isdigit():
            out[word] = None
    return list(out)[:MAX_NAME_WORDS]


def parameter_fingerprints(parameters: dict[str, Any]) -> dict[str, list[Lookup]]:
    """Per parameter path: the (kind, fingerprint, detail) lookups of its value."""
    out: dict[str, list[Lookup]] = {}
    for path, text in parameter_strings(parameters):
        lookups = value_lookups(text)
        if lookups:
            out[path] = lookups
    return out


def fingerprints_of(texts: Iterable[str]) -> set[str]:
    """Every indicator and phrase fingerprint in some texts (indexing outputs and requests).

    Phrases of one to three words make values the user merely mentions ("pay 25000 to
    Darius Webb") count as user-provided, whole; structured indicators make addresses
    and accounts match across formatting.
    """
    out: set[str] = set()
    for text in texts:
        inds: list[Indicator] = indicators_in_text(text) + phrases_in_text(text)
        stripped = text.strip()
        if 3 <= len(stripped) <= MAX_WHOLE_VALUE:
            inds.append(("value", stripped.lower()))
        for ind in inds:
            out.add(fingerprint(ind))
    return out


def _path_doc(lookups: list[Lookup], seen: dict[str, int]) -> tuple[dict[str, Any], int]:
    structured_mask = 0
    has_structured = False
    value_mask = 0
    phrase_mask = 0
    shingles: list[int] = []
    words_mask = 0
    found: list[dict[str, Any]] = []
    for kind, fp, detail in lookups:
        bits = seen.get(fp, 0)
        if kind in STRUCTURED:
            has_structured = True
            structured_mask |= bits
            dom = seen.get(fingerprint(("domain", detail)), 0) if detail else 0
            found.append(
                {
                    "kind": kind,
                    "domain": detail,
                    "origins": origin_names(bits) or ["unseen"],
                    "domain_origins": origin_names(dom) or ["unseen"],
                }
            )
        elif kind == "value":
            value_mask |= bits
        elif kind == "phrase":
            phrase_mask |= bits
        elif kind == "shingle":
            shingles.append(bits)
        elif kind == "word":
            words_mask |= bits
    whole = value_mask | phrase_mask
    untrusted_share = 0.0
    output_share = 0.0
    if shingles:
        every = ALL_SOURCES
        for bits in shingles:
            every &= bits
        whole |= every
        untrusted_share = sum(1 for b in shingles if b & ~USER_POINTED == TOOL_UNTRUSTED) / len(
            shingles
        )
        output_share = sum(1 for b in shingles if b & OUTPUTS) / len(shingles)
    decisive = structured_mask if has_structured else whole
    doc = {
        "origins": origin_names(decisive) or ["unseen"],
        "whole": origin_names(whole) or ["unseen"],
        "found": found,
        "untrusted_share": round(untrusted_share, 3),
        "output_share": round(output_share, 3),
        "user_part": bool((words_mask | whole) & USER),
    }
    return doc, decisive


def names_user_value(provenance: dict[str, Any]) -> bool:
    """Whether some argument (as ``classify`` judged it) came from the user's request."""
    return any("user" in doc["origins"] for doc in provenance.get("parameters", {}).values())


def classify(per_param: dict[str, list[Lookup]], seen: dict[str, int]) -> dict[str, Any]:
    """``input.provenance`` from the parameter lookups and the session index."""
    params: dict[str, Any] = {}
    untrusted_only: list[str] = []
    unseen: list[str] = []
    for path in sorted(per_param):
        doc, decisive = _path_doc(per_param[path], seen)
        params[path] = doc
        if decisive & ~USER_POINTED == TOOL_UNTRUSTED:
            untrusted_only.append(path)
        if decisive == 0:
            unseen.append(path)
    return {"parameters": params, "untrusted_only": untrusted_only, "unseen": unseen}
