"""Where did each argument come from? PURE: lookups come in as a dict.

An argument's origin is the union of the origins of the indicators inside it (and of
the whole value, for short values):

- ``user``: seen in the original user request;
- ``tool_trusted``: seen in the output of a tool whose output the catalogue trusts;
- ``tool_untrusted``: seen in untrusted content (web pages, e-mails, documents...);
- ``unseen``: it carries indicators, but none was seen anywhere before.

Policy reads ``input.provenance``; e.g. "a payment whose recipient came only from
untrusted content needs a human".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aarm_pdp.provenance.indicators import (
    Indicator,
    fingerprint,
    indicators_in_text,
    parameter_strings,
    tokens_in_text,
)

USER = 1
TOOL_TRUSTED = 2
TOOL_UNTRUSTED = 4
_NAMES = ((USER, "user"), (TOOL_TRUSTED, "tool_trusted"), (TOOL_UNTRUSTED, "tool_untrusted"))
MAX_WHOLE_VALUE = 256


def origin_names(mask: int) -> list[str]:
    """Sorted origin names of a bit mask."""
    return [name for bit, name in _NAMES if mask & bit]


def value_indicators(value: str) -> list[Indicator]:
    """The indicators of one string, plus the whole value when it is short."""
    found = indicators_in_text(value)
    stripped = value.strip()
    if 3 <= len(stripped) <= MAX_WHOLE_VALUE:
        found.append(("value", stripped.lower()))
    return found


def parameter_fingerprints(parameters: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Per parameter path: (indicator kind, fingerprint) pairs to look up."""
    out: dict[str, list[tuple[str, str]]] = {}
    for path, text in parameter_strings(parameters):
        inds = value_indicators(text)
        if inds:
            out[path] = [(kind, fingerprint((kind, value))) for kind, value in inds]
    return out


def fingerprints_of(texts: Iterable[str]) -> set[str]:
    """Every indicator and token fingerprint in some texts (indexing outputs and requests).

    Tokens make values the user merely mentions ("pay 25000 to ACME-OPS-1") count as
    user-provided; structured indicators make addresses and accounts match across
    formatting.
    """
    out: set[str] = set()
    for text in texts:
        for ind in value_indicators(text) + tokens_in_text(text):
            out.add(fingerprint(ind))
    return out


def classify(per_param: dict[str, list[tuple[str, str]]], seen: dict[str, int]) -> dict[str, Any]:
    """``input.provenance`` from the parameter fingerprints and the session index."""
    params: dict[str, Any] = {}
    untrusted_only: list[str] = []
    unseen: list[str] = []
    for path in sorted(per_param):
        mask = 0
        kinds: dict[str, int] = {}
        for kind, fp in per_param[path]:
            bits = seen.get(fp, 0)
            mask |= bits
            kinds[kind] = kinds.get(kind, 0) | bits
        doc = {
            "origins": origin_names(mask) or ["unseen"],
            "indicators": {k: origin_names(v) or ["unseen"] for k, v in sorted(kinds.items())},
        }
        params[path] = doc
        if mask == TOOL_UNTRUSTED:
            untrusted_only.append(path)
        if mask == 0:
            unseen.append(path)
    return {"parameters": params, "untrusted_only": untrusted_only, "unseen": unseen}
