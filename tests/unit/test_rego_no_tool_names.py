"""Rules decide from what the catalogue declares, never from a tool's name (issue 13 item 2).

No policy.rego of the pack may name a catalogued tool ("payments.transfer", "file.delete",
...) outside a comment: neither a tool of the reference catalogue nor one of the efficacy
corpus's operator catalogue. A tool catalogued by an operator must get every protection
from its declaration (category, risk tier, output trust, classification, the semantic type
of each parameter), so a rule that names a tool is a protection other tools never get.
Tests (policy_test.rego) may use catalogue tools as fixtures; the rules may not.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "rego" / "aarm"
CATALOGUE = PACK / "catalogue" / "data.json"
VOCABULARY = ROOT / "bench" / "efficacy" / "vocabulary.json"
CORPUS_TOOLS = ROOT / "bench" / "efficacy" / "tools"


def _tool_names() -> set[str]:
    names = set(json.loads(CATALOGUE.read_text(encoding="utf-8"))["tools"])
    for file in CORPUS_TOOLS.glob("*.json"):
        names |= set(json.loads(file.read_text(encoding="utf-8"))["tools"])
    return names


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of a Rego file that are not comments (METADATA blocks included)."""
    return [
        (number, line)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if not line.lstrip().startswith("#")
    ]


def _named(line: str, names: set[str]) -> set[str]:
    found = set()
    for candidate in re.findall(
        r"(?<![A-Za-z0-9_.])[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*(?![A-Za-z0-9_])", line
    ):
        if candidate in names:
            found.add(candidate)
    return found


def test_the_check_sees_a_tool_name() -> None:
    names = {"payments.transfer", "file.delete"}
    assert _named('tool := _cfg.tools["payments.transfer"]', names) == {"payments.transfer"}
    assert _named('input.action.name == "file.delete"', names) == {"file.delete"}
    assert _named("data.aarm.catalogue.tools", names) == set()
    assert _named('x := "payments.transfer_all"', names) == set()


def test_no_rule_names_a_catalogued_tool() -> None:
    names = _tool_names()
    assert len(names) > 0
    policies = sorted(PACK.glob("**/policy.rego"))
    assert policies, "no policy.rego found"
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {', '.join(sorted(found))}: {line.strip()}"
        for path in policies
        for number, line in _code_lines(path)
        if (found := _named(line, names))
    ]
    assert offenders == [], (
        "rules must decide from catalogue declarations, not tool names:\n" + "\n".join(offenders)
    )


def test_catalogue_semantic_types_are_the_vocabulary() -> None:
    catalogue = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    vocabulary = json.loads(VOCABULARY.read_text(encoding="utf-8"))["types"]
    assert catalogue["semantic_types"] == sorted(vocabulary)
    declared = {
        spec["semantic"]
        for tool in catalogue["tools"].values()
        for spec in tool["parameters"].values()
        if "semantic" in spec
    }
    assert declared <= set(vocabulary)
    # The analysis each type needs (a type with optional analysis needs none).
    needed = {
        name: t["analysis"]
        for name, t in vocabulary.items()
        if "analysis" in t and not t.get("analysis_optional")
    }
    assert set(catalogue["semantic_analysis"]) == set(needed)
    for name, analysis in needed.items():
        assert analysis in catalogue["semantic_analysis"][name], name


# Where the config may name tools: the operator's own policy about them (an intent's
# allowed tools, a context rule's match), not a protection keyed by tool.
_CONFIG_NAMES_ALLOWED = (
    re.compile(r"^/intents/classes/[^/]+/allowed_tools$"),
    re.compile(r"^/context_rules\[\d+\]/match/names$"),
)


def _config_tool_names(node: object, path: str, names: set[str]) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in names:
                found.append(path)
            found += _config_tool_names(value, f"{path}/{key}", names)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, str) and item in names:
                found.append(path)
            else:
                found += _config_tool_names(item, f"{path}[{index}]", names)
    return found


def test_no_config_protection_is_keyed_by_tool_name() -> None:
    config = json.loads((PACK / "config" / "data.json").read_text(encoding="utf-8"))
    paths = _config_tool_names(config, "", _tool_names())
    offenders = sorted(
        {p for p in paths if not any(rule.match(p) for rule in _CONFIG_NAMES_ALLOWED)}
    )
    assert offenders == [], (
        "per-tool facts belong in the catalogue (semantic types), not in config: "
        + ", ".join(offenders)
    )
