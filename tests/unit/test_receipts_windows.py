"""Key validity windows: rotation retires old keys, the verifier refuses receipts outside them.

A retired key used to be trusted for ever: a receipt it signed a year after the
rotation verified ``ok``. Now ``rotate`` records when each key is valid
(``windows.json`` in the key directory, ``aarm_not_before``/``aarm_not_after`` in the
JWKS), the verifier checks ``issued_at`` against the signing key's window, and the
log will not sign what the verifier would refuse.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aarm_pdp import cli as main_cli
from aarm_pdp.errors import AarmError, ReceiptInvalid
from aarm_pdp.receipts import (
    KeyRing,
    MemoryReceiptStore,
    PublicKeys,
    Reason,
    ReceiptLog,
    cli,
    rotate,
    verify_chain,
    verify_receipt,
)
from aarm_pdp.receipts import keys as keys_module
from aarm_pdp.receipts.keys import WINDOWS_FILE, init_key_dir
from aarm_pdp.receipts.verify import (
    NOT_AFTER,
    NOT_BEFORE,
    KeyWindow,
    format_timestamp,
    parse_timestamp,
)

T0 = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
DAY = timedelta(days=1)


def at(offset: timedelta) -> str:
    """``T0 + offset`` as an ``issued_at``."""
    return format_timestamp(parse_timestamp("2026-05-01T10:00:00Z") + offset // MICROSECOND * 1000)


def body(i: int, issued_at: str, kind: str = "action") -> dict[str, Any]:
    return {
        "receipt_id": f"r-{i}",
        "kind": kind,
        "issued_at": issued_at,
        "chain": {"tenant": "acme", "session_id": "s-1"},
        "decision_id": f"d-{i}",
    }


async def sign(ring: KeyRing, bodies: list[dict[str, Any]]) -> list[str]:
    store = MemoryReceiptStore()
    log = ReceiptLog(store, ring)
    try:
        for b in bodies:
            await log.append(b)
    finally:
        await log.aclose()
    return await store.export("acme", "s-1")


# --- the key directory --------------------------------------------------------------------


def test_rotation_records_windows_and_publishes_them(tmp_path: Path) -> None:
    first = init_key_dir(tmp_path)
    assert KeyRing.load(tmp_path).active.window == KeyWindow()  # the first key: no window
    second = rotate(tmp_path, now=T0, retire_after=timedelta(hours=2))
    ring = KeyRing.load(tmp_path)
    t0 = parse_timestamp("2026-05-01T10:00:00Z")
    two_hours = 2 * 3600 * 10**9
    assert ring.active.key_id == second
    assert ring.active.window == KeyWindow(t0, None)
    old = ring.get(first)
    assert old is not None
    assert old.window == KeyWindow(None, t0 + two_hours)
    doc = ring.jwks()
    by_kid = {k["kid"]: k for k in doc["keys"]}
    assert by_kid[second][NOT_BEFORE] == "2026-05-01T10:00:00.000000Z"
    assert NOT_AFTER not in by_kid[second]
    assert by_kid[first][NOT_AFTER] == "2026-05-01T12:00:00.000000Z"
    assert NOT_BEFORE not in by_kid[first]
    windows = json.loads((tmp_path / WINDOWS_FILE).read_text())
    assert windows == {
        "keys": {
            first: {"not_after": "2026-05-01T12:00:00.000000Z"},
            second: {"not_before": "2026-05-01T10:00:00.000000Z"},
        }
    }
    keys = PublicKeys.from_jwks(doc)
    assert keys.window(first) == old.window
    assert keys.window(second) == ring.active.window


def test_a_second_rotation_retires_every_older_key_and_never_extends_one(tmp_path: Path) -> None:
    first = init_key_dir(tmp_path)
    second = rotate(tmp_path, now=T0, retire_after=timedelta(days=30))
    third = rotate(tmp_path, now=T0 + timedelta(hours=1), retire_after=timedelta(0))
    fourth = rotate(tmp_path, now=T0 + timedelta(hours=2), retire_after=timedelta(days=365))
    ring = KeyRing.load(tmp_path)
    end = {k: ring.get(k).window.not_after for k in (first, second, third, fourth)}  # type: ignore[union-attr]
    one_hour = parse_timestamp(at(timedelta(hours=1)))
    assert end[first] == one_hour  # shortened from 30 days by the 0-overlap rotation
    assert end[second] == one_hour
    assert end[third] == parse_timestamp(at(timedelta(hours=2) + timedelta(days=365)))
    assert end[fourth] is None


def test_rotation_refuses_a_negative_overlap_and_a_clock_behind(tmp_path: Path) -> None:
    with pytest.raises(AarmError, match="negative"):
        rotate(tmp_path, retire_after=timedelta(seconds=-1))
    rotate(tmp_path, now=T0)
    with pytest.raises(AarmError, match="clock behind"):
        rotate(tmp_path, now=T0 - timedelta(days=1), retire_after=timedelta(0))


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"keys": []}',
        '{"keys": {"k": {"not_after": "yesterday"}}}',
        json.dumps({"keys": {"k": {"not_before": at(DAY), "not_after": at(timedelta(0))}}}),
    ],
)
def test_a_broken_windows_file_fails_loudly(tmp_path: Path, content: str) -> None:
    init_key_dir(tmp_path)
    (tmp_path / WINDOWS_FILE).write_text(content)
    with pytest.raises(AarmError, match="windows"):
        KeyRing.load(tmp_path)


def test_a_directory_from_before_windows_loads_with_open_windows(tmp_path: Path) -> None:
    first = init_key_dir(tmp_path)
    second = rotate(tmp_path)
    (tmp_path / WINDOWS_FILE).unlink()  # as rotate wrote it before windows existed
    ring = KeyRing.load(tmp_path)
    assert {k["kid"]: set(k) for k in ring.jwks()["keys"]} == {
        kid: {"kty", "crv", "x", "kid", "alg", "use"} for kid in (first, second)
    }


# --- the verifier ---------------------------------------------------------------------------


async def test_a_receipt_signed_after_its_key_was_retired_fails(tmp_path: Path) -> None:
    # The case: the old key signs a year after the rotation retired it.
    init_key_dir(tmp_path)
    old_ring = KeyRing.load(tmp_path)
    rotate(tmp_path, now=T0, retire_after=timedelta(hours=1))
    jwks = KeyRing.load(tmp_path).jwks()
    old_key = old_ring.active
    # A ring holding the old key without its window: what a thief of the key has.
    thief = KeyRing(
        {old_key.key_id: keys_module.SigningKey(old_key.key_id, old_key.private_key)},
        old_key.key_id,
    )
    texts = await sign(thief, [body(0, at(timedelta(days=365)))])
    result = verify_receipt(texts[0], jwks)
    assert (result.ok, result.reason) == (False, Reason.KEY_RETIRED)
    assert "retired (2026-05-01T11:00:00.000000Z)" in result.message
    # Inside the overlap, and before the rotation, the old key is fine.
    for when in (timedelta(minutes=59), -timedelta(days=100)):
        (text,) = await sign(thief, [body(1, at(when))])
        assert verify_receipt(text, jwks).ok


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (-timedelta(microseconds=1), Reason.KEY_NOT_YET_VALID),
        (timedelta(0), None),  # not_before is inclusive
        (timedelta(hours=1) - timedelta(microseconds=1), None),
        (timedelta(hours=1), Reason.KEY_RETIRED),  # not_after is exclusive
    ],
)
async def test_window_bounds(offset: timedelta, reason: Reason | None) -> None:
    ring = KeyRing.generate("k")
    texts = await sign(ring, [body(0, at(offset))])
    t0 = parse_timestamp(at(timedelta(0)))
    jwks = {
        "keys": [{**ring.active.public_jwk(), **KeyWindow(t0, t0 + 3600 * 10**9).jwk_members()}]
    }
    result = verify_chain(texts, jwks)
    assert result.reason == reason, result
    assert result.ok is (reason is None)


async def test_the_signature_is_checked_before_the_window() -> None:
    ring = KeyRing.generate("k")
    (text,) = await sign(ring, [body(0, at(timedelta(days=2)))])
    tampered = text.replace('"d-0"', '"d-9"')
    t0 = parse_timestamp(at(timedelta(0)))
    jwks = {"keys": [{**ring.active.public_jwk(), NOT_AFTER: format_timestamp(t0)}]}
    assert verify_receipt(tampered, jwks).reason == Reason.BAD_SIGNATURE
    assert verify_receipt(text, jwks).reason == Reason.KEY_RETIRED


async def test_issued_at_must_be_rfc3339_under_a_windowed_key() -> None:
    ring = KeyRing.generate("k")
    (text,) = await sign(ring, [body(0, "2026-05-01 10:00:00+00:00")])  # ISO, not RFC 3339
    assert verify_receipt(text, ring.jwks()).ok  # no window: as before
    jwks = {"keys": [{**ring.active.public_jwk(), NOT_AFTER: "2030-01-01T00:00:00Z"}]}
    result = verify_receipt(text, jwks)
    assert (result.reason, "RFC 3339" in result.message) == (Reason.MALFORMED, True)


@pytest.mark.parametrize(
    "window",
    [
        {NOT_AFTER: "soon"},
        {NOT_BEFORE: 1777600000},
        {NOT_BEFORE: "2026-05-02T00:00:00Z", NOT_AFTER: "2026-05-01T00:00:00Z"},
        {NOT_AFTER: "2026-05-01T00:00:00"},  # no offset
    ],
)
def test_a_jwks_with_a_broken_window_is_refused(window: dict[str, Any], tmp_path: Path) -> None:
    ring = KeyRing.generate("k")
    doc = {"keys": [{**ring.active.public_jwk(), **window}]}
    with pytest.raises(ReceiptInvalid, match="window"):
        PublicKeys.from_jwks(doc)
    assert verify_chain([], doc).reason == Reason.MALFORMED
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(doc))
    assert cli.verify(None, jwks, export_file=tmp_path / "none.jsonl", out=io.StringIO()) == 2


# --- the signer -------------------------------------------------------------------------


async def test_the_log_does_not_sign_outside_its_active_keys_window(tmp_path: Path) -> None:
    rotate(tmp_path, now=T0)
    ring = KeyRing.load(tmp_path)
    store = MemoryReceiptStore()
    log = ReceiptLog(store, ring)
    try:
        with pytest.raises(ReceiptInvalid, match="validity window"):
            await log.append(body(0, at(-timedelta(seconds=1))))
        with pytest.raises(ReceiptInvalid, match="validity window"):
            await log.append(body(1, "2026-05-01 10:00:01+00:00"))  # cannot be placed
        await log.append(body(2, at(timedelta(seconds=1))))
    finally:
        await log.aclose()
    assert log.stats.rejected == 2
    texts = await store.export("acme", "s-1")
    assert len(texts) == 1
    assert verify_chain(texts, ring.jwks()).ok


async def test_a_running_log_picks_up_a_rotation(tmp_path: Path) -> None:
    init_key_dir(tmp_path)
    ring = KeyRing.load(tmp_path)
    first = ring.active.key_id
    store = MemoryReceiptStore()
    log = ReceiptLog(store, ring)
    now = datetime.now(UTC)
    try:
        await log.append(body(0, format_timestamp(parse_timestamp(now.isoformat()))))
        second = rotate(tmp_path, now=now + timedelta(seconds=1), retire_after=timedelta(0))
        assert ring.refresh(force=True)  # what the writer does at most once a second
        assert not ring.refresh(force=True)  # nothing changed since
        later = now + timedelta(seconds=2)
        await log.append(body(1, format_timestamp(parse_timestamp(later.isoformat()))))
    finally:
        await log.aclose()
    texts = await store.export("acme", "s-1")
    kids = [json.loads(t)["signature"]["key_id"] for t in texts]
    assert kids == [first, second]
    assert verify_chain(texts, KeyRing.load(tmp_path).jwks()).ok
    assert verify_chain(texts, ring.jwks()).ok  # the refreshed ring publishes both


def test_a_refresh_that_cannot_load_keeps_the_keys(tmp_path: Path) -> None:
    init_key_dir(tmp_path)
    ring = KeyRing.load(tmp_path)
    kid = ring.active.key_id
    (tmp_path / WINDOWS_FILE).write_text("broken")
    assert not ring.refresh(force=True)
    assert ring.active.key_id == kid
    assert not KeyRing.generate().refresh(force=True)  # not from a directory


# --- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800)],
)
def test_durations(text: str, seconds: int) -> None:
    assert cli.parse_duration(text) == timedelta(seconds=seconds)


def test_cli_rotate_prints_the_new_key_alone_and_the_retirements_aside(tmp_path: Path) -> None:
    first = init_key_dir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    assert cli.rotate(tmp_path, retire_after="0", out=out, err=err) == 0
    kid = out.getvalue().strip()
    ring = KeyRing.load(tmp_path)
    assert ring.active.key_id == kid
    assert err.getvalue().startswith(f"key {first} retired from ")
    assert cli.rotate(tmp_path, retire_after="soon", out=out, err=err) == 2
    assert "--retire-after" in err.getvalue()


def test_aarm_pdp_receipts_rotate_retire_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = init_key_dir(tmp_path)
    assert (
        main_cli.main(["receipts", "rotate", "--key-dir", str(tmp_path), "--retire-after", "2h"])
        == 0
    )
    kid = capsys.readouterr().out.strip()
    ring = KeyRing.load(tmp_path)
    old = ring.get(first)
    new = ring.get(kid)
    assert old is not None and new is not None
    assert new.window.not_before is not None and old.window.not_after is not None
    assert old.window.not_after - new.window.not_before == 2 * 3600 * 10**9
    # The default overlap is an hour.
    assert main_cli.main(["receipts", "rotate", "--key-dir", str(tmp_path)]) == 0
    third = KeyRing.load(tmp_path).get(capsys.readouterr().out.strip())
    newer = KeyRing.load(tmp_path).get(kid)
    assert third is not None and newer is not None
    assert third.window.not_before is not None and newer.window.not_after is not None
    assert newer.window.not_after - third.window.not_before == 3600 * 10**9


async def test_cli_verify_names_the_retired_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init_key_dir(tmp_path / "keys")
    old = KeyRing.load(tmp_path / "keys").active
    rotate(tmp_path / "keys", now=T0, retire_after=timedelta(0))
    thief = KeyRing({old.key_id: keys_module.SigningKey(old.key_id, old.private_key)}, old.key_id)
    texts = await sign(thief, [body(0, at(-timedelta(days=1))), body(1, at(timedelta(days=1)))])
    export = tmp_path / "s-1.jsonl"
    export.write_text("".join(f"{line}\n" for line in cli.export_lines("acme", "s-1", texts)))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(KeyRing.load(tmp_path / "keys").jwks()))
    capsys.readouterr()
    assert cli.verify(None, jwks, export_file=export) == 1
    out = capsys.readouterr().out
    assert "receipt #1 (r-1): key_retired:" in out, out
