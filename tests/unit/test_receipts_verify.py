"""Offline verification: signatures, every tamper case at the right index, keys, exports."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aarm_pdp.receipts import (
    GENESIS,
    KeyRing,
    MemoryReceiptStore,
    PublicKeys,
    Reason,
    ReceiptLog,
    canonicalize,
    cli,
    receipt_hash,
    rotate,
    verify_chain,
    verify_export,
    verify_receipt,
)
from aarm_pdp.receipts.cli import export_lines

N = 6  # five actions and a session_end
SIGNATURE_FAILURES = {
    Reason.BAD_SIGNATURE,
    Reason.MALFORMED,
    Reason.UNKNOWN_KEY,
    Reason.UNSUPPORTED,
}


def body(
    i: int, *, session: str = "s-1", kind: str = "action", tenant: str = "acme"
) -> dict[str, Any]:
    return {
        "receipt_id": f"{session}-r{i}",
        "kind": kind,
        "issued_at": f"2026-05-01T{10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.123456Z",
        "chain": {"tenant": tenant, "session_id": session},
        "decision_id": f"d-{i}",
        "action": {
            "tool": "db.query",
            "operation": "read",
            "parameters_hash": "ab" * 32,
            "timestamp": "2026-05-01T10:00:00Z",
        },
        "requester_context": {
            "human": "alice@example.com",
            "service": "billing",
            "agent": "agent-7",
            "session": session,
            "scope": ["read:orders"],
            "delegation_chain": [{"delegator": "alice", "delegatee": "agent-7", "scope": "read"}],
        },
        "decision": {
            "result": "DENY" if i % 2 else "ALLOW",
            "policy": {"policy_id": "aarm.main", "version": "1.2.0", "hash": "cd" * 32},
            "reason": "ok",
            "scores": {"alignment": 0.875, "risk": 12},
        },
        "approval": None,
        "deferral": None,
        "outcome": {"success": True, "output_hash": "ef" * 32},
        "context_hash": "01" * 32,
    }


async def make_chain(
    ring: KeyRing, n: int = N, session: str = "s-1", reason: str = "ok"
) -> list[dict[str, Any]]:
    store = MemoryReceiptStore()
    log = ReceiptLog(store, ring)
    for i in range(n):
        b = body(i, session=session, kind="session_end" if i == n - 1 else "action")
        b["decision"]["reason"] = reason
        await log.append(b)
    await log.aclose()
    return await store.list_session("acme", session)


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate("k-test")


@pytest.fixture
async def chain(ring: KeyRing) -> list[dict[str, Any]]:
    return await make_chain(ring)


@pytest.fixture
def jwks(ring: KeyRing) -> dict[str, Any]:
    return ring.jwks()


def leaf_paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaf_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaf_paths(v, (*prefix, i))
    else:
        yield prefix


def edited(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("A" if value[-1:] != "A" else "B") if value else "x"
    return "x"


def set_path(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def test_chain_links_and_verifies(chain: list[dict[str, Any]], jwks: dict[str, Any]) -> None:
    assert [r["chain"]["seq"] for r in chain] == list(range(1, N + 1))
    assert chain[0]["chain"]["prev"] == GENESIS
    for prev, cur in itertools.pairwise(chain):
        assert cur["chain"]["prev"] == receipt_hash(canonicalize(prev))
    assert all(r["signature"]["algorithm"] == "Ed25519" for r in chain)
    result = verify_chain(chain, jwks, require_complete=True)
    assert result.ok, result
    assert result.receipts == N
    assert all(verify_receipt(r, jwks).ok for r in chain)
    # text input (the stored canonical form) verifies the same way
    assert verify_chain([canonicalize(r) for r in chain], jwks, require_complete=True).ok


def test_editing_any_field_of_any_receipt_is_caught_there(
    chain: list[dict[str, Any]], jwks: dict[str, Any]
) -> None:
    keys = PublicKeys.from_jwks(jwks)
    cases = 0
    for i, receipt in enumerate(chain):
        for path in leaf_paths(receipt):
            tampered = copy.deepcopy(chain)
            set_path(tampered[i], path, edited(_get(receipt, path)))
            result = verify_chain(tampered, keys, require_complete=True)
            assert not result.ok
            assert result.index == i, (path, result)
            assert result.reason in SIGNATURE_FAILURES, (path, result)
            assert not verify_receipt(tampered[i], keys).ok
            cases += 1
    assert cases > N * 30


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (("requester_context", "human"), "mallory@example.com"),
        (("decision", "policy", "hash"), "00" * 32),
        (("decision", "result"), "ALLOW"),
        (("requester_context", "agent"), "agent-8"),
    ],
)
def test_section_4_3_replays(
    chain: list[dict[str, Any]], jwks: dict[str, Any], field: tuple[str, ...], value: str
) -> None:
    tampered = copy.deepcopy(chain)
    set_path(tampered[3], field, value)
    result = verify_chain(tampered, jwks)
    assert (result.ok, result.index, result.reason) == (False, 3, Reason.BAD_SIGNATURE)
    assert result.receipt_id == "s-1-r3"


def test_adding_or_removing_a_field_breaks_the_signature(
    chain: list[dict[str, Any]], jwks: dict[str, Any]
) -> None:
    added = copy.deepcopy(chain)
    added[2]["extra"] = 1
    removed = copy.deepcopy(chain)
    del removed[4]["outcome"]
    for tampered, index in ((added, 2), (removed, 4)):
        result = verify_chain(tampered, jwks)
        assert (result.index, result.reason) == (index, Reason.BAD_SIGNATURE)


@pytest.mark.parametrize("i", range(N))
def test_deleting_a_receipt_is_caught_where_it_was(
    chain: list[dict[str, Any]], jwks: dict[str, Any], i: int
) -> None:
    tampered = chain[:i] + chain[i + 1 :]
    result = verify_chain(tampered, jwks, require_complete=True)
    assert not result.ok
    assert result.index == i
    if i < N - 1:
        assert result.reason == Reason.MISSING_RECEIPT
        assert result.receipt_id == chain[i + 1]["receipt_id"]
    else:  # the session_end itself: the chain is now truncated
        assert result.reason == Reason.INCOMPLETE
        assert result.receipt_id is None


@pytest.mark.parametrize(("i", "j"), [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5), (1, 4)])
def test_reordering_two_receipts_is_caught_at_the_first(
    chain: list[dict[str, Any]], jwks: dict[str, Any], i: int, j: int
) -> None:
    tampered = list(chain)
    tampered[i], tampered[j] = tampered[j], tampered[i]
    result = verify_chain(tampered, jwks)
    assert (result.ok, result.index, result.reason) == (False, i, Reason.REORDERED)
    assert result.receipt_id == chain[j]["receipt_id"]


@pytest.mark.parametrize("keep", range(1, N))
def test_truncation_is_caught_when_completeness_is_required(
    chain: list[dict[str, Any]], jwks: dict[str, Any], keep: int
) -> None:
    tampered = chain[:keep]
    assert verify_chain(tampered, jwks).ok  # a prefix is a valid *open* chain...
    result = verify_chain(tampered, jwks, require_complete=True)
    assert (result.ok, result.index, result.reason) == (False, keep, Reason.INCOMPLETE)


@pytest.mark.parametrize("keep", range(N))
def test_truncated_export_is_caught_by_its_header(
    chain: list[dict[str, Any]], jwks: dict[str, Any], ring: KeyRing, keep: int
) -> None:
    texts = [canonicalize(r).decode() for r in chain]
    lines = export_lines("acme", "s-1", texts, keyring=ring)
    assert verify_export(lines, jwks, require_complete=True).ok
    result = verify_export(lines[: keep + 1], jwks)  # header + the first `keep`
    assert (result.ok, result.index, result.reason) == (False, keep, Reason.COUNT_MISMATCH)


def test_export_header_cannot_be_edited_to_hide_truncation(
    chain: list[dict[str, Any]], jwks: dict[str, Any], ring: KeyRing
) -> None:
    texts = [canonicalize(r).decode() for r in chain][:4]
    lines = export_lines("acme", "s-1", [canonicalize(r).decode() for r in chain], keyring=ring)
    forged = export_lines("acme", "s-1", texts)[0]  # an unsigned header declaring 4
    result = verify_export([lines[0].replace('"count":6', '"count":4'), *texts], jwks)
    assert (result.ok, result.reason) == (False, Reason.BAD_HEADER)
    # an unsigned, self-consistent header passes the count check but not completeness
    assert verify_export([forged, *texts], jwks).ok
    result = verify_export([forged, *texts], jwks, require_complete=True)
    assert result.reason == Reason.INCOMPLETE


def test_export_last_hash_mismatch(chain: list[dict[str, Any]], jwks: dict[str, Any]) -> None:
    texts = [canonicalize(r).decode() for r in chain]
    header = export_lines("acme", "s-1", texts)[0].replace(
        receipt_hash(texts[-1]), receipt_hash(texts[-2])
    )
    result = verify_export([header, *texts], jwks)
    assert (result.index, result.reason) == (N - 1, Reason.LAST_HASH_MISMATCH)


def test_duplicate_seq_is_caught_at_the_copy(
    chain: list[dict[str, Any]], jwks: dict[str, Any]
) -> None:
    tampered = [*chain[:3], chain[2], *chain[3:]]
    result = verify_chain(tampered, jwks)
    assert (result.index, result.reason) == (3, Reason.DUPLICATE_SEQ)


async def test_a_validly_signed_receipt_from_another_chain_is_caught(
    ring: KeyRing, chain: list[dict[str, Any]], jwks: dict[str, Any]
) -> None:
    other = await make_chain(ring, session="s-1", reason="other")  # same ids, other content
    tampered = [*chain[:2], other[2], *chain[3:]]
    result = verify_chain(tampered, jwks)
    assert (result.index, result.reason) == (2, Reason.PREV_MISMATCH)
    foreign = await make_chain(ring, session="s-2")
    result = verify_chain([*chain[:2], foreign[2]], jwks)
    assert (result.index, result.reason) == (2, Reason.SESSION_MISMATCH)


def test_a_receipt_after_session_end_is_caught(
    chain: list[dict[str, Any]], jwks: dict[str, Any]
) -> None:
    result = verify_chain([*chain, chain[-1]], jwks)
    assert (result.index, result.reason) == (N, Reason.AFTER_SESSION_END)


def test_unknown_key_id_fails(chain: list[dict[str, Any]]) -> None:
    other = KeyRing.generate("k-other").jwks()
    result = verify_chain(chain, other)
    assert (result.ok, result.index, result.reason) == (False, 0, Reason.UNKNOWN_KEY)
    assert verify_receipt(chain[0], other).reason == Reason.UNKNOWN_KEY
    assert verify_receipt(chain[0], {"keys": []}).reason == Reason.UNKNOWN_KEY


def test_a_key_with_the_same_id_but_other_bytes_fails(chain: list[dict[str, Any]]) -> None:
    impostor = KeyRing.generate("k-test").jwks()
    assert verify_receipt(chain[0], impostor).reason == Reason.BAD_SIGNATURE


async def test_rotated_key_old_receipts_still_verify_with_the_new_jwks(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path)
    store = MemoryReceiptStore()
    log = ReceiptLog(store, ring)
    for i in range(3):
        await log.append(body(i))
    # Rotated at the bodies' clock: body(3) on is dated after the rotation.
    new_kid = rotate(tmp_path, now=datetime(2026, 5, 1, 10, 0, 3, tzinfo=UTC))
    log.keyring = KeyRing.load(tmp_path)
    for i in range(3, 5):
        await log.append(body(i))
    await log.append(body(5, kind="session_end"))
    receipts = await store.list_session("acme", "s-1")
    kids = [r["signature"]["key_id"] for r in receipts]
    assert kids[:3] == [ring.active.key_id] * 3
    assert kids[3:] == [new_kid] * 3
    new_jwks = KeyRing.load(tmp_path).jwks()
    assert verify_chain(receipts, new_jwks, require_complete=True).ok
    # The old JWKS does not know the new key.
    assert verify_chain(receipts, ring.jwks()).index == 3


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.pop("signature"),
        lambda r: r.__setitem__("version", "1.0"),
        lambda r: r.__setitem__("canonicalization", "sorted-keys"),
        lambda r: r["signature"].__setitem__("algorithm", "RS256"),
        lambda r: r["signature"].__setitem__("value", "***"),
        lambda r: r["chain"].__setitem__("seq", 0),
        lambda r: r["chain"].__setitem__("prev", "xyz"),
    ],
)
def test_malformed_envelopes_fail_cleanly(
    chain: list[dict[str, Any]], jwks: dict[str, Any], mutate: Any
) -> None:
    tampered = copy.deepcopy(chain)
    mutate(tampered[1])
    result = verify_chain(tampered, jwks)
    assert not result.ok and result.index == 1
    assert result.reason in {Reason.MALFORMED, Reason.UNSUPPORTED}


def test_garbage_inputs() -> None:
    jwks = KeyRing.generate().jwks()
    assert verify_receipt("not json", jwks).reason == Reason.MALFORMED
    assert verify_receipt("[1]", jwks).reason == Reason.MALFORMED
    assert verify_chain(["{}"], {"nokeys": 1}).reason == Reason.MALFORMED
    assert verify_export([], jwks).reason == Reason.BAD_HEADER
    assert verify_export(['{"type":"other"}'], jwks).reason == Reason.BAD_HEADER


def test_cli_verify_export_file(
    tmp_path: Path,
    chain: list[dict[str, Any]],
    ring: KeyRing,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(canonicalize(ring.jwks()).decode())
    texts = [canonicalize(r).decode() for r in chain]
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(export_lines("acme", "s-1", texts, keyring=ring)) + "\n")
    assert cli.verify(None, jwks_file, export_file=good, require_complete=True) == 0
    assert capsys.readouterr().out.strip() == f"ok: {N} receipts, 1 chains"
    bad = tmp_path / "bad.jsonl"
    swapped = [texts[0], texts[2], texts[1], *texts[3:]]
    bad.write_text("\n".join(export_lines("acme", "s-1", swapped, keyring=ring)) + "\n")
    assert cli.verify(None, jwks_file, export_file=bad) == 1
    out = capsys.readouterr().out
    assert "receipt #1 (s-1-r2): reordered" in out
    assert cli.verify(None, tmp_path / "missing.json", export_file=good) == 2
