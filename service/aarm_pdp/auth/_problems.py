"""Collect every problem in an auth configuration file, then fail once with all of them.

Each reader walks the whole document, records what is wrong with the entry path it
found it at (``principals[2] "ci": roles.acme[0]: unknown role 'enforcr'``), and
keeps going; :meth:`Problems.raise_if_any` ends the load with one
:class:`AuthConfigError` listing them all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Tenant names: the identifier shape the API accepts, no spaces, no "unbound" (the
# pre-authentication placeholder tenant of receipts).
TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")
RESERVED_TENANTS = frozenset({"unbound"})


class AuthConfigError(ValueError):
    """One or more problems in an auth configuration file, all listed in the message."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


class Problems:
    """An ordered list of problems found in one source."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}" if where else message)

    def raise_if_any(self) -> None:
        if self.items:
            raise AuthConfigError(self.source, self.items)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_json(path: Path) -> Any:
    """Parse a JSON file strictly (duplicate keys are an error), naming line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthConfigError(str(path), [f"cannot read: {exc}"]) from exc
    return parse_json(text, str(path))


def parse_json(text: str, source: str) -> Any:
    """Parse JSON text strictly; a syntax error names its line and column."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise AuthConfigError(
            source, [f"line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}"]
        ) from exc
    except ValueError as exc:  # a duplicate key from the hook
        raise AuthConfigError(source, [f"invalid JSON: {exc}"]) from exc


def check_keys(
    obj: Mapping[str, Any],
    where: str,
    problems: Problems,
    *,
    required: frozenset[str] = frozenset(),
    optional: frozenset[str] = frozenset(),
) -> None:
    """Report unknown and missing keys of one JSON object."""
    for key in sorted(set(obj) - required - optional):
        problems.add(where, f"unknown key {key!r}")
    for key in sorted(required - set(obj)):
        problems.add(where, f"missing required key {key!r}")


def string(
    obj: Mapping[str, Any], key: str, where: str, problems: Problems, *, default: str | None = None
) -> str | None:
    """A non-empty string field, or None (reported) when wrong; ``default`` when absent."""
    if key not in obj:
        return default
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        problems.add(where, f"{key} must be a non-empty string")
        return None
    if value != value.strip():
        problems.add(where, f"{key} {value!r} has leading or trailing whitespace")
        return None
    return value


def tenant_problem(tenant: object) -> str | None:
    """Why ``tenant`` is not a valid tenant name, or None."""
    if not isinstance(tenant, str) or not TENANT_RE.fullmatch(tenant):
        return (
            f"tenant {tenant!r} is not a valid name "
            "(letters, digits, '.', '_', '-'; starts alphanumeric; at most 64)"
        )
    if tenant in RESERVED_TENANTS:
        return f"tenant {tenant!r} is reserved"
    return None


def describe(index: int, entry: object, section: str, key: str = "id") -> str:
    """``principals[2] "ci"``: the position of an entry and, if it has one, its name."""
    name = entry.get(key) if isinstance(entry, dict) else None
    return f"{section}[{index}] {name!r}" if isinstance(name, str) else f"{section}[{index}]"
