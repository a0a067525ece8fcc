"""Approval and deferral tickets and their state transitions. PURE.

A ticket is the suspended action: the original request (its exact protobuf bytes),
the identity bound at submission, the policy version that judged it, and what it
waits for. Transitions are functions from ticket to ticket; the store applies them
atomically, so two replicas can never both grant, redeem or expire one ticket.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
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
    request_b64: str  # the original DecideRequest bytes
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

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)  # a dataclass: orjson writes its fields, no deep copy

    @classmethod
    def from_bytes(cls, raw: bytes) -> Ticket:
        return cls(**orjson.loads(raw))

    def holds_token(self, token: str) -> bool:
        """Whether ``token`` is this grant's (the approver's or the watcher's)."""
        digest = token_hash(token)
        return bool(self.token_sha256) and digest in (self.token_sha256, self.watch_token_sha256)

    def request_bytes(self) -> bytes:
        return base64.b64decode(self.request_b64)

    @property
    def index(self) -> str:
        """The pending list this ticket sits on."""
        return f"{self.kind}:{self.tenant}"


def encode_request(raw: bytes) -> str:
    """Base64 of the original request bytes, for the ticket."""
    return base64.b64encode(raw).decode()
