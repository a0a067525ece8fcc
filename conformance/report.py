"""report.md and report.json."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from conformance.model import Item, Result

CORE = {"R1", "R2", "R3", "R4", "R5", "R6"}
EXTENDED = {"R7", "R8", "R9"}


def _count(items: Iterable[Item], level: str) -> tuple[int, int, list[str]]:
    chosen = [i for i in items if i.level == level]
    applicable = [
        i for i in chosen if i.result not in (Result.NOT_APPLICABLE, Result.NOT_CHECKABLE)
    ]
    passed = [i for i in applicable if i.result is Result.PASS]
    return len(passed), len(applicable), [i.id for i in applicable if i.result is not Result.PASS]


def _part(name: str, items: list[Item]) -> str:
    bits = []
    for level in ("MUST", "SHOULD"):
        n, m, bad = _count(items, level)
        if m or any(i.level == level for i in items):
            tail = f" (not passing: {', '.join(bad)})" if bad else ""
            bits.append(f"{n}/{m} {level} pass{tail}")
    return f"{name}: " + "; ".join(bits)


def summary(items: dict[str, Item]) -> str:
    rows = [i for i in items.values() if i.id.startswith("row ")]
    core = [i for i in rows if i.requirement in CORE]
    ext = [i for i in rows if i.requirement in EXTENDED]
    comp = [i for i in rows if i.requirement not in CORE | EXTENDED]
    scen = [i for i in items.values() if not i.id.startswith("row ")]
    return " | ".join(
        [
            _part("Core R1-R6", core),
            _part("Extended R7-R9", ext),
            _part("Component rows 55-61", comp),
            _part("Scenarios S01-S37", scen),
        ]
    )


def failed_must(items: dict[str, Item]) -> list[str]:
    return [i.id for i in items.values() if i.level == "MUST" and i.result is Result.FAIL]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write(items: dict[str, Item], out: Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    head = summary(items)
    doc = {
        "summary": head,
        "failed_must": failed_must(items),
        "meta": meta,
        "items": [i.as_dict() for i in items.values()],
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        head,
        "",
        "# AARM conformance report",
        "",
        f"Target: {meta['target']} · policy {meta.get('policy', '?')} · run {meta['run']} · "
        f"{meta['started']} · {meta['seconds']:.0f}s",
        "",
        "Results: `pass`, `fail`, `not-applicable`, `not-implemented` (the deployment lacks the "
        "feature), `not-checkable` (cannot be observed from here). An item is `fail` if any of "
        "its checks fails, `not-implemented` if a part is missing. The run exits non-zero when "
        "any MUST item fails"
        + (f": **{', '.join(failed_must(items))}**." if failed_must(items) else "."),
        "",
        "| id | req | level | requirement | result | evidence |",
        "|---|---|---|---|---|---|",
    ]
    for i in items.values():
        ev = "; ".join(
            f"[{c.result.value}] {c.description}" for c in i.checks if c.result is not Result.PASS
        )
        ev = ev or "; ".join(i.evidence()[:3])
        lines.append(
            f"| {i.id} | {i.requirement} | {i.level} | {_cell(i.title)} | **{i.result.value}** | "
            f"{_cell(ev)[:400]} |"
        )
    lines += ["", "## Checks and evidence", ""]
    for i in items.values():
        lines.append(f"### {i.id} ({i.requirement}, {i.level}): {i.title} — {i.result.value}")
        lines.append("")
        lines.append(f"Expected: {i.expected}")
        lines.append("")
        for c in i.checks:
            lines.append(f"- **{c.result.value}** {c.description}")
            lines.extend(f"  - `{_cell(e)}`" for e in c.evidence)
        lines.append("")
    md_path = out / "report.md"
    md_path.write_text("\n".join(lines))
    return md_path, json_path
