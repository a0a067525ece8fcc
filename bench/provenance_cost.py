"""Cost of naming the policy from OPA's own answer, in microseconds per decision.

    .venv/bin/python bench/provenance_cost.py [--queries 3000] [--rounds 7] [--json]

Every Decide queries ``data.aarm.main.decision?provenance=true`` so that its receipt
names the bundles OPA evaluated (docs/overlays.md). This measures what that adds:

* ``opa``: one decision query to a managed-style OPA (the pack and the test overlay,
  staged as the sidecar stages them, on a unix socket) through the service's own
  :class:`OpaClient`, with and without ``?provenance=true``; rounds alternate, the
  median of per-round means is kept (the machine is shared);
  the same for a trivial query (``data.aarm.layers.overlay_names``), where OPA's own
  evaluation does not drown the difference;
* ``answer_policy_us``: :meth:`OpaClient.answer_policy` on a real answer (the cached
  path every decision takes), timed alone, best of five.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "service"))
sys.path.insert(0, str(ROOT))

from aarm_pdp.config import LimitsConfig  # noqa: E402
from aarm_pdp.decision.input import build_input  # noqa: E402
from aarm_pdp.opa.client import OpaClient  # noqa: E402
from aarm_pdp.opa.sidecar import ManagedOpa  # noqa: E402

from tests.support.messages import decide_request  # noqa: E402

TRIVIAL = "aarm/layers/overlay_names"
OVERLAY = ROOT / "tests" / "integration" / "policies" / "overlay_site"


def _input() -> dict[str, object]:
    from aarm_pdp.api.validation import to_action_request

    req = decide_request("db", "query", {"table": "customers", "limit": 10})
    return build_input(to_action_request(req, LimitsConfig()), now_ns=time.time_ns())


async def _round(client: OpaClient, doc: dict[str, object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await client.evaluate(doc, timeout=5.0)
    return (time.perf_counter() - t0) / n * 1e6


async def main_async(queries: int, rounds: int) -> dict[str, float]:
    opa = ManagedOpa(binary=str(ROOT / "bin" / "opa"), policy_paths=[ROOT / "rego", OVERLAY])
    await opa.start()
    out: dict[str, float] = {}
    try:
        for label, path in (("decision", "aarm/main/decision"), ("trivial", TRIVIAL)):
            with_prov = OpaClient(opa.url, entrypoint=path, max_connections=1)
            without = OpaClient(opa.url, entrypoint=path, max_connections=1)
            without._decide_path = without._decide_path.replace("?provenance=true", "")
            doc = _input()
            for c in (with_prov, without):  # warm up
                await _round(c, doc, 100)
            yes, no = [], []
            for _ in range(rounds):
                no.append(await _round(without, doc, queries))
                yes.append(await _round(with_prov, doc, queries))
            a, b = statistics.median(no), statistics.median(yes)
            out[f"{label}_query_us_without"] = round(a, 1)
            out[f"{label}_query_us_with_provenance"] = round(b, 1)
            out[f"{label}_added_us"] = round(b - a, 1)
            body = await with_prov.evaluate(doc, timeout=5.0)
            for c in (with_prov, without):
                await c.aclose()
        n = 200_000
        best = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                with_prov.answer_policy(body)
            best.append((time.perf_counter() - t0) / n * 1e6)
        out["answer_policy_us"] = round(min(best), 3)
        out["provenance_bytes"] = len(json.dumps(body["provenance"]))
    finally:
        await opa.stop()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--queries", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    out = asyncio.run(main_async(args.queries, args.rounds))
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:26} {v}")


if __name__ == "__main__":
    main()
