"""Receipt append throughput and latency: group commit vs one commit per receipt.

``python -m bench.receipts_append [--seconds 3] [--dsn postgresql://...]``

Closed loop: ``c`` workers each append receipts to their own session, back to back,
for ``--seconds``; every append is timed from the call to the return of the durably
committed receipt. Lanes: SQLite (WAL, synchronous=FULL, a file on the local disk) and
PostgreSQL (fsync=on, synchronous_commit=on; a throwaway cluster started like the
integration fixture unless ``--dsn`` is given), each with group commit (max_batch 256)
and without it (max_batch 1), at concurrency 1, 8 and 32. Prints a table and writes
``bench/results/receipts-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aarm_pdp.receipts import KeyRing, PostgresReceiptStore, ReceiptLog, SqliteReceiptStore
from aarm_pdp.receipts.store import ReceiptStore

RESULTS = Path(__file__).resolve().parent / "results"


def _body(worker: int, i: int, run: str) -> dict[str, Any]:
    return {
        "receipt_id": f"{run}-w{worker}-{i}",
        "kind": "action",
        "issued_at": "2026-05-01T10:00:00.000000Z",
        "chain": {"tenant": "bench", "session_id": f"{run}-w{worker}"},
        "decision_id": f"{run}-d{worker}-{i}",
        "action": {"tool": "db.query", "operation": "read", "parameters_hash": "ab" * 32},
        "requester_context": {
            "human": "alice@example.com",
            "service": "billing",
            "agent": "agent-7",
            "scope": ["read:orders"],
            "delegation_chain": [],
        },
        "decision": {
            "result": "ALLOW",
            "policy": {"policy_id": "aarm.main", "version": "1.2.0", "hash": "cd" * 32},
            "reason": "allowed by catalogue",
        },
        "approval": None,
        "deferral": None,
        "outcome": None,
        "context_hash": "01" * 32,
    }


def _pct(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = min(len(sorted_ms) - 1, max(0, round(p / 100 * len(sorted_ms) + 0.5) - 1))
    return sorted_ms[k]


async def _lane(
    make_store: Callable[[], ReceiptStore],
    ring: KeyRing,
    *,
    concurrency: int,
    max_batch: int,
    seconds: float,
    run: str,
) -> dict[str, Any]:
    store = make_store()
    await store.start()
    log = ReceiptLog(store, ring, max_batch=max_batch)
    await log.start()
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def worker(w: int) -> None:
        i = 0
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            await log.append(_body(w, i, run))
            latencies.append((time.perf_counter() - t0) * 1000)
            i += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await log.aclose()
    await store.aclose()
    latencies.sort()
    return {
        "concurrency": concurrency,
        "max_batch": max_batch,
        "appends": len(latencies),
        "appends_per_sec": len(latencies) / elapsed,
        "p50_ms": _pct(latencies, 50),
        "p99_ms": _pct(latencies, 99),
        "commits": log.stats.batches,
        "mean_batch": len(latencies) / max(1, log.stats.batches),
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    ring = KeyRing.generate("bench")
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "seconds_per_point": args.seconds,
        "lanes": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="aarm-receipts-bench-", dir=args.sqlite_dir))
    server = None
    dsn = args.dsn
    if dsn is None and not args.no_postgres:
        from tests.support.processes import PostgresServer

        server = PostgresServer()
        dsn = server.create_database()
    try:
        lanes: dict[str, Callable[[], ReceiptStore]] = {
            "sqlite": lambda: SqliteReceiptStore(tmp / "receipts.db"),
        }
        if dsn is not None:
            lanes["postgres"] = lambda: PostgresReceiptStore(dsn, max_size=4)
        n = 0
        for lane, make in lanes.items():
            for max_batch in (256, 1):
                for c in (1, 8, 32):
                    n += 1
                    row = await _lane(
                        make,
                        ring,
                        concurrency=c,
                        max_batch=max_batch,
                        seconds=args.seconds,
                        run=f"r{n}",
                    )
                    key = f"{lane}_{'group' if max_batch > 1 else 'batch1'}_c{c}"
                    results["lanes"][key] = row
                    print(
                        f"{lane:8} {'group' if max_batch > 1 else 'batch1':6} c={c:<3}"
                        f" {row['appends_per_sec']:9.0f}/s  p50 {row['p50_ms']:7.2f} ms"
                        f"  p99 {row['p99_ms']:7.2f} ms  mean batch {row['mean_batch']:6.1f}",
                        flush=True,
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if server is not None:
            server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--dsn", default=None, help="an existing PostgreSQL (default: start one)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--sqlite-dir", default=None, help="where the SQLite file goes")
    args = parser.parse_args()
    results = asyncio.run(_main(args))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"receipts-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
