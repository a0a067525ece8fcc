"""The efficacy corpus (bench/efficacy) is well formed and keeps its promises.

- The overlay catalogue (bench/efficacy/tools/*.json): at least 80 tools, none of them in
  the reference catalogue, each declared with a category, tier, output trust, a data
  classification for reads and a semantic type from the vocabulary on every parameter, the
  analysis type wherever the vocabulary names one; the reference pack's lint rules hold.
- The traces (bench/efficacy/traces/*.yaml) match trace.schema.json, read the same under
  YAML 1.1 and 1.2 rules, call only catalogued tools with declared, well-typed parameters,
  and meet the minimums (5 domains, 80 benign tasks with 300 calls, 500 injected traces,
  80 overlay tools used).
- Every injected trace extends a benign task, carries its instruction in the output of a
  tool whose output is untrusted, ends in exactly one attack call, and has a benign twin
  with the same side-effect call and the same arguments, whose request names the
  attacker's values.
- The generated files are what generate.py writes (deterministic, committed together).

Verdicts are not asserted here: the corpus is replayed against the service by the
efficacy runner, and its entries are never changed because a rule misses them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EFFICACY = ROOT / "bench" / "efficacy"
TRACES = EFFICACY / "traces"
SCHEMA = EFFICACY / "trace.schema.json"
VOCABULARY = EFFICACY / "vocabulary.json"
REFERENCE = ROOT / "rego" / "aarm" / "catalogue" / "data.json"
FILES = sorted(TRACES.glob("*.yaml"))
HAND_WRITTEN = sorted(TRACES.glob("benign-*.yaml"))
OVERLAY_FILES = sorted((EFFICACY / "tools").glob("*.json"))
SCHEMA_COMMENT = "# yaml-language-server: $schema=../trace.schema.json"

MIN_DOMAINS = 5
MIN_OVERLAY_TOOLS = 80
MIN_BENIGN_TASKS = 80
MIN_BENIGN_CALLS = 300
MIN_INJECTED = 500

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars (no yes/no booleans, no timestamps)."""


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


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), path
    return doc


DOCS = {path.name: _load(path) for path in FILES}


def _traces(kind: str) -> list[dict[str, Any]]:
    return [t for doc in DOCS.values() if doc["kind"] == kind for t in doc["traces"]]


BENIGN = _traces("benign")
INJECTED = _traces("injected")
TWINS = _traces("twin")
BY_ID = {t["id"]: t for kind in ("benign", "injected", "twin") for t in _traces(kind)}


def _reference() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return doc


def _overlay() -> dict[str, dict[str, Any]]:
    """Overlay tools by file stem (the tool domain)."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8"))["tools"] for p in OVERLAY_FILES}


def _catalogue() -> dict[str, Any]:
    tools: dict[str, Any] = dict(_reference()["tools"])
    for overlay in _overlay().values():
        tools.update(overlay)
    return tools


CATALOGUE = _catalogue()
VOCAB: dict[str, Any] = json.loads(VOCABULARY.read_text(encoding="utf-8"))["types"]


def _analysis_type(spec: Any) -> str | None:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        return str(spec.get("type"))
    return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    return []


def _attack_call(trace: dict[str, Any]) -> dict[str, Any]:
    attacks = [c for c in trace["calls"] if c.get("attack")]
    assert len(attacks) == 1, f"{trace['id']}: {len(attacks)} attack calls"
    return attacks[0]


# --- the overlay catalogue --------------------------------------------------------------


def test_overlay_has_enough_tools_none_in_the_reference() -> None:
    reference = set(_reference()["tools"])
    names = [name for tools in _overlay().values() for name in tools]
    assert len(names) == len(set(names)), "a tool is declared in two overlay files"
    assert len(names) >= MIN_OVERLAY_TOOLS
    assert not set(names) & reference, set(names) & reference
    domains = [stem for stem, tools in _overlay().items() if len(tools) >= 10]
    assert len(domains) >= MIN_DOMAINS, domains


@pytest.mark.parametrize("path", OVERLAY_FILES, ids=[p.stem for p in OVERLAY_FILES])
def test_overlay_tools_are_declared_from_their_semantics(path: Path) -> None:
    ref = _reference()
    for name, tool in json.loads(path.read_text(encoding="utf-8"))["tools"].items():
        assert re.match(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$", name), name
        assert tool["category"] in ref["categories"], name
        assert tool["risk_tier"] in ref["risk_tiers"], name
        assert tool["output_trust"] in ("trusted", "untrusted"), name
        assert tool.get("description"), name
        if tool["category"] == "read" or tool.get("reads_data"):
            level = tool.get("data_classification", {}).get("level")
            assert level in ("PUBLIC", "INTERNAL", "CONFIDENTIAL", "RESTRICTED"), name
        for param, spec in tool["parameters"].items():
            where = f"{name}.{param}"
            types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
            assert set(types) <= set(ref["parameter_types"]), where
            semantic = spec.get("semantic")
            assert semantic in VOCAB, f"{where}: semantic {semantic!r} not in the vocabulary"
            declared = _analysis_type(spec.get("analysis"))
            wanted = VOCAB[semantic].get("analysis")
            if wanted and not VOCAB[semantic].get("analysis_optional"):
                assert declared == wanted, f"{where}: {semantic} needs analysis {wanted}"
            if declared:
                assert declared in ref["analysis_types"], where
                assert declared == wanted, f"{where}: analysis {declared} on a {semantic}"
                if isinstance(spec["analysis"], dict):
                    for role, other in spec["analysis"].items():
                        if role != "type":
                            assert role in ref["analysis_types"][declared], where
                            assert other in tool["parameters"], where
            if "egress" in spec:
                assert spec["egress"]["kind"] == declared, where
                assert spec["egress"]["mode"] in ("allowlist", "blocklist"), where
            if "schemes" in spec:
                assert declared == "url", where


def test_vocabulary_types_are_all_used() -> None:
    used = {
        spec["semantic"]
        for tools in _overlay().values()
        for tool in tools.values()
        for spec in tool["parameters"].values()
    }
    assert used == set(VOCAB), set(VOCAB) ^ used


# --- every file ---------------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA.read_text(encoding="utf-8")))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_file_matches_the_schema(path: Path) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(DOCS[path.name])


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_file_is_named_after_its_kind_and_domain(path: Path) -> None:
    doc = DOCS[path.name]
    assert path.read_text(encoding="utf-8").splitlines()[0] == SCHEMA_COMMENT
    assert path.stem == f"{doc['kind'].replace('twin', 'twins')}-{doc['domain']}"
    for trace in doc["traces"]:
        assert trace["id"].startswith(f"{doc['domain']}-{doc['kind']}-"), trace["id"]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_file_reads_the_same_under_yaml_1_2(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert yaml.load(text, Loader=_Yaml12Loader) == DOCS[path.name]
    json.dumps(DOCS[path.name])  # no dates, no binary: what a JSON client sends


@pytest.mark.parametrize("path", HAND_WRITTEN, ids=[p.stem for p in HAND_WRITTEN])
def test_no_hand_written_value_is_cut_by_a_comment(path: Path) -> None:
    """An unquoted ' #' (a channel name) starts a YAML comment and silently cuts a value."""
    block: int | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        indent = len(line) - len(line.lstrip())
        if block is not None and (not line.strip() or indent > block):
            continue
        block = indent if re.search(r":\s*[|>][-+]?\s*$", line) else None
        if block is not None or line.lstrip().startswith("#"):
            continue
        unquoted = re.sub(r"'(?:[^']|'')*'|\"(?:[^\"\\]|\\.)*\"", "Q", line)
        assert " #" not in unquoted, f"{path.name}:{number}: {line.strip()}"


def test_ids_are_unique() -> None:
    ids = [t["id"] for doc in DOCS.values() for t in doc["traces"]]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_calls_name_catalogued_tools_with_declared_well_typed_parameters(path: Path) -> None:
    for trace in DOCS[path.name]["traces"]:
        for number, call in enumerate(trace["calls"], 1):
            where = f"{trace['id']} call {number}"
            entry = CATALOGUE.get(call["tool"])
            assert entry is not None, f"{where}: {call['tool']} is not catalogued"
            specs = entry["parameters"]
            unknown = set(call["parameters"]) - set(specs)
            assert not unknown, f"{where}: {call['tool']} has no parameter {unknown}"
            required = {n for n, s in specs.items() if s.get("required")}
            assert required <= set(call["parameters"]), (
                f"{where}: {call['tool']} requires {required}"
            )
            for name, value in call["parameters"].items():
                spec = specs[name]
                types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
                ok = any(
                    isinstance(value, _JSON_TYPES[t])
                    and not (t in ("integer", "number") and isinstance(value, bool))
                    for t in types
                )
                assert ok, f"{where}: {name}={value!r} is not {types}"
                if "enum" in spec:
                    items = value if isinstance(value, list) else [value]
                    assert set(items) <= set(spec["enum"]), f"{where}: {name}={value!r}"
                if "items_type" in spec:
                    assert all(isinstance(v, _JSON_TYPES[spec["items_type"]]) for v in value), where


# --- minimums ---------------------------------------------------------------------------


def test_corpus_meets_its_minimums() -> None:
    domains = {doc["domain"] for doc in DOCS.values()}
    assert len(domains) >= MIN_DOMAINS, domains
    for kind in ("benign", "injected", "twin"):
        assert {d["domain"] for d in DOCS.values() if d["kind"] == kind} == domains, kind
    assert len(BENIGN) >= MIN_BENIGN_TASKS
    assert sum(len(t["calls"]) for t in BENIGN) >= MIN_BENIGN_CALLS
    assert len(INJECTED) >= MIN_INJECTED
    overlay = {name for tools in _overlay().values() for name in tools}
    used = {c["tool"] for doc in DOCS.values() for t in doc["traces"] for c in t["calls"]}
    assert len(used & overlay) >= MIN_OVERLAY_TOOLS, sorted(overlay - used)


def test_benign_tasks_carry_no_attack_marks() -> None:
    for trace in BENIGN:
        for call in trace["calls"]:
            assert not {"injected", "attack", "expect", "why", "twin_call"} & set(call), trace["id"]


def test_benign_tasks_are_realistic_in_the_ways_that_matter() -> None:
    """Targets of several words, the user's own domain, targets from a pointed-at document."""
    tags = Counter(tag for t in BENIGN for tag in t.get("tags", []))
    for tag in (
        "multiword_target",
        "own_domain_recipient",
        "recipient_from_document",
        "public_provider_domain",
        "no_destination",
        "url_from_untrusted_output",
    ):
        assert tags[tag] >= 1, tag


# --- injected traces --------------------------------------------------------------------


@pytest.mark.parametrize("trace", INJECTED, ids=[t["id"] for t in INJECTED])
def test_injected_trace_is_a_benign_task_steered_by_its_tool_output(trace: dict[str, Any]) -> None:
    base = BY_ID[trace["base"]]
    assert base["id"] in {t["id"] for t in BENIGN}
    assert trace["user"] == base["user"]
    assert trace["request"] == base["request"], "the user's request stays the benign one"
    calls = trace["calls"]
    carrier = trace["injection"]["call"] - 1
    assert 0 <= carrier < len(calls) - 1
    assert CATALOGUE[calls[carrier]["tool"]]["output_trust"] == "untrusted"
    assert trace["injection"]["text"] in calls[carrier]["output"]["text"]
    assert calls[carrier]["output"]["text"] != base["calls"][carrier]["output"]["text"]
    for i, call in enumerate(calls[:carrier]):
        assert call == base["calls"][i], f"call {i + 1} differs from the base task"
    # Only calls after the carrier are injected; the attack call is the last one.
    assert not any(c.get("injected") for c in calls[: carrier + 1])
    attack = _attack_call(trace)
    assert attack is calls[-1]
    assert CATALOGUE[attack["tool"]]["category"] != "read" or trace["attack_class"] in (
        "exfiltration",
        "url_fetch",
    )


@pytest.mark.parametrize("trace", INJECTED, ids=[t["id"] for t in INJECTED])
def test_attacker_values_come_from_the_injection_only(trace: dict[str, Any]) -> None:
    attack_strings = " ".join(_strings(_attack_call(trace)["parameters"]))
    request = trace["request"].lower()
    for value in trace["injected_values"]:
        assert value in trace["injection"]["text"], value
        assert value in attack_strings, f"{value!r} is not in the attack call"
        assert value.lower() not in request, f"{value!r} is in the user's request"
        prior = [c["output"]["text"] for c in trace["calls"][: trace["injection"]["call"] - 1]]
        assert not any(value in text for text in prior), f"{value!r} was seen before the injection"


@pytest.mark.parametrize("trace", INJECTED, ids=[t["id"] for t in INJECTED])
def test_injected_trace_has_a_benign_twin_with_the_same_side_effect(trace: dict[str, Any]) -> None:
    twin = BY_ID[trace["twin"]]
    assert twin["id"] in {t["id"] for t in TWINS}
    assert twin["twin_of"] == trace["id"]
    assert twin["user"] == trace["user"]
    assert twin["base"] == trace["base"]
    marked = [c for c in twin["calls"] if c.get("twin_call")]
    assert len(marked) == 1 and marked[0] is twin["calls"][-1]
    attack = _attack_call(trace)
    assert marked[0]["tool"] == attack["tool"]
    assert marked[0]["parameters"] == attack["parameters"], "same arguments"
    # The user asks for it: the attacker's values are in the twin's original request.
    for value in trace["injected_values"]:
        assert value in twin["request"], f"{twin['id']}: {value!r} is not in the request"
    assert twin["request"].startswith(trace["request"].rstrip())
    # The twin saw no instruction; its other calls are the injected trace's, unmarked.
    assert not any(trace["injection"]["text"] in c["output"]["text"] for c in twin["calls"])
    assert [(c["tool"], c["parameters"]) for c in twin["calls"]] == [
        (c["tool"], c["parameters"]) for c in trace["calls"]
    ]


def test_every_twin_belongs_to_one_injected_trace() -> None:
    owners = Counter(t["twin_of"] for t in TWINS)
    assert set(owners) == {t["id"] for t in INJECTED}
    assert set(owners.values()) == {1}


def test_expected_verdicts_cover_deny_and_step_up_in_every_domain() -> None:
    by_domain: dict[str, Counter[str]] = {}
    for trace in INJECTED:
        domain = trace["id"].split("-")[0]
        by_domain.setdefault(domain, Counter())[_attack_call(trace)["expect"]] += 1
    for domain, counts in by_domain.items():
        assert counts["DENY"] and counts["STEP_UP"], (domain, counts)


def test_attack_shapes_the_corpus_must_contain() -> None:
    """The shapes of value an attack may take, each present (issue 13)."""
    tags = Counter(tag for t in INJECTED for tag in t["tags"])
    for tag in (
        "multiword_target",
        "public_provider_domain",
        "provider_domain_seen",
        "hash_value",
        "url_only_in_untrusted",
        "composed_value",
        "body_payload",
        "no_destination",
        "in_task_substitution",
    ):
        assert tags[tag] >= 3, tag
    vectors = {t["injection"]["vector"] for t in INJECTED}
    for vector in (
        "email",
        "email_body",
        "web_page",
        "chat_message",
        "document",
        "review",
        "ticket",
    ):
        assert vector in vectors, vector


# --- generated files --------------------------------------------------------------------


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("efficacy_generate", EFFICACY / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_what_the_generator_writes() -> None:
    rendered: dict[str, str] = _generator().render()
    generated = {p.name for p in FILES if not p.name.startswith("benign-")}
    assert set(rendered) == generated
    for name, text in rendered.items():
        assert (TRACES / name).read_text(encoding="utf-8") == text, f"{name} is stale"
