"""The validated, transport-free form of a Decide request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aarm_pdp.model.timestamps import rfc3339


@dataclass(frozen=True, slots=True)
class Delegation:
    """One hop of delegated authority; timestamps are RFC 3339 strings or ''."""

    delegator: str
    delegatee: str
    scopes: tuple[str, ...] = ()
    issued_at: str = ""
    expires_at: str = ""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who acts, bound at the time of the action (AARM R6)."""

    tenant: str = ""
    human: str = ""
    service: str = ""
    agent: str = ""
    session_id: str = ""
    roles: tuple[str, ...] = ()
    delegation_chain: tuple[Delegation, ...] = ()
    expires_at_ns: int = 0
    credential_id: str = ""
    principal: str = ""
    """The authenticated caller (enforcement point) that asserted this identity."""
    human_verified: bool = False
    """``human`` comes from the verified claims of the tenant's IdP token (AARM R6)."""

    def missing(self) -> tuple[str, ...]:
        """Names of the identity parts AARM R6 requires that are absent."""
        gaps: list[str] = []
        if not self.agent:
            gaps.append("agent")
        if not self.session_id:
            gaps.append("session_id")
        if not self.human and not self.service:
            gaps.append("human_or_service")
        return tuple(gaps)


@dataclass(frozen=True, slots=True)
class Action:
    """The tool call to judge."""

    tool: str
    operation: str
    parameters: dict[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    original_tool: str = ""

    @property
    def name(self) -> str:
        """The catalogue key, ``tool.operation``."""
        return f"{self.tool}.{self.operation}"


@dataclass(frozen=True, slots=True)
class Fact:
    """A piece of context with its source and freshness."""

    value: Any
    source: str = ""
    observed_at: str = ""


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """A Decide request after validation: plain data, no protobuf."""

    request_id: str
    identity: Identity
    action: Action
    facts: dict[str, Fact] = field(default_factory=dict)
    risk_signals: dict[str, float] = field(default_factory=dict)
    fingerprint: str = ""
    approval_token: str = ""
    raw: bytes = b""
    unverified: str = ""
    """Why the end user's identity did not verify where the tenant requires it: the
    engine answers DENY ``identity_unverified`` (with a receipt); empty when fine."""


def delegation_doc(d: Delegation) -> dict[str, Any]:
    """One delegation hop as JSON (policy input and receipts)."""
    return {
        "delegator": d.delegator,
        "delegatee": d.delegatee,
        "scopes": list(d.scopes),
        "issued_at": d.issued_at,
        "expires_at": d.expires_at,
    }


def identity_doc(ident: Identity) -> dict[str, Any]:
    """The identity bound into a receipt or an approval ticket."""
    return {
        "tenant": ident.tenant,
        "human": ident.human,
        "service": ident.service,
        "agent": ident.agent,
        "session_id": ident.session_id,
        "roles": list(ident.roles),
        "delegation_chain": [delegation_doc(d) for d in ident.delegation_chain],
        "credential_id": ident.credential_id,
        "expires_at": rfc3339(ident.expires_at_ns) if ident.expires_at_ns else "",
        "principal": ident.principal,
        "human_verified": ident.human_verified,
    }
