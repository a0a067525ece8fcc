"""Plain data for decisions: what the engine produces and the API translates."""

from __future__ import annotations

import enum
from collections.abc import Mapping
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
class ValueSource:
    """An earlier call of the session whose untrusted output could have carried a value."""

    call: int
    """Its number in the session, from 1."""
    tool: str
    decision_id: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {"call": self.call, "tool": self.tool, "decision_id": self.decision_id}


@dataclass(frozen=True, slots=True)
class ValueProvenance:
    """Where a parameter's value was seen before the action (docs/policies/explain.md)."""

    origin: str
    """``user``, ``trusted``, ``untrusted``, ``pointed`` or ``unseen``."""
    sources: tuple[ValueSource, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        return {"origin": self.origin, "sources": [s.to_doc() for s in self.sources]}


@dataclass(frozen=True, slots=True)
class VerdictChange:
    """What would change a verdict, as far as the policy can say (docs/policies/explain.md)."""

    kind: str
    """``none``, ``value``, ``provenance``, ``approval``, ``fact``, ``resolution``, ``context``,
    ``request``, ``intent``, ``session``, ``identity``, ``signal`` or ``catalogue``."""
    text: str
    approver_group: str = ""
    fact: str = ""
    threshold: float | None = None
    value: float | None = None
    """The value the rule compared with ``threshold``."""
    context_needed: tuple[str, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        """As JSON: ``kind`` and ``text``, and the members that are set."""
        doc: dict[str, Any] = {"kind": self.kind, "text": self.text}
        if self.approver_group:
            doc["approver_group"] = self.approver_group
        if self.fact:
            doc["fact"] = self.fact
        if self.threshold is not None:
            doc["threshold"] = self.threshold
        if self.value is not None:
            doc["value"] = self.value
        if self.context_needed:
            doc["context_needed"] = list(self.context_needed)
        return doc


@dataclass(frozen=True, slots=True)
class Reason:
    """One rule's part in a verdict, with its explanation when the policy gives one:
    the parameter it decided on, where that value came from, what would change it."""

    code: str
    rule_id: str
    message: str
    param: str | None = None
    """The top-level parameter the rule decided on; None: the tool or session as a whole."""
    provenance: ValueProvenance | None = None
    would_change: VerdictChange | None = None

    def to_doc(self) -> dict[str, Any]:
        """As JSON (``dataclasses.asdict`` without its deep copy); the explanation members
        only when set, so a reason without one is what it always was."""
        doc: dict[str, Any] = {"code": self.code, "rule_id": self.rule_id, "message": self.message}
        if self.param is not None:
            doc["param"] = self.param
        if self.provenance is not None:
            doc["provenance"] = self.provenance.to_doc()
        if self.would_change is not None:
            doc["would_change"] = self.would_change.to_doc()
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Reason:
        """From :meth:`to_doc`'s JSON (a ticket's stored reasons; older ones lack the
        explanation members)."""
        prov = doc.get("provenance")
        change = doc.get("would_change")
        return cls(
            code=str(doc.get("code", "")),
            rule_id=str(doc.get("rule_id", "")),
            message=str(doc.get("message", "")),
            param=doc.get("param"),
            provenance=None
            if not isinstance(prov, Mapping)
            else ValueProvenance(
                origin=str(prov.get("origin", "")),
                sources=tuple(
                    ValueSource(
                        call=int(s.get("call", 0)),
                        tool=str(s.get("tool", "")),
                        decision_id=str(s.get("decision_id", "")),
                    )
                    for s in prov.get("sources") or ()
                    if isinstance(s, Mapping)
                ),
            ),
            would_change=None
            if not isinstance(change, Mapping)
            else VerdictChange(
                kind=str(change.get("kind", "")),
                text=str(change.get("text", "")),
                approver_group=str(change.get("approver_group", "")),
                fact=str(change.get("fact", "")),
                threshold=change.get("threshold"),
                value=change.get("value"),
                context_needed=tuple(str(c) for c in change.get("context_needed") or ()),
            ),
        )


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
