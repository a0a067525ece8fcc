"""CPU of the session step of a Decide: ``python -m bench.session_step``.

The step is what :class:`~aarm_pdp.session.context.SessionContext` does around the OPA
query of one decision: ``prepare()`` (read the session from the store, compute
``input.session``, ``input.dependencies``, ``input.provenance``, ``input.drift``) and
``commit()`` (record the decided action: the state transition, its encoding, the log
entry, the store write). Wired as ``bench/session_memory.py`` wires it (memory store,
the pack's catalogue, the pack's real answers for 5 reads of a meeting-preparation
session, ``opa eval`` once up front).

Three cases, each timed with ``time.process_time_ns`` (CPU of this process) over every
step of a round, best round of ``--rounds``:

* ``fresh``: every step in a new session, as every timed Decide of ``bench/run.py``'s
  lanes is (no stored state; the step writes the first);
* ``warm``: ``--warm-sessions`` sessions (fewer than the decoded-state cache holds),
  so ``prepare``/``commit`` find the decoded state next to its blob, as a replica does
  for the sessions it is serving right now;
* ``cold``: ``--cold-sessions`` sessions in turn (more than the cache holds), so every
  step decodes the stored blob, as after another replica's write through Redis, or
  with more concurrently active sessions than the cache.

Every session has a small history first (StartSession and the 5 decided reads); each
round adds one decided action to every session, so the history stays small. Also
times the state codec alone (``to_bytes``/``from_bytes`` of such a session's state).
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aarm_pdp.model.decision import DecisionResult
from aarm_pdp.model.request import ActionRequest, Identity
from aarm_pdp.session.catalogue import Catalogue
from aarm_pdp.session.context import DECODED_CACHE_SIZE, SessionContext
from aarm_pdp.session.state import SessionState
from aarm_pdp.session.store import MemorySessionStore, session_key

from bench.session_memory import ORIGINAL, ROOT, real_decisions, session_identity

Decided = list[tuple[ActionRequest, DecisionResult, dict[str, Any]]]


async def _step(
    context: SessionContext, ident: Identity, template: ActionRequest, decision: DecisionResult
) -> None:
    request = ActionRequest(
        request_id="", identity=ident, action=template.action, facts=template.facts
    )
    now = time.time_ns()
    prepared = await context.prepare(request, now)
    await context.commit(prepared, request, str(uuid.uuid4()), decision, now)


async def _fresh(catalogue: Catalogue, decided: Decided, n: int, rounds: int) -> float:
    store = MemorySessionStore()
    context = SessionContext(store, lambda: catalogue)
    base = decided[0][0].identity
    best = float("inf")
    for r in range(rounds):
        template, decision, _ = decided[r % len(decided)]
        idents = [session_identity(base, f"fresh-{r}-{i:08d}") for i in range(n)]
        gc.collect()
        t0 = time.process_time_ns()
        for ident in idents:
            await _step(context, ident, template, decision)
        best = min(best, (time.process_time_ns() - t0) / n / 1e3)
    return round(best, 1)


async def _case(
    catalogue: Catalogue, decided: Decided, sessions: int, rounds: int
) -> dict[str, Any]:
    store = MemorySessionStore()
    context = SessionContext(store, lambda: catalogue)
    base = decided[0][0].identity
    idents = [session_identity(base, f"step-{i:08d}") for i in range(sessions)]
    for ident in idents:  # the small history
        await context.start(ident, ORIGINAL, time.time_ns())
        for template, decision, _ in decided:
            await _step(context, ident, template, decision)
    best = None
    gc.collect()
    for r in range(rounds):
        template, decision, _ = decided[r % len(decided)]
        t0 = time.process_time_ns()
        for ident in idents:
            await _step(context, ident, template, decision)
        per = (time.process_time_ns() - t0) / sessions / 1e3
        best = per if best is None else min(best, per)
    key = session_key(idents[0].tenant, idents[0].session_id)
    raw = (await store.load(key, [], idents[0].tenant, [])).state
    assert raw is not None
    return {"sessions": sessions, "us_per_step": round(best or 0.0, 1), "state": raw}


def _codec(raw: bytes, n: int = 2000) -> dict[str, Any]:
    state = SessionState.from_bytes(raw)
    best_enc = best_dec = float("inf")
    for _ in range(5):
        t0 = time.process_time_ns()
        for _ in range(n):
            state.to_bytes()
        best_enc = min(best_enc, (time.process_time_ns() - t0) / n / 1e3)
        t0 = time.process_time_ns()
        for _ in range(n):
            SessionState.from_bytes(raw)
        best_dec = min(best_dec, (time.process_time_ns() - t0) / n / 1e3)
    return {
        "state_bytes": len(raw),
        "encode_us": round(best_enc, 2),
        "decode_us": round(best_dec, 2),
    }


async def measure(bundle: Path, warm: int, cold: int, rounds: int) -> dict[str, Any]:
    catalogue = Catalogue.from_policy_data(
        json.loads((bundle / "aarm" / "catalogue" / "data.json").read_text())["tools"]
    )
    decided = real_decisions(bundle)
    fresh = await _fresh(catalogue, decided, cold, rounds)
    hot = await _case(catalogue, decided, warm, rounds)
    miss = await _case(catalogue, decided, cold, rounds)
    return {
        "decoded_cache_size": DECODED_CACHE_SIZE,
        "rounds": rounds,
        "session_step_us_fresh": fresh,
        "session_step_us_warm": hot["us_per_step"],
        "session_step_us_cold": miss["us_per_step"],
        "warm_sessions": warm,
        "cold_sessions": cold,
        "codec": _codec(miss["state"]),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bundle", type=Path, default=ROOT / "rego")
    p.add_argument("--warm-sessions", type=int, default=64)
    p.add_argument("--cold-sessions", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args()
    result = asyncio.run(measure(args.bundle, args.warm_sessions, args.cold_sessions, args.rounds))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
