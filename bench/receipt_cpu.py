"""Receipt CPU per decision, split by part: body, canonical JSON, hashing, signing, store.

``python -m bench.receipt_cpu [--seconds 3] [--repeats 3] [--stores sqlite postgres memory]
[--stages-only] [--samples-cache FILE]``

Bodies are the real thing: every corpus request (``bench/corpus.py``, 40 cases, all
five verdicts) with the reference pack's own answer (``opa eval`` of its fresh-session
input, run once up front), built into the decision record and the decision receipt
exactly as ``Engine._receipt`` builds them.

Three measurements, each repeated ``--repeats`` times (the machine is shared: compare
the spread, not one number):

- **stages** (one thread, no event loop, ``time.thread_time_ns`` around loops of each
  part over the 40 bodies): decision record (redaction walk, RFC 8785, sha256), body
  (``decision_receipt``), ``validate_body`` (members to RFC 8785), ``complete`` without
  the signature (chain member, assembly of the signing input and the signed form, the
  parse back into a dict), the Ed25519 signature, the receipt hash, the index columns.
- **log**: ``ReceiptLog`` with group commit (the service's ``max_batch``) over SQLite
  (WAL, ``synchronous=FULL``), PostgreSQL (unless ``--no-postgres``) and the memory
  store, ``c`` closed-loop workers (1, 8, 32) each in its own session, each building
  its body and appending it as the engine does. Process CPU (``time.process_time``,
  all threads) per receipt, and inside it, instrumented with thread CPU clocks: body +
  record, ``validate_body``, ``complete`` (less signing), signing, hash + index, the
  SQLite writer thread's own work; "loop/other" is the rest (asyncio queue, futures,
  executor hand-off, the store's event-loop side). The instrumentation itself costs
  ~1 µs per clock read pair; a second, uninstrumented pass gives the plain total.
- **one signature per batch** (an estimate for docs/performance.md, "Receipt CPU"): a
  prototype of signing a batch's RFC 6962 Merkle root once, each receipt carrying its
  inclusion path, against signing each receipt, from the signing input to the hashed
  signed form, for batches of 1 to 32. Not the receipt format: nothing signs this way.

Prints tables and writes ``bench/results/receipt-cpu-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aarm_pdp.api.validation import to_action_request
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.result import parse_result
from aarm_pdp.model.decision import DecisionResult, PolicyVersion
from aarm_pdp.model.request import ActionRequest
from aarm_pdp.receipts import (
    KeyRing,
    MemoryReceiptStore,
    PostgresReceiptStore,
    ReceiptLog,
    SqliteReceiptStore,
    envelope,
    sqlite_store,
)
from aarm_pdp.receipts import body as receipt_body
from aarm_pdp.receipts import log as receipt_log
from aarm_pdp.receipts.canonical import canonicalize
from aarm_pdp.receipts.store import ReceiptStore, StoredReceipt
from aarm_pdp.session.context import SessionContext
from aarm_pdp.session.store import MemorySessionStore

from bench.corpus import CORPUS, FIXED_NOW_NS, _catalogue, _complete

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OPA = str(ROOT / "bin" / "opa")
QUERY = "data.aarm.main.decision"
POLICY = PolicyVersion(revision="2026.11.26-2", hash="ab" * 32)


@dataclass(frozen=True)
class Sample:
    """What the engine has in hand when it writes a decision's receipt."""

    request: ActionRequest
    result: DecisionResult
    input_doc: dict[str, Any]
    context: dict[str, Any]
    context_hash: str


def samples(cache: Path | None = None) -> list[Sample]:
    """Every corpus case with the pack's own verdict (``opa eval``, once each; kept in
    ``cache`` when given, for repeated runs)."""
    if cache is not None and cache.exists():
        rows = pickle.loads(cache.read_bytes())
        return [Sample(*row) for row in rows]
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-receipt-cpu-") as tmp:
        # The committed pack (a work tree being edited may not load).
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "HEAD", "rego"],
            capture_output=True,
            check=False,
        )
        bundle = ROOT / "rego"
        if archive.returncode == 0:
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            bundle = Path(tmp) / "rego"
        for case in CORPUS:
            request = to_action_request(case.request(), LimitsConfig())
            prepared = _complete(
                SessionContext(MemorySessionStore(), _catalogue).prepare(request, FIXED_NOW_NS)
            )
            doc = case.opa_input(FIXED_NOW_NS)
            path = Path(tmp) / f"{case.name}.json"
            path.write_text(json.dumps(doc))
            run = subprocess.run(
                [OPA, "eval", "-b", str(bundle), "-i", str(path), "-f", "json", QUERY],
                capture_output=True,
                text=True,
                check=True,
            )
            value = json.loads(run.stdout)["result"][0]["expressions"][0]["value"]
            result = parse_result({"result": value})
            out.append(Sample(request, result, doc, prepared.input_parts, prepared.context_hash))
    if cache is not None:
        rows = [tuple(getattr(x, f.name) for f in dataclasses.fields(x)) for x in out]
        cache.write_bytes(pickle.dumps(rows))
    return out


def build(s: Sample, rid: str, session: str | None = None) -> tuple[dict[str, Any], str]:
    """The decision record and body, as ``Engine._receipt`` builds them."""
    record, digest = receipt_body.decision_record(
        s.input_doc, s.result.decision.value, s.result.matched_rules
    )
    request = s.request
    if session is not None:
        ident = dataclasses.replace(request.identity, session_id=session)
        request = dataclasses.replace(request, identity=ident)
    body = receipt_body.decision_receipt(
        receipt_id=rid,
        decision_id=f"d-{rid}",
        request=request,
        decision=s.result,
        policy=POLICY,
        context=s.context,
        context_hash=s.context_hash,
        now_ns=FIXED_NOW_NS,
        links={},
        input_sha256=digest,
    )
    return body, record


# --- stages ---------------------------------------------------------------------------


def _per_call_us(fn: Callable[[], Any], calls: int, rounds: int) -> float:
    """Thread CPU per call (µs) of ``fn`` (which makes ``calls`` calls), best of rounds."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.thread_time_ns()
        fn()
        best = min(best, (time.thread_time_ns() - t0) / calls / 1000)
    return best


def stages(
    items: list[Sample], ring: KeyRing, rounds: int = 5, loops: int = 25
) -> dict[str, float]:
    """µs of thread CPU per receipt for each part, averaged over the 40 bodies."""
    key = ring.active
    n = n_calls = len(items) * loops
    built = [build(s, f"r{i}") for i, s in enumerate(items)]
    prepared = [envelope.validate_body(b) for b, _ in built]
    fixed = ("k", b"\0" * 64)
    completed = [envelope.complete(p, 7, "0" * 64, lambda _p: fixed)[0] for p in prepared]
    payloads = [envelope.signing_payload(envelope.SignedReceipt(json.loads(c))) for c in completed]
    receipts = [envelope.complete(p, 7, "0" * 64, lambda _p: fixed)[1] for p in prepared]

    def loop(body: Callable[[int], Any]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(loops):
                for i in range(len(items)):
                    body(i)

        return run

    out: dict[str, float] = {}
    out["record_total"] = _per_call_us(
        loop(
            lambda i: receipt_body.decision_record(
                items[i].input_doc, items[i].result.decision.value, items[i].result.matched_rules
            )
        ),
        n,
        rounds,
    )
    # The canonicalisation inside decision_record, timed by wrapping what body.py calls.
    spent = [0]

    def timed(fn: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
        def wrapper(value: Any) -> bytes:
            t0 = time.thread_time_ns()
            try:
                return fn(value)
            finally:
                spent[0] += time.thread_time_ns() - t0

        return wrapper

    names = [m for m in ("canonicalize", "canonicalize_nearest") if hasattr(receipt_body, m)]
    saved = {m: getattr(receipt_body, m) for m in names}
    best = float("inf")
    try:
        for m in names:
            setattr(receipt_body, m, timed(saved[m]))
        for _ in range(rounds):
            spent[0] = 0
            for _ in range(loops):
                for s in items:
                    receipt_body.decision_record(
                        s.input_doc, s.result.decision.value, s.result.matched_rules
                    )
            best = min(best, spent[0] / n_calls / 1000)
    finally:
        for m in names:
            setattr(receipt_body, m, saved[m])
    out["record_canonicalize"] = best
    canon = [
        json.loads(
            receipt_body.decision_record(
                s.input_doc, s.result.decision.value, s.result.matched_rules
            )[0]
        )["input"]
        for s in items
    ]
    doc_bytes = [canonicalize(d) for d in canon]
    out["record_sha256"] = _per_call_us(
        loop(lambda i: hashlib.sha256(doc_bytes[i]).hexdigest()), n, rounds
    )
    out["record_build"] = out["record_total"] - out["record_canonicalize"] - out["record_sha256"]

    def body_only(i: int) -> None:
        s = items[i]
        receipt_body.decision_receipt(
            receipt_id="r",
            decision_id="d",
            request=s.request,
            decision=s.result,
            policy=POLICY,
            context=s.context,
            context_hash=s.context_hash,
            now_ns=FIXED_NOW_NS,
            links={},
            input_sha256="ab" * 32,
        )

    out["body_build"] = _per_call_us(loop(body_only), n, rounds)
    from aarm_pdp.model.digests import parameters_hash

    out["body_parameters_sha256"] = _per_call_us(
        loop(lambda i: parameters_hash(items[i].request.action.parameters)), n, rounds
    )
    out["validate_body_canonicalize"] = _per_call_us(
        loop(lambda i: envelope.validate_body(built[i][0])), n, rounds
    )
    out["complete_canonicalize"] = _per_call_us(
        loop(lambda i: envelope.complete(prepared[i], 7, "0" * 64, lambda _p: fixed)), n, rounds
    )
    out["sign_ed25519"] = _per_call_us(loop(lambda i: key.sign(payloads[i])), n, rounds)
    out["receipt_sha256"] = _per_call_us(
        loop(lambda i: envelope.receipt_hash(completed[i])), n, rounds
    )
    out["index_fields"] = _per_call_us(
        loop(
            lambda i: StoredReceipt(
                envelope.index_fields(receipts[i]), "h", completed[i].decode(), "r"
            )
        ),
        n,
        rounds,
    )
    out["canonical_bytes"] = statistics.mean(len(c) for c in completed)
    out["record_bytes"] = statistics.mean(len(r) for _, r in built)
    return out


# --- one signature per batch (a prototype, for the estimate) -----------------------------


def _mth(leaves: list[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """RFC 6962 Merkle tree hash of leaf hashes, and the inclusion path of each leaf."""
    if len(leaves) == 1:
        return leaves[0], [[]]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)  # largest power of two below n
    left, lp = _mth(leaves[:k])
    right, rp = _mth(leaves[k:])
    root = hashlib.sha256(b"\x01" + left + right).digest()
    return root, [[*p, right] for p in lp] + [[*p, left] for p in rp]


def _sign_each(members: list[dict[str, bytes]], key: Any) -> list[bytes]:
    """Today's envelope from the signing input on: sign, signature member, signed form,
    hash."""
    out = []
    for m in members:
        payload = envelope.assemble(m)
        sig = {
            "algorithm": "Ed25519",
            "key_id": key.key_id,
            "value": envelope.b64encode(key.sign(payload)),
        }
        signed = envelope.assemble({**m, "signature": canonicalize(sig)})
        envelope.receipt_hash(signed)
        out.append(signed)
    return out


def _sign_batch(members: list[dict[str, bytes]], key: Any) -> list[bytes]:
    """One signature per batch from the signing inputs on: leaf hashes (0x00 prefix), the
    RFC 6962 tree (0x01), one Ed25519 signature over the root, each receipt's signature
    member carrying its index, the batch size and its inclusion path, signed form, hash."""
    payloads = [envelope.assemble(m) for m in members]
    leaves = [hashlib.sha256(b"\x00" + p).digest() for p in payloads]
    root, paths = _mth(leaves)
    value = envelope.b64encode(key.sign(root))
    out = []
    for i, (m, path) in enumerate(zip(members, paths, strict=True)):
        sig = {
            "algorithm": "Ed25519",
            "key_id": key.key_id,
            "value": value,
            "batch": {"size": len(members), "index": i, "path": [h.hex() for h in path]},
        }
        signed = envelope.assemble({**m, "signature": canonicalize(sig)})
        envelope.receipt_hash(signed)
        out.append(signed)
    return out


def merkle_estimate(
    items: list[Sample], ring: KeyRing, rounds: int = 5, loops: int = 20
) -> dict[str, Any]:
    """µs per receipt, from the signing input to the hashed signed form: one signature
    per receipt (today) vs one per batch of ``b`` (the prototype above)."""
    key = ring.active
    members = []
    for i, s in enumerate(items):
        m = dict(envelope.validate_body(build(s, f"r{i}")[0]).members)
        m["chain"] = canonicalize({"tenant": "t", "session_id": "s", "seq": 7, "prev": "0" * 64})
        m["version"] = b'"aarm.receipt.v1"'
        m["canonicalization"] = b'"RFC8785"'
        members.append(m)
    out: dict[str, Any] = {"batches": {}}
    for b in (1, 2, 3, 4, 8, 32):
        groups = [members[i : i + b] for i in range(0, len(members) - b + 1, b)]
        n = sum(len(g) for g in groups)

        def run(sign: Callable[[list[dict[str, bytes]], Any], list[bytes]]) -> Callable[[], None]:
            def go() -> None:
                for _ in range(loops):
                    for g in groups:  # noqa: B023 (run now, in this iteration)
                        sign(g, key)

            return go

        each = _per_call_us(run(_sign_each), loops * n, rounds)
        batch = _per_call_us(run(_sign_batch), loops * n, rounds)
        out["batches"][b] = {
            "sign_each_us": each,
            "sign_batch_us": batch,
            "saved_us": each - batch,
            "bytes_each": statistics.mean(len(x) for x in _sign_each(groups[0], key)),
            "bytes_batch": statistics.mean(len(x) for x in _sign_batch(groups[0], key)),
        }
    return out


# --- the log ----------------------------------------------------------------------------


class Clocks:
    """Thread-CPU accumulators wrapped around the log's parts (monkeypatched in)."""

    PARTS = ("body", "validate", "complete", "sign", "hash_index", "store_thread")

    def __init__(self) -> None:
        self.ns = dict.fromkeys(self.PARTS, 0)
        self._undo: list[Callable[[], None]] = []

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        t0 = time.thread_time_ns()
        try:
            yield
        finally:
            self.ns[name] += time.thread_time_ns() - t0

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.thread_time_ns()
            try:
                return fn(*a, **kw)
            finally:
                self.ns[name] += time.thread_time_ns() - t0

        return wrapper

    def patch(self, obj: Any, attr: str, new: Any) -> None:
        old = getattr(obj, attr)
        setattr(obj, attr, new)
        self._undo.append(lambda: setattr(obj, attr, old))

    def install(self) -> None:
        clocks = self
        sign_clock = self

        # complete() calls sign(); time signing apart and subtract it from complete.
        real_complete = envelope.complete

        def complete(body: Any, seq: int, prev: str, sign: Any) -> Any:
            def timed_sign(payload: bytes) -> Any:
                t = time.thread_time_ns()
                try:
                    return sign(payload)
                finally:
                    d = time.thread_time_ns() - t
                    sign_clock.ns["sign"] += d
                    sign_clock.ns["complete"] -= d

            return real_complete(body, seq, prev, timed_sign)

        self.patch(receipt_log, "complete", self.timed("complete", complete))
        self.patch(
            receipt_log,
            "validate_body",
            self.timed("validate", envelope.validate_body),
        )
        self.patch(
            receipt_log,
            "receipt_hash",
            self.timed("hash_index", envelope.receipt_hash),
        )
        self.patch(
            receipt_log,
            "index_fields",
            self.timed("hash_index", envelope.index_fields),
        )
        worker_run = sqlite_store._Worker.run

        async def run(worker: Any, fn: Callable[[Any], Any]) -> Any:
            return await worker_run(worker, clocks.timed("store_thread", fn))

        self.patch(sqlite_store._Worker, "run", run)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()


async def _lane(
    make_store: Callable[[], ReceiptStore],
    ring: KeyRing,
    items: list[Sample],
    *,
    concurrency: int,
    seconds: float,
    run: str,
    clocks: Clocks | None,
    max_batch: int,
) -> dict[str, Any]:
    store = make_store()
    await store.start()
    log = ReceiptLog(store, ring, max_batch=max_batch)
    await log.start()
    stop = time.monotonic() + seconds
    count = 0

    async def worker(w: int) -> None:
        nonlocal count
        i = 0
        session = f"{run}-w{w}"
        while time.monotonic() < stop:
            s = items[(w + i) % len(items)]
            if clocks is not None:
                with clocks.part("body"):
                    body, record = build(s, f"{run}-w{w}-{i}", session)
            else:
                body, record = build(s, f"{run}-w{w}-{i}", session)
            await log.append(body, record=record)
            i += 1
            count += 1

    # warm the store and the chain heads
    await asyncio.gather(
        *(
            log.append(build(items[0], f"{run}-warm{w}", f"{run}-w{w}")[0])
            for w in range(concurrency)
        )
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if clocks is not None:
        clocks.ns = dict.fromkeys(Clocks.PARTS, 0)
    batches0 = log.stats.batches
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    batches = log.stats.batches - batches0
    await log.aclose()
    await store.aclose()
    row: dict[str, Any] = {
        "concurrency": concurrency,
        "receipts": count,
        "per_sec": count / wall,
        "mean_batch": count / max(1, batches),
        "process_cpu_us": cpu / count * 1e6,
    }
    if clocks is not None:
        parts = {k: v / count / 1000 for k, v in clocks.ns.items()}
        parts["loop_other"] = row["process_cpu_us"] - sum(parts.values())
        row["parts_us"] = parts
    return row


def _fmt_parts(parts: dict[str, float]) -> str:
    return " ".join(f"{k} {v:6.1f}" for k, v in parts.items())


async def _logs(
    items: list[Sample], ring: KeyRing, args: argparse.Namespace, out: dict[str, Any]
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="aarm-receipt-cpu-", dir=args.sqlite_dir))
    server = None
    dsn = args.dsn
    if dsn is None and not args.no_postgres and "postgres" in args.stores:
        from tests.support.processes import PostgresServer

        server = PostgresServer()
        dsn = server.create_database()
    lanes: dict[str, Callable[[], ReceiptStore]] = {
        "sqlite": lambda: SqliteReceiptStore(tmp / "receipts.db"),
        "memory": MemoryReceiptStore,
    }
    if dsn is not None:
        lanes["postgres"] = lambda: PostgresReceiptStore(dsn, max_size=4)
    lanes = {k: v for k, v in lanes.items() if k in args.stores}
    n = 0
    try:
        for rep in range(args.repeats):
            for lane, make in lanes.items():
                for c in args.concurrency:
                    for instrumented in (True, False):
                        n += 1
                        clocks = Clocks() if instrumented else None
                        if clocks is not None:
                            clocks.install()
                        try:
                            row = await _lane(
                                make,
                                ring,
                                items,
                                concurrency=c,
                                seconds=args.seconds,
                                run=f"r{n}",
                                clocks=clocks,
                                max_batch=args.max_batch,
                            )
                        finally:
                            if clocks is not None:
                                clocks.uninstall()
                        key = f"{lane}_c{c}_{'parts' if instrumented else 'plain'}"
                        out["log"].setdefault(key, []).append(row)
                        print(
                            f"[{rep}] {lane:8} c={c:<3} {'parts' if instrumented else 'plain'}"
                            f" {row['per_sec']:7.0f}/s batch {row['mean_batch']:5.1f}"
                            f" cpu {row['process_cpu_us']:6.1f} µs"
                            + (f" | {_fmt_parts(row['parts_us'])}" if instrumented else ""),
                            flush=True,
                        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if server is not None:
            server.stop()


def _summary(out: dict[str, Any]) -> None:
    print("\nstages (µs thread CPU per receipt; median / min / max over repeats):")
    keys = out["stages"][0].keys()
    for k in keys:
        vals = [s[k] for s in out["stages"]]
        print(f"  {k:28} {statistics.median(vals):8.1f} {min(vals):8.1f} {max(vals):8.1f}")
    print("\none signature per batch (prototype), µs per receipt from the signing input on,")
    print("median over repeats: each receipt signed | one signature per batch | saved")
    for b in out["merkle"][0]["batches"]:
        med = {
            k: statistics.median(m["batches"][b][k] for m in out["merkle"])
            for k in out["merkle"][0]["batches"][b]
        }
        print(
            f"  batch {b:3}: {med['sign_each_us']:6.1f} | {med['sign_batch_us']:6.1f}"
            f" | {med['saved_us']:6.1f}   bytes {med['bytes_each']:.0f} -> {med['bytes_batch']:.0f}"
        )
    if not out["log"]:
        return
    print("\nlog (µs process CPU per receipt; median over repeats):")
    for key, rows in out["log"].items():
        cpu = statistics.median(r["process_cpu_us"] for r in rows)
        batch = statistics.median(r["mean_batch"] for r in rows)
        line = f"  {key:22} cpu {cpu:6.1f}  batch {batch:5.1f}"
        if "parts_us" in rows[0]:
            parts = {
                p: statistics.median(r["parts_us"][p] for r in rows) for p in rows[0]["parts_us"]
            }
            line += "  " + _fmt_parts(parts)
        print(line)


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    ring = KeyRing.generate("bench")
    items = samples(args.samples_cache)
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average_start": os.getloadavg(),
        "seconds_per_point": args.seconds,
        "max_batch": args.max_batch,
        "verdicts": sorted({s.result.decision.value for s in items}),
        "stages": [],
        "log": {},
    }
    out["merkle"] = []
    for _ in range(args.repeats):
        out["stages"].append(stages(items, ring))
        out["merkle"].append(merkle_estimate(items, ring))
    if not args.stages_only:
        await _logs(items, ring, args, out)
    out["load_average_end"] = os.getloadavg()
    _summary(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-batch", type=int, default=receipt_log.DEFAULT_MAX_BATCH)
    parser.add_argument("--dsn", default=None, help="an existing PostgreSQL (default: start one)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--stages-only", action="store_true")
    parser.add_argument(
        "--stores", nargs="+", default=["sqlite", "memory", "postgres"], help="log lanes to run"
    )
    parser.add_argument(
        "--samples-cache", type=Path, default=None, help="keep the opa eval answers here"
    )
    parser.add_argument("--sqlite-dir", default=None, help="where the SQLite file goes")
    args = parser.parse_args()
    results = asyncio.run(_main(args))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"receipt-cpu-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
