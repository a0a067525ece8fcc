"""The configuration file: one YAML (or TOML) document, a section per :class:`Config` field.

Every setting of :mod:`aarm_pdp.config` can be written here under its section and field
name (``server.listen``, ``approvals.webhook_url``, ...). Loading checks the whole
document at once: unknown sections and keys, values of the wrong type and then
:meth:`Config.validate` problems are all reported together in one :class:`ConfigError`.
Relative paths are resolved against the file's directory, so a file and the files it
names travel together. Flags and ``AARM_PDP_*`` variables override the file
(:func:`aarm_pdp.cli.config_from_args`); the file overrides the built-in defaults.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from aarm_pdp.config import Config, ConfigError

_SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)
}


_BAD = object()
"""A value that did not convert: the field keeps its default, the problem is reported."""


def _convert(value: Any, hint: Any, where: str, base: Path, problems: list[str]) -> Any:
    """``value`` as the field type ``hint``, or a problem appended (returns ``_BAD``)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, where, base, problems)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is Path:
        if isinstance(value, str) and value:
            path = Path(value).expanduser()
            return path if path.is_absolute() else (base / path).resolve()
    elif origin is tuple:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            items = [
                _convert(v, args[0], f"{where}[{i}]", base, problems) for i, v in enumerate(value)
            ]
            return _BAD if _BAD in items else tuple(items)
    name = getattr(hint, "__name__", str(hint))
    if origin is tuple:
        name = f"a list of {getattr(args[0], '__name__', args[0])}"
    problems.append(f"{where}: expected {name}, got {type(value).__name__} {value!r}")
    return _BAD


def _store_path(store: str, base: Path) -> str:
    """A SQLite receipt store path resolved against the file; a URL as it is."""
    if not store or "://" in store or Path(store).is_absolute():
        return store
    return str((base / store).resolve())


def config_from_mapping(
    doc: Mapping[str, Any], base: Path | None = None, problems: list[str] | None = None
) -> Config:
    """A Config from a parsed document, not yet validated (see :func:`load`).

    With ``problems`` given, type and name problems are appended there (their settings
    keep the defaults) instead of raised, so validation can report its own beside them.
    """
    base = base or Path.cwd()
    collect = problems is not None
    problems = problems if problems is not None else []
    sections: dict[str, Any] = {}
    for section, body in doc.items():
        cls = _SECTIONS.get(section)
        if cls is None:
            problems.append(f"{section}: unknown section (known: {', '.join(_SECTIONS)})")
            continue
        if body is None:
            continue
        if not isinstance(body, Mapping):
            problems.append(f"{section}: expected a mapping of settings")
            continue
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for key, raw in body.items():
            if key not in hints:
                known = ", ".join(f.name for f in dataclasses.fields(cls))
                problems.append(f"{section}.{key}: unknown setting (known: {known})")
                continue
            value = _convert(raw, hints[key], f"{section}.{key}", base, problems)
            if (section, key) == ("receipts", "store") and isinstance(value, str):
                value = _store_path(value, base)
            if value is not _BAD:
                values[key] = value
        sections[section] = cls(**values)
    if problems and not collect:
        raise ConfigError("invalid configuration file:\n  - " + "\n  - ".join(problems))
    return Config(**sections)


def read(path: Path, problems: list[str] | None = None) -> Config:
    """Parse ``path`` (``.toml`` as TOML, anything else as YAML) into an unvalidated Config
    (problems raised, or appended to ``problems`` when given)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from exc
    try:
        doc = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: not valid YAML/TOML: {exc}") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError(f"config file {path}: expected a mapping of sections at the top")
    return config_from_mapping(doc, base=path.resolve().parent, problems=problems)


def validate_all(cfg: Config, problems: list[str]) -> Config:
    """``cfg`` validated, or one ConfigError listing ``problems`` and validation's own."""
    try:
        cfg.validate()
    except ConfigError as exc:
        problems = [*problems, *str(exc).split("\n  - ")[1:]]
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return cfg


def load(path: Path) -> Config:
    """Read and validate ``path``: a Config, or one ConfigError with every problem."""
    problems: list[str] = []
    return validate_all(read(path, problems), problems)


def settings() -> list[str]:
    """Every setting a file may hold, ``section.name``, in declaration order."""
    return [
        f"{section}.{f.name}" for section, cls in _SECTIONS.items() for f in dataclasses.fields(cls)
    ]
