"""The decision record kept beside a decision receipt (issue 16 item 3)."""

from __future__ import annotations

import json

from aarm_pdp.model.redaction import REDACTED
from aarm_pdp.receipts.body import decision_record, input_sha256

SECRET = "AKIAIOSFODNN7EXAMPLE"


def test_record_redacts_like_the_receipt_and_its_hash_binds_the_input() -> None:
    doc = {
        "now_ns": 1_764_600_000_123_456_789,  # beyond 2**53: kept as a double
        "action": {"tool": "db", "parameters": {"password": "hunter2", "note": f"key {SECRET}"}},
        "session": {"history": [{"text": f"use {SECRET} please"}]},
    }
    record, digest = decision_record(doc, "ALLOW", ("aarm.main.catalogued",))
    assert SECRET not in record
    assert "hunter2" not in record
    parsed = json.loads(record)
    assert parsed["input"]["action"]["parameters"]["password"] == REDACTED
    assert parsed["policy"] == {"decision": "ALLOW", "matched_rules": ["aarm.main.catalogued"]}
    assert input_sha256(parsed) == digest
    assert abs(parsed["input"]["now_ns"] - doc["now_ns"]) < 1024  # type: ignore[operator]
    assert doc["action"]["parameters"]["password"] == "hunter2"  # type: ignore[index]
    again, same = decision_record(doc, "ALLOW", ("aarm.main.catalogued",))
    assert (again, same) == (record, digest)
    parsed["input"]["action"]["tool"] = "other"
    assert input_sha256(parsed) != digest
