"""Approval and deferral tickets and their state transitions. PURE.

A ticket is the suspended action: the identity bound at submission, the policy
version that judged it, what it waits for, and a digest of the original request.
Compact and bounded (docs/performance.md, "Memory bounds"): only a pending deferral
keeps the request's exact protobuf bytes (ProvideContext re-judges exactly them); an
approval keeps none (the enforcement point re-submits the action, bound by
:func:`action_hash`), and a ticket drops them once settled. The approver's view of the
action (``context``) is cut to :data:`CONTEXT_CHARS` characters, long values shown by
their start, length and sha256. Transitions are functions from ticket to ticket; the
store applies them atomically, so two replicas can never both grant, redeem or expire
one ticket.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from aarm_pdp.model.request import ActionRequest

PENDING = "PENDING"
GRANTED = "GRANTED"
REJECTED = "REJECTED"
EXPIRED = "EXPIRED"
USED = "USED"
RESOLVED = "RESOLVED"


def action_hash(request: ActionRequest) -> str:
    """sha256 over who does what: the grant is bound to exactly this action."""
    ident = request.identity
    act = request.action
    doc = {
        "tenant": ident.tenant,
        "session_id": ident.session_id,
        "human": ident.human,
        "service": ident.service,
        "agent": ident.agent,
        "tool": act.tool,
        "operation": act.operation,
        "parameters": act.parameters,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def token_hash(secret: str) -> str:
    """What a ticket stores of its grant token."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class Ticket:
    """A suspended STEP_UP or DEFER action."""

    ticket_id: str
    kind: str  # "approval" | "deferral"
    decision_id: str
    tenant: str
    session_id: str
    status: str
    created_ns: int
    deadline_ns: int
    action_hash: str
    request_b64: str  # the original DecideRequest bytes: a pending deferral's only
    policy_hash: str
    policy_revision: str
    approvers: list[str] = field(default_factory=list)
    context_needed: list[str] = field(default_factory=list)
    trigger: str = ""
    source: str = "step_up"
    risk_level: str = "HIGH"
    reasons: list[dict[str, str]] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    # approval outcome
    approver: str = ""
    resolution_reason: str = ""
    resolved_ns: int = 0
    token_sha256: str = ""
    token_expires_ns: int = 0
    # the grant token issued to the waiting enforcement point (WatchApproval); either
    # token redeems the grant, once
    watch_token_sha256: str = ""
    # deferral attempts: [{at_ns, facts: [names], verdict}]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    resolution: dict[str, Any] = field(default_factory=dict)
    request_sha256: str = ""
    """sha256 of the original DecideRequest bytes (kept when the bytes are not)."""
    request_bytes_len: int = 0

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)  # a dataclass: orjson writes its fields, no deep copy

    @classmethod
    def from_bytes(cls, raw: bytes) -> Ticket:
        """Inverse of :meth:`to_bytes`; fields a newer version added are ignored (replicas
        of two versions share one Redis while they are rolled)."""
        doc = orjson.loads(raw)
        return cls(**{k: v for k, v in doc.items() if k in _TICKET_FIELDS})

    def holds_token(self, token: str) -> bool:
        """Whether ``token`` is this grant's (the approver's or the watcher's)."""
        digest = token_hash(token)
        return bool(self.token_sha256) and digest in (self.token_sha256, self.watch_token_sha256)

    def request_bytes(self) -> bytes:
        return base64.b64decode(self.request_b64)

    def settle(self) -> None:
        """Drop what only an open ticket needs: the request copy."""
        self.request_b64 = ""

    @property
    def index(self) -> str:
        """The pending list this ticket sits on."""
        return f"{self.kind}:{self.tenant}"


_TICKET_FIELDS = frozenset(f.name for f in fields(Ticket))


def encode_request(raw: bytes) -> str:
    """Base64 of the original request bytes, for the ticket."""
    return base64.b64encode(raw).decode()


CONTEXT_CHARS = 16_384
"""Characters of the approver's view of the action (its parameters, the original
request) a ticket keeps; the rest is summarised."""
TEXT_CHARS = 512
VIEW_BYTES = 4096
"""What a ticket takes besides the request copy, as estimated before it is built (the
exact size is charged when it is stored)."""
"""A longer string value is kept as its start, its length and its sha256."""
ITEMS = 64
"""Items of one list or object kept."""
_DEPTH = 8


def _summary(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{text[:TEXT_CHARS]}... [{len(text)} chars, sha256 {digest}]"


def _compact(value: Any, budget: list[int], depth: int = 0) -> Any:
    if budget[0] <= 0:
        return "[omitted]"
    if isinstance(value, str):
        out = value if len(value) <= TEXT_CHARS else _summary(value)
        budget[0] -= len(out)
        return out
    if isinstance(value, dict):
        if depth >= _DEPTH:
            return "[nested]"
        items = list(value.items())
        kept = {str(k)[:TEXT_CHARS]: _compact(v, budget, depth + 1) for k, v in items[:ITEMS]}
        if len(items) > ITEMS:
            kept["..."] = f"[{len(items) - ITEMS} more keys]"
        budget[0] -= 2 * len(kept)
        return kept
    if isinstance(value, list | tuple):
        if depth >= _DEPTH:
            return "[nested]"
        out_list = [_compact(v, budget, depth + 1) for v in list(value)[:ITEMS]]
        if len(value) > ITEMS:
            out_list.append(f"[{len(value) - ITEMS} more items]")
        budget[0] -= len(out_list)
        return out_list
    budget[0] -= 8
    return value


def compact_context(context: dict[str, Any]) -> dict[str, Any]:
    """The approver's view, bounded: the action's parameters and the original request
    cut to :data:`CONTEXT_CHARS` in all; identity, policy, reasons kept as they are."""
    out = dict(context)
    budget = [CONTEXT_CHARS]
    action = out.get("action")
    if isinstance(action, dict) and "parameters" in action:
        out["action"] = {**action, "parameters": _compact(action["parameters"], budget)}
    if out.get("original_request") is not None:
        out["original_request"] = _compact(out["original_request"], budget)
    return out
