"""``python -m faults [--only NAME ...] [--json PATH]``: run the fault matrix, print the
table, write the JSON, exit 1 when any row failed (see docs/faults.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from faults.rig import (
    FD_SLACK,
    HOLD,
    RSS_BOUND_FACTOR,
    RSS_BOUND_SLACK,
    MiB,
    Row,
    cleanup,
    workroot,
)
from faults.scenarios import SCENARIOS

DEFAULT_JSON = Path("bench/results/faults.json")


def _codes(row: Row, n: int = 3) -> str:
    items = sorted(row.reason_codes.items(), key=lambda kv: -kv[1])
    text = " ".join(f"{k}={v}" for k, v in items[:n])
    if row.errors_during and row.kind != "wave":  # a wave's own codes are its reasons
        text += " " + " ".join(f"grpc:{k}={v}" for k, v in row.errors_during.items())
    return text.strip() or "-"


def table(rows: list[Row]) -> str:
    head = (
        "fault",
        "during",
        "ALLOW",
        "reason codes during the fault",
        "recover s",
        "receipts lost",
        "health",
        "peak RSS svc/opa MiB",
        "RSS after/bound",
        "result",
    )
    body = []
    for r in rows:
        allow = str(r.allows_during) if r.kind != "wave" else "n/a"
        rec = "-" if r.recovery_seconds is None else f"{r.recovery_seconds:.2f}"
        answered = r.health_checks - r.health_unanswered
        health = f"{answered}/{r.health_checks} ≤{r.health_max_ms:.0f}ms"
        after = (
            f"{r.rss_after_mib:.0f}/{r.rss_bound_mib:.0f}"
            if r.rss_after_mib is not None and r.rss_bound_mib is not None
            else "-"
        )
        result = "ok" if r.passed else "FAIL: " + "; ".join(r.failures)
        body.append(
            (
                r.name,
                str(r.decisions_during),
                allow,
                _codes(r)[:60],
                rec,
                f"{r.receipts_lost}/{r.receipts_seen}",
                health,
                f"{r.peak_rss_mib:.0f}/{r.peak_opa_rss_mib:.0f}",
                after,
                result,
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    widths[-1] = 0
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * max(w, 6) for w in widths).rstrip())
    for b in body:
        lines.append("  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip())
    return "\n".join(lines)


async def run(names: list[str]) -> tuple[list[Row], dict[str, float]]:
    root = workroot()
    rows: list[Row] = []
    timings: dict[str, float] = {}
    try:
        for name in names:
            start = time.monotonic()
            print(f"== {name}", file=sys.stderr, flush=True)
            try:
                rows.extend(await SCENARIOS[name](root))
            except Exception as exc:
                row = Row(name, name, kind="error")
                row.failures.append(f"scenario error: {type(exc).__name__}: {exc}"[:2000])
                row.detail["traceback"] = traceback.format_exc()
                print(row.detail["traceback"], file=sys.stderr)
                rows.append(row)
            timings[name] = round(time.monotonic() - start, 1)
    finally:
        cleanup(root)
    return rows, timings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m faults", description=__doc__)
    p.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these rigs")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"[{DEFAULT_JSON}]")
    args = p.parse_args(argv)
    names = args.only or list(SCENARIOS)
    started = time.monotonic()
    rows, timings = asyncio.run(run(names))
    total = round(time.monotonic() - started, 1)
    failed = [r for r in rows if not r.passed]
    doc: dict[str, Any] = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "total_seconds": total,
        "rig_seconds": timings,
        "passed": not failed,
        "bounds": {
            "allow_during_fault": 0,
            "receipts_lost": 0,
            "health_unanswered": 0,
            "cancelled": 0,
            "rss_after_wave": f"<= {RSS_BOUND_FACTOR} x pre-wave + {RSS_BOUND_SLACK // MiB} MiB",
            "fds_after_idle_wave": f"<= pre-wave + {FD_SLACK}",
            "fault_hold_seconds": HOLD,
        },
        "rows": [r.public() for r in rows],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(table(rows))
    print(
        f"\n{len(rows)} faults, {len(failed)} failed, {total:.0f}s total "
        f"({', '.join(f'{k} {v:.0f}s' for k, v in timings.items())}); JSON: {args.json}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
