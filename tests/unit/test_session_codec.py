"""Issue 18: the compact session encoding (state version 2) and the memory store's
compact context log and provenance index decide and verify exactly as before."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

import orjson
import pytest
from aarm_pdp.model.decision import Decision, DecisionResult, RiskLevel
from aarm_pdp.model.request import Action, ActionRequest, Identity
from aarm_pdp.session import codec
from aarm_pdp.session import state as st
from aarm_pdp.session.catalogue import Catalogue
from aarm_pdp.session.context import SessionContext
from aarm_pdp.session.store import (
    GENESIS,
    MemorySessionStore,
    SessionBounds,
    log_record,
    session_key,
)
from hypothesis import given, settings
from hypothesis import strategies as hs

S = 1_000_000_000
T0 = 1_795_658_400 * S


@pytest.fixture
def any_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """Version 2 for sessions of any length (the codec's own limit is a cost choice)."""
    monkeypatch.setattr(codec, "COMPACT_MAX_DECISIONS", 1 << 30)


def rich(ids: list[str] | None = None) -> st.SessionState:
    """A session with every kind of content the state keeps."""
    s = st.new_session(
        "s-1",
        tenant="acme",
        human="alice@example.com",
        service="svc",
        agent="a-1",
        principal="ep-1",
        now_ns=T0,
        original=st.OriginalRequest(
            "Pay the Q3 invoice — €15 000 to Lumen Analytics",
            "payment",
            ["financial", "email.read"],
            "CONFIDENTIAL",
            ["financial"],
        ),
    )
    st.chain(s, {"kind": "start", "at_ns": T0})
    ids = ids or [str(uuid.uuid4()) for _ in range(80)]
    for i, did in enumerate(ids):
        st.record_decision(
            s,
            decision_id=did,
            name=f"tool{i % 7}.op",
            category=("read", "write", "financial", "")[i % 4],
            verdict=("ALLOW", "DEFER", "DENY", "STEP_UP", "MODIFY")[i % 5],
            classification=(None, "INTERNAL", "RESTRICTED")[i % 3],
            labels=(f"label-{i % 40}",),
            defer_depth=i % 3,
            drift={"max": 0.1 * (i % 9), "ema": 1 / (i + 3), "scope_expansion": i % 2 == 0},
            now_ns=T0 + i * S,
            payment=("EUR", 10.25 * i) if i % 4 == 2 else None,
            pointed=i % 6 == 0,
        )
        if i % 5 == 0:
            st.record_outcome(
                s,
                decision_id=did,
                executed=True,
                classification="INTERNAL",
                labels=("PII",),
                untrusted=i % 10 == 0,
                output_digest="ab" * 32,
                now_ns=T0 + i * S,
            )
    st.resolve_deferral(s, ids[1], "ALLOW")
    return s


def test_version_2_round_trips_every_field(any_length: None) -> None:
    s = rich()
    raw = s.to_bytes()
    assert raw[0] == codec.VERSION
    back = st.SessionState.from_bytes(raw)
    assert back == s
    assert asdict(back) == asdict(s)  # types too: no int turned float, no tuple for a list
    assert orjson.dumps(asdict(back)) == orjson.dumps(asdict(s))
    assert len(raw) < len(s.to_json()) / 3


def test_long_sessions_are_written_as_version_1_and_decode_alike() -> None:
    short = rich(ids=[str(uuid.uuid4()) for _ in range(codec.COMPACT_MAX_DECISIONS)])
    assert short.to_bytes()[0] == codec.VERSION
    long = rich(ids=[str(uuid.uuid4()) for _ in range(codec.COMPACT_MAX_DECISIONS + 1)])
    raw = long.to_bytes()
    assert raw == long.to_json()
    assert st.SessionState.from_bytes(raw) == long


def test_a_fresh_and_an_empty_session_round_trip() -> None:
    for s in (
        st.SessionState(session_id=""),
        st.new_session("x", tenant="t", human="", service="", agent="", now_ns=0),
    ):
        raw = s.to_bytes()
        assert raw[0] == codec.VERSION
        assert st.SessionState.from_bytes(raw) == s


def test_decision_ids_that_are_not_uuids_are_kept_as_text(any_length: None) -> None:
    s = rich(ids=[f"d-{i}" for i in range(30)] + ["A" * 36, "0" * 35 + "G"])
    raw = s.to_bytes()
    assert raw[0] == codec.VERSION and not raw[1] & codec.IDS_UUID
    assert st.SessionState.from_bytes(raw) == s
    upper = rich(ids=[str(uuid.uuid4()).upper() for _ in range(3)])
    assert st.SessionState.from_bytes(upper.to_bytes()) == upper


def test_what_version_2_cannot_hold_is_written_as_version_1(any_length: None) -> None:
    cases: list[st.SessionState] = []
    s = rich()
    s.labels.append("nul\x00inside")
    cases.append(s)
    s = rich()
    s.payments.append([T0, "EUR", 100])  # an int amount stays an int
    cases.append(s)
    s = rich()
    s.tools["t"] = 1 << 40  # a counter past 32 bits
    cases.append(s)
    s = rich()
    s.log_head = "not-a-hash"  # a head that is not 64 hex digits is still kept, as text
    cases.append(s)
    for s in cases:
        raw = s.to_bytes()
        back = st.SessionState.from_bytes(raw)
        assert back == s
        assert asdict(back) == asdict(s)
    assert cases[0].to_bytes()[:1] == cases[1].to_bytes()[:1] == b"{"
    assert cases[3].to_bytes()[0] == codec.VERSION  # the head went to the strings


def test_blobs_written_by_earlier_versions_still_decode(any_length: None) -> None:
    s = rich()
    # Version 1 as the previous release wrote it (asdict of the original request).
    doc = {f: getattr(s, f) for f in st._FIELDS}
    doc["original"] = asdict(s.original) if s.original else None
    legacy = orjson.dumps(doc)
    assert legacy == s.to_json()
    back = st.SessionState.from_bytes(legacy)
    assert back == s
    # Read from JSON, written back compact: the migration is the next write.
    assert back.to_bytes()[0] == codec.VERSION
    assert st.SessionState.from_bytes(back.to_bytes()) == s
    with pytest.raises(ValueError, match="version 9"):
        st.SessionState.from_bytes(bytes([9]) + legacy[1:])


def test_the_summary_and_dependencies_read_the_same_after_decoding(any_length: None) -> None:
    s = rich()
    back = st.SessionState.from_bytes(s.to_bytes())
    now = T0 + 100 * S
    assert orjson.dumps(st.summary(back, now)) == orjson.dumps(st.summary(s, now))
    deps = (*list(s.decisions)[:5], "unknown")
    assert st.dependencies(back, deps) == st.dependencies(s, deps)
    assert back.pending_deferrals == s.pending_deferrals


_text = hs.text(max_size=12)
_ids = hs.one_of(hs.uuids().map(str), _text)


@settings(max_examples=150, deadline=None)
@given(
    ids=hs.lists(_ids, max_size=16, unique=True),
    names=hs.lists(_text, min_size=1, max_size=4),
    texts=hs.tuples(_text, _text, _text, _text, _text),
    amount=hs.floats(allow_nan=False, allow_infinity=False),
    known=hs.booleans(),
)
def test_any_state_round_trips(
    ids: list[str], names: list[str], texts: tuple[str, ...], amount: float, known: bool
) -> None:
    s = st.new_session(
        texts[0],
        tenant=texts[1],
        human=texts[2],
        service=texts[3],
        agent=texts[4],
        now_ns=T0,
        original=st.OriginalRequest(texts[0], texts[1], names, texts[2]) if known else None,
    )
    for i, did in enumerate(ids):
        st.record_decision(
            s,
            decision_id=did,
            name=names[i % len(names)],
            category=names[-1 - i % len(names)],
            verdict=("ALLOW", "DEFER", "DENY")[i % 3],
            classification=None,
            labels=(names[0],),
            defer_depth=i,
            drift={"max": amount, "ema": amount, "scope_expansion": True},
            now_ns=T0 - i * S,  # a clock that steps back
            payment=(names[0], abs(amount) % 1e6) if i % 2 else None,
            pointed=bool(i % 3),
        )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(codec, "COMPACT_MAX_DECISIONS", 1 << 30)
        raw = s.to_bytes()
    back = st.SessionState.from_bytes(raw)
    assert back == s
    assert asdict(back) == asdict(s)


# -- the memory store: compact log window, packed index -----------------------------

IDENT = Identity(tenant="acme", human="alice", service="svc", agent="a-1", session_id="s-1")
ALLOW = DecisionResult(decision=Decision.ALLOW, reasons=(), risk_level=RiskLevel.LOW)


def _request(params: dict[str, Any]) -> ActionRequest:
    return ActionRequest(
        request_id="",
        identity=IDENT,
        action=Action(tool="db", operation="query", parameters=params),
    )


async def test_the_log_window_gives_back_the_exact_bytes_appended() -> None:
    store = MemorySessionStore(bounds=SessionBounds(log_entries=50))
    key = session_key("acme", "s-1")
    state = st.SessionState(session_id="s-1")
    appended: list[bytes] = []
    odd = [
        b'{"hash":"h1"}',  # not a chained entry: kept as given
        b"not json at all",
        b'{"b":1,"a":2}',  # JSON, not sorted: kept as given
    ]
    for n in range(120):
        if n % 40 == 7:
            raws: list[bytes] = [odd[(n // 40) % 3]]
        else:
            entry: dict[str, Any] = {
                "kind": ("decision", "outcome", "approval", "other-kind")[n % 4],
                "at_ns": T0 + n,
                "decision_id": str(uuid.uuid4()) if n % 3 else f"d-{n}",
                "name": "db.query",
                "labels": ["PII", "x" * 300][: n % 3],
                "nested": {"z": [1, -(2**63), 2**63 - 1, None, True, 1.5e-300], "a": "€"},
                "output_digest": "cd" * 32 if n % 2 else "",
                "fingerprint": "ef" * 16,
                "verdict": "ALLOW",
            }
            st.chain(state, entry)
            if n % 11 == 0:  # changed after it was chained: kept as its JSON
                entry["prev"] = "f" * 64
                raws = [log_record(entry)]
            elif n % 13 == 0:  # chained, not after the previous entry: its prev is kept
                entry["prev"] = "e" * 64
                entry["hash"] = st._link(entry["prev"], entry)
                raws = [log_record(entry, chained=True)]
            else:
                raws = [log_record(entry, chained=True)]
        appended += raws
        await store.update(key, lambda _: (b"s", None), lambda _, r=raws: r, "acme")  # type: ignore[misc]
    window = await store.log_window(key)
    assert window.entries == appended[-50:]
    assert window.dropped == 70 and len(window.entries) == 50
    assert await store.read_log(key) == appended[-50:]
    sess = store._sessions.get(key)
    assert sess is not None and sess.log is not None
    assert codec.log_stats(sess.log) == (50, sum(map(len, appended[-50:])))
    first = codec._TRAILER.unpack_from(sess.log, len(sess.log) - codec._TRAILER.size)[4]
    live = len(sess.log) - first  # the records before ``first`` were let go, not yet cut
    assert live < 0.6 * sum(map(len, appended[-50:]))
    assert first <= live


async def test_the_window_verifies_against_the_running_hash_from_its_base() -> None:
    store = MemorySessionStore(bounds=SessionBounds(log_entries=20))
    ctx = SessionContext(store, Catalogue)
    req = _request({"table": "t"})
    for n in range(60):
        prepared = await ctx.prepare(req, T0 + n)
        await ctx.commit(prepared, req, str(uuid.uuid4()), ALLOW, T0 + n)
    key = session_key("acme", "s-1")
    raw = (await store.load(key, [], "acme", [])).state
    assert raw is not None
    state = st.SessionState.from_bytes(raw)
    window = await store.log_window(key)
    entries = [orjson.loads(e) for e in window.entries]
    assert len(entries) == 20 and window.dropped == 40 == state.log_len - 20
    assert window.base == entries[0]["prev"] != GENESIS
    assert st.verify_chain(entries, state.log_head, start=window.base) is None
    edited = [dict(e) for e in entries]
    edited[7]["decision"] = "DENY"
    assert st.verify_chain(edited, state.log_head, start=window.base) == 7
    assert st.verify_chain(entries, state.log_head) == 0


async def test_the_packed_index_answers_as_a_dict_of_fingerprints_did() -> None:
    store = MemorySessionStore()
    key = session_key("acme", "s-1")
    await store.update(key, lambda _: (b"s", None), lambda _: [], "acme")
    reference: dict[str, int] = {}
    fps = [f"{i:032x}" for i in range(300)] + ["aa", "bb", ""]
    batches = [fps[:1], fps[1:9], fps[9:200], fps[150:], fps[::7]]
    for j, batch in enumerate(batches):
        masks = {fp: 1 << ((j + i) % 4) for i, fp in enumerate(batch)}
        await store.index_add(key, masks)
        for fp, mask in masks.items():
            reference[fp] = reference.get(fp, 0) | mask
    probe = [*fps, "cc", f"{999:032x}"]
    loaded = await store.load(key, probe, "acme", [])
    assert loaded.masks == reference
    sess = store._sessions.get(key)
    assert sess is not None and sess.index is not None
    assert len(sess.index) == len(reference) and list(sess.index) == sorted(sess.index)
    assert sess.index_bytes == 40 * len(reference)  # charged as Redis holds it
    with pytest.raises(ValueError, match="index mask 16"):
        await store.index_add(key, {"x": 16})


async def test_the_index_is_capped_per_session(monkeypatch: pytest.MonkeyPatch) -> None:
    from aarm_pdp.session import store as store_mod

    monkeypatch.setattr(store_mod, "MAX_INDEX_PER_SESSION", 10)
    store = MemorySessionStore()
    key = session_key("acme", "s-1")
    await store.update(key, lambda _: (b"s", None), lambda _: [], "acme")
    await store.index_add(key, {f"a{i}": 1 for i in range(6)})
    await store.index_add(key, {"a0": 4, **{f"b{i}": 2 for i in range(6)}})
    got = (
        await store.load(key, [f"a{i}" for i in range(6)] + [f"b{i}" for i in range(6)], "acme", [])
    ).masks
    assert got == {"a0": 5, **{f"a{i}": 1 for i in range(1, 6)}, **{f"b{i}": 2 for i in range(4)}}


async def test_decisions_over_the_memory_store_match_a_json_round_trip() -> None:
    """The input parts a Decide sends are those of a session decoded from version 1."""
    store = MemorySessionStore()
    ctx = SessionContext(store, Catalogue)
    key = session_key("acme", "s-1")
    await ctx.start(IDENT, st.OriginalRequest("look up the Acme account"), T0)
    for n in range(12):
        req = _request({"table": "accounts", "q": f"acme {n % 3}"})
        prepared = await ctx.prepare(req, T0 + n * S)
        raw = (await store.load(key, [], "acme", [])).state
        assert raw is not None
        via_json = st.SessionState.from_bytes(st.SessionState.from_bytes(raw).to_json())
        assert orjson.dumps(prepared.input_parts["session"]) == orjson.dumps(
            st.summary(via_json, T0 + n * S)
        )
        await ctx.commit(prepared, req, str(uuid.uuid4()), ALLOW, T0 + n * S)
