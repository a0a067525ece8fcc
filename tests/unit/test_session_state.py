"""Session state transitions, summaries, dependency tracking and the hash chain."""

from __future__ import annotations

import hashlib
import json

from aarm_pdp.drift.score import DriftWeights, score
from aarm_pdp.session import state as st

S = 1_000_000_000
T0 = 1_795_658_400 * S


def fresh() -> st.SessionState:
    return st.new_session(
        "s-1",
        tenant="acme",
        human="alice",
        service="svc",
        agent="a-1",
        now_ns=T0,
        original=st.OriginalRequest("prepare briefing", "meeting_prep", ["crm"], "INTERNAL"),
    )


def decide(
    s: st.SessionState,
    i: int,
    name: str,
    category: str,
    verdict: str = "ALLOW",
    classification: str | None = None,
    at: int = 0,
    depth: int = 0,
) -> None:
    st.record_decision(
        s,
        decision_id=f"d-{i}",
        name=name,
        category=category,
        verdict=verdict,
        classification=classification,
        labels=("PII",) if classification else (),
        defer_depth=depth,
        drift=None,
        now_ns=T0 + at * S,
    )


def test_roundtrip_bytes() -> None:
    s = fresh()
    decide(s, 1, "db.query", "read", classification="CONFIDENTIAL")
    again = st.SessionState.from_bytes(s.to_bytes())
    assert again == s


def test_summary_counts_windows_and_classification() -> None:
    s = fresh()
    decide(s, 1, "db.query", "read", classification="CONFIDENTIAL", at=0)
    for i in range(3):
        decide(s, 10 + i, "email.send", "external_communication", at=100 + i)
    decide(s, 20, "email.send", "external_communication", at=3000)
    out = st.summary(s, T0 + 3030 * S)
    assert out["action_count"] == 5
    assert out["highest_classification"] == "CONFIDENTIAL"
    assert out["labels"] == ["PII"]
    assert out["counts"]["3600"]["external_communication"] == 4
    assert out["counts"]["60"]["external_communication"] == 1
    assert out["counts"]["3600"]["all"] == 5
    assert out["original_request"]["intent_class"] == "meeting_prep"
    assert out["elapsed_seconds"] == 3030
    # An hour later the window has moved on.
    later = st.summary(s, T0 + 7300 * S)
    assert later["counts"]["3600"]["all"] == 0


def test_denied_reads_do_not_taint() -> None:
    s = fresh()
    decide(s, 1, "db.query", "read", verdict="DENY", classification="RESTRICTED")
    assert st.summary(s, T0)["highest_classification"] == "NONE"


def test_unlabelled_outcome_counts_as_top_level() -> None:
    s = fresh()
    decide(s, 1, "file.read", "read")
    st.record_outcome(
        s,
        decision_id="d-1",
        executed=True,
        classification=None,
        labels=(),
        untrusted=True,
        output_digest="",
        now_ns=T0,
    )
    out = st.summary(s, T0)
    assert out["highest_classification"] == "RESTRICTED"
    assert out["untrusted_content"] is True
    assert out["recent"][-1]["outcome"] == "executed"


def test_dependencies_and_depth() -> None:
    s = fresh()
    decide(s, 1, "credentials.rotate", "identity", verdict="DEFER", depth=0)
    decide(s, 2, "x.y", "read", verdict="DEFER", depth=1)
    decide(s, 3, "db.drop", "destructive", verdict="DENY")
    deps = st.dependencies(s, ("d-1", "d-2", "d-3", "d-404"))
    assert deps == {"deferred": ["d-1", "d-2"], "denied": ["d-3"], "unknown": ["d-404"], "depth": 2}
    assert st.dependencies(s, ()) == {"deferred": [], "denied": [], "unknown": [], "depth": 0}
    st.resolve_deferral(s, "d-1", "ALLOW")
    assert s.pending_deferrals == ["d-2"]


def test_state_stays_bounded() -> None:
    s = fresh()
    for i in range(5000):
        decide(s, i, f"tool{i % 300}.op", "read", at=i)
    assert len(s.recent) == st.RECENT
    assert len(s.decisions) <= st.MAX_DECISIONS
    assert len(s.tools) <= st.MAX_TOOLS
    assert len(s.to_bytes()) < 64_000


def test_hash_chain_links_entries() -> None:
    s = fresh()
    heads = [s.log_head]
    entries = []
    for i in range(3):
        entries.append(
            st.record_decision(
                s,
                decision_id=f"d-{i}",
                name="a.b",
                category="read",
                verdict="ALLOW",
                classification=None,
                labels=(),
                defer_depth=0,
                drift=None,
                now_ns=T0 + i,
            )
        )
        heads.append(s.log_head)
    head = st.GENESIS
    for entry in entries:
        assert entry["prev"] == head
        unlinked = {k: v for k, v in entry.items() if k not in ("prev", "hash")}
        body = json.dumps(unlinked, sort_keys=True, separators=(",", ":"))
        head = hashlib.sha256((head + body).encode()).hexdigest()
        assert entry["hash"] == head
    assert head == s.log_head
    assert len(set(heads)) == 4
    assert s.log_len == 3


def test_drift_components() -> None:
    w = DriftWeights()
    base = dict(
        tool="crm",
        name="crm.query",
        category="read",
        expected_scope=("crm",),
        max_classification=1,
        highest_seen=-1,
        predicted=-1,
        tools_used=set(),
        action_count=0,
        previous_max=0.0,
        previous_ema=0.0,
        weights=w,
    )
    d0 = score(**base)  # type: ignore[arg-type]
    assert d0["action"] == 0.0
    assert d0["alignment"] == 1.0
    out_of_scope = score(
        **{
            **base,
            "tool": "documents",
            "name": "documents.search",  # type: ignore[arg-type]
            "action_count": 3,
            "tools_used": {"crm.query"},
        }
    )
    assert out_of_scope["scope_expansion"] is True
    assert out_of_scope["components"]["novelty"] == 1.0
    assert out_of_scope["action"] == round(0.5 + 0.1 + 0.1 * 3 / 30, 6)
    escalated = score(**{**base, "highest_seen": 2, "action_count": 1, "tools_used": {"crm.query"}})  # type: ignore[arg-type]
    assert escalated["classification_escalation"] is True
    assert escalated["components"]["classification"] == round(1 / 3, 6)
    ema = score(
        **{
            **base,
            "action_count": 2,
            "previous_ema": 0.8,
            "previous_max": 0.8,  # type: ignore[arg-type]
            "tools_used": {"crm.query"},
        }
    )
    assert abs(ema["ema"] - (0.5 * ema["action"] + 0.5 * 0.8)) < 1e-5
    assert ema["max"] == 0.8


def test_chain_verification_locates_tampering() -> None:
    s = fresh()
    entries = []
    for i in range(6):
        entries.append(
            st.record_decision(
                s,
                decision_id=f"d-{i}",
                name="a.b",
                category="read",
                verdict="ALLOW",
                classification=None,
                labels=(),
                defer_depth=0,
                drift=None,
                now_ns=T0 + i,
            )
        )
    logged = [json.loads(json.dumps(e)) for e in entries]
    assert st.verify_chain(logged, s.log_head) is None
    for k in range(6):
        edited = [dict(e) for e in logged]
        edited[k]["decision"] = "DENY"
        assert st.verify_chain(edited, s.log_head) == k
    dropped = logged[:2] + logged[3:]
    assert st.verify_chain(dropped, s.log_head) == 2
    assert st.verify_chain(logged[:-1], s.log_head) == 5  # truncation vs the head


def test_log_link_text_is_unchanged_from_the_json_module() -> None:
    # Chains written by earlier versions (json.dumps) must keep verifying: for the
    # str/int/bool/None/list/dict values log entries hold, orjson's sorted compact
    # output is the same text.
    import hashlib
    import json
    import random

    from aarm_pdp.session.state import _link

    rng = random.Random(7)
    strings = ["", "a", "é", "\u2028", "\x00\x1f\x7f", 'q"\\', "\n\t\b\f\r", "\U0001f600", "<&>"]

    def value(depth: int = 0) -> object:
        kind = rng.choice(["s", "i", "b", "n"] + (["l", "d"] if depth < 3 else []))
        if kind == "s":
            return rng.choice(strings)
        if kind == "i":
            return rng.choice([0, -1, 2**62, rng.randint(-(10**9), 10**9)])
        if kind == "b":
            return rng.choice([True, False])
        if kind == "n":
            return None
        if kind == "l":
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice([*strings, "k", "z"]): value(depth + 1) for _ in range(3)}

    for _ in range(2000):
        entry = {"kind": "decision", "at_ns": rng.randint(0, 2**62), "x": value(), "y": value()}
        text = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert _link("ab" * 32, entry) == hashlib.sha256(("ab" * 32 + text).encode()).hexdigest()


def test_window_counts_stay_exact_when_the_clock_steps_back() -> None:
    state = st.SessionState(session_id="s")
    # 30 s apart, with one step back of 45 s in the middle (an NTP correction).
    offsets = [i * 30 for i in range(10)] + [225, 300]
    for i, at in enumerate(offsets):
        decide(state, i, "email.send", "external_communication", at=at)
    times = [T0 + at * S for at in offsets]
    events = state.events["external_communication"]
    assert events == sorted(times)
    now = T0 + 301 * S
    counts = st.summary(state, now)["counts"]
    assert counts["60"]["external_communication"] == sum(1 for t in times if t > now - 60 * S)
    assert counts["3600"]["external_communication"] == len(times)
    # an hour later they have all left the windows
    decide(state, 99, "email.send", "external_communication", at=301 + 3600)
    assert state.events["external_communication"] == [T0 + (301 + 3600) * S]
