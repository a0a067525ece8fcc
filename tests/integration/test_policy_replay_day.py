"""A recorded day of the scenarios, replayed and shadowed (issue 16, acceptance).

The scenarios (``tests/cases/scenarios`` and the conformance suite's extras) run through
the real service, with real OPA on the reference pack, twice over a simulated clock:
once on the day before (the ``before-`` sessions), then over one day (the ``day-``
sessions), each scenario starting at its own time of that day and each call a second
after the one before it. The service runs a snapshot of the pack (``rego/`` copied once,
so an edit there meanwhile changes neither run); the candidate is a copy of that
snapshot with ONE rule disabled (:data:`RULE`); nothing in ``rego/`` is touched.

What the rule changes is derived from the records alone, without OPA: a decision
changes when the rule was its only deciding rule (the receipt's reasons: the winning
tier) and the rules it matched besides decide a different verdict, which is the
verdict the recorded decisions with exactly those matched rules got (no rules left:
the catalogued tool's ALLOW). Then:

- ``aarm-pdp policy replay --since <the day>`` reports exactly those decisions, with
  their old -> new verdicts, on SQLite and on PostgreSQL, and none of the day before;
- the same traffic through a service running the candidate as its shadow policy counts,
  over the day, the same disagreements in ``aarm_shadow_verdicts_total`` (read from
  its real /metrics endpoint) as the replay reports transitions.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import io
import json
import re
import shutil
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aarm_pdp import cli, server
from aarm_pdp.config import Config, ReceiptConfig
from aarm_pdp.model.timestamps import rfc3339
from prometheus_client.parser import text_string_to_metric_families

from tests.support import scenarios
from tests.support.grpc_clients import Clients, aio_channel
from tests.support.paths import REGO, ROOT
from tests.support.processes import PostgresServer
from tests.support.service import scratch, service_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RULE = "aarm.composition.exfiltration"
"""The one rule the candidate changes: disabled (its body made false)."""
CATALOGUED = "aarm.main.catalogued"
"""What matches when no finding is left: the catalogued tool's ALLOW."""
DAY_NS = 86_400 * 10**9
STEP_NS = 10**9
"""Simulated time between two calls of one scenario."""
DIRS = (scenarios.SCENARIOS, ROOT / "conformance" / "scenarios")


def _docs() -> list[dict[str, Any]]:
    """The scenarios with steps, by id; conformance/scenarios wins (as in the suite)."""
    docs = {doc["id"]: doc for doc in (scenarios.load(p) for p in scenarios.files(*DIRS))}
    return [doc for _, doc in sorted(docs.items()) if doc.get("steps")]


DOCS = _docs()


class SimulatedClock:
    """Unix ns as the driver sets it: the service reads, the driver moves it on."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


@dataclasses.dataclass(frozen=True)
class Step:
    phase: str
    scenario: str
    index: int
    decision_id: str
    verdict: str


async def _drive(clients: Clients, clock: SimulatedClock, start_ns: int, phase: str) -> list[Step]:
    """Every scenario once, scenario k of n starting at ``start_ns + k/n`` of a day."""
    steps: list[Step] = []
    for k, doc in enumerate(DOCS):
        clock.now_ns = start_ns + k * (DAY_NS // len(DOCS))
        sid = f"{phase}-{doc['id']}"
        runner = scenarios.replay(doc, sid, prefix=sid)
        stubs = {"decisions": clients.decide, "sessions": clients.sessions}
        response: Any = None
        try:
            while True:
                call = runner.send(response)
                clock.now_ns += STEP_NS
                response = await getattr(stubs[call.service], call.method)(call.request)
        except StopIteration as done:
            result: scenarios.ScenarioResult = done.value
        steps += [Step(phase, doc["id"], s.index, s.decision_id, s.got) for s in result.steps]
    assert clock.now_ns < start_ns + DAY_NS, "the scenarios overran the day"
    return steps


def _day_start() -> int:
    """Midnight UTC of yesterday: the whole simulated day (and the one before) is past."""
    return (time.time_ns() // DAY_NS - 1) * DAY_NS


def disable_rule(pack: Path, rule_id: str, dest: Path) -> Path:
    """A copy of ``pack`` at ``dest`` in which every rule with ``rule_id`` never fires."""
    shutil.copytree(pack, dest)
    done = 0
    for path in sorted(dest.rglob("*.rego")):
        if path.name.endswith("_test.rego"):
            continue
        lines = path.read_text().splitlines(keepends=True)
        out, armed = [], False
        for line in lines:
            out.append(line)
            if re.fullmatch(rf"#\s+rule_id:\s+{re.escape(rule_id)}\s*", line.rstrip("\n")):
                armed = True
            elif armed and line.startswith("# METADATA"):
                raise AssertionError(f"{path}: the rule {rule_id} has no body to disable")
            elif armed and line.rstrip().endswith("if {"):
                out.append(f"\tfalse # {rule_id} disabled for the replay test\n")
                armed, done = False, done + 1
        path.write_text("".join(out))
    assert done, f"no rule {rule_id} in {pack}"
    return dest


@dataclasses.dataclass
class Day:
    """One recorded day (and the day before) in a receipt store, and its replay."""

    store: str
    start_ns: int
    steps: list[Step]
    rows: dict[str, tuple[dict[str, Any], dict[str, Any]]]
    """decision id -> (receipt, decision record), read straight from the store's tables:
    every decision that asked the policy (the others, refused before, keep no record)."""
    report: dict[str, Any]
    """``policy replay --since <day> --json --examples 0`` against the candidate."""

    def ids(self, phase: str) -> set[str]:
        """The decisions of ``phase`` that asked the policy."""
        return {s.decision_id for s in self.steps if s.phase == phase} & self.rows.keys()


def _config(opa_binary: str, pack: Path, store: str, **opa: Any) -> Config:
    # a generous OPA timeout: on a loaded machine a slow answer must not fail a decision
    # closed in one run and not in the other (the runs would not be the same traffic)
    cfg = service_config(
        opa_binary, policy=pack, receipts=store, timeout_seconds=10.0, reload_seconds=0, **opa
    )
    # keys of its own: a shared ring rotated by another test would bound their windows
    keys = scratch("day-keys")
    return dataclasses.replace(cfg, receipts=ReceiptConfig(store=store, key_dir=keys))


async def _record(opa_binary: str, pack: Path, store: str, start_ns: int) -> list[Step]:
    clock = SimulatedClock(start_ns - DAY_NS)
    app = await server.start(_config(opa_binary, pack, store), clock_ns=clock)
    try:
        async with aio_channel(f"127.0.0.1:{app.port}") as channel:
            clients = Clients(channel)
            steps = await _drive(clients, clock, start_ns - DAY_NS, "before")
            steps += await _drive(clients, clock, start_ns, "day")
    finally:
        await app.stop()
    return steps


def _rows(store: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Every decision receipt with a record, by decision id: plain SQL, no store code.

    A decision receipt without a record must be one that never asked the policy."""
    prefix = "aarm_" if "://" in store else ""
    sql = (
        f"SELECT r.canonical, d.record FROM {prefix}receipts r"
        f" LEFT JOIN {prefix}decision_records d ON d.receipt_id = r.receipt_id"
        " WHERE r.kind = 'decision'"
    )
    if prefix:
        import psycopg

        with psycopg.connect(store) as conn:
            got = conn.execute(sql).fetchall()
    else:
        with contextlib.closing(sqlite3.connect(store)) as db:
            got = db.execute(sql).fetchall()
    rows = {}
    for receipt_text, record_text in got:
        receipt = json.loads(receipt_text)
        if record_text is None:
            assert "input_sha256" not in receipt["decision"], receipt
            assert receipt["decision"]["fail_closed"], receipt
            continue
        rows[receipt["decision_id"]] = (receipt, json.loads(record_text))
    return rows


def _replay(opa_binary: str, candidate: Path, store: str, since_ns: int) -> dict[str, Any]:
    out = io.StringIO()
    argv = ["policy", "replay", "--policy", str(candidate), "--store", store]
    argv += ["--since", rfc3339(since_ns), "--json", "--examples", "0"]
    argv += ["--opa-binary", opa_binary]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdout", out)
        assert cli.main(argv) == 0, out.getvalue()
    return dict(json.loads(out.getvalue()))


@pytest.fixture(scope="module")
def pack() -> Path:
    """The reference pack as it is now, for every run of this module."""
    dest = scratch("pack") / "rego"
    shutil.copytree(REGO, dest)
    return dest


@pytest.fixture(scope="module")
def candidate(pack: Path) -> Path:
    return disable_rule(pack, RULE, scratch("candidate") / "rego")


def _day(opa_binary: str, pack: Path, candidate: Path, store: str) -> Day:
    start = _day_start()
    steps = asyncio.run(_record(opa_binary, pack, store, start))
    return Day(store, start, steps, _rows(store), _replay(opa_binary, candidate, store, start))


@pytest.fixture(scope="module")
def day_sqlite(opa_binary: str, pack: Path, candidate: Path) -> Day:
    return _day(opa_binary, pack, candidate, str(scratch("day") / "receipts.db"))


@pytest.fixture(scope="module")
def day_postgresql(opa_binary: str, pack: Path, candidate: Path, pg_server: PostgresServer) -> Day:
    return _day(opa_binary, pack, candidate, pg_server.create_database())


@dataclasses.dataclass
class Expected:
    changes: dict[str, tuple[str, str]]
    """decision id -> (old verdict, new verdict)."""
    rules_now: collections.Counter[str]
    """Rules the changed decisions match now and did not before."""
    matched_unchanged: set[str]
    """Decisions that matched the rule and keep their verdict (another rule decides)."""


def expected_changes(
    rows: dict[str, tuple[dict[str, Any], dict[str, Any]]], ids: set[str], rule: str
) -> Expected:
    """What disabling ``rule`` changes among the decisions ``ids``, from the records."""
    by_matched: dict[frozenset[str], set[str]] = collections.defaultdict(set)
    for _, record in rows.values():
        policy = record["policy"]
        by_matched[frozenset(policy["matched_rules"])].add(policy["decision"])
    want = Expected({}, collections.Counter(), set())
    for decision_id in ids:
        receipt, record = rows[decision_id]
        old, matched = record["policy"]["decision"], set(record["policy"]["matched_rules"])
        if rule not in matched:
            continue
        decision = receipt["decision"]
        assert decision["result"] == old, f"{decision_id}: overridden, its deciding rules unknown"
        deciding = {reason["rule_id"] for reason in decision["reasons"]}
        rest = frozenset(matched - {rule}) or frozenset({CATALOGUED})
        if deciding == {rule}:
            verdicts = by_matched.get(rest, set())
            assert len(verdicts) == 1, f"{decision_id}: no single recorded verdict for {rest}"
            (new,) = verdicts
        else:
            new = old  # a higher tier decided, or the rule shared its tier with another
        if new == old:
            want.matched_unchanged.add(decision_id)
            continue
        want.changes[decision_id] = (old, new)
        want.rules_now.update(rest - matched)
    return want


def _reported(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """decision id -> (old, new) of every change the replay lists."""
    got: dict[str, tuple[str, str]] = {}
    for key, examples in report["examples"].items():
        old, new = key.split("->")
        for ex in examples:
            assert ex["decision_id"] not in got
            got[ex["decision_id"]] = (old, new)
    return got


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_replay_of_a_recorded_day_reports_exactly_what_the_changed_rule_changes(
    backend: str, request: pytest.FixtureRequest
) -> None:
    day: Day = request.getfixturevalue(f"day_{backend}")
    day_ids, before_ids = day.ids("day"), day.ids("before")
    # the simulated day: every decision of it, and only those, issued within it
    issued = {i: day.rows[i][0]["issued_at"] for i in day.rows}
    assert day_ids <= issued.keys() and before_ids <= issued.keys()
    lo, hi = rfc3339(day.start_ns), rfc3339(day.start_ns + DAY_NS)
    assert all(lo <= issued[i] < hi for i in day_ids)
    assert all(issued[i] < lo for i in before_ids)
    hours = {issued[i][11:13] for i in day_ids}
    assert len(hours) >= 12, f"the day's decisions span only the hours {sorted(hours)}"

    want = expected_changes(day.rows, day_ids, RULE)
    before = expected_changes(day.rows, before_ids, RULE)
    # the traffic makes the test bite: the rule decides some, matches others it does not
    # decide, and would change decisions of the day before too (outside --since)
    assert want.changes, f"{RULE} decides nothing in the day's traffic"
    assert want.matched_unchanged, f"{RULE} never matched without deciding"
    assert before.changes

    report = day.report
    assert report["replayed"] == len(day_ids)
    assert (report["unbound"], report["failed"]) == (0, 0)
    assert _reported(report) == want.changes
    assert report["changed"] == len(want.changes)
    assert report["unchanged"] == len(day_ids) - len(want.changes)
    transitions = collections.Counter(f"{o}->{n}" for o, n in want.changes.values())
    assert report["transitions"] == dict(transitions)
    assert report["rules_gone"] == {RULE: len(want.changes)}
    assert report["rules"] == dict(want.rules_now)
    assert not _reported(report).keys() & before_ids


def _metrics(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    got: dict[str, dict[tuple[tuple[str, str], ...], float]] = collections.defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            got[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return got


async def _shadow_counts(port: int) -> collections.Counter[str]:
    """``live->shadow`` counts once the shadow answered every live policy query."""
    shadow: collections.Counter[str] = collections.Counter()
    for _ in range(200):
        m = await asyncio.to_thread(_metrics, port)
        queries = sum(m["aarm_opa_query_duration_seconds_count"].values())
        shadow = collections.Counter()
        for labels, n in m["aarm_shadow_verdicts_total"].items():
            lab = dict(labels)
            shadow[f"{lab['live']}->{lab['shadow']}"] += int(n)
        if queries and sum(shadow.values()) == queries:
            return shadow
        await asyncio.sleep(0.1)
    raise AssertionError(f"the shadow answered {sum(shadow.values())} of {queries} queries")


def _disagreements(before: collections.Counter[str], after: collections.Counter[str]) -> Any:
    increase = after - before
    return (
        {k: n for k, n in increase.items() if len(set(k.split("->"))) == 2},
        sum(n for k, n in increase.items() if len(set(k.split("->"))) == 1),
    )


def test_shadow_counts_the_same_disagreements_as_replay_for_the_same_traffic(
    opa_binary: str, pack: Path, candidate: Path, day_sqlite: Day
) -> None:
    store = str(scratch("shadow-day") / "receipts.db")
    cfg = _config(opa_binary, pack, store, shadow_policy_paths=(candidate,))

    async def run() -> tuple[list[Step], collections.Counter[str], collections.Counter[str]]:
        start = day_sqlite.start_ns
        clock = SimulatedClock(start - DAY_NS)
        app = await server.start(cfg, clock_ns=clock)
        try:
            assert app.metrics_port
            async with aio_channel(f"127.0.0.1:{app.port}") as channel:
                clients = Clients(channel)
                steps = await _drive(clients, clock, start - DAY_NS, "before")
                at_midnight = await _shadow_counts(app.metrics_port)
                steps += await _drive(clients, clock, start, "day")
                at_end = await _shadow_counts(app.metrics_port)
        finally:
            await app.stop()
        return steps, at_midnight, at_end

    steps, at_midnight, at_end = asyncio.run(run())
    # the same traffic: step for step the verdicts of the recorded day, and the same
    # steps asked the policy (kept a record)
    same = [(s.phase, s.scenario, s.index, s.verdict) for s in steps]
    assert same == [(s.phase, s.scenario, s.index, s.verdict) for s in day_sqlite.steps]
    asked = _rows(store).keys()
    recorded = day_sqlite.rows.keys()
    assert [s.decision_id in asked for s in steps] == [
        s.decision_id in recorded for s in day_sqlite.steps
    ]

    assert not {k for k in at_end if k.endswith(("->error", "->skipped"))}, at_end
    disagreements, agreements = _disagreements(at_midnight, at_end)
    report = day_sqlite.report
    assert disagreements == report["transitions"]
    assert agreements == report["unchanged"]
    assert sum(disagreements.values()) == report["changed"] > 0
    # and the day before, counted by the shadow too, is what --since left out
    before, _ = _disagreements(collections.Counter(), at_midnight)
    want = expected_changes(day_sqlite.rows, day_sqlite.ids("before"), RULE)
    assert before == dict(collections.Counter(f"{o}->{n}" for o, n in want.changes.values()))
