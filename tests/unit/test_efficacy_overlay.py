"""bench/efficacy/overlay.py: the corpus catalogue as the overlay bundle ``efficacy``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aarm_pdp.opa.layers import load_layers, merged_documents

from bench.efficacy.overlay import TOOLS_DIR, build_overlay, merged_tools
from tests.support.paths import REGO


def test_the_overlay_holds_every_corpus_tool_and_loads_as_a_layer(tmp_path: Path) -> None:
    root = build_overlay(tmp_path)
    assert root == tmp_path / "efficacy"
    sources = {
        name
        for f in TOOLS_DIR.glob("*.json")
        for name in json.loads(f.read_text(encoding="utf-8"))["tools"]
    }
    data = root / "aarm" / "overlays" / "efficacy" / "catalogue" / "data.json"
    assert set(json.loads(data.read_text())["tools"]) == sources
    pack, overlay = load_layers([REGO, root])
    assert overlay.name == "efficacy" and overlay.roots == ("aarm/overlays/efficacy",)
    tools, _ = merged_documents([pack, overlay])
    assert sources <= set(tools)


def test_the_build_is_deterministic(tmp_path: Path) -> None:
    a, b = build_overlay(tmp_path / "a"), build_overlay(tmp_path / "b")
    assert load_layers([REGO, a])[1].digest == load_layers([REGO, b])[1].digest
    build_overlay(tmp_path / "a")  # rebuilt in place
    assert load_layers([REGO, a])[1].digest == load_layers([REGO, b])[1].digest


def test_a_tool_in_two_files_is_refused(tmp_path: Path) -> None:
    for name in ("one.json", "two.json"):
        (tmp_path / name).write_text(json.dumps({"tools": {"x.op": {}}}))
    with pytest.raises(ValueError, match=r"x\.op is also"):
        merged_tools(tmp_path)
