"""`make efficacy`: replay the labelled corpus against the real service and score it.

Starts ``aarm-pdp serve`` (managed OPA, the reference pack plus the overlay catalogue,
a temporary var directory, a free port), replays every trace of ``traces/*.yaml`` over
gRPC as an enforcement point would (bench/efficacy/README.md, "How a replay works"),
prints the table and writes the JSON report.

    .venv/bin/python -m bench.efficacy.run            # full corpus, bench/results/efficacy.json
    .venv/bin/python -m bench.efficacy.run --check    # exit 1 when a target is missed
    .venv/bin/python -m bench.efficacy.run --only banking-injected-00
    .venv/bin/python -m bench.efficacy.run --explain banking-injected-001
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from bench.efficacy import corpus, scoring, service
from bench.efficacy.replay import Replayer, Stats, explain
from bench.efficacy.scoring import TraceResult

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_JSON = ROOT / "bench" / "results" / "efficacy.json"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.efficacy.run", description=__doc__.split("\n")[0])
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ID_PREFIX",
        help="replay only traces whose id starts with this (repeatable)",
    )
    p.add_argument(
        "--explain",
        metavar="ID",
        help="replay one trace and print every call's verdict and reasons",
    )
    p.add_argument(
        "--check", action="store_true", help="exit 1 when a target is missed (printing which)"
    )
    p.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help=f"write the report here (default {DEFAULT_JSON.relative_to(ROOT)} "
        "for a full run, none with --only/--explain)",
    )
    p.add_argument(
        "--diff",
        type=Path,
        metavar="PREV",
        help="print what changed against an earlier report (default: the report this run "
        "overwrites, when there is one)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="traces replayed at once [8]")
    p.add_argument(
        "--policy-dir",
        type=Path,
        default=service.REGO,
        help="the policy pack the overlay is layered on [rego]",
    )
    p.add_argument(
        "--overlay",
        choices=("auto", "bundle", "merge", "none"),
        default="auto",
        help="bundle: --policy <pack> --policy <overlay bundle> (bench/efficacy/"
        "overlay.py); merge: a temporary copy of the pack with the tools merged "
        "into its catalogue; none: the pack alone (it holds the tools); auto: bundle when "
        "overlay.py exists and the pack takes overlays [auto]",
    )
    p.add_argument(
        "--source",
        metavar="REV",
        help="run the service and the pack of this git revision (git archive), not the "
        "working tree's (which others may be editing)",
    )
    p.add_argument(
        "--opa-timeout",
        type=float,
        default=10.0,
        help="seconds per OPA query [10]: not timed; a query cut short fails closed",
    )
    p.add_argument("--opa-binary", type=Path, default=service.OPA)
    p.add_argument("--examples", type=int, default=3, help="examples printed per bucket [3]")
    p.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (service log, receipts)"
    )
    return p.parse_args(argv)


async def replay_all(
    endpoint: service.Endpoint, traces: Sequence[corpus.Trace], concurrency: int
) -> tuple[list[TraceResult], Stats]:
    """Replay ``traces``, ``concurrency`` at a time; results in trace id order."""
    gate = asyncio.Semaphore(max(1, concurrency))
    async with grpc.aio.insecure_channel(endpoint.target) as channel:
        replayer = Replayer(
            channel, service.ENFORCER, endpoint.enforcer_token, endpoint.approver_token
        )

        async def one(trace: corpus.Trace) -> TraceResult:
            async with gate:
                return await replayer.replay(trace)

        results = await asyncio.gather(*(one(t) for t in traces))
    return sorted(results, key=lambda r: r.trace.id), replayer.stats


def _commit(rev: str | None) -> str:
    """The commit replayed: ``rev`` resolved, or HEAD (+dirty when the working tree's
    service or pack differ from it)."""
    proc = subprocess.run(
        ["git", "rev-parse", "--short", rev or "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "rego", "service"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() + ("+dirty" if dirty.stdout.strip() and not rev else "")


def _print_changes(previous: Path, report: dict[str, Any], examples: int) -> None:
    try:
        before = json.loads(previous.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"\nno diff: {previous}: {exc}")
        return
    lines = scoring.changes(before, report)
    shown = lines[: max(20, 10 * examples)]
    commit = before.get("meta", {}).get("commit", "?")
    print(f"\nChanges since {previous} ({commit}): {len(lines)}")
    for line in shown:
        print(f"  {line}")
    if len(lines) > len(shown):
        print(f"  ... {len(lines) - len(shown)} more")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    only = [args.explain] if args.explain else list(args.only)
    traces = corpus.load(only=only)
    if not traces:
        print(f"no trace id starts with {only}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="aarm-efficacy-"))
    began = time.monotonic()
    source = None
    pack = args.policy_dir
    try:
        if args.source:
            source = service.snapshot(args.source, workdir / "source")
            if pack == service.REGO:
                pack = source / "rego"
        with service.running(
            workdir,
            mode=args.overlay,
            pack=pack,
            opa=args.opa_binary,
            source=source,
            opa_timeout=args.opa_timeout,
        ) as endpoint:
            overlay = endpoint.overlay
            started = time.monotonic()
            results, stats = asyncio.run(replay_all(endpoint, traces, args.concurrency))
            replayed = time.monotonic() - started
    except RuntimeError as exc:
        print(f"efficacy: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.explain:
        for result in results:
            print(explain(result))
        return 0
    report = scoring.score(results)
    meta: dict[str, Any] = {
        "commit": _commit(args.source),
        "policy": str(args.policy_dir),
        "source": args.source or "working tree",
        "overlay": overlay,
        "only": only,
        "traces": len(traces),
        "decides": stats.decides,
        "approvals_resolved": stats.approvals,
        "approvals_watched": stats.watched,
        "outcomes_recorded": stats.outcomes,
        "concurrency": args.concurrency,
        "replay_seconds": round(replayed, 1),
        "total_seconds": round(time.monotonic() - began, 1),
    }
    report = {"meta": meta, **report}
    print(scoring.render(report, examples=args.examples))
    print(
        f"\n{meta['traces']} traces, {stats.decides} Decides, {stats.approvals} approvals "
        f"resolved, {stats.outcomes} outcomes in {meta['replay_seconds']}s "
        f"({meta['total_seconds']}s with start-up)"
    )
    out = args.json or (None if only else DEFAULT_JSON)
    previous = args.diff or (out if out is not None and out.exists() else None)
    if previous is not None:
        _print_changes(previous, report, args.examples)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1, sort_keys=False) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    if args.check:
        missed = scoring.failures(report)
        for line in missed:
            print(f"efficacy target missed: {line}", file=sys.stderr)
        return 1 if missed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
