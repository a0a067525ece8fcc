"""The analysis entry point: shape, determinism, zero cost for untyped parameters, purity."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import aarm_pdp.analysis as analysis
import pytest
from aarm_pdp.analysis import ANALYSIS_VERSION, TYPES, analyse, analyse_value

PACKAGE = Path(analysis.__file__).resolve().parent


def test_public_api() -> None:
    assert set(analysis.__all__) == {
        "ANALYSIS_VERSION",
        "DEFAULT_LIMITS",
        "TYPES",
        "Limits",
        "analyse",
        "analyse_value",
    }
    assert tuple(sorted(TYPES)) == TYPES


def test_shape() -> None:
    result = analyse(
        {"sql": "DELETE FROM t", "to": ["a@acme.example", "b@evil.com"], "note": "x"},
        {"sql": "sql", "to": "email"},
    )
    assert result["version"] == ANALYSIS_VERSION
    assert set(result["parameters"]) == {"sql", "to"}
    assert result["parameters"]["sql"]["type"] == "sql"
    assert [i["ascii_domain"] for i in result["parameters"]["to"]["items"]] == [
        "acme.example",
        "evil.com",
    ]
    assert result["unparsed"] == []
    json.dumps(result)


def test_untyped_absent_and_null_parameters_cost_nothing() -> None:
    assert analyse({"sql": "DROP TABLE t"}, {}) == {
        "version": ANALYSIS_VERSION,
        "parameters": {},
        "unparsed": [],
        "names": {},
    }
    assert analyse({"sql": None}, {"sql": "sql", "url": "url"})["parameters"] == {}


def test_unparsed_lists_parameter_names() -> None:
    result = analyse(
        {"a": "SELEC", "b": "not a url", "c": "/etc"}, {"a": "sql", "b": "url", "c": "path"}
    )
    assert result["unparsed"] == ["a", "b"]


def test_unknown_type_and_bad_parameters() -> None:
    assert analyse({"x": 1}, {"x": "yaml"})["parameters"]["x"] == {
        "type": "yaml",
        "parsed": False,
        "reason": "unknown_type",
    }
    assert analyse(["not", "an", "object"], {"x": "sql"})["error"] == "not_an_object"
    assert analyse({"x": "ls"}, {"x": {"nope": 1}})["parameters"]["x"]["reason"] == "unknown_type"


def test_target_names_get_name_facts() -> None:
    """Databases and schemas a statement names, wherever the SQL is, are normalised names."""
    result = analyse(
        {
            "sql": 'DROP TABLE prod.users; DROP DATABASE "pr\u043eddb"',
            "command": "psql -c 'DROP DATABASE live'",
            "where": "id = 1; DROP SCHEMA billing",
        },
        {"sql": "sql", "command": "shell", "where": "sql_condition"},
    )
    names = result["names"]
    assert sorted(names) == ["billing", "live", "prod", "pr\u043eddb"]
    assert names["pr\u043eddb"]["skeleton"] == "proddb"
    assert names["prod"]["tokens"] == ["prod"]
    assert analyse({"sql": "SELECT 1"}, {"sql": "sql"})["names"] == {}


def test_companion_specs() -> None:
    result = analyse(
        {"command": "rm -rf *", "cwd": "/", "amount": "USD 5", "currency": "EUR"},
        {
            "command": {"type": "shell", "cwd": "cwd"},
            "amount": {"type": "amount", "currency": "currency"},
        },
    )
    assert result["parameters"]["command"]["effects"]["root_wipe"] is True
    assert result["parameters"]["amount"]["currency_conflict"] is True


def test_list_items_are_bounded() -> None:
    result = analyse(
        {"to": ["a@b.example"] * 5}, {"to": "email"}, limits=analysis.Limits(max_items=2)
    )
    assert len(result["parameters"]["to"]["items"]) == 2
    assert result["parameters"]["to"]["truncated"] is True
    assert result["unparsed"] == ["to"]


def test_a_failing_parser_gives_the_most_dangerous_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> dict:
        raise RuntimeError("parser bug")

    monkeypatch.setitem(analysis._ANALYSERS, "sql", boom)
    facts = analyse_value("sql", "SELECT 1")
    assert facts["parsed"] is False and facts["reason"] == "analysis_error"
    assert facts["writes"] is True and facts["destructive"] is True


@pytest.mark.parametrize("kind", TYPES)
def test_every_type_never_raises_on_json_shaped_values(kind: str) -> None:
    for value in [
        "",
        " ",
        "\x00",
        "\u202e",
        "%",
        "$(",
        "'",
        '"',
        0,
        -1,
        1.5,
        True,
        [],
        {},
        ["x"],
        {"a": 1},
    ]:
        facts = analyse_value(kind, value)
        assert facts["type"] == kind
        assert isinstance(facts["parsed"], bool)
        json.dumps(facts)


@pytest.mark.parametrize("kind", TYPES)
def test_lone_surrogates_are_unparsed(kind: str) -> None:
    facts = analyse_value(kind, "DROP TABLE \udcff users")
    assert facts["parsed"] is False and facts["reason"] == "invalid_unicode"


def test_deterministic_across_calls() -> None:
    params = {
        "sql": "DO $$ BEGIN EXECUTE 'DR'||'OP TABLE t'; END $$",
        "command": "cd / && rm -rf *",
    }
    types = {"sql": "sql", "command": "shell"}
    first = json.dumps(analyse(params, types), sort_keys=False)
    assert all(json.dumps(analyse(params, types), sort_keys=False) == first for _ in range(3))


def test_package_is_pure_by_its_imports() -> None:
    """No I/O, clock, network or randomness modules, nothing of aarm_pdp outside the package."""
    banned = {
        "socket",
        "time",
        "datetime",
        "random",
        "secrets",
        "os",
        "subprocess",
        "urllib.request",
        "http",
        "requests",
        "httpx",
        "aiohttp",
        "grpc",
        "logging",
    }
    for module in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in banned and name not in banned, (
                    f"{module.name}: {name}"
                )
                if name.startswith("aarm_pdp"):
                    assert name.startswith("aarm_pdp.analysis") or name == "aarm_pdp.errors", name
