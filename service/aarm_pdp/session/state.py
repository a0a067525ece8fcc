"""Per-session accumulated context (AARM R2) and its pure transitions.

The state is small and bounded whatever the session's length: counters, bounded
sets, a window of recent actions, timestamps of the last hour's actions per
category, open deferrals, and the head of the hash-chained context log. It is
serialised in one codec the in-memory and Redis stores share: the compact binary
version 2 (:mod:`aarm_pdp.session.codec`), or the JSON of version 1 for a state that
version 2 cannot hold exactly; both decode. Time comes in as an argument; nothing here
reads a clock.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from aarm_pdp.model.levels import LEVELS, NO_CLASSIFICATION, TOP_LEVEL, level
from aarm_pdp.session import codec

RECENT = 20
MAX_TOOLS = 256
MAX_LABELS = 32
MAX_DECISIONS = 64
MAX_WINDOW_EVENTS = 128
WINDOWS = (60, 3600)
PAYMENT_WINDOWS = (3600, 86400)
"""Windows (seconds) over which ``input.analysis.amounts`` sums the session's payments."""
MAX_PAYMENTS = 256
"""Payments kept with their time for the window sums; the session totals are exact."""
NONE = NO_CLASSIFICATION
_NS = 1_000_000_000
GENESIS = "0" * 64


@dataclass(slots=True)
class OriginalRequest:
    """What the user asked for, bound at session start."""

    text: str
    intent_class: str = ""
    expected_scope: list[str] = field(default_factory=list)
    max_classification: str = ""
    derived_scope: list[str] = field(default_factory=list)
    """What the text implies when no expected scope was declared
    (:func:`aarm_pdp.drift.scope.derive_scope`); drift's scope component uses it."""


@dataclass(slots=True)
class SessionState:
    """Everything the service remembers about one session."""

    session_id: str
    tenant: str = ""
    human: str = ""
    service: str = ""
    agent: str = ""
    principal: str = ""
    """The enforcing principal the session was bound to at its first call."""
    started_ns: int = 0
    known: bool = False
    original: OriginalRequest | None = None
    action_count: int = 0
    tools: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    highest: int = -1
    labels: list[str] = field(default_factory=list)
    untrusted: bool = False
    recent: list[dict[str, Any]] = field(default_factory=list)
    # decision_id -> [name, category, verdict, defer_depth]; bounded, oldest dropped.
    decisions: dict[str, list[Any]] = field(default_factory=dict)
    # category -> send times (ns) within the longest window.
    events: dict[str, list[int]] = field(default_factory=dict)
    drift_max: float = 0.0
    drift_ema: float = 0.0
    drift_outside: list[str] = field(default_factory=list)
    """Distinct categories (a tool's name when it has none) of the session's actions
    outside its scope, in order; bounded by MAX_LABELS (drift's ``expansion``)."""
    log_head: str = GENESIS
    log_len: int = 0
    # Payments decided (not denied) in the session: count and totals by currency since
    # the start, and [ns, currency, amount] within the longest payment window.
    pay_count: int = 0
    pay_totals: dict[str, float] = field(default_factory=dict)
    payments: list[list[Any]] = field(default_factory=list)

    def to_bytes(self, version: int = codec.VERSION) -> bytes:
        """The compact binary encoding (version 2), or version 1 (JSON) when version 2
        cannot hold this state exactly (:mod:`aarm_pdp.session.codec`) or ``version``
        is 1 (``session.state_version``: replicas older than version 2 still run)."""
        if version == 1:
            return self.to_json()
        try:
            return codec.encode_state(self)
        except codec.Unencodable:
            return self.to_json()

    def to_json(self) -> bytes:
        """Version 1: the JSON object of every field (what earlier versions wrote and
        read; still read by :meth:`from_bytes`)."""
        doc = {name: getattr(self, name) for name in _FIELDS}
        orig = self.original
        doc["original"] = None if orig is None else {k: getattr(orig, k) for k in _ORIG_ORDER}
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, raw: bytes) -> SessionState:
        """Inverse of :meth:`to_bytes` and :meth:`to_json`: a blob of either version."""
        if raw[:1] == b"{":
            return cls._from_json(raw)
        return codec.decode_state(raw, cls, OriginalRequest)  # type: ignore[no-any-return]

    @classmethod
    def _from_json(cls, raw: bytes) -> SessionState:
        doc = orjson.loads(raw)
        orig = doc.pop("original", None)
        # Fields this version does not know (written by a newer replica) are left out,
        # fields it knows and the blob lacks (an older one's) take their defaults.
        state = cls(**{k: v for k, v in doc.items() if k in _KNOWN})
        state.original = (
            OriginalRequest(**{k: v for k, v in orig.items() if k in _ORIGINAL_FIELDS})
            if orig
            else None
        )
        return state

    @property
    def pending_deferrals(self) -> list[str]:
        """Decision ids still deferred."""
        return sorted(d for d, v in self.decisions.items() if v[2] == "DEFER")


_FIELDS = tuple(f.name for f in fields(SessionState))
_KNOWN = frozenset(_FIELDS) - {"original"}
_ORIG_ORDER = tuple(f.name for f in fields(OriginalRequest))
# The binary codec builds both positionally.
assert _FIELDS == codec.STATE_FIELDS
assert _ORIG_ORDER == codec.ORIGINAL_FIELDS
_ORIGINAL_FIELDS = frozenset(_ORIG_ORDER)


def level_name(index: int) -> str:
    """``NONE`` for -1, else the level's name."""
    return NONE if index < 0 else LEVELS[index]


def _bounded_add(counter: dict[str, int], key: str, limit: int) -> None:
    if key in counter or len(counter) < limit:
        counter[key] = counter.get(key, 0) + 1


def _prune(times: list[int], now_ns: int) -> list[int]:
    """The times (ascending) within the longest window, at most MAX_WINDOW_EVENTS."""
    start = bisect.bisect_right(times, now_ns - max(WINDOWS) * _NS)
    return times[max(start, len(times) - MAX_WINDOW_EVENTS) :]


def _add_time(times: list[int], now_ns: int) -> list[int]:
    """``times`` with ``now_ns`` added, kept ascending even if the clock stepped back."""
    out = list(times)
    if out and now_ns < out[-1]:
        bisect.insort(out, now_ns)
    else:
        out.append(now_ns)
    return out


def new_session(
    session_id: str,
    *,
    tenant: str,
    human: str,
    service: str,
    agent: str,
    now_ns: int,
    original: OriginalRequest | None = None,
    principal: str = "",
) -> SessionState:
    """A fresh session; ``known`` when opened by StartSession with an original request."""
    return SessionState(
        session_id=session_id,
        tenant=tenant,
        human=human,
        service=service,
        agent=agent,
        principal=principal,
        started_ns=now_ns,
        known=original is not None,
        original=original,
    )


def _link(prev: str, entry: dict[str, Any]) -> str:
    return codec.link(prev, entry)


def chain(state: SessionState, entry: dict[str, Any]) -> str:
    """Append ``entry`` to the session's hash chain; returns the new head.

    hash_n = sha256(hash_{n-1} || canonical_json(entry_n without prev/hash)), with
    hash_0 = 64 zeros. The entry gains ``prev`` and ``hash``; the state keeps the head.
    """
    prev = state.log_head
    state.log_head = _link(prev, entry)
    entry["prev"] = prev
    entry["hash"] = state.log_head
    state.log_len += 1
    return state.log_head


def verify_chain(
    entries: list[dict[str, Any]], head: str | None = None, start: str = GENESIS
) -> int | None:
    """Index of the first entry that does not verify (``len`` if ``head`` mismatches), or None.

    ``start`` is the hash just before ``entries[0]``: GENESIS for a whole log, the
    store's window base (:class:`~aarm_pdp.session.store.LogWindow`) for the window of
    a long session's log, whose older entries were let go; ``head`` is the running
    hash the session state keeps over every entry ever appended.
    """
    prev = start
    for i, entry in enumerate(entries):
        expected = _link(prev, entry)
        if entry.get("prev") != prev or entry.get("hash") != expected:
            return i
        prev = expected
    if head is not None and head != prev:
        return len(entries)
    return None


def dependencies(state: SessionState, depends_on: tuple[str, ...]) -> dict[str, Any]:
    """``input.dependencies``: the action's inputs resolved against the session."""
    deferred, denied, unknown = [], [], []
    depth = 0
    for dep in depends_on:
        rec = state.decisions.get(dep)
        if rec is None:
            unknown.append(dep)
        elif rec[2] == "DEFER":
            deferred.append(dep)
            depth = max(depth, int(rec[3]) + 1)
        elif rec[2] == "DENY":
            denied.append(dep)
    return {
        "deferred": sorted(deferred),
        "denied": sorted(denied),
        "unknown": sorted(unknown),
        "depth": depth,
    }


def summary(state: SessionState, now_ns: int, artifact_level: int = -1) -> dict[str, Any]:
    """``input.session``: what policy may read about the session, before this action."""
    counts: dict[str, dict[str, int]] = {}
    for window in WINDOWS:
        horizon = now_ns - window * _NS
        per: dict[str, int] = {}
        total = 0
        for category, times in state.events.items():
            n = len(times) - bisect.bisect_right(times, horizon)  # times are ascending
            if n:
                per[category] = n
                total += n
        per["all"] = total
        counts[str(window)] = per
    orig = state.original
    return {
        "known": state.known,
        "original_request": None
        if orig is None
        else {
            "text": orig.text,
            "intent_class": orig.intent_class,
            "expected_scope": list(orig.expected_scope),
            "max_classification": orig.max_classification or NONE,
            "derived_scope": list(orig.derived_scope),
        },
        "action_count": state.action_count,
        "elapsed_seconds": max(0, (now_ns - state.started_ns) // _NS),
        "tools_used": sorted(state.tools),
        "categories_used": sorted(state.categories),
        "highest_classification": level_name(state.highest),
        "labels": sorted(state.labels),
        "untrusted_content": state.untrusted,
        "counts": counts,
        "recent": list(state.recent),
        "pending_deferrals": state.pending_deferrals,
        "artifact_classification": level_name(artifact_level),
        # Moved to input.analysis.amounts by the input builder (decision/input.py).
        "payments": amount_totals(state, now_ns),
    }


def record_payment(state: SessionState, *, currency: str, amount: float, now_ns: int) -> None:
    """Add a payment to the session's totals (exact) and its timed window list (bounded)."""
    state.pay_count += 1
    state.pay_totals[currency] = round(state.pay_totals.get(currency, 0.0) + amount, 6)
    horizon = now_ns - max(PAYMENT_WINDOWS) * _NS
    kept = [p for p in state.payments if p[0] > horizon]
    entry = [now_ns, currency, amount]
    if kept and now_ns < kept[-1][0]:
        bisect.insort(kept, entry, key=lambda p: p[0])
    else:
        kept.append(entry)
    state.payments = kept[-MAX_PAYMENTS:]


def _sums(count: int, by_currency: dict[str, float]) -> dict[str, Any]:
    return {
        "count": count,
        "total": round(sum(by_currency.values()), 6),
        "by_currency": dict(sorted(by_currency.items())),
    }


def amount_totals(state: SessionState, now_ns: int) -> dict[str, Any]:
    """The payments decided earlier in the session (not this action): since the start
    and within each of :data:`PAYMENT_WINDOWS`, as count, nominal total over every
    currency, and total by currency."""
    if not state.payments and not state.pay_totals and not state.pay_count:
        # No payment yet (most sessions): what the loop below gives, without it.
        return {
            "session": {"count": 0, "total": 0, "by_currency": {}},
            "windows": {
                str(w): {"count": 0, "total": 0, "by_currency": {}} for w in PAYMENT_WINDOWS
            },
        }
    windows: dict[str, Any] = {}
    for window in PAYMENT_WINDOWS:
        horizon = now_ns - window * _NS
        per: dict[str, float] = {}
        n = 0
        for at, currency, amount in state.payments:
            if at > horizon:
                n += 1
                per[currency] = round(per.get(currency, 0.0) + amount, 6)
        windows[str(window)] = _sums(n, per)
    return {"session": _sums(state.pay_count, state.pay_totals), "windows": windows}


def record_decision(
    state: SessionState,
    *,
    decision_id: str,
    name: str,
    category: str,
    verdict: str,
    classification: str | None,
    labels: tuple[str, ...],
    defer_depth: int,
    drift: dict[str, Any] | None,
    now_ns: int,
    payment: tuple[str, float] | None = None,
    pointed: bool = False,
) -> dict[str, Any]:
    """Append a decided action (before it runs, as AARM asks); returns the log entry.

    ``payment`` (currency, amount) is what the action pays, if it pays
    (:meth:`~aarm_pdp.session.catalogue.Catalogue.payment`); unless the verdict is
    DENY it joins the session's payment totals, so payments split under a threshold
    still add up (``input.analysis.amounts``).
    """
    state.action_count += 1
    if payment is not None and verdict != "DENY":
        record_payment(state, currency=payment[0], amount=payment[1], now_ns=now_ns)
    _bounded_add(state.tools, name, MAX_TOOLS)
    if category:
        _bounded_add(state.categories, category, MAX_TOOLS)
        state.events[category] = _add_time(state.events.get(category, []), now_ns)
    for cat in list(state.events):
        state.events[cat] = _prune(state.events[cat], now_ns)
        if not state.events[cat]:
            del state.events[cat]
    if classification is not None and verdict != "DENY":
        state.highest = max(state.highest, level(classification))
    if verdict != "DENY":
        for label in labels:
            if label not in state.labels and len(state.labels) < MAX_LABELS:
                state.labels.append(label)
    # A denied action did not run: the session's drift is what it did, so a refused
    # attempt raises neither the running maximum nor the categories outside its scope.
    if drift is not None and verdict != "DENY":
        state.drift_max = float(drift["max"])
        state.drift_ema = float(drift["ema"])
        outside = category or name
        if (
            drift.get("scope_expansion")
            and outside not in state.drift_outside
            and len(state.drift_outside) < MAX_LABELS
        ):
            state.drift_outside.append(outside)
    # A fifth element marks a read the user's request pointed at (one of its values
    # came from the request): its output is indexed as user_pointed too.
    state.decisions[decision_id] = [name, category, verdict, defer_depth, *([1] if pointed else [])]
    if len(state.decisions) > MAX_DECISIONS:
        # Forget the oldest settled decision; open deferrals are kept while any other can go.
        settled = next((d for d, v in state.decisions.items() if v[2] != "DEFER"), None)
        del state.decisions[settled if settled is not None else next(iter(state.decisions))]
    entry = {
        "decision_id": decision_id,
        "name": name,
        "category": category,
        "decision": verdict,
        "classification": classification or NONE,
        "outcome": "pending" if verdict != "DENY" else "blocked",
    }
    state.recent = [*state.recent, entry][-RECENT:]
    log_entry = {"kind": "decision", "at_ns": now_ns, **entry}
    chain(state, log_entry)
    return log_entry


def record_outcome(
    state: SessionState,
    *,
    decision_id: str,
    executed: bool,
    classification: str | None,
    labels: tuple[str, ...],
    untrusted: bool,
    output_digest: str,
    now_ns: int,
) -> dict[str, Any]:
    """Fold an action's result into the session; unlabelled output counts as top level."""
    observed = level(classification) if executed else -1
    if executed:
        state.highest = max(state.highest, observed if classification else TOP_LEVEL)
        for label in labels:
            if label not in state.labels and len(state.labels) < MAX_LABELS:
                state.labels.append(label)
        state.untrusted = state.untrusted or untrusted
    outcome = "executed" if executed else "failed"
    for item in state.recent:
        if item["decision_id"] == decision_id:
            item["outcome"] = outcome
            if executed:
                item["classification"] = level_name(observed if classification else TOP_LEVEL)
    log_entry = {
        "kind": "outcome",
        "at_ns": now_ns,
        "decision_id": decision_id,
        "outcome": outcome,
        "classification": level_name(observed if classification else TOP_LEVEL)
        if executed
        else NONE,
        "labels": sorted(labels),
        "untrusted": untrusted,
        "output_digest": output_digest,
    }
    chain(state, log_entry)
    return log_entry


def pointed_at(state: SessionState, decision_id: str) -> bool:
    """Whether the decided action was a read the user's request pointed at."""
    rec = state.decisions.get(decision_id)
    return rec is not None and len(rec) > 4 and bool(rec[4])


def resolve_deferral(state: SessionState, decision_id: str, verdict: str) -> None:
    """Mark a deferred decision resolved (issue 5 calls this on resolution)."""
    rec = state.decisions.get(decision_id)
    if rec is not None:
        rec[2] = verdict
