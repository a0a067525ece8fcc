"""Results, checks and the items (checklist rows and scenarios) they roll up into."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Result(enum.StrEnum):
    """The outcome of one check (and, rolled up, of one item)."""

    PASS = "pass"  # noqa: S105 - a result name, not a password
    FAIL = "fail"
    NOT_APPLICABLE = "not-applicable"
    NOT_IMPLEMENTED = "not-implemented"
    NOT_CHECKABLE = "not-checkable"


@dataclass
class Check:
    """One observation about one item."""

    description: str
    result: Result
    evidence: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "result": self.result.value,
            "evidence": self.evidence,
        }


@dataclass
class Item:
    """A checklist row (``row 12``) or a scenario (``S12``)."""

    id: str
    requirement: str
    """R1..R9, a component name, or the scenario's threat class."""
    level: str
    """MUST, SHOULD or N/A."""
    title: str
    expected: str
    checks: list[Check] = field(default_factory=list)

    @property
    def result(self) -> Result:
        """Any fail: fail. Any not-implemented part: not-implemented. Else pass if any
        check passed (the rest not checkable here). Else the first check's status."""
        results = [c.result for c in self.checks]
        if not results:
            return Result.FAIL
        if Result.FAIL in results:
            return Result.FAIL
        if Result.NOT_IMPLEMENTED in results:
            return Result.NOT_IMPLEMENTED
        if Result.PASS in results:
            return Result.PASS
        return results[0]

    @property
    def applicable_must(self) -> bool:
        return self.level == "MUST" and self.result not in (
            Result.NOT_APPLICABLE,
            Result.NOT_CHECKABLE,
        )

    def evidence(self) -> list[str]:
        return [e for c in self.checks for e in c.evidence]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "requirement": self.requirement,
            "level": self.level,
            "title": self.title,
            "expected": self.expected,
            "result": self.result.value,
            "checks": [c.as_dict() for c in self.checks],
        }
