"""The declared telemetry schema (``aarm.telemetry.v1``, docs/telemetry.md) and the two
places events can be read back: the SIEM mock's webhook batches and a JSONL file.

The schema is transcribed here from docs/telemetry.md; ``undocumented_names`` checks the
transcription against the document, so the two cannot silently drift apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.checks.base import is_hex64
from conformance.harness import ROOT, SiemMock

SCHEMA = "aarm.telemetry.v1"
DOC = ROOT / "docs" / "telemetry.md"
CLASS_UID = {"aarm.action": 6003, "aarm.decision": 2001, "aarm.approval": 3003}
SEVERITY = {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
VERDICTS = {"ALLOW", "DENY", "MODIFY", "STEP_UP", "DEFER"}
APPROVAL_STATUS = {"granted", "rejected", "expired"}
Field = Callable[[Any], bool]


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _id(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _strs(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _obj(*keys: str) -> Field:
    def check(v: Any) -> bool:
        return isinstance(v, dict) and set(v) == set(keys) and all(_str(v[k]) for k in keys)

    return check


def _signals(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and set(v) == {"drift", "scope_expansion", "action_count"}
        and isinstance(v["drift"], int | float)
        and _bool(v["scope_expansion"])
        and _int(v["action_count"])
    )


SUBFIELDS = {
    "actor": ("tenant", "human", "service", "agent", "session_id"),
    "api": ("tool", "operation", "original_tool"),
    "policy": ("revision", "hash"),
}
COMMON: dict[str, Field] = {
    "schema": lambda v: v == SCHEMA,
    "type": lambda v: v in CLASS_UID,
    "class_uid": _int,
    "time": _int,
    "severity": lambda v: v in SEVERITY,
    "severity_id": _int,
    "decision_id": _id,
    "decision": lambda v: v in VERDICTS,
    "actor": _obj(*SUBFIELDS["actor"]),
    "api": _obj(*SUBFIELDS["api"]),
    "parameters_hash": lambda v: _str(v) and is_hex64(v),
    "policy": lambda v: _obj(*SUBFIELDS["policy"])(v) and is_hex64(v["hash"]),
    "receipt_id": _str,
}
ADDS: dict[str, dict[str, Field]] = {
    "aarm.action": {},
    "aarm.decision": {
        "policy_id": _strs,
        "reason_codes": _strs,
        "fail_closed": _bool,
        "defer_trigger": _str,
        "classification": _str,
        "signals": _signals,
    },
    "aarm.approval": {
        "approval_id": _id,
        "status": lambda v: v in APPROVAL_STATUS,
        "approver": _str,
        "response_time_ms": _int,
    },
}


def undocumented_names(text: str) -> list[str]:
    """Names of the transcription the document does not mention."""
    names = [SCHEMA, *CLASS_UID, *COMMON, *(k for adds in ADDS.values() for k in adds)]
    missing = [n for n in names if f"`{n}`" not in text]
    missing += [s for subs in SUBFIELDS.values() for s in subs if s not in text]
    missing += [str(u) for u in CLASS_UID.values() if str(u) not in text]
    missing += [s for s in (*SEVERITY, *APPROVAL_STATUS) if s not in text]
    return missing


def problems(ev: Any) -> list[str]:
    """How one event departs from the declared schema (empty: it conforms)."""
    if not isinstance(ev, dict):
        return ["not a JSON object"]
    kind = ev.get("type")
    spec = {**COMMON, **ADDS.get(str(kind), {})}
    out = []
    if missing := sorted(set(spec) - set(ev)):
        out.append(f"missing {missing}")
    if extra := sorted(set(ev) - set(spec)):
        out.append(f"undocumented {extra}")
    for k in sorted(k for k, ok in spec.items() if k in ev and not ok(ev[k])):
        v, subs = ev[k], set(SUBFIELDS.get(k, ()))
        if isinstance(v, dict) and subs and set(v) != subs:
            out.append(
                f"{k} keys: undocumented {sorted(set(v) - subs)}, missing {sorted(subs - set(v))}"
            )
        else:
            out.append(f"bad {k}={json.dumps(v)[:80]}")
    if kind in CLASS_UID and ev.get("class_uid") != CLASS_UID[kind]:
        out.append(f"class_uid {ev.get('class_uid')} for {kind}")
    if ev.get("severity") in SEVERITY and ev.get("severity_id") != SEVERITY[ev["severity"]]:
        out.append(f"severity_id {ev.get('severity_id')} for {ev['severity']}")
    if kind == "aarm.decision" and ev.get("decision") == "ALLOW":
        out.append("aarm.decision for an ALLOW")
    return out


def key(ev: Any) -> tuple[str, str]:
    return (str(ev.get("type")), str(ev.get("decision_id"))) if isinstance(ev, dict) else ("", "")


@dataclass
class Sink:
    """Events read back from one sink, each with the time it was first seen."""

    name: str
    events: list[tuple[float, Any]] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)
    """The raw bytes as exported (POST bodies, JSONL lines), for leak searches."""
    malformed: list[str] = field(default_factory=list)


def from_siem(siem: SiemMock, path: str) -> Sink:
    sink = Sink("SIEM mock (webhook)")
    for b in siem.received(path):
        sink.blobs.append(b.body)
        if b.events is None:
            sink.malformed.append(f"POST body is not a JSON array: {b.body[:60]!r}")
        else:
            sink.events += [(b.received, e) for e in b.events]
    return sink


class FileTail:
    """A JSONL sink read incrementally (first-seen time = when this suite read it)."""

    def __init__(self, path: Path, keep: bytes = b"") -> None:
        self.path = path
        self.keep = keep
        """Only lines containing these bytes (an external sink holds other traffic)."""
        self.offset = 0
        self.sink = Sink(f"JSONL file ({path.name})")

    def read(self) -> Sink:
        if not self.path.is_file():
            return self.sink
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        now = time.time()
        for line in data[:end].splitlines():
            if not line.strip() or self.keep not in line:
                continue
            self.sink.blobs.append(line)
            try:
                self.sink.events.append((now, json.loads(line)))
            except ValueError:
                self.sink.malformed.append(f"line is not JSON: {line[:60]!r}")
        return self.sink
