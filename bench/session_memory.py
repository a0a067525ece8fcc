"""Resident memory of session context: ``python -m bench.session_memory``.

Run by ``bench/run.py`` (sweep ``memory_per_100k_sessions``) in a fresh subprocess, so
nothing else lives in the heap. It wires a :class:`MemorySessionStore` and a
:class:`SessionContext` as ``server.py`` does (the catalogue from the pack's
``aarm/catalogue/data.json``), then drives ``--sessions`` sessions (default 100 000)
through ``start()`` (StartSession with an original request) and 5 decided actions each
(``prepare()`` + ``commit()``). The decisions are the pack's real answers for those 5
actions: ``opa eval`` of the corpus inputs, run once up front, then
:func:`~aarm_pdp.decision.result.parse_result`.

RSS is ``VmRSS`` from ``/proc/self/status`` after ``gc.collect()``, before (everything
imported and built, the OPA answers parsed) and after the sessions: the growth,
scaled to 100 000 sessions, is ``session_memory_mib_per_100k`` (issue 18's key; also
``mib_per_100k_sessions``, the key ``bench/run.py`` reads). Everything the sessions
leave in the process counts: the store's map and keys, each session's record, state
blob, context-log window and provenance index, allocator overhead, and the decoded
state cache of ``SessionContext`` (at most 256 decoded states, ~1 MiB, ~10 B a session
of 100 000).
It also sizes what the store holds per session (``sys.getsizeof`` of every container,
key and blob) so a miss can be attributed, and ``tracemalloc`` counts the blocks still
allocated per session by allocation site. Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import linecache
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from aarm_pdp.api.validation import to_action_request
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.result import parse_result
from aarm_pdp.model.decision import DecisionResult
from aarm_pdp.model.request import ActionRequest, Identity
from aarm_pdp.session import codec
from aarm_pdp.session.catalogue import Catalogue
from aarm_pdp.session.context import SessionContext
from aarm_pdp.session.state import OriginalRequest, SessionState
from aarm_pdp.session.store import MemorySessionStore, SessionBounds

from bench.corpus import CORPUS, FIXED_NOW_NS

ROOT = Path(__file__).resolve().parent.parent
OPA = str(ROOT / "bin" / "opa")
QUERY = "data.aarm.main.decision"
MIB = 1024 * 1024
TRACED_SESSIONS = 2000

# A meeting-preparation session: what the agent was asked, then 5 reads it decides.
ORIGINAL = OriginalRequest(
    text="Prepare a briefing for the 3pm Acme renewal meeting: open deals, the Q3 invoice "
    "thread, onboarding docs and the customer record",
    intent_class="meeting_prep",
    expected_scope=["crm", "db.query", "documents.search", "email.read", "email.search"],
    max_classification="CONFIDENTIAL",
)
ACTIONS = (
    "allow-crm-query",
    "allow-email-search",
    "allow-email-read",
    "allow-docs-search",
    "allow-db-query",
)


def rss_bytes() -> int:
    """``VmRSS`` of this process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def settled_rss() -> int:
    gc.collect()
    gc.collect()
    return rss_bytes()


def real_decisions(bundle: Path) -> list[tuple[ActionRequest, DecisionResult, dict[str, Any]]]:
    """The pack's answer to each of ``ACTIONS`` (fresh-session input), via ``opa eval``."""
    by_name = {c.name: c for c in CORPUS}
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        for name in ACTIONS:
            case = by_name[name]
            path = Path(tmp) / f"{name}.json"
            path.write_text(json.dumps(case.opa_input(FIXED_NOW_NS)))
            run = subprocess.run(
                [OPA, "eval", "-b", str(bundle), "-i", str(path), "-f", "json", QUERY],
                capture_output=True,
                text=True,
                check=True,
            )
            value = json.loads(run.stdout)["result"][0]["expressions"][0]["value"]
            request = to_action_request(case.request(), LimitsConfig())
            out.append((request, parse_result({"result": value}), value))
    return out


def store_breakdown(store: MemorySessionStore, sessions: int) -> dict[str, Any]:
    """Bytes per session the store holds, by structure (``sys.getsizeof``, no sharing)."""
    bounded = store._sessions
    held = dict(bounded.items())  # key -> the session's record: state, log window, index
    blobs = [v.state for v in held.values()]
    logs = [v.log for v in held.values() if v.log is not None]
    indexes = [v.index for v in held.values() if v.index is not None]
    tenants = bounded._tenants.values()
    parts = {
        "sessions: map (entries, tenant order, (tenant, size, record) tuples)": sys.getsizeof(
            bounded._items
        )
        + sum(sys.getsizeof(t.keys) for t in tenants)
        + sum(sys.getsizeof(e) + sys.getsizeof(e[1]) for e in bounded._items.values()),
        "sessions: keys (40-char str)": sum(sys.getsizeof(k) for k in held),
        "sessions: records (slots) + last-seen float": sum(
            sys.getsizeof(v) + sys.getsizeof(v.seen) for v in held.values()
        ),
        "state: blobs (bytes objects)": sum(sys.getsizeof(b) for b in blobs),
        "context log: windows (bytes of compact records)": sum(map(sys.getsizeof, logs)),
        "provenance index: sorted arrays of 8-byte entries": sum(map(sys.getsizeof, indexes)),
    }
    total = sum(parts.values())
    n = max(1, sessions)
    windows = [sess.entries() for sess in list(held.values())[:100]]
    log_entries = sum(codec.log_stats(log)[0] for log in logs)
    sample = blobs[0] if blobs else b""
    return {
        "bytes_per_session_by_part": {k: round(v / n, 1) for k, v in parts.items()},
        "accounted_bytes_per_session": round(total / n, 1),
        "state_blob_len_mean": round(sum(map(len, blobs)) / n, 1),
        "state_blob_version": sample[0] if sample[:1] != b"{" else 1,
        "charged_bytes_per_session": round(store.bound_stats()[0].bytes / n, 1),
        "log_entries_per_session": round(log_entries / n, 2),
        "log_window_len_mean": round(sum(map(len, logs)) / n, 1),
        "log_entry_json_len_mean": round(
            sum(len(e) for w in windows for e in w) / max(1, sum(map(len, windows))), 1
        ),
        "index_entries_per_session": round(sum(map(len, indexes)) / n, 2),
        "sample_state_bytes_by_section": codec.state_sections(sample) if sample else {},
        "sample_state_json_len": len(SessionState.from_bytes(sample).to_json()) if sample else 0,
    }


async def drive(sessions: int, bundle: Path) -> dict[str, Any]:
    catalogue = Catalogue.from_policy_data(
        json.loads((bundle / "aarm" / "catalogue" / "data.json").read_text())["tools"]
    )
    decided = real_decisions(bundle)
    # As server.py wires it (memory store, default TTL: nothing expires during the run),
    # with bounds that hold every session of the run (this measures them, not the bounds).
    room = SessionBounds(tenant_sessions=sessions + 1, tenant_bytes=16 << 30, total_bytes=16 << 30)
    store = MemorySessionStore(bounds=room)
    context = SessionContext(store, lambda: catalogue)
    base_ident = decided[0][0].identity
    # Warm every code path once (imports, regex caches, interned strings), then forget it.
    await _one_session(context, base_ident, decided, "warm-up")
    await store.delete(next(iter(dict(store._sessions.items()))))
    before = settled_rss()
    t0 = time.perf_counter()
    for i in range(sessions):
        await _one_session(context, base_ident, decided, f"s-{i:012d}")
    elapsed = time.perf_counter() - t0
    after = settled_rss()
    growth = after - before
    breakdown = store_breakdown(store, sessions)
    traced = await traced_sites(catalogue, decided)
    return {
        "sessions": sessions,
        "actions_per_session": len(decided),
        "verdicts": [d.decision.value for _, d, _ in decided],
        "classifications": [d.data_classification for _, d, _ in decided],
        "stored_sessions": len(store),
        "rss_before_mib": round(before / MIB, 1),
        "rss_after_mib": round(after / MIB, 1),
        "mib_per_100k_sessions": round(growth / MIB * 100_000 / sessions, 1),
        "session_memory_mib_per_100k": round(growth / MIB * 100_000 / sessions, 1),
        "bytes_per_session": round(growth / sessions),
        "seconds": round(elapsed, 1),
        "us_per_session": round(elapsed / sessions * 1e6, 1),
        "breakdown": breakdown,
        "traced": traced,
    }


async def traced_sites(
    catalogue: Catalogue, decided: list[tuple[ActionRequest, DecisionResult, dict[str, Any]]]
) -> dict[str, Any]:
    """What the heap really holds per session, by allocation site (``tracemalloc``).

    ``sys.getsizeof`` of a bytes object counts its length, not the block behind it;
    this counts the blocks still allocated after ``TRACED_SESSIONS`` more sessions in a
    second store.
    """
    store = MemorySessionStore()
    context = SessionContext(store, lambda: catalogue)
    base = decided[0][0].identity
    await _one_session(context, base, decided, "traced-warm-up")
    gc.collect()
    tracemalloc.start(1)
    snap0 = tracemalloc.take_snapshot()
    for i in range(TRACED_SESSIONS):
        await _one_session(context, base, decided, f"t-{i:012d}")
    gc.collect()
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = snap1.compare_to(snap0, "lineno")
    total = sum(s.size_diff for s in stats)
    sites = []
    for s in stats[:8]:
        frame = s.traceback[0]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        sites.append(
            {
                "site": where,
                "code": linecache.getline(frame.filename, frame.lineno).strip()[:80],
                "bytes_per_session": round(s.size_diff / TRACED_SESSIONS, 1),
                "blocks_per_session": round(s.count_diff / TRACED_SESSIONS, 2),
            }
        )
    return {
        "sessions": TRACED_SESSIONS,
        "bytes_per_session": round(total / TRACED_SESSIONS, 1),
        "top_sites": sites,
    }


def session_identity(base: Identity, session_id: str) -> Identity:
    """``base``'s parties and roles in session ``session_id`` (nothing else of it)."""
    return Identity(
        tenant=base.tenant,
        human=base.human,
        service=base.service,
        agent=base.agent,
        session_id=session_id,
        roles=base.roles,
    )


async def _one_session(
    context: SessionContext,
    base: Identity,
    decided: list[tuple[ActionRequest, DecisionResult, dict[str, Any]]],
    session_id: str,
) -> None:
    ident = session_identity(base, session_id)
    await context.start(ident, ORIGINAL, time.time_ns())
    for template, decision, _ in decided:
        request = ActionRequest(
            request_id="", identity=ident, action=template.action, facts=template.facts
        )
        now = time.time_ns()
        prepared = await context.prepare(request, now)
        await context.commit(prepared, request, str(uuid.uuid4()), decision, now)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sessions", type=int, default=100_000)
    p.add_argument("--bundle", type=Path, default=ROOT / "rego")
    args = p.parse_args()
    result = asyncio.run(drive(args.sessions, args.bundle))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
