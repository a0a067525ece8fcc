"""Receipt archival: checkpoints replace archived prefixes and chains stay verifiable.

Against the memory store (the SQL stores: tests/integration/test_receipt_archive.py).
Every tamper case is named by its reason: a checkpoint edited, forged or misplaced, a
gap after it, an archived receipt altered, an archive that is not the checkpoint's.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aarm_pdp.errors import ReceiptInvalid
from aarm_pdp.receipts import (
    KeyRing,
    MemoryReceiptStore,
    PublicKeys,
    Reason,
    ReceiptLog,
    canonicalize,
    cli,
    receipt_hash,
    verify_chain,
)
from aarm_pdp.receipts.archive import archive, read_archive, verify_with_archives
from aarm_pdp.receipts.canonical import parse
from aarm_pdp.receipts.keys import init_key_dir
from aarm_pdp.receipts.verify import parse_timestamp, split_export, verify_export

from tests.unit.test_receipts_verify import body

CUTOFF = "2026-05-01T10:00:05Z"  # body(0..4) are older
BEFORE = parse_timestamp(CUTOFF)


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate("k-archive")


@pytest.fixture
def keys(ring: KeyRing) -> PublicKeys:
    return ring.public_keys()


async def fill(store: MemoryReceiptStore, ring: KeyRing) -> ReceiptLog:
    log = ReceiptLog(store, ring)
    for i in range(8):
        await log.append(body(i, session="s-1"))
    for i in range(3):
        await log.append(body(i, session="s-2"))  # all older than the cutoff
    await log.append(body(9, session="s-3"))  # none older
    return log


async def archived(tmp_path: Path, ring: KeyRing) -> tuple[MemoryReceiptStore, Path, ReceiptLog]:
    store = MemoryReceiptStore()
    log = await fill(store, ring)
    out = tmp_path / "a1.jsonl"
    report = await archive(store, ring, before_ns=BEFORE, out=out)
    assert (report.chains, report.receipts, report.failed) == (2, 8, [])
    return store, out, log


async def test_archive_replaces_prefixes_by_checkpoints(tmp_path: Path, ring: KeyRing) -> None:
    store, out, _ = await archived(tmp_path, ring)
    s1 = await store.export("acme", "s-1")
    assert len(s1) == 4  # checkpoint + seq 6, 7, 8
    cp = parse(s1[0])
    assert cp["kind"] == "checkpoint" and cp["chain"]["seq"] == 5
    assert cp["archive"] == {
        "first_seq": 1,
        "count": 5,
        "sha256": read_archive(out)[0].file_sha256,
    }
    assert cp["previous_checkpoint"] is None
    assert cp["signature"]["key_id"] == "k-archive"
    assert [parse(t)["chain"]["seq"] for t in s1[1:]] == [6, 7, 8]
    assert len(await store.export("acme", "s-2")) == 1  # the whole chain: its checkpoint
    assert len(await store.export("acme", "s-3")) == 1  # untouched
    keys = ring.public_keys()
    for t, s in await store.sessions():
        assert verify_chain(await store.export(t, s), keys).ok
    # The archive verifies on its own: one signed section per chain.
    sections = split_export(out.read_text(encoding="utf-8").split("\n"))
    assert len(sections) == 2
    assert all(verify_export(x, keys).ok for x in sections)


async def test_appends_continue_from_the_checkpoint(tmp_path: Path, ring: KeyRing) -> None:
    store, out, warm = await archived(tmp_path, ring)
    cold = ReceiptLog(store, ring)  # a restarted service: no cached heads, assumes seq 1
    r = await cold.append(body(20, session="s-2"))
    assert r["chain"]["seq"] == 4
    cp = parse((await store.export("acme", "s-2"))[0])
    assert r["chain"]["prev"] == cp["head"]["hash"]
    w = await warm.append(body(21, session="s-1"))  # a warm cache: seq 9 after 8
    assert w["chain"]["seq"] == 9
    sections = read_archive(out)
    for s in ("s-1", "s-2"):
        texts = await store.export("acme", s)
        assert verify_chain(texts, ring.public_keys()).ok
        result, resolved = verify_with_archives(texts, ring.public_keys(), sections)
        assert result.ok and resolved == 1, result


async def test_a_closed_chain_archived_whole_stays_closed(tmp_path: Path, ring: KeyRing) -> None:
    store = MemoryReceiptStore()
    log = ReceiptLog(store, ring)
    await log.append(body(0, session="s-9"))
    await log.append(body(1, session="s-9", kind="session_end"))
    await archive(store, ring, before_ns=BEFORE, out=tmp_path / "a.jsonl")
    texts = await store.export("acme", "s-9")
    assert len(texts) == 1
    assert verify_chain(texts, ring.public_keys(), require_complete=True).ok
    with pytest.raises(ReceiptInvalid):
        await ReceiptLog(store, ring).append(body(2, session="s-9"))


async def test_archiving_twice_links_the_checkpoints(tmp_path: Path, ring: KeyRing) -> None:
    store, a1, _ = await archived(tmp_path, ring)
    a2 = tmp_path / "a2.jsonl"
    report = await archive(store, ring, before_ns=parse_timestamp("2026-05-01T10:00:07Z"), out=a2)
    assert (report.chains, report.receipts) == (1, 2)  # s-1 seq 6, 7
    texts = await store.export("acme", "s-1")
    cp2 = parse(texts[0])
    (section,) = read_archive(a2)
    assert cp2["previous_checkpoint"] == receipt_hash(section.lines[0])
    assert cp2["archive"]["first_seq"] == 6 and cp2["chain"]["seq"] == 7
    keys = ring.public_keys()
    assert verify_export([section.header, *section.lines], keys).ok
    both = read_archive(a1) + read_archive(a2)
    result, resolved = verify_with_archives(texts, keys, both, session=("acme", "s-1"))
    assert result.ok and resolved == 2 and result.receipts == 8, result
    # Only the newer archive given: verified down to the older checkpoint.
    result, resolved = verify_with_archives(texts, keys, read_archive(a2))
    assert result.ok and resolved == 1


async def test_nothing_to_archive_writes_nothing(tmp_path: Path, ring: KeyRing) -> None:
    store = MemoryReceiptStore()
    await fill(store, ring)
    out = tmp_path / "none.jsonl"
    report = await archive(store, ring, before_ns=parse_timestamp("2026-01-01T00:00:00Z"), out=out)
    assert report.out is None and report.chains == 0 and not out.exists()


async def test_an_existing_archive_file_is_never_overwritten(tmp_path: Path, ring: KeyRing) -> None:
    store = MemoryReceiptStore()
    await fill(store, ring)
    out = tmp_path / "a.jsonl"
    out.write_text("precious\n")
    with pytest.raises(FileExistsError):
        await archive(store, ring, before_ns=BEFORE, out=out)
    assert out.read_text() == "precious\n" and await store.count() == 12


async def test_a_broken_chain_is_not_archived(tmp_path: Path, ring: KeyRing) -> None:
    store = MemoryReceiptStore()
    await fill(store, ring)
    other = KeyRing.generate("k-unknown")
    report = await archive(
        store, ring, before_ns=BEFORE, out=tmp_path / "a.jsonl", keys=other.public_keys()
    )
    assert report.chains == 0 and len(report.failed) == 2 and "unknown_key" in report.failed[0]
    assert await store.count() == 12


async def test_internal_chains_are_never_archived(tmp_path: Path, ring: KeyRing) -> None:
    store = MemoryReceiptStore()
    log = ReceiptLog(store, ring)
    await log.append(body(0, session="aarm:revocations"))
    report = await archive(store, ring, before_ns=BEFORE, out=tmp_path / "a.jsonl")
    assert report.chains == 0 and await store.count() == 1


async def test_crash_between_archive_write_and_store_update_loses_nothing(
    tmp_path: Path, ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryReceiptStore()
    await fill(store, ring)
    before = {k: await store.export(*k) for k in await store.sessions()}
    calls = 0
    real = store.replace_prefix

    async def crash_on_second(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("power cut")
        await real(*args, **kwargs)

    monkeypatch.setattr(store, "replace_prefix", crash_on_second)
    a1 = tmp_path / "a1.jsonl"
    with pytest.raises(RuntimeError):
        await archive(store, ring, before_ns=BEFORE, out=a1)
    keys = ring.public_keys()
    # s-1 was archived (its records are in a1), s-2 untouched; nothing was lost.
    assert len(await store.export("acme", "s-1")) == 4
    assert await store.export("acme", "s-2") == before[("acme", "s-2")]
    sections = read_archive(a1)
    for t, s in before:
        now = await store.export(t, s)
        result, _ = verify_with_archives(now, keys, sections)
        assert result.ok, result
    monkeypatch.undo()
    report = await archive(store, ring, before_ns=BEFORE, out=tmp_path / "a2.jsonl")
    assert (report.chains, report.receipts) == (1, 3)  # s-2 only: s-1 is done
    sections += read_archive(tmp_path / "a2.jsonl")
    for t, s in await store.sessions():
        result, _ = verify_with_archives(await store.export(t, s), keys, sections)
        assert result.ok, result


# --- tampering -------------------------------------------------------------------------


def resign(text: str, ring: KeyRing, **changes: Any) -> str:
    """A checkpoint with members changed, then signed again by ``ring``'s active key."""
    cp = parse(text)
    cp.update(changes)
    del cp["signature"]
    cp2 = json.loads(make_text(cp, ring))
    return canonicalize(cp2).decode()


def make_text(cp: dict[str, Any], ring: KeyRing) -> str:
    from aarm_pdp.receipts.envelope import b64encode, signing_payload

    key = ring.active
    cp["signature"] = {
        "algorithm": "Ed25519",
        "key_id": key.key_id,
        "value": b64encode(key.sign(signing_payload(cp))),
    }
    return canonicalize(cp).decode()


BAD = Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("chain", "seq"), 4, Reason.MALFORMED),  # first_seq + count - 1 is 5
        (("archive", "count"), 4, Reason.MALFORMED),
        (("archive", "first_seq"), 2, Reason.MALFORMED),
        (("head", "hash"), "ab" * 32, BAD),
        (("head", "kind"), "session_end", BAD),
        (("archive", "sha256"), "cd" * 32, BAD),
        (("issued_at",), "2026-05-01T00:00:00.000000Z", BAD),
        (("chain", "session_id"), "s-2", BAD),
        (("previous_checkpoint",), "ef" * 32, Reason.MALFORMED),
    ],
)
async def test_an_edited_checkpoint_fails(
    tmp_path: Path, ring: KeyRing, path: tuple[str, ...], value: Any, reason: Reason
) -> None:
    store, _, _ = await archived(tmp_path, ring)
    texts = await store.export("acme", "s-1")
    cp = parse(texts[0])
    node = cp
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    result = verify_chain([canonicalize(cp).decode(), *texts[1:]], ring.public_keys())
    assert (result.ok, result.index, result.reason) == (False, 0, reason)


async def test_a_forged_checkpoint_fails(tmp_path: Path, ring: KeyRing) -> None:
    store, _, _ = await archived(tmp_path, ring)
    texts = await store.export("acme", "s-1")
    forger = KeyRing.generate("k-archive")  # same key id, other key
    forged = resign(texts[0], forger)
    result = verify_chain([forged, *texts[1:]], ring.public_keys())
    assert (result.index, result.reason) == (0, Reason.BAD_SIGNATURE)
    stranger = resign(texts[0], KeyRing.generate("k-stranger"))
    result = verify_chain([stranger, *texts[1:]], ring.public_keys())
    assert (result.index, result.reason) == (0, Reason.UNKNOWN_KEY)


async def test_a_checkpoint_that_does_not_lead_to_the_next_receipt_fails(
    tmp_path: Path, ring: KeyRing
) -> None:
    store, _, _ = await archived(tmp_path, ring)
    texts = await store.export("acme", "s-1")
    cp = parse(texts[0])
    wrong_head = resign(texts[0], ring, head={"hash": "ab" * 32, "kind": "action"})
    result = verify_chain([wrong_head, *texts[1:]], ring.public_keys())
    assert (result.index, result.reason) == (1, Reason.PREV_MISMATCH)
    # A gap: the receipt after the checkpoint deleted.
    result = verify_chain([texts[0], *texts[2:]], ring.public_keys())
    assert (result.index, result.reason) == (1, Reason.MISSING_RECEIPT)
    # A checkpoint claiming a later seq than it covers.
    later = dict(cp["chain"], seq=6)
    arch = dict(cp["archive"], count=6)
    moved = resign(texts[0], ring, chain=later, archive=arch)
    result = verify_chain([moved, *texts[1:]], ring.public_keys())
    assert (result.index, result.reason) == (1, Reason.DUPLICATE_SEQ)


async def test_a_checkpoint_inside_a_chain_is_misplaced(tmp_path: Path, ring: KeyRing) -> None:
    store, _, _ = await archived(tmp_path, ring)
    texts = await store.export("acme", "s-1")
    result = verify_chain([texts[0], texts[1], texts[0], *texts[2:]], ring.public_keys())
    assert (result.index, result.reason) == (2, Reason.MISPLACED_CHECKPOINT)


async def test_a_malformed_checkpoint_is_malformed(tmp_path: Path, ring: KeyRing) -> None:
    store, _, _ = await archived(tmp_path, ring)
    texts = await store.export("acme", "s-1")
    cp = parse(texts[0])
    bad = resign(texts[0], ring, archive=dict(cp["archive"], count=3))  # 1 + 3 - 1 != 5
    result = verify_chain([bad, *texts[1:]], ring.public_keys())
    assert (result.index, result.reason) == (0, Reason.MALFORMED)


async def test_an_altered_archived_receipt_is_caught_with_the_archive(
    tmp_path: Path, ring: KeyRing
) -> None:
    store, out, _ = await archived(tmp_path, ring)
    texts = await store.export("acme", "s-1")
    keys = ring.public_keys()
    raw = out.read_text(encoding="utf-8")
    edited = raw.replace('"result":"DENY"', '"result":"ALLOW"', 1)
    assert edited != raw
    bad = tmp_path / "edited.jsonl"
    bad.write_text(edited, encoding="utf-8")
    # On its own, the archive names the receipt; against the store, the file digest.
    sections = split_export(edited.split("\n"))
    result = verify_export(sections[0], keys)
    assert (result.index, result.reason) == (1, Reason.BAD_SIGNATURE)
    result, _ = verify_with_archives(texts, keys, read_archive(bad))
    assert result.reason is Reason.ARCHIVE_MISMATCH and "sha256" in result.message


async def test_an_archive_without_this_chain_is_a_mismatch(tmp_path: Path, ring: KeyRing) -> None:
    store, out, _ = await archived(tmp_path, ring)
    texts = await store.export("acme", "s-1")
    only_s2 = [x for x in read_archive(out) if x.session_id == "s-2"]
    result, _ = verify_with_archives(texts, ring.public_keys(), only_s2)
    assert result.reason is Reason.ARCHIVE_MISMATCH


async def test_a_section_swapped_for_a_signed_copy_with_other_records_fails(
    tmp_path: Path, ring: KeyRing
) -> None:
    """Even re-signed with the service's own key, an archive that is not the one the
    checkpoint names (its sha256) does not stand in for the archived prefix."""
    store, out, _ = await archived(tmp_path, ring)
    texts = await store.export("acme", "s-1")
    sections = read_archive(out)
    s1 = next(x for x in sections if x.session_id == "s-1")
    lines = cli.export_lines("acme", "s-1", s1.lines[:-1] + s1.lines[-1:], keyring=ring)
    other = tmp_path / "other.jsonl"
    other.write_text("".join(f"{x}\n" for x in lines) + "\n", encoding="utf-8")
    result, _ = verify_with_archives(texts, ring.public_keys(), read_archive(other))
    assert result.reason is Reason.ARCHIVE_MISMATCH


# --- the command line ------------------------------------------------------------------


def test_cutoff_is_a_time_or_an_age() -> None:
    now = parse_timestamp("2026-06-01T00:00:00Z")
    assert cli.parse_cutoff("30d", now_ns=now) == parse_timestamp("2026-05-02T00:00:00Z")
    assert cli.parse_cutoff("2026-05-01T12:00:00+02:00") == parse_timestamp("2026-05-01T10:00:00Z")
    with pytest.raises(ValueError, match="duration"):
        cli.parse_cutoff("last tuesday")


def test_archive_command_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init_key_dir(tmp_path / "keys")
    db = str(tmp_path / "r.db")
    rc = cli.archive(db, "yesterday", tmp_path / "a.jsonl", key_dir=tmp_path / "keys")
    assert rc == 2 and "--before" in capsys.readouterr().out
    rc = cli.archive(db, "1d", tmp_path / "a.jsonl", key_dir=tmp_path / "nokeys")
    assert rc == 2
    rc = cli.archive(db, "1d", tmp_path / "a.jsonl", key_dir=tmp_path / "keys")
    assert rc == 0 and "nothing to archive" in capsys.readouterr().out


def test_the_console_script_archives_and_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``aarm-pdp receipts archive`` and ``verify --archive`` through the real argument parser."""
    from aarm_pdp.cli import main
    from aarm_pdp.receipts import SqliteReceiptStore

    init_key_dir(tmp_path / "keys")
    db = str(tmp_path / "receipts.db")

    async def fill_sqlite() -> None:
        store = SqliteReceiptStore(db)
        log = ReceiptLog(store, KeyRing.load(tmp_path / "keys"))
        for i in range(8):
            await log.append(body(i, session="s-1"))
        await log.aclose()
        await store.aclose()

    asyncio.run(fill_sqlite())
    keys_file = tmp_path / "jwks.json"
    keys_file.write_text(json.dumps(KeyRing.load(tmp_path / "keys").jwks()))
    out = str(tmp_path / "archive" / "a.jsonl")
    common = ["--store", db]
    argv = ["receipts", "archive", *common, "--before", CUTOFF, "--out", out]
    assert main([*argv, "--key-dir", str(tmp_path / "keys")]) == 0
    assert "archived 5 receipts of 1 chains" in capsys.readouterr().out
    verify = ["receipts", "verify", *common, "--jwks", str(keys_file)]
    assert main(verify) == 0
    assert main([*verify, "--archive", out]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "ok: 8 receipts, 1 chains (1 checkpoints verified against their archives)"
    )
    assert main(["receipts", "verify", "--export", out, "--jwks", str(keys_file)]) == 0
