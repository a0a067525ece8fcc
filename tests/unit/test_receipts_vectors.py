"""The committed receipt test vectors (tests/vectors/receipts): current, and verified as specified.

Three checks: the generator still writes the committed bytes (so the signer's output
for these inputs has not changed); our verifier gives every case its expected result;
and so does a second, independent verifier written here from ``docs/receipts.md``
alone (the ``rfc8785`` package, ``json``, ``hashlib`` and ``cryptography``; nothing of
``aarm_pdp``), which is what the vectors are for.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import rfc8785
from aarm_pdp.receipts import PublicKeys, verify_chain, verify_export
from aarm_pdp.receipts.archive import read_archive, verify_with_archives
from aarm_pdp.receipts.canonical import canonicalize, parse
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "receipts"
MANIFEST = json.loads((VECTORS / "vectors.json").read_text(encoding="utf-8"))
JWKS = json.loads((VECTORS / MANIFEST["jwks"]).read_text(encoding="utf-8"))
CASES = MANIFEST["cases"]


def _lines(case: dict[str, Any]) -> list[str]:
    # Lines end at "\n" only: receipts may hold U+2028 or U+0085 unescaped.
    text = (VECTORS / str(case["file"])).read_bytes().decode("utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("receipt_vectors", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_vectors_are_what_the_signer_writes() -> None:
    want = _generator().files()
    have = {p.name for p in VECTORS.iterdir() if p.suffix in {".json", ".jsonl"}}
    assert have == set(want)
    for name, text in want.items():
        assert (VECTORS / name).read_bytes() == text.encode("utf-8"), (
            f"{name} changed: rerun tests/vectors/receipts/generate.py only if the format "
            "change is intended (and say why in the commit)"
        )


def test_the_cases_cover_what_the_spec_promises() -> None:
    reasons = {c["expected"]["reason"] for c in CASES}
    assert {
        None,
        "bad_signature",
        "key_retired",
        "key_not_yet_valid",
        "unknown_key",
        "missing_receipt",
        "reordered",
        "prev_mismatch",
        "incomplete",
        "count_mismatch",
        "misplaced_checkpoint",
    } <= reasons
    assert {c["kind"] for c in CASES} == {"chain", "export"}


def _ours(case: dict[str, Any]) -> dict[str, Any]:
    lines = _lines(case)
    if case["kind"] == "export":
        result = verify_export(lines, JWKS, require_complete=case["require_complete"])
    else:
        result = verify_chain(lines, JWKS, require_complete=case["require_complete"])
    return {
        "ok": result.ok,
        "index": result.index,
        "receipt_id": result.receipt_id,
        "reason": None if result.reason is None else result.reason.value,
    }


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_our_verifier_gives_the_expected_result(case: dict[str, Any]) -> None:
    expected = {k: case["expected"][k] for k in ("ok", "index", "receipt_id", "reason")}
    assert _ours(case) == expected


@pytest.mark.parametrize("case", [c for c in CASES if c["expected"]["ok"]], ids=lambda c: c["name"])
def test_valid_receipts_are_their_own_canonical_form(case: dict[str, Any]) -> None:
    for line in _lines(case):
        assert canonicalize(parse(line)) == line.encode("utf-8")


def test_the_intermediate_values_match_the_valid_chain() -> None:
    steps = MANIFEST["intermediate"]["valid-chain"]
    lines = _lines(next(c for c in CASES if c["name"] == "valid-chain"))
    prev = "0" * 64
    for step, line in zip(steps, lines, strict=True):
        receipt = json.loads(line)
        assert receipt["chain"]["prev"] == step["chain_prev"] == prev
        payload = step["signing_input"].encode("utf-8")
        assert hashlib.sha256(payload).hexdigest() == step["signing_input_sha256"]
        assert hashlib.sha256(line.encode("utf-8")).hexdigest() == step["canonical_sha256"]
        prev = step["canonical_sha256"]


# --- a second verifier, from docs/receipts.md ---------------------------------------------


class Refused(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _time(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise Refused("malformed")
    return when


def _keys(jwks: dict[str, Any]) -> dict[str, tuple[Ed25519PublicKey, Any, Any]]:
    out = {}
    for k in jwks["keys"]:
        if k.get("kty") == "OKP" and k.get("crv") == "Ed25519":
            nbf = _time(k["aarm_not_before"]) if "aarm_not_before" in k else None
            naf = _time(k["aarm_not_after"]) if "aarm_not_after" in k else None
            out[k["kid"]] = (Ed25519PublicKey.from_public_bytes(_b64url(k["x"])), nbf, naf)
    return out


def _doubles(text: str) -> Any:
    """JSON with every number read as an IEEE 754 double (RFC 8785 / I-JSON)."""
    return json.loads(text, parse_int=float)


def _jcs(value: Any) -> bytes:
    return rfc8785.dumps(value)


def _check_signed(obj: dict[str, Any], keys: dict[str, Any]) -> None:
    sig = obj["signature"]
    if sig["algorithm"] != "Ed25519":
        raise Refused("unsupported")
    if sig["key_id"] not in keys:
        raise Refused("unknown_key")
    key, _, _ = keys[sig["key_id"]]
    try:
        key.verify(
            base64.b64decode(sig["value"], validate=True),
            _jcs({k: v for k, v in obj.items() if k != "signature"}),
        )
    except InvalidSignature:
        raise Refused("bad_signature") from None


def _check_checkpoint(cp: dict[str, Any], keys: dict[str, Any]) -> None:
    """§9: its members, then signature and window exactly as a receipt's."""
    arch, chain = cp["archive"], cp["chain"]
    if (
        cp["type"] != "aarm.receipt.checkpoint.v1"
        or cp["version"] != "aarm.receipt.v1"
        or cp["canonicalization"] != "RFC8785"
        or int(arch["first_seq"]) + int(arch["count"]) - 1 != int(chain["seq"])
    ):
        raise Refused("malformed")
    _check_signed(cp, keys)
    _, nbf, naf = keys[cp["signature"]["key_id"]]
    issued = _time(cp["issued_at"])
    if nbf is not None and issued < nbf:
        raise Refused("key_not_yet_valid")
    if naf is not None and issued >= naf:
        raise Refused("key_retired")


def _independent(case: dict[str, Any]) -> dict[str, Any]:
    return _verify_lines(case["kind"], _lines(case), case["require_complete"])


def _verify_lines(kind: str, lines: list[str], require_complete: bool) -> dict[str, Any]:
    keys = _keys(JWKS)
    header = None
    if kind == "export":
        header, lines = _doubles(lines[0]), lines[1:]
        _check_signed(header, keys)
    receipts = [_doubles(line) for line in lines]
    seqs = [int(r["chain"]["seq"]) for r in receipts]
    prev_hash, prev_seq, prev_kind, session = "0" * 64, 0, None, None
    for i, r in enumerate(receipts):
        try:
            if r.get("kind") == "checkpoint":
                if i > 0:
                    raise Refused("misplaced_checkpoint")
                _check_checkpoint(r, keys)
                here = (r["chain"]["tenant"], r["chain"]["session_id"])
                if header is not None and here != (header["tenant"], header["session_id"]):
                    raise Refused("session_mismatch")
                session = here
                prev_hash, prev_seq = r["head"]["hash"], int(r["chain"]["seq"])
                prev_kind = r["head"]["kind"]
                continue
            if r["version"] != "aarm.receipt.v1" or r["canonicalization"] != "RFC8785":
                raise Refused("malformed")
            _check_signed(r, keys)
            _, nbf, naf = keys[r["signature"]["key_id"]]
            issued = _time(r["issued_at"])
            if nbf is not None and issued < nbf:
                raise Refused("key_not_yet_valid")
            if naf is not None and issued >= naf:
                raise Refused("key_retired")
            here = (r["chain"]["tenant"], r["chain"]["session_id"])
            session = session or (
                (header["tenant"], header["session_id"]) if header is not None else here
            )
            if here != session:
                raise Refused("session_mismatch")
            if prev_kind == "session_end":
                raise Refused("after_session_end")
            seq = seqs[i]
            if seq != prev_seq + 1:
                if seq == prev_seq:
                    raise Refused("duplicate_seq")
                if seq < prev_seq + 1 or prev_seq + 1 in seqs[i + 1 :]:
                    raise Refused("reordered")
                raise Refused("missing_receipt")
            if r["chain"]["prev"] != prev_hash:
                raise Refused("prev_mismatch")
        except Refused as refused:
            return {
                "ok": False,
                "index": i,
                "receipt_id": r["receipt_id"],
                "reason": refused.reason,
            }
        prev_hash = hashlib.sha256(_jcs(r)).hexdigest()
        prev_seq, prev_kind = seqs[i], r["kind"]
    n = len(receipts)
    if header is not None and int(header["count"]) != n:
        return {"ok": False, "index": n, "receipt_id": None, "reason": "count_mismatch"}
    if header is not None and header["last_hash"] != prev_hash:
        return {"ok": False, "index": n - 1, "receipt_id": None, "reason": "last_hash_mismatch"}
    if require_complete and prev_kind != "session_end":
        return {"ok": False, "index": n, "receipt_id": None, "reason": "incomplete"}
    return {"ok": True, "index": None, "receipt_id": None, "reason": None}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_an_independent_verifier_from_the_spec_agrees(case: dict[str, Any]) -> None:
    expected = {k: case["expected"][k] for k in ("ok", "index", "receipt_id", "reason")}
    assert _independent(case) == expected


def test_a_checkpoint_and_its_archive_verify_end_to_end() -> None:
    """§9, "With the archive": the archive is the file the checkpoint names, verifies on
    its own, ends at the checkpoint's head, and its receipts then chain into the store's."""
    case = next(c for c in CASES if c["name"] == "checkpoint-valid")
    lines = _lines(case)
    cp = _doubles(lines[0])
    archive_file = VECTORS / str(case["archive"])
    assert hashlib.sha256(archive_file.read_bytes()).hexdigest() == cp["archive"]["sha256"]
    archived = archive_file.read_bytes().decode("utf-8")[:-1].split("\n")
    assert _verify_lines("export", archived, False)["ok"]
    header = _doubles(archived[0])
    assert header["last_hash"] == cp["head"]["hash"]
    assert len(archived) - 1 == int(cp["archive"]["count"])
    assert _verify_lines("chain", archived[1:] + lines[1:], True)["ok"]
    assert _verify_lines("chain", archived[1:] + lines[2:], True)["reason"] == "missing_receipt"
    # Ours agrees, and counts the receipts of the whole chain.
    result, resolved = verify_with_archives(
        lines, PublicKeys.from_jwks(JWKS), read_archive(archive_file), require_complete=True
    )
    assert result.ok and resolved == 1
    assert result.receipts == case["expected"]["receipts_end_to_end"]
    altered = read_archive(VECTORS / "checkpoint-archive-altered.jsonl")
    result, _ = verify_with_archives(lines, PublicKeys.from_jwks(JWKS), altered)
    assert result.reason is not None and result.reason.value == "archive_mismatch"
