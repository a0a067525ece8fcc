"""The default scope of a session whose StartSession declared none. PURE.

A request says what it is for in its words: "pay the Oakridge invoice" asks for a
payment, "summarise my unread emails" asks for reading mail. :func:`derive_scope` turns
the original request's text into the scope drift compares each action with
(:func:`aarm_pdp.drift.score.in_scope`):

- the **categories** whose pattern matches the text: the policy config's
  ``intents.request_scope`` (category -> regular expression over the request; the pack
  falls back to ``provenance.request_scope``, the patterns the provenance rules read);
- the categories **always in scope** (reads: looking is not acting);
- the **tools** of other categories whose operation name's words are words of the
  request ("reserve a table" names ``travel.reserve_table``, "export the segment" names
  ``sales.export_contacts``). Words too generic to say anything (get, list, update...)
  and words shorter than four letters do not count.

An empty text, or a policy without request patterns, derives nothing (no scope: every
action is in scope, as before).
Deterministic: the result is sorted; the same text and catalogue give the same scope.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

ALWAYS_IN_SCOPE: tuple[str, ...] = ("read",)
"""Categories every request implies: a read changes nothing outside the session."""

MAX_DERIVED = 64
"""Entries a derived scope keeps (categories first): the session state stays bounded."""

GENERIC_WORDS = frozenset(
    {
        "add",
        "all",
        "by",
        "change",
        "create",
        "details",
        "for",
        "from",
        "get",
        "info",
        "into",
        "item",
        "items",
        "list",
        "make",
        "message",
        "new",
        "open",
        "read",
        "record",
        "search",
        "send",
        "set",
        "show",
        "status",
        "the",
        "update",
        "view",
        "with",
    }
)
"""Operation-name words that match too many requests to name a tool."""

_WORD = re.compile(r"[a-z0-9]+")
_SUFFIXES = ("ing", "ed", "es", "s", "e")
_MIN_WORD = 4


def _stem(word: str) -> str:
    """A crude stem: "reserved", "reserves", "reserving" and "reserve" give "reserv"."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_WORD - 1:
            return word[: -len(suffix)]
    return word


def request_words(text: str) -> frozenset[str]:
    """The stems of the request's words of at least four letters."""
    return frozenset(_stem(w) for w in _WORD.findall(text.lower()) if len(w) >= _MIN_WORD)


def _name_words(name: str) -> frozenset[str]:
    """The stems of the specific words of a tool's operation (after the first ``.``)."""
    operation = name.partition(".")[2] or name
    return frozenset(
        _stem(w)
        for w in _WORD.findall(operation.lower())
        if len(w) >= _MIN_WORD and w not in GENERIC_WORDS
    )


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    """A config pattern (Go RE2 syntax, as Rego's ``regex.match``) as a Python regex."""
    try:
        return re.compile(pattern)
    except re.error:
        return None


def implied_categories(text: str, patterns: Mapping[str, str]) -> list[str]:
    """The categories whose pattern finds a match in ``text`` (Rego ``regex.match``)."""
    out = []
    for category, pattern in sorted(patterns.items()):
        rx = _compiled(pattern) if isinstance(pattern, str) else None
        if rx is not None and rx.search(text):
            out.append(category)
    return out


def derive_scope(
    text: str,
    patterns: Mapping[str, str],
    tools: Mapping[str, str] | Iterable[tuple[str, str]],
    always: tuple[str, ...] = ALWAYS_IN_SCOPE,
) -> list[str]:
    """The scope the request implies: categories, then tools (``tool.operation``).

    ``patterns`` maps a category to its request pattern; ``tools`` maps each
    catalogued ``tool.operation`` to its category. A tool is listed only when its
    category is not in scope already.
    """
    if not text.strip() or not patterns:
        return []  # no text, or a pack with no request patterns: nothing to derive from
    categories = sorted({*implied_categories(text, patterns), *always})
    words = request_words(text)
    pairs = tools.items() if isinstance(tools, Mapping) else tools
    named = sorted(
        name
        for name, category in pairs
        if category not in categories and (_name_words(name) & words)
    )
    return [*categories, *named][:MAX_DERIVED]
