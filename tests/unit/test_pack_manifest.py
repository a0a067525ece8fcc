"""The pack's ``rego/.manifest`` roots: its own packages and data, never ``aarm/overlays``.

OPA refuses two bundles whose roots overlap, so a pack claiming all of ``aarm`` leaves
no room for an overlay (``aarm/overlays/<name>``, docs/overlays.md). The roots must
still cover everything the pack holds, or OPA refuses the pack itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.paths import REGO

PACKAGE_RE = re.compile(r"^package\s+([A-Za-z_][A-Za-z0-9_.]*)\s*$", re.MULTILINE)
ROOTS = json.loads((REGO / ".manifest").read_text())["roots"]


def _covered(path: str) -> bool:
    parts = path.split("/")
    return any(parts[: len(r.split("/"))] == r.split("/") for r in ROOTS)


def _pack_paths() -> dict[str, Path]:
    """Every package path (``aarm/x``) and data document path of the pack, by file."""
    paths: dict[str, Path] = {}
    for file in sorted((REGO / "aarm").rglob("*.rego")):
        match = PACKAGE_RE.search(file.read_text(encoding="utf-8"))
        assert match, f"{file}: no package line"
        paths[match.group(1).replace(".", "/")] = file
    for file in sorted((REGO / "aarm").rglob("data.*")):
        if file.suffix in (".json", ".yaml", ".yml"):
            paths[file.parent.relative_to(REGO).as_posix()] = file
    return paths


def test_roots_cover_every_package_and_data_document_of_the_pack() -> None:
    missing = {path: str(file) for path, file in _pack_paths().items() if not _covered(path)}
    assert not missing, f"not under any root of rego/.manifest: {missing}"


def test_no_root_reaches_into_aarm_overlays() -> None:
    overlays = ["aarm", "overlays"]
    for root in ROOTS:
        parts = root.strip("/").split("/")
        n = min(len(parts), 2)
        assert parts[:n] != overlays[:n], f"root {root!r} overlaps aarm/overlays"
    assert "aarm/layers" in ROOTS


def test_every_root_names_something_the_pack_holds() -> None:
    held = set(_pack_paths())
    stale = [r for r in ROOTS if not any(p == r or p.startswith(r + "/") for p in held)]
    assert not stale, f"roots of rego/.manifest the pack has nothing under: {stale}"


def test_the_pack_holds_nothing_under_aarm_overlays() -> None:
    assert not [p for p in _pack_paths() if p.startswith("aarm/overlays")]
