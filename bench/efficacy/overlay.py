"""The efficacy corpus's catalogue as an operator overlay bundle (layer ``efficacy``).

``build_overlay(out_dir)`` merges ``bench/efficacy/tools/*.json`` (each ``{"tools":
{...}}``; no tool in two files) into ``out_dir/efficacy``, an OPA bundle rooted at
``aarm/overlays/efficacy`` (docs/overlays.md). Serve it on the pack with::

    aarm-pdp serve --policy rego --policy <out_dir>/efficacy

or check it with ``aarm-pdp policy check <out_dir>/efficacy``. The source files are
read, never changed; the same files give the same bundle, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent / "tools"
NAME = "efficacy"
REVISION = "efficacy-corpus-1"


def merged_tools(tools_dir: Path = TOOLS_DIR) -> dict[str, object]:
    """Every tool of ``tools_dir/*.json``, keyed ``tool.operation``; a duplicate raises."""
    tools: dict[str, object] = {}
    for file in sorted(tools_dir.glob("*.json")):
        for name, entry in json.loads(file.read_text(encoding="utf-8"))["tools"].items():
            if name in tools:
                raise ValueError(f"{file.name}: tool {name} is also in another file")
            tools[name] = entry
    return tools


def build_overlay(out_dir: Path, *, tools_dir: Path = TOOLS_DIR) -> Path:
    """Write the ``efficacy`` overlay bundle under ``out_dir``; return its directory."""
    root = Path(out_dir) / NAME
    if root.exists():
        shutil.rmtree(root)
    catalogue = root / "aarm" / "overlays" / NAME / "catalogue"
    catalogue.mkdir(parents=True)
    manifest = {
        "revision": REVISION,
        "roots": [f"aarm/overlays/{NAME}"],
        "rego_version": 1,
        "metadata": {"name": "efficacy corpus catalogue", "source": "bench/efficacy/tools"},
    }
    (root / ".manifest").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    doc = {"tools": dict(sorted(merged_tools(tools_dir).items()))}
    (catalogue / "data.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out_dir", type=Path)
    print(build_overlay(parser.parse_args().out_dir))


if __name__ == "__main__":
    main()
