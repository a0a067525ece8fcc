"""Every value of the evasion corpus goes through analyse: it parses or is flagged, never raises.

Verdicts are not asserted here (that needs the Rego integration); only that the analysis
of every corpus call is total, JSON-able and deterministic, and that the unparseable
inputs the corpus holds on purpose are the ones flagged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aarm_pdp.analysis import analyse

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "cases" / "evasion"
# The analysed type of each parameter, as the catalogue declares it (its "analysis" key).
TYPES: dict[str, dict[str, Any]] = {
    name: {p: spec["analysis"] for p, spec in tool["parameters"].items() if "analysis" in spec}
    for name, tool in json.loads(
        (ROOT / "rego" / "aarm" / "catalogue" / "data.json").read_text(encoding="utf-8")
    )["tools"].items()
}


def _calls() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(CORPUS.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]:
            for call in [*case.get("history", []), case["call"]]:
                out.append((case["id"], call))
    return out


CALLS = _calls()


@pytest.mark.parametrize(("case_id", "call"), CALLS, ids=[f"{c}:{k['tool']}" for c, k in CALLS])
def test_every_corpus_value_parses_or_is_flagged(case_id: str, call: dict[str, Any]) -> None:
    types = TYPES.get(call["tool"], {})
    result = analyse(call["parameters"], types)
    json.dumps(result)
    for name, facts in result["parameters"].items():
        assert isinstance(facts["parsed"], bool), (case_id, name)
        if not facts["parsed"]:
            assert name in result["unparsed"]
            items = facts.get("items", [facts])
            assert all(i["parsed"] or "reason" in i for i in items), (case_id, name)
    assert analyse(call["parameters"], types) == result


def test_every_typed_parameter_in_the_corpus_is_analysed() -> None:
    seen = 0
    for _, call in CALLS:
        typed = {n for n, v in call["parameters"].items() if v is not None} & set(
            TYPES.get(call["tool"], {})
        )
        assert set(analyse(call["parameters"], TYPES.get(call["tool"], {}))["parameters"]) == typed
        seen += len(typed)
    assert seen > 250


def test_the_unparseable_values_are_the_ones_written_that_way() -> None:
    flagged = {
        case_id
        for case_id, call in CALLS
        if analyse(call["parameters"], TYPES.get(call["tool"], {}))["unparsed"]
    }
    assert flagged == {"amount-011", "email-004", "shell-056", "sql_execute-021", "sql_read-018"}
