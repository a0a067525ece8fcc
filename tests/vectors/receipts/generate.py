"""Write the receipt test vectors of this directory (see README.md here and docs/receipts.md).

    .venv/bin/python tests/vectors/receipts/generate.py          # rewrite the files
    .venv/bin/python tests/vectors/receipts/generate.py --check  # exit 1 if they differ

Everything is deterministic: the keys come from fixed seeds (keys.json: TEST KEYS,
never use them for anything else), the times are fixed, and Ed25519 signatures are
deterministic, so the files are the same bytes on every run.
``tests/unit/test_receipts_vectors.py`` checks that they still are (the signer has
not changed its output) and that our verifier gives each case's expected result.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aarm_pdp.receipts.archive import make_checkpoint
from aarm_pdp.receipts.canonical import canonicalize
from aarm_pdp.receipts.cli import export_lines
from aarm_pdp.receipts.envelope import GENESIS, complete, receipt_hash, validate_body
from aarm_pdp.receipts.keys import KeyRing, SigningKey
from aarm_pdp.receipts.verify import KeyWindow, parse_timestamp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = Path(__file__).resolve().parent


def _seed(name: str) -> bytes:
    return hashlib.sha256(f"aarm-pdp receipt test vector key {name}".encode()).digest()


def _ts(text: str) -> int:
    return parse_timestamp(text)


KEYS: dict[str, tuple[bytes, KeyWindow]] = {
    # A key from before windows existed: valid for every issued_at.
    "test-key-a": (_seed("a"), KeyWindow()),
    # Rotated in on 2026-01-01, retired from 2026-03-01.
    "test-key-b": (
        _seed("b"),
        KeyWindow(_ts("2026-01-01T00:00:00Z"), _ts("2026-03-01T00:00:00Z")),
    ),
    # Rotated in on 2026-03-01, the active key.
    "test-key-c": (_seed("c"), KeyWindow(_ts("2026-03-01T00:00:00Z"), None)),
}
UNPUBLISHED = "test-key-x"
"""Signs a receipt but is not in the JWKS."""


def signing_key(kid: str) -> SigningKey:
    seed = _seed("x") if kid == UNPUBLISHED else KEYS[kid][0]
    window = KeyWindow() if kid == UNPUBLISHED else KEYS[kid][1]
    return SigningKey(kid, Ed25519PrivateKey.from_private_bytes(seed), window)


def jwks() -> dict[str, Any]:
    ring = KeyRing({k: signing_key(k) for k in KEYS}, "test-key-c")
    return ring.jwks()


# The parameters of the vectors' decision receipt: the inputs that used to break
# (integral doubles of 2**53 and more), the number forms of RFC 8785 (exponents,
# subnormals, -0), member names whose UTF-16 and code-point orders differ, and the
# characters JCS leaves unescaped although other tools treat them as line breaks.
PARAMETERS: dict[str, Any] = {
    "amount": 1e20,
    "id": 2.0**53,
    "big": [2.0**60, -(2.0**63), 1e21, 1.7976931348623157e308],
    "small": [5e-324, 1e-7, 0.000001, 0.1, -0.0, 4.5],
    "ints": [0, -1, 9007199254740991],
    "names": {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "ö": 7},
    "text": 'line\u2028sep\u2029par\x85nel "quoted" \\ / \x00\x1f\x7f é \U0001f600',
    "flags": [True, False, None],
}


def _body(
    seq: int, kind: str, issued_at: str, session: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "receipt_id": f"{session}-r{seq}",
        "kind": kind,
        "issued_at": issued_at,
        "chain": {"tenant": "acme", "session_id": session},
        "decision_id": f"{session}-d{seq}",
        **(extra or {}),
    }


def _decision(seq: int, issued_at: str, session: str) -> dict[str, Any]:
    return _body(
        seq,
        "decision",
        issued_at,
        session,
        {
            "action": {"tool": "payments", "operation": "transfer", "parameters": PARAMETERS},
            "decision": {"decision_id": f"{session}-d{seq}", "result": "ALLOW"},
        },
    )


Spec = tuple[str, dict[str, Any]]
"""(signing key id, body) for one receipt."""


def chain(specs: list[Spec], prevs: dict[int, str] | None = None) -> list[str]:
    """Sign the bodies in order, linking each to the one before (or to ``prevs[i]``)."""
    out: list[str] = []
    prev = GENESIS
    for i, (kid, body) in enumerate(specs):
        key = signing_key(kid)

        def sign(payload: bytes, key: SigningKey = key) -> tuple[str, bytes]:
            return key.key_id, key.sign(payload)

        link = (prevs or {}).get(i, prev)
        canonical, _ = complete(validate_body(body), seq=i + 1, prev=link, sign=sign)
        out.append(canonical.decode("utf-8"))
        prev = receipt_hash(canonical)
    return out


S = "vectors-1"
VALID: list[Spec] = [
    ("test-key-a", _body(1, "session_start", "2025-12-01T09:00:00.000000Z", S)),
    ("test-key-b", _decision(2, "2026-02-01T09:00:00.123456Z", S)),
    ("test-key-c", _decision(3, "2026-04-01T09:00:00.000001Z", S)),
    ("test-key-c", _body(4, "session_end", "2026-04-01T09:05:00.000000Z", S)),
]


def _tampered() -> list[str]:
    lines = chain(VALID)
    assert lines[1].count('"result":"ALLOW"') == 1
    lines[1] = lines[1].replace('"result":"ALLOW"', '"result":"DENY"')
    return lines


def _edited_issued_at() -> list[str]:
    # Re-dating a receipt to move it into its key's window breaks its signature.
    lines = chain([("test-key-b", _decision(1, "2026-06-01T00:00:00.000000Z", "vectors-7"))])
    return [lines[0].replace("2026-06-01T00:00:00.000000Z", "2026-02-01T00:00:00.000000Z")]


# Checkpoints (docs/receipts.md §9): valid-chain's first two receipts archived into
# checkpoint-archive.jsonl, replaced in the store by a checkpoint signed on 2026-04-02.
CHECKPOINT_AT = "2026-04-02T00:00:00.000000Z"


def _archive_lines() -> list[str]:
    return export_lines("acme", S, chain(VALID)[:2], keyring=_active_ring())


def _archive_bytes() -> bytes:
    return "".join(f"{line}\n" for line in _archive_lines()).encode("utf-8")


def _checkpoint(kid: str = "test-key-c") -> str:
    valid = chain(VALID)
    # The signer refuses a key outside its window; the vectors need one such checkpoint.
    key = SigningKey(kid, signing_key(kid).private_key)
    return make_checkpoint(
        KeyRing({kid: key}, kid),
        tenant="acme",
        session_id=S,
        head_seq=2,
        head_hash=receipt_hash(valid[1]),
        head_kind="decision",
        first_seq=1,
        count=2,
        archive_sha256=hashlib.sha256(_archive_bytes()).hexdigest(),
        previous_checkpoint=None,
        issued_at_ns=_ts(CHECKPOINT_AT),
        receipt_id=f"{S}-checkpoint-2",
    )


def _checkpoint_tampered() -> list[str]:
    cp = _checkpoint()
    assert cp.count('"kind":"decision"') == 1
    return [cp.replace('"kind":"decision"', '"kind":"session_end"'), *chain(VALID)[2:]]


def _archive_altered() -> list[str]:
    lines = _archive_lines()
    assert lines[2].count('"result":"ALLOW"') == 1
    lines[2] = lines[2].replace('"result":"ALLOW"', '"result":"DENY"')
    return lines


CaseBuilder = Callable[[], list[str]]
Case = dict[str, Any]


def _expect(
    ok: bool, index: int | None = None, reason: str | None = None, rid: str | None = None
) -> dict[str, Any]:
    return {"ok": ok, "index": index, "receipt_id": rid, "reason": reason}


def cases() -> list[tuple[Case, CaseBuilder]]:
    """(manifest entry without the file name, the lines of its file)."""
    valid = chain(VALID)
    return [
        (
            {
                "name": "valid-chain",
                "description": "four receipts of one session, signed by a key without a "
                "window, by a later-retired key inside its window, and by the active key; "
                "numbers, names and characters that need care; ends with session_end",
                "kind": "chain",
                "require_complete": True,
                "expected": {**_expect(True), "receipts": 4},
            },
            lambda: valid,
        ),
        (
            {
                "name": "tampered",
                "description": "valid-chain with receipt 2's verdict edited from ALLOW to DENY",
                "kind": "chain",
                "require_complete": True,
                "expected": _expect(False, 1, "bad_signature", f"{S}-r2"),
            },
            _tampered,
        ),
        (
            {
                "name": "retired-key",
                "description": "test-key-b signs inside its window, then after its "
                "aarm_not_after (2026-03-01): the second receipt is refused",
                "kind": "chain",
                "require_complete": False,
                "expected": _expect(False, 1, "key_retired", "vectors-2-r2"),
            },
            lambda: chain(
                [
                    ("test-key-b", _decision(1, "2026-02-28T23:59:59.999999Z", "vectors-2")),
                    ("test-key-b", _decision(2, "2026-06-01T00:00:00.000000Z", "vectors-2")),
                ]
            ),
        ),
        (
            {
                "name": "retired-at-the-boundary",
                "description": "issued_at equal to aarm_not_after: the window is half-open, "
                "so the key is already retired",
                "kind": "chain",
                "require_complete": False,
                "expected": _expect(False, 0, "key_retired", "vectors-3-r1"),
            },
            lambda: chain(
                [("test-key-b", _body(1, "note", "2026-03-01T00:00:00.000000Z", "vectors-3"))]
            ),
        ),
        (
            {
                "name": "valid-at-the-boundary",
                "description": "issued_at equal to aarm_not_before: the key is valid",
                "kind": "chain",
                "require_complete": False,
                "expected": {**_expect(True), "receipts": 1},
            },
            lambda: chain(
                [("test-key-c", _body(1, "note", "2026-03-01T00:00:00.000000Z", "vectors-4"))]
            ),
        ),
        (
            {
                "name": "not-yet-valid-key",
                "description": "test-key-c signs a receipt dated before its aarm_not_before",
                "kind": "chain",
                "require_complete": False,
                "expected": _expect(False, 0, "key_not_yet_valid", "vectors-5-r1"),
            },
            lambda: chain(
                [("test-key-c", _decision(1, "2026-02-15T12:00:00.000000Z", "vectors-5"))]
            ),
        ),
        (
            {
                "name": "re-dated-into-the-window",
                "description": "a receipt by test-key-b after its retirement, its issued_at "
                "then edited back into the window: the signature no longer verifies",
                "kind": "chain",
                "require_complete": False,
                "expected": _expect(False, 0, "bad_signature", "vectors-7-r1"),
            },
            _edited_issued_at,
        ),
        (
            {
                "name": "unknown-key",
                "description": "signed by a key the JWKS does not publish",
                "kind": "chain",
                "require_complete": False,
                "expected": _expect(False, 0, "unknown_key", "vectors-6-r1"),
            },
            lambda: chain(
                [(UNPUBLISHED, _body(1, "note", "2026-04-01T00:00:00.000000Z", "vectors-6"))]
            ),
        ),
        (
            {
                "name": "deleted-receipt",
                "description": "valid-chain without receipt 2",
                "kind": "chain",
                "require_complete": True,
                "expected": _expect(False, 1, "missing_receipt", f"{S}-r3"),
            },
            lambda: [valid[0], *valid[2:]],
        ),
        (
            {
                "name": "reordered",
                "description": "valid-chain with receipts 2 and 3 swapped",
                "kind": "chain",
                "require_complete": True,
                "expected": _expect(False, 1, "reordered", f"{S}-r3"),
            },
            lambda: [valid[0], valid[2], valid[1], valid[3]],
        ),
        (
            {
                "name": "prev-mismatch",
                "description": "receipt 2 validly signed but linked to GENESIS instead of "
                "the hash of receipt 1",
                "kind": "chain",
                "require_complete": True,
                "expected": _expect(False, 1, "prev_mismatch", f"{S}-r2"),
            },
            lambda: chain(VALID, prevs={1: GENESIS}),
        ),
        (
            {
                "name": "truncated",
                "description": "valid-chain without its session_end, completeness required",
                "kind": "chain",
                "require_complete": True,
                "expected": _expect(False, 3, "incomplete"),
            },
            lambda: valid[:3],
        ),
        (
            {
                "name": "export-valid",
                "description": "valid-chain as a JSONL export: a header signed by the "
                "active key declaring count and last hash, then the receipts",
                "kind": "export",
                "require_complete": True,
                "expected": {**_expect(True), "receipts": 4},
            },
            lambda: export_lines("acme", S, valid, keyring=_active_ring()),
        ),
        (
            {
                "name": "export-truncated",
                "description": "the export-valid header (count 4) over the first three receipts",
                "kind": "export",
                "require_complete": False,
                "expected": _expect(False, 3, "count_mismatch"),
            },
            lambda: export_lines("acme", S, valid, keyring=_active_ring())[:-1],
        ),
        (
            {
                "name": "checkpoint-valid",
                "description": "valid-chain after archiving: a checkpoint for seq 1-2 "
                "(signed by test-key-c, naming checkpoint-archive.jsonl by its sha256), then "
                "receipts 3 and 4",
                "kind": "chain",
                "require_complete": True,
                "archive": "checkpoint-archive.jsonl",
                "expected": {**_expect(True), "receipts": 3, "receipts_end_to_end": 4},
            },
            lambda: [_checkpoint(), *valid[2:]],
        ),
        (
            {
                "name": "checkpoint-archive",
                "description": "the archive checkpoint-valid names: one export section, "
                "receipts 1 and 2 of valid-chain under a signed header",
                "kind": "export",
                "require_complete": False,
                "expected": {**_expect(True), "receipts": 2},
            },
            _archive_lines,
        ),
        (
            {
                "name": "checkpoint-tampered",
                "description": "checkpoint-valid with the checkpoint's head.kind edited",
                "kind": "chain",
                "require_complete": False,
                "expected": _expect(False, 0, "bad_signature", f"{S}-checkpoint-2"),
            },
            _checkpoint_tampered,
        ),
        (
            {
                "name": "checkpoint-retired-key",
                "description": "the checkpoint signed by test-key-b, retired before the "
                "checkpoint's issued_at",
                "kind": "chain",
                "require_complete": False,
                "expected": _expect(False, 0, "key_retired", f"{S}-checkpoint-2"),
            },
            lambda: [_checkpoint("test-key-b"), *valid[2:]],
        ),
        (
            {
                "name": "checkpoint-gap",
                "description": "checkpoint-valid without receipt 3",
                "kind": "chain",
                "require_complete": False,
                "expected": _expect(False, 1, "missing_receipt", f"{S}-r4"),
            },
            lambda: [_checkpoint(), valid[3]],
        ),
        (
            {
                "name": "checkpoint-misplaced",
                "description": "the checkpoint again after receipt 3: a checkpoint only "
                "begins a chain",
                "kind": "chain",
                "require_complete": False,
                "expected": _expect(False, 2, "misplaced_checkpoint", f"{S}-checkpoint-2"),
            },
            lambda: [_checkpoint(), valid[2], _checkpoint()],
        ),
        (
            {
                "name": "checkpoint-archive-altered",
                "description": "checkpoint-archive with receipt 2's verdict edited (its "
                "sha256 is then not the checkpoint's either)",
                "kind": "export",
                "require_complete": False,
                "expected": _expect(False, 1, "bad_signature", f"{S}-r2"),
            },
            _archive_altered,
        ),
    ]


def _active_ring() -> KeyRing:
    return KeyRing({"test-key-c": signing_key("test-key-c")}, "test-key-c")


def _json(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def intermediate() -> list[dict[str, Any]]:
    """What an implementer can compare step by step, for each receipt of valid-chain."""
    out = []
    for line in chain(VALID):
        receipt = json.loads(line)
        payload = canonicalize({k: v for k, v in receipt.items() if k != "signature"})
        out.append(
            {
                "receipt_id": receipt["receipt_id"],
                "signing_input": payload.decode("utf-8"),
                "signing_input_sha256": hashlib.sha256(payload).hexdigest(),
                "signature_key_id": receipt["signature"]["key_id"],
                "signature_value": receipt["signature"]["value"],
                "canonical_sha256": receipt_hash(line),
                "chain_prev": receipt["chain"]["prev"],
            }
        )
    return out


def files() -> dict[str, str]:
    """Every file of this directory this script writes, by name."""
    out = {"jwks.json": _json(jwks())}
    out["keys.json"] = _json(
        {
            "warning": "TEST KEYS: published on purpose, for test vectors only",
            "keys": [
                {"kid": kid, "ed25519_seed_hex": seed.hex()} for kid, (seed, _) in KEYS.items()
            ]
            + [{"kid": UNPUBLISHED, "ed25519_seed_hex": _seed("x").hex(), "published": False}],
        }
    )
    manifest = []
    for entry, build in cases():
        name = f"{entry['name']}.jsonl"
        out[name] = "".join(f"{line}\n" for line in build())
        manifest.append({**entry, "file": name})
    out["vectors.json"] = _json(
        {"jwks": "jwks.json", "cases": manifest, "intermediate": {"valid-chain": intermediate()}}
    )
    return out


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in files().items():
        path = HERE / name
        if check:
            if not path.exists() or path.read_bytes() != text.encode("utf-8"):
                stale.append(name)
        else:
            path.write_bytes(text.encode("utf-8"))
    if stale:
        print("stale test vectors: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
