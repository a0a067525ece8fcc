"""The client's value types and errors (no gRPC in here).

The errors, all raised by the client itself (grpc errors never escape it)::

    AarmClientError                 base
    ├── ActionDenied                the action must not run: DENY, an approval rejected,
    │   │                           expired or not given within the wait, a MODIFY the
    │   │                           tool cannot take, the service unreachable, refusing
    │   │                           or past the deadline (``codes`` says which)
    │   └── ActionDeferred          DEFER nobody answered (``deferral`` says what it needs)
    └── OutcomeNotRecorded          the tool ran, the service did not take its outcome
                                    (the output is withheld, in ``result``)

Session start and end failures are plain :class:`AarmClientError`.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format, struct_pb2

from aarm_pdp_client._gen.aarm.v1 import decision_pb2, session_pb2

__all__ = [
    "AarmClientError",
    "ActionDeferred",
    "ActionDenied",
    "ApprovalInfo",
    "Classification",
    "DeferralInfo",
    "Fact",
    "Identity",
    "OutcomeNotRecorded",
    "Reason",
    "Tls",
    "Trust",
    "Verdict",
]


class Trust(enum.IntEnum):
    """Whether a tool's output may steer the agent's later arguments (aarm.v1.Trust)."""

    UNSPECIFIED = session_pb2.TRUST_UNSPECIFIED
    """Take the tool's trust from the service's catalogue (untrusted when it has none)."""
    TRUSTED = session_pb2.TRUST_TRUSTED
    UNTRUSTED = session_pb2.TRUST_UNTRUSTED


class Classification(enum.IntEnum):
    """Data sensitivity of an output (aarm.v1.Classification)."""

    UNSPECIFIED = session_pb2.CLASSIFICATION_UNSPECIFIED
    """Not classified: the service counts it as RESTRICTED."""
    PUBLIC = session_pb2.CLASSIFICATION_PUBLIC
    INTERNAL = session_pb2.CLASSIFICATION_INTERNAL
    CONFIDENTIAL = session_pb2.CLASSIFICATION_CONFIDENTIAL
    RESTRICTED = session_pb2.CLASSIFICATION_RESTRICTED


@dataclass(frozen=True)
class Identity:
    """Who acts: the tenant, the human behind the agent, the agent and its session."""

    tenant: str = ""
    human: str = ""
    service: str = ""
    agent: str = ""
    session_id: str = ""
    roles: Sequence[str] = ()
    credential_id: str = ""
    human_token: str = ""
    """The end user's IdP token (a JWT), where the tenant requires a verified human."""

    def to_pb(self) -> decision_pb2.Identity:
        return decision_pb2.Identity(
            tenant=self.tenant,
            human=self.human,
            service=self.service,
            agent=self.agent,
            session_id=self.session_id,
            roles=list(self.roles),
            credential_id=self.credential_id,
            human_token=self.human_token,
        )


@dataclass(frozen=True)
class Fact:
    """One piece of context for a DEFER verdict (or any Decide): name, value, source."""

    name: str
    value: Any
    source: str = "enforcement_point"
    observed_at: float = field(default_factory=time.time)
    """Seconds since the epoch when the source observed it."""

    def to_pb(self) -> decision_pb2.Fact:
        fact = decision_pb2.Fact(name=self.name, source=self.source)
        json_format.ParseDict(self.value, fact.value)
        fact.observed_at.FromNanoseconds(int(self.observed_at * 1e9))
        return fact


@dataclass(frozen=True)
class Reason:
    """One rule's part in a verdict, with what the policy says of it: the parameter it
    decided on and what would change the verdict (both "" when it says nothing)."""

    code: str
    rule_id: str = ""
    message: str = ""
    param: str = ""
    """The parameter the rule decided on; "": the tool or the session as a whole."""
    would_change: str = ""
    """What would change the verdict, in words ("an approval by finance, or ...")."""
    approver_group: str = ""
    """For a STEP_UP: the approver group whose approval lets the action run."""

    @classmethod
    def from_pb(cls, r: decision_pb2.Reason) -> Reason:
        return cls(
            code=r.code,
            rule_id=r.rule_id,
            message=r.message,
            param=r.param,
            would_change=r.would_change.text,
            approver_group=r.would_change.approver_group,
        )


@dataclass(frozen=True)
class ApprovalInfo:
    """What a STEP_UP verdict waits for (passed to ``on_step_up``)."""

    approval_id: str
    approvers: tuple[str, ...]
    timeout_seconds: int
    decision_id: str
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class DeferralInfo:
    """What a DEFER verdict waits for (passed to the context provider)."""

    deferral_id: str
    trigger: str
    context_needed: tuple[str, ...]
    timeout_seconds: int
    decision_id: str
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class Verdict:
    """An action the service let run: ALLOW or MODIFY, after any approval or deferral."""

    decision: str
    """``"ALLOW"`` or ``"MODIFY"``."""
    decision_id: str
    outcome_decision_id: str
    """The decision the outcome is reported against: ``decision_id``, or for a deferral
    resolved with context the deferred decision (the one the session settled)."""
    parameters: dict[str, Any]
    """The parameters to run with: the caller's (ALLOW) or the policy's, coerced (MODIFY)."""
    reasons: tuple[Reason, ...]
    receipt_id: str
    request_id: str
    response: decision_pb2.DecideResponse
    """The final DecideResponse as received."""


@dataclass(frozen=True)
class Tls:
    """mTLS (or server-only TLS) for the channel: PEM bytes."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None
    """Override the name checked in the server certificate (ssl_target_name_override)."""

    @classmethod
    def from_files(
        cls,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        server_name: str | None = None,
    ) -> Tls:
        def read(p: str | Path | None) -> bytes | None:
            return Path(p).read_bytes() if p is not None else None

        return cls(read(ca), read(cert), read(key), server_name)


class AarmClientError(Exception):
    """Base of the client's errors."""


class ActionDenied(AarmClientError):
    """The action must not run: DENY, a refused approval, an unanswered deferral, or the
    service unreachable (the client fails closed)."""

    def __init__(
        self,
        message: str,
        *,
        reasons: Sequence[Reason] = (),
        decision: str = "DENY",
        decision_id: str = "",
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.reasons: tuple[Reason, ...] = tuple(reasons)
        self.decision = decision
        self.decision_id = decision_id
        self.request_id = request_id

    @property
    def codes(self) -> tuple[str, ...]:
        """The reasons' codes, e.g. ``("forbidden",)`` or ``("pdp_unavailable",)``."""
        return tuple(r.code for r in self.reasons)


class ActionDeferred(ActionDenied):
    """DEFER with no context provider (or one that had nothing to add): not run."""

    def __init__(self, message: str, *, deferral: DeferralInfo, **kw: Any) -> None:
        super().__init__(message, decision="DEFER", **kw)
        self.deferral = deferral


class OutcomeNotRecorded(AarmClientError):
    """The tool ran but the service did not take its outcome. The output is withheld
    from the agent unless the caller decides otherwise (it is in ``result``)."""

    def __init__(self, message: str, *, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


def parameters_struct(parameters: Mapping[str, Any]) -> struct_pb2.Struct:
    """The call's parameters as a Struct (TypeError for a value JSON cannot hold)."""
    s = struct_pb2.Struct()
    try:
        json_format.ParseDict(dict(parameters), s)
    except json_format.ParseError as exc:
        raise TypeError(f"parameters are not JSON values: {exc}") from exc
    return s
