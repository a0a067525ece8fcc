"""The receipt hot path's shortcuts give exactly what the plain formulas give.

Each shortcut (docs/performance.md, "Receipt CPU") is checked against the formula it
replaces, written out here as it was: the decision record (one canonicalisation of the
input, the record assembled around it), ``redact_strings`` (leaves inlined), the
envelope (members and chain written directly, member order cached).
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Mapping
from typing import Any

import pytest
import rfc8785
from aarm_pdp.errors import ReceiptInvalid
from aarm_pdp.model import redaction
from aarm_pdp.model.redaction import MAX_REDACT_DEPTH, REDACTED, redact, redact_values
from aarm_pdp.receipts import KeyRing, MemoryReceiptStore, ReceiptLog, verify_chain
from aarm_pdp.receipts import body as receipt_body
from aarm_pdp.receipts.canonical import _as_doubles, canonicalize, canonicalize_nearest, parse
from aarm_pdp.receipts.envelope import (
    GENESIS,
    assemble,
    complete,
    receipt_hash,
    signing_payload,
    validate_body,
)

# --- the formulas as they were ----------------------------------------------------------


def _old_redact_strings(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_values(value)
    if depth > MAX_REDACT_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            out[redaction._key(out, k) if isinstance(k, str) else k] = _old_redact_strings(
                v, depth + 1
            )
        return out
    if isinstance(value, list):
        return [_old_redact_strings(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(_old_redact_strings(v, depth + 1) for v in value)
    return value


def _old_doubles(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > (1 << 53) - 1:
        return float(value)
    if isinstance(value, dict):
        return {k: _old_doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_old_doubles(v) for v in value]
    return value


def _reference_canonicalize(value: Any) -> bytes:
    """RFC 8785 by the reference package alone (lossless big ints as doubles)."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.IntegerDomainError:
        return rfc8785.dumps(_as_doubles(value))


def _old_decision_record(
    input_doc: Mapping[str, Any], verdict: str, matched_rules: list[str]
) -> tuple[str, str]:
    doc = _old_doubles(_old_redact_strings(dict(input_doc)))
    action = input_doc.get("action")
    if isinstance(action, Mapping) and isinstance(action.get("parameters"), Mapping):
        doc["action"] = {**doc["action"], "parameters": _old_doubles(redact(action["parameters"]))}
    digest = hashlib.sha256(_reference_canonicalize(doc)).hexdigest()
    record = {"input": doc, "policy": {"decision": verdict, "matched_rules": list(matched_rules)}}
    return _reference_canonicalize(record).decode("utf-8"), digest


# --- documents --------------------------------------------------------------------------

_STRINGS = [
    "",
    "ok",
    "db.query",
    "alice@acme.example",
    "é",
    "\u2028",
    "\U0001f600 grin",
    "AKIAIOSFODNN7EXAMPLE",  # an AWS key id: redacted by value
    "postgresql://admin:hunter2hunter2@db.internal/prod",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVlLWhlcmU",
    REDACTED,
    "x" * 300,
]
_KEYS = ["a", "b", "limit", "table", "token", "password", "é", REDACTED, "AKIAIOSFODNN7EXAMPLE"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["str", "int", "float", "bool", "none", "big"]
    if depth < 20:
        kinds += ["dict", "list", "dict", "empty"]
    kind = rng.choice(kinds)
    if kind == "str":
        return rng.choice(_STRINGS)
    if kind == "int":
        return rng.choice([0, 1, -7, 10**6, 2**53 - 1])
    if kind == "big":
        return rng.choice([2**53, 2**53 + 1, 1_795_658_400_123_456_789, -(2**60) - 3, 10**20])
    if kind == "float":
        return rng.choice([0.5, -0.0, 1e-7, 1e21, 4.0, 1.7956584e18, 123.456, 1e300])
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "none":
        return None
    if kind == "empty":
        return rng.choice([[], {}])
    if kind == "list":
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(_KEYS): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _nest(depth: int, leaf: Any) -> Any:
    for i in range(depth):
        leaf = {"k": leaf, "n": i, "e": []} if i % 2 else [leaf, 1.5, {}]
    return leaf


def _input_doc(rng: random.Random) -> dict[str, Any]:
    return {
        "version": "aarm.v1",
        "now": "2026-11-26T02:00:00.000000Z",
        "now_ns": 1_795_658_400_000_000_000 + rng.randint(0, 10**9),
        "identity": {"tenant": "acme", "human": rng.choice(_STRINGS), "roles": ["analyst"]},
        "action": {
            "tool": "db",
            "operation": "query",
            "parameters": {k: _value(rng, 1) for k in rng.sample(_KEYS, rng.randint(0, 5))},
        },
        "facts": _value(rng),
        "session": {"counts": {"60": {"all": rng.randint(0, 9)}}, "recent": _value(rng)},
        "deep": _nest(rng.randint(0, MAX_REDACT_DEPTH + 3), rng.choice([*_STRINGS, 7, None])),
    }


# --- tests ------------------------------------------------------------------------------


def test_redact_strings_gives_what_the_plain_walk_gives() -> None:
    rng = random.Random(717)
    for _ in range(3000):
        value = rng.choice([_value(rng), _input_doc(rng), _nest(rng.randint(0, 20), 1)])
        assert redaction.redact_strings(value) == _old_redact_strings(value)
    # Colliding keys: a literal "<redacted>" after a redacted key, and the other way.
    for doc in (
        {"AKIAIOSFODNN7EXAMPLE": 1, REDACTED: 2, f"{REDACTED}#2": 3},
        {REDACTED: 1, "AKIAIOSFODNN7EXAMPLE": 2},
    ):
        assert redaction.redact_strings(doc) == _old_redact_strings(doc)


def test_decision_record_is_what_the_plain_formula_gives() -> None:
    rng = random.Random(16)
    for _ in range(1500):
        doc = _input_doc(rng)
        try:
            want = _old_decision_record(doc, "ALLOW", ["aarm.main.catalogued"])
        except (ValueError, OverflowError):
            with pytest.raises((ReceiptInvalid, ValueError, OverflowError)):
                receipt_body.decision_record(doc, "ALLOW", ["aarm.main.catalogued"])
            continue
        got = receipt_body.decision_record(doc, "ALLOW", ["aarm.main.catalogued"])
        assert got == want
        record = parse(got[0])
        assert receipt_body.input_sha256(record) == got[1]  # what replay checks


def test_decision_record_text_is_canonical() -> None:
    doc = _input_doc(random.Random(1))
    text, digest = receipt_body.decision_record(doc, "DENY", ["r.b", "r.a"])
    parsed = parse(text)
    assert canonicalize(parsed) == text.encode()
    assert list(parsed) == ["input", "policy"]
    assert parsed["policy"] == {"decision": "DENY", "matched_rules": ["r.b", "r.a"]}
    assert hashlib.sha256(canonicalize(parsed["input"])).hexdigest() == digest


def test_canonicalize_nearest_takes_big_ints_as_their_nearest_double() -> None:
    rng = random.Random(53)
    for _ in range(2000):
        value = _value(rng)
        try:
            want: bytes | None = rfc8785.dumps(_as_doubles(_old_doubles(value)))
        except (ValueError, OverflowError):
            want = None
        if want is None:
            with pytest.raises((ReceiptInvalid, OverflowError)):
                canonicalize_nearest(value)
        else:
            assert canonicalize_nearest(value) == want, value
    assert canonicalize_nearest([2**53 + 1]) == b"[9007199254740992]"
    assert canonicalize_nearest({"t": (2**53 + 1,)}) == b'{"t":[9007199254740992]}'


def _body(rng: random.Random, i: int) -> dict[str, Any]:
    tenant = rng.choice(["acme", "", "é-corp", "\U0001f600", 'q"uote'])
    return {
        "receipt_id": f"r-{i}-\u00e9" if i % 3 else f"r-{i}",
        "kind": "decision",
        "issued_at": "2026-05-01T10:00:00.000000Z",
        "chain": {"tenant": tenant, "session_id": rng.choice(["s-1", "s\u2028", "é"])},
        "decision_id": f"d-{i}",
        "links": {},
        "action": {"parameters": _value(rng)},
        "note": rng.choice([*_STRINGS, None, 1, 2.5, True]),
        "\u00e9": "non-ASCII member name",
        "\U0001f600": None,
        "approval": None,
    }


def test_the_envelope_is_the_canonical_form_of_the_receipt() -> None:
    ring = KeyRing.generate("k-\u00e9")
    key = ring.active
    rng = random.Random(8785)
    for i in range(500):
        body = _body(rng, i)
        try:
            prepared = validate_body(body)
        except Exception:
            continue
        seq = rng.randint(1, 2**40)
        signed, receipt = complete(
            prepared, seq, GENESIS, lambda payload: (key.key_id, key.sign(payload))
        )
        assert signed == canonicalize(receipt)
        assert receipt.canonical == signed.decode()
        assert receipt["chain"] == {
            "tenant": body["chain"]["tenant"],
            "session_id": body["chain"]["session_id"],
            "seq": seq,
            "prev": GENESIS,
        }
        payload = signing_payload(receipt)
        key.public_key.verify(base64.b64decode(receipt["signature"]["value"]), payload)
        members = {k: canonicalize(v) for k, v in receipt.items()}
        assert assemble(members) == signed
        assert receipt_hash(signed) == hashlib.sha256(signed).hexdigest()


async def test_the_log_signs_receipts_that_verify_offline() -> None:
    ring = KeyRing.generate()
    store = MemoryReceiptStore()
    log = ReceiptLog(store, ring)
    rng = random.Random(3)
    try:
        bodies = []
        for i in range(40):
            body = _body(rng, i)
            body["chain"] = {"tenant": "t\u00e9", "session_id": "s-log"}
            try:
                validate_body(body)
            except Exception:
                continue
            bodies.append(body)
        for body in bodies:
            await log.append(body)
    finally:
        await log.aclose()
    texts = await store.export("t\u00e9", "s-log")
    assert len(texts) == len(bodies)
    result = verify_chain(texts, ring.jwks())
    assert result.ok, result
