"""Plain data for decisions: what the engine produces and the API translates."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Decision(enum.StrEnum):
    """The five AARM decisions, spelled as the policy spells them."""

    ALLOW = "ALLOW"
    DENY = "DENY"
    MODIFY = "MODIFY"
    STEP_UP = "STEP_UP"
    DEFER = "DEFER"


class RiskLevel(enum.StrEnum):
    """Risk grades, lowest first."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


@dataclass(frozen=True, slots=True)
class Reason:
    """One rule's part in a verdict."""

    code: str
    rule_id: str
    message: str

    def to_doc(self) -> dict[str, str]:
        """As JSON (``dataclasses.asdict`` without its deep copy)."""
        return {"code": self.code, "rule_id": self.rule_id, "message": self.message}


@dataclass(frozen=True, slots=True)
class Approval:
    """What a STEP_UP verdict needs: who may approve, and for how long."""

    approvers: tuple[str, ...]
    timeout_seconds: int
    approval_id: str = ""


@dataclass(frozen=True, slots=True)
class Deferral:
    """What a DEFER verdict waits for."""

    trigger: str
    context_needed: tuple[str, ...]
    timeout_seconds: int
    deferral_id: str = ""


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """Which policy decided: bundle revision and a hash of what OPA loaded."""

    revision: str = ""
    hash: str = ""


@dataclass(frozen=True, slots=True)
class DecisionResult:
    """The policy's decision document for one action (``data.aarm.main.decision``), parsed.

    Or the DENY forced by a failure. ``decision`` is the verdict, as in the proto
    ``DecideResponse.decision`` and the Rego document's ``decision`` field.
    """

    decision: Decision
    reasons: tuple[Reason, ...]
    matched_rules: tuple[str, ...] = ()
    risk_level: RiskLevel = RiskLevel.LOW
    risk_score: float = 0.0
    modified_parameters: dict[str, Any] | None = None
    approval: Approval | None = None
    deferral: Deferral | None = None
    data_classification: str | None = None
    data_labels: tuple[str, ...] = ()
    fail_closed: bool = False


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A decision result with the ids, policy version and receipt: the plain ``DecideResponse``."""

    decision_id: str
    request_id: str
    result: DecisionResult
    policy: PolicyVersion = field(default_factory=PolicyVersion)
    receipt: dict[str, Any] | None = None
    """The signed receipt (a ``SignedReceipt`` carrying its canonical text)."""
