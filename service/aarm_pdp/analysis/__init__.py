"""Parsed facts about an action's parameters, for policy (``input.analysis``).

PURE and deterministic: no I/O, no clock, no network, no randomness. The only files
read are data bundled with the parser packages, once, at import (the Public Suffix
List of ``publicsuffixlist``, the Unicode confusables of ``confusable_homoglyphs``).
The same parameters always give the same facts, as plain JSON-able dicts.

One entry point::

    analyse(parameters, param_types)
        -> {"version": ..., "parameters": {...}, "unparsed": [...], "names": {...}}

``param_types`` maps a parameter name to its analysed type, or to a spec
``{"type": ..., <companion>: <parameter name>}``. Types and what reads them:

=================  ==============================================================
``sql``            pglast (PostgreSQL's grammar, PL/pgSQL included)
``sql_condition``  the same, for a WHERE condition a tool splices into its query
``shell``          bashlex (bash's grammar); companion ``cwd``; nested SQL/Python
``url``            ada-url (WHATWG URL Standard) + publicsuffixlist
``host``           ada-url host parsing + publicsuffixlist
``email``          email-validator (no DNS) + idna/PSL for the domain
``path``           POSIX lexical resolution (no file system access)
``amount``         decimal + price-parser; companion ``currency``
``name``           NFKC + case folding + trimming + confusable skeleton
=================  ==============================================================

Parameters that are absent or null, and parameters with no analysed type, cost
nothing. A list value (e.g. recipients) gets ``items``, one facts dict each.

**Anything that does not parse gets ``parsed: false`` and its most dangerous
reading**: SQL that writes and destroys, a shell command that is dynamic and possibly
destructive, a URL with no host to allow, a path that is protected, an amount with no
value. So do values over a size limit and nesting past a depth limit
(:class:`Limits`). A failure inside a parser is caught and treated the same way; the
function never raises for JSON-shaped input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aarm_pdp.analysis._amount import analyse_amount
from aarm_pdp.analysis._email import analyse_email
from aarm_pdp.analysis._limits import DEFAULT_LIMITS, Limits
from aarm_pdp.analysis._names import analyse_name
from aarm_pdp.analysis._path import analyse_path, resolve
from aarm_pdp.analysis._shell import analyse_shell
from aarm_pdp.analysis._sql import analyse_sql, analyse_sql_condition
from aarm_pdp.analysis._url import analyse_host, analyse_url

__all__ = [
    "ANALYSIS_VERSION",
    "DEFAULT_LIMITS",
    "TYPES",
    "Limits",
    "analyse",
    "analyse_value",
]

ANALYSIS_VERSION = "aarm.analysis.v1"
TYPES = ("amount", "email", "host", "name", "path", "shell", "sql", "sql_condition", "url")
_LIST_TYPES = frozenset({"amount", "email", "host", "name", "path", "url"})

# The most dangerous reading of a value whose analyser failed unexpectedly.
_DANGEROUS: dict[str, dict[str, Any]] = {
    "sql": {"writes": True, "destructive": True, "dynamic": True, "opaque": True, "statements": []},
    "sql_condition": {
        "writes": True,
        "destructive": True,
        "dynamic": True,
        "opaque": True,
        "filter": "trivial",
        "injection": True,
    },
    "shell": {"dynamic": True, "destructive": False, "destructive_possible": True, "commands": []},
    "url": {"host": None},
    "host": {"host": None},
    "email": {"ascii_domain": None, "fallback_domain": None},
    "path": {"system": True, "protected": True},
    "amount": {"value": None},
    "name": {},
}


def _sql(value: object, context: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    return analyse_sql(value, limits=limits, shell=_nested_shell(limits))


def _sql_condition(value: object, context: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    return analyse_sql_condition(value, limits=limits, shell=_nested_shell(limits))


def _shell(value: object, context: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    cwd = context.get("cwd")
    base: str | None = None
    if isinstance(cwd, str) and cwd.startswith(("/", "~")) and "\x00" not in cwd:
        base = resolve(cwd[: limits.max_path_chars])[0]

    def nested_sql(text: str, depth: int) -> dict[str, Any]:
        return analyse_sql(text, limits=limits, depth=depth)

    facts = analyse_shell(value, limits=limits, cwd=base, sql=nested_sql)
    facts["cwd"] = base
    return facts


def _nested_shell(limits: Limits) -> Callable[[str, int], dict[str, Any]]:
    def shell(text: str, depth: int) -> dict[str, Any]:
        return analyse_shell(text, limits=limits, depth=depth)

    return shell


def _amount(value: object, context: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    facts = analyse_amount(value, max_chars=limits.max_amount_chars)
    if "currency" in context:
        declared = context["currency"]
        declared_code = declared.strip().upper() if isinstance(declared, str) else None
        facts["currency_param"] = declared_code
        facts["currency_conflict"] = bool(
            facts.get("currency") and declared_code and facts["currency"] != declared_code
        )
    return facts


_ANALYSERS: dict[str, Callable[[object, Mapping[str, Any], Limits], dict[str, Any]]] = {
    "sql": _sql,
    "sql_condition": _sql_condition,
    "shell": _shell,
    "url": lambda v, c, lim: analyse_url(v, max_chars=lim.max_url_chars),
    "host": lambda v, c, lim: analyse_host(v, max_chars=lim.max_url_chars),
    "email": lambda v, c, lim: analyse_email(v, max_chars=lim.max_email_chars),
    "path": lambda v, c, lim: analyse_path(v, max_chars=lim.max_path_chars),
    "amount": _amount,
    "name": lambda v, c, lim: analyse_name(v, max_chars=lim.max_name_chars),
}


def _safely(kind: str, value: object, context: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    try:
        return _ANALYSERS[kind](value, context, limits)
    except RecursionError:
        return {"type": kind, "parsed": False, "reason": "too_deep", **_DANGEROUS[kind]}
    except Exception as exc:  # a parser bug must not become a pass: most dangerous reading
        return {
            "type": kind,
            "parsed": False,
            "reason": "analysis_error",
            "error": type(exc).__name__,
            **_DANGEROUS[kind],
        }


def analyse_value(
    kind: str,
    value: object,
    *,
    context: Mapping[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Facts for one value of one analysed type.

    ``context`` holds companion values (``cwd`` for ``shell``, ``currency`` for
    ``amount``). An unknown type is ``parsed: false, reason: unknown_type``.
    """
    if kind not in _ANALYSERS:
        return {"type": kind, "parsed": False, "reason": "unknown_type"}
    if isinstance(value, str) and not _encodable(value):
        # Lone surrogates: no parser (nor protobuf) takes them; never a pass.
        return {"type": kind, "parsed": False, "reason": "invalid_unicode", **_DANGEROUS[kind]}
    return _safely(kind, value, context or {}, limits)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _spec(spec: object) -> tuple[str, dict[str, str]]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping):
        kind = spec.get("type")
        companions = {k: v for k, v in spec.items() if k != "type" and isinstance(v, str)}
        return (kind if isinstance(kind, str) else ""), companions
    return "", {}


def analyse(
    parameters: object,
    param_types: Mapping[str, object],
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Facts for every parameter that ``param_types`` types; see the module docstring."""
    facts: dict[str, Any] = {}
    if not param_types:
        return {"version": ANALYSIS_VERSION, "parameters": facts, "unparsed": [], "names": {}}
    if not isinstance(parameters, Mapping):
        return {
            "version": ANALYSIS_VERSION,
            "parameters": facts,
            "unparsed": [],
            "names": {},
            "error": "not_an_object",
        }
    for name in sorted(param_types):
        value = parameters.get(name)
        if value is None:
            continue
        kind, companions = _spec(param_types[name])
        context = {role: parameters.get(param) for role, param in companions.items()}
        if isinstance(value, list) and kind in _LIST_TYPES:
            items = [
                analyse_value(kind, item, context=context, limits=limits)
                for item in value[: limits.max_items]
            ]
            facts[name] = {
                "type": kind,
                "parsed": all(i.get("parsed") for i in items),
                "items": items,
                "truncated": len(value) > limits.max_items,
            }
        else:
            facts[name] = analyse_value(kind, value, context=context, limits=limits)
    unparsed = sorted(n for n, f in facts.items() if not f.get("parsed") or f.get("truncated"))
    return {
        "version": ANALYSIS_VERSION,
        "parameters": facts,
        "unparsed": unparsed,
        "names": _target_names(facts, limits),
    }


def _target_names(facts: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    """``name`` facts for every database and schema a statement targets, by raw name.

    SQL names its targets inside the text (``DROP DATABASE "pr\\u043eddb"``, ``DROP TABLE
    prod.users``), anywhere in the facts: in ``sql`` and ``sql_condition`` values, in the
    SQL a shell command hands to ``psql -c``, in the shell of ``COPY ... PROGRAM``.
    Policy compares them with its production-like names exactly as it compares a
    ``name`` parameter, so they get the same normalisation here.
    """
    found: set[str] = set()
    stack: list[object] = [facts]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in ("databases", "schemas") and isinstance(value, list):
                    found.update(v for v in value if isinstance(v, str))
                elif isinstance(value, Mapping | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, Mapping | list))
    return {name: analyse_value("name", name, limits=limits) for name in sorted(found)}
