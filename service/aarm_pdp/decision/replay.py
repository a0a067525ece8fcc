"""``aarm-pdp policy replay``: recorded decisions re-evaluated against a candidate policy.

Every decision that asked the policy keeps a *decision record* beside its receipt
(:func:`aarm_pdp.receipts.body.decision_record`): the redacted input OPA saw and the
policy's own verdict on it; the signed receipt binds it by ``decision.input_sha256``.
Replay reads the records of a receipt store (``--since``, ``--tenant``), checks each
against its receipt, evaluates its input on a private managed OPA running the
candidate layers, and reports what would change: counts old -> new, the rules behind
the changes (matched now and not then; then and not now), and examples.

A record holds the input *redacted*: a rule that reads a secret's value (rare: a
credential is not what policy decides on) sees ``<redacted>`` on replay; such records
are counted (``redacted``) so a change among them can be read with that in mind.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aarm_pdp.decision.result import parse_result
from aarm_pdp.errors import AarmError
from aarm_pdp.model.redaction import REDACTED
from aarm_pdp.model.timestamps import rfc3339
from aarm_pdp.opa.client import OpaClient
from aarm_pdp.opa.sidecar import ManagedOpa, SidecarStartError
from aarm_pdp.receipts.body import input_sha256
from aarm_pdp.receipts.factory import open_store

__all__ = ["ReplayReport", "replay", "run"]

EXAMPLES = 5
"""Examples kept per verdict change by default (``--examples``; 0: every one)."""


@dataclass
class ReplayReport:
    """What replaying a store's decision records against a candidate policy found."""

    policy: str = ""
    """The candidate's revision (effective revisions, as a receipt would name them)."""
    replayed: int = 0
    unchanged: int = 0
    changed: int = 0
    unbound: int = 0
    """Records whose input does not hash to their receipt's ``input_sha256``: skipped."""
    failed: int = 0
    """Records the candidate could not evaluate (undefined or malformed answer)."""
    redacted: int = 0
    """Replayed records whose input had a value withheld."""
    transitions: dict[str, int] = field(default_factory=dict)
    """``OLD->NEW``: how many decisions changed that way."""
    rules: dict[str, int] = field(default_factory=dict)
    """Rule id: how many changed decisions it matches now and did not before (what made
    the new verdict)."""
    rules_gone: dict[str, int] = field(default_factory=dict)
    """Rule id: how many changed decisions it matched before and does not now."""
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """``OLD->NEW``: the first changed decisions that way, in store order."""

    def to_doc(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "replayed": self.replayed,
            "unchanged": self.unchanged,
            "changed": self.changed,
            "unbound": self.unbound,
            "failed": self.failed,
            "redacted": self.redacted,
            "transitions": dict(sorted(self.transitions.items())),
            "rules": _by_count(self.rules),
            "rules_gone": _by_count(self.rules_gone),
            "examples": self.examples,
        }


def _by_count(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _has_redaction(value: Any) -> bool:
    if isinstance(value, str):
        return REDACTED in value
    if isinstance(value, dict):
        return any(_has_redaction(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_redaction(v) for v in value)
    return False


async def replay(
    store_url: str,
    layers: list[Path],
    *,
    binary: str,
    since: str = "",
    tenant: str | None = None,
    concurrency: int = 8,
    examples: int = EXAMPLES,
) -> ReplayReport:
    """Replay the decision records of ``store_url`` against ``layers`` (pack first).

    ``examples``: how many changed decisions to list per verdict change (0: all).
    Raises :class:`~aarm_pdp.opa.sidecar.SidecarStartError` when the candidate does not
    load."""
    store = open_store(store_url)
    try:
        records = await store.decision_records(since=since, tenant=tenant)
    finally:
        await store.aclose()
    report = ReplayReport()
    kept = _Examples(examples)
    sidecar = ManagedOpa(binary=binary, policy_paths=layers)
    await sidecar.start()
    client = OpaClient(sidecar.url, max_connections=concurrency)
    try:
        report.policy = (await client.policy_version()).revision
        gate = asyncio.Semaphore(concurrency)

        async def one(order: int, receipt_text: str, record_text: str) -> None:
            receipt = json.loads(receipt_text)
            record = json.loads(record_text)
            decision = receipt.get("decision") or {}
            if decision.get("input_sha256") != input_sha256(record):
                report.unbound += 1
                return
            async with gate:
                try:
                    new = parse_result(await client.evaluate(record["input"], timeout=10.0))
                except AarmError:
                    report.failed += 1
                    return
            changed = _tally(report, receipt, record, new.decision.value, list(new.matched_rules))
            if changed is not None:
                kept.add(order, *changed)

        await asyncio.gather(*(one(i, r.receipt, r.record) for i, r in enumerate(records)))
    finally:
        await client.aclose()
        await sidecar.stop()
    report.examples = kept.lists()
    return report


class _Examples:
    """The first ``keep`` changes per transition by store order (0: all), whatever order
    the concurrent evaluations finish in; at most twice that many held at a time."""

    def __init__(self, keep: int) -> None:
        self._keep = max(keep, 0)
        self._by_key: dict[str, list[tuple[int, dict[str, Any]]]] = {}

    def add(self, order: int, key: str, example: dict[str, Any]) -> None:
        held = self._by_key.setdefault(key, [])
        held.append((order, example))
        if self._keep > 0 and len(held) >= 2 * self._keep:
            held.sort(key=lambda oe: oe[0])
            del held[self._keep :]

    def lists(self) -> dict[str, list[dict[str, Any]]]:
        out = {}
        for key, held in self._by_key.items():
            held.sort(key=lambda oe: oe[0])
            out[key] = [ex for _, ex in held[: self._keep or None]]
        return out


def _tally(
    report: ReplayReport,
    receipt: dict[str, Any],
    record: dict[str, Any],
    new: str,
    new_rules: list[str],
) -> tuple[str, dict[str, Any]] | None:
    """Count one replayed record; a changed one gives its transition and example."""
    report.replayed += 1
    if _has_redaction(record["input"]):
        report.redacted += 1
    old = str(record["policy"]["decision"])
    old_rules = [str(r) for r in record["policy"].get("matched_rules") or []]
    if old == new:
        report.unchanged += 1
        return None
    report.changed += 1
    key = f"{old}->{new}"
    report.transitions[key] = report.transitions.get(key, 0) + 1
    for rule in set(new_rules) - set(old_rules):
        report.rules[rule] = report.rules.get(rule, 0) + 1
    for rule in set(old_rules) - set(new_rules):
        report.rules_gone[rule] = report.rules_gone.get(rule, 0) + 1
    action = receipt.get("action") or {}
    return key, {
        "decision_id": receipt.get("decision_id"),
        "issued_at": receipt.get("issued_at"),
        "tenant": (receipt.get("chain") or {}).get("tenant"),
        "tool": f"{action.get('tool', '')}.{action.get('operation', '')}",
        "old_rules": old_rules,
        "new_rules": new_rules,
    }


def _print(report: ReplayReport, out: TextIO) -> None:
    print(f"candidate {report.policy}", file=out)
    print(
        f"replayed {report.replayed}: {report.unchanged} unchanged, {report.changed} changed"
        f" ({report.redacted} with redacted values; {report.unbound} unbound and"
        f" {report.failed} failed, not replayed)",
        file=out,
    )
    for key, n in sorted(report.transitions.items()):
        print(f"  {key.replace('->', ' -> ')}: {n}", file=out)
    doc = report.to_doc()
    for title, key in (("rules matched now, not before", "rules"), ("no longer", "rules_gone")):
        if doc[key]:
            print(f"{title}:", file=out)
            for rule, n in doc[key].items():
                print(f"  {rule}: {n}", file=out)
    for key, examples in sorted(report.examples.items()):
        print(f"examples {key.replace('->', ' -> ')}:", file=out)
        for ex in examples:
            print(
                f"  {ex['decision_id']} {ex['issued_at']} {ex['tenant']} {ex['tool']}"
                f" rules {ex['old_rules']} -> {ex['new_rules']}",
                file=out,
            )


def run(
    store_url: str,
    layers: list[Path],
    *,
    binary: str,
    since: str | None = None,
    tenant: str | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
    examples: int = EXAMPLES,
) -> int:
    """The command: 0 (whether or not verdicts change), 1 when it cannot run."""
    out = out if out is not None else sys.stdout
    from aarm_pdp.receipts.cli import parse_cutoff

    try:
        cutoff = rfc3339(parse_cutoff(since)) if since else ""
    except ValueError as exc:
        print(f"error: --since: {exc}", file=out)
        return 1
    try:
        report = asyncio.run(
            replay(store_url, layers, binary=binary, since=cutoff, tenant=tenant, examples=examples)
        )
    except (SidecarStartError, AarmError, OSError) as exc:
        print(f"error: {exc}", file=out)
        return 1
    if as_json:
        print(json.dumps(report.to_doc(), indent=2, sort_keys=True), file=out)
    else:
        _print(report, out)
    return 0
