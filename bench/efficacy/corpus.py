"""The efficacy corpus as the runner replays it: traces read under YAML 1.2 rules.

:func:`load` reads ``traces/*.yaml`` into :class:`Trace` values (benign tasks, injected
traces and their twins), sorted by id. Nothing here talks to the service.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
TRACES = HERE / "traces"
TOOLS = HERE / "tools"

BENIGN = "benign"
INJECTED = "injected"
TWIN = "twin"


_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Yaml12Loader(_Base):  # type: ignore[valid-type,misc]
    """SafeLoader (libyaml's when built) with YAML 1.2 core-schema scalars: no yes/no
    booleans, no timestamps."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)


@dataclass(frozen=True)
class Output:
    """What the tool returned, as RecordOutcome reports it."""

    text: str
    classification: str
    labels: tuple[str, ...] = ()
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Call:
    """One tool call of a trace (``tool`` is ``tool.operation``)."""

    tool: str
    parameters: dict[str, Any]
    output: Output
    injected: bool = False
    attack: bool = False
    expect: str = ""

    @property
    def tool_operation(self) -> tuple[str, str]:
        """``action.tool`` and ``action.operation``: the name split at its first ``.``."""
        tool, _, operation = self.tool.partition(".")
        return tool, operation


@dataclass(frozen=True)
class Trace:
    """One trace of the corpus.

    ``injection_call`` (1-based) is the call whose output carries the instruction, for
    injected traces; 0 otherwise. ``expect`` is the attack call's expected verdict.
    """

    id: str
    kind: str
    domain: str
    user: str
    request: str
    calls: tuple[Call, ...]
    tags: tuple[str, ...] = ()
    attack_class: str = ""
    injection_call: int = 0
    vector: str = ""
    expect: str = ""
    twin_of: str = ""

    @property
    def benign(self) -> bool:
        """Benign tasks and twins: their calls are the user's own work."""
        return self.kind != INJECTED


def _call(doc: dict[str, Any]) -> Call:
    out = doc["output"]
    return Call(
        tool=doc["tool"],
        parameters=dict(doc["parameters"]),
        output=Output(
            text=out["text"],
            classification=out["classification"],
            labels=tuple(out.get("labels", ())),
            values=tuple(out.get("values", ())),
        ),
        injected=bool(doc.get("injected")),
        attack=bool(doc.get("attack")),
        expect=str(doc.get("expect", "")),
    )


def trace_from_doc(doc: dict[str, Any], kind: str, domain: str) -> Trace:
    """One trace of a file of ``kind`` and ``domain`` (the schema's shape)."""
    calls = tuple(_call(c) for c in doc["calls"])
    attack = [c for c in calls if c.attack]
    injection = doc.get("injection") or {}
    return Trace(
        id=doc["id"],
        kind=kind,
        domain=domain,
        user=doc["user"],
        request=doc["request"],
        calls=calls,
        tags=tuple(doc.get("tags", ())),
        attack_class=str(doc.get("attack_class", "")),
        injection_call=int(injection.get("call", 0)),
        vector=str(injection.get("vector", "")),
        expect=attack[0].expect if attack else "",
        twin_of=str(doc.get("twin_of", "")),
    )


def read_file(path: Path) -> list[Trace]:
    """The traces of one corpus file, read under YAML 1.2 rules."""
    doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader)
    if not isinstance(doc, dict) or doc.get("kind") not in (BENIGN, INJECTED, TWIN):
        raise ValueError(f"{path}: not a trace file")
    return [trace_from_doc(t, doc["kind"], doc["domain"]) for t in doc["traces"]]


def load(directory: Path = TRACES, only: Iterable[str] = ()) -> list[Trace]:
    """Every trace under ``directory`` sorted by id; ``only`` keeps ids with those prefixes."""
    prefixes = tuple(only)
    traces = [t for path in sorted(directory.glob("*.yaml")) for t in read_file(path)]
    if prefixes:
        traces = [t for t in traces if t.id.startswith(prefixes)]
    return sorted(traces, key=lambda t: t.id)
