"""The evasion corpus (tests/cases/evasion/*.yaml) is well formed.

Every file matches tests/cases/evasion.schema.json; ids are unique; each case's class is
its file's class; every call names a catalogued tool with parameters the tool declares
and the ones it requires. Verdicts are not asserted here: that needs the Rego
integration and runs against the service.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "cases" / "evasion"
SCHEMA = ROOT / "tests" / "cases" / "evasion.schema.json"
CATALOGUE = ROOT / "rego" / "aarm" / "catalogue" / "data.json"

CLASSES = {"shell", "sql_read", "sql_execute", "url", "email", "path", "amount", "name"}
FILES = sorted(CORPUS.glob("*.yaml"))


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), path
    return doc


def _tools() -> dict[str, Any]:
    tools: dict[str, Any] = json.loads(CATALOGUE.read_text(encoding="utf-8"))["tools"]
    return tools


def _calls(case: dict[str, Any]) -> list[dict[str, Any]]:
    return [*case.get("history", []), case["call"]]


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_file_matches_the_schema(path: Path) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(_load(path))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_file_starts_with_the_schema_comment(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../evasion.schema.json"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_cases_belong_to_their_file(path: Path) -> None:
    doc = _load(path)
    assert doc["class"] == path.stem
    for case in doc["cases"]:
        assert case["class"] == doc["class"], case["id"]
        assert case["id"].startswith(f"{doc['class']}-"), case["id"]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_calls_name_catalogued_tools_and_parameters(path: Path) -> None:
    tools = _tools()
    for case in _load(path)["cases"]:
        for call in _calls(case):
            entry = tools.get(call["tool"])
            assert entry is not None, f"{case['id']}: {call['tool']} is not catalogued"
            specs = entry.get("parameters", {})
            unknown = set(call["parameters"]) - set(specs)
            assert not unknown, f"{case['id']}: {call['tool']} has no parameter {unknown}"
            missing = {n for n, s in specs.items() if s.get("required")} - set(call["parameters"])
            assert not missing, f"{case['id']}: {call['tool']} requires {missing}"


def test_ids_are_unique_across_files() -> None:
    ids = Counter(case["id"] for path in FILES for case in _load(path)["cases"])
    assert [i for i, n in ids.items() if n > 1] == []


def test_corpus_covers_every_class_with_enough_cases() -> None:
    per_class = Counter(case["class"] for path in FILES for case in _load(path)["cases"])
    assert set(per_class) == CLASSES
    assert sum(per_class.values()) >= 150
    assert per_class["shell"] >= 25


def test_every_class_has_benign_look_alikes_and_attacks() -> None:
    for path in FILES:
        wants = [c["want"] for c in _load(path)["cases"]]
        assert "ALLOW" in wants, f"{path.stem}: no benign ALLOW case"
        assert any(w == "DENY" or (isinstance(w, list) and "DENY" in w) for w in wants)


def test_every_corpus_tool_types_its_parameters_in_the_catalogue() -> None:
    """The catalogue's ``analysis`` key types the parameters the corpus uses (it replaced
    tests/cases/evasion/param_types.json), and every companion it names exists."""
    tools = _tools()
    known = {"sql", "sql_condition", "shell", "url", "host", "path", "email", "amount", "name"}
    used = {
        call["tool"]
        for path in FILES
        for case in _load(path)["cases"]
        for call in [*case.get("history", []), case["call"]]
    }
    for tool in used:
        typed = {p: s["analysis"] for p, s in tools[tool]["parameters"].items() if "analysis" in s}
        assert typed, f"{tool}: no analysed parameter"
        for param, spec in typed.items():
            kind = spec if isinstance(spec, str) else spec["type"]
            assert kind in known, f"{tool}.{param}: {kind}"
            if isinstance(spec, dict):
                for companion in set(spec) - {"type"}:
                    assert spec[companion] in tools[tool]["parameters"], f"{tool}.{param}"
    assert not (CORPUS / "param_types.json").exists()
