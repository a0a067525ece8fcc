"""Turn OPA's answer into a :class:`DecisionResult`. PURE: no I/O.

A reason's explanation (``param``, ``provenance``, ``would_change``:
docs/policies/explain.md) is optional, and null or absent for an overlay's reasons; when
present it is checked like the rest, its strings value-redacted like the message, and
the compared ``value`` of a secret-named parameter left out.

Anything that is not exactly a valid decision document raises
:class:`~aarm_pdp.errors.DecisionUndefined` or :class:`~aarm_pdp.errors.DecisionMalformed`;
the engine answers those with DENY. There is no path from a bad document to ALLOW.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from aarm_pdp.errors import DecisionMalformed, DecisionUndefined
from aarm_pdp.model.decision import (
    Approval,
    Decision,
    DecisionResult,
    Deferral,
    Reason,
    RiskLevel,
    ValueProvenance,
    ValueSource,
    VerdictChange,
)
from aarm_pdp.model.levels import LEVELS
from aarm_pdp.model.redaction import is_secret_name, redact_values

MAX_REASONS = 64
MAX_TEXT = 1024
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600

_VERDICTS = {v.value: v for v in Decision}
_LEVELS = {v.value: v for v in RiskLevel}
DATA_LEVELS = LEVELS


def _str(doc: dict[str, Any], key: str, where: str, *, allow_empty: bool = False) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise DecisionMalformed(f"{where}.{key} must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise DecisionMalformed(f"{where}.{key} longer than {MAX_TEXT}")
    return value


def _str_list(value: Any, where: str, *, non_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise DecisionMalformed(f"{where} must be a list of non-empty strings")
    if non_empty and not value:
        raise DecisionMalformed(f"{where} must not be empty")
    if len(value) > MAX_REASONS:
        raise DecisionMalformed(f"{where} has more than {MAX_REASONS} entries")
    return tuple(value)


def _timeout(doc: dict[str, Any], where: str) -> int:
    value = doc.get("timeout_seconds")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecisionMalformed(f"{where}.timeout_seconds must be a number")
    if value != int(value) or not 0 < value <= MAX_TIMEOUT_SECONDS:
        raise DecisionMalformed(f"{where}.timeout_seconds out of range")
    return int(value)


def _obj(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise DecisionMalformed(f"{key} must be an object")
    return value


def _opt_str(doc: dict[str, Any], key: str, where: str) -> str:
    """An optional string member: "" when absent or null, value-redacted."""
    value = doc.get(key)
    if value is None:
        return ""
    return redact_values(_str(doc, key, where))


def _number(doc: dict[str, Any], key: str, where: str) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DecisionMalformed(f"{where}.{key} must be a finite number")
    return value


@functools.lru_cache(maxsize=1024)
def _secret_param(name: str) -> bool:
    """:func:`is_secret_name`, remembered: parameter names repeat on every decision."""
    return is_secret_name(name)


def _provenance(value: Any, where: str) -> ValueProvenance | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DecisionMalformed(f"{where} must be an object or null")
    sources = value.get("sources", [])
    if not isinstance(sources, list) or len(sources) > MAX_REASONS:
        raise DecisionMalformed(f"{where}.sources must be a list of at most {MAX_REASONS}")
    out = []
    for i, src in enumerate(sources):
        at = f"{where}.sources[{i}]"
        call = src.get("call") if isinstance(src, dict) else None
        if isinstance(call, bool) or not isinstance(call, int) or call < 0:
            raise DecisionMalformed(f"{at}.call must be a non-negative integer")
        out.append(
            ValueSource(
                call=call,
                tool=redact_values(_str(src, "tool", at, allow_empty=True)),
                decision_id=redact_values(_str(src, "decision_id", at, allow_empty=True)),
            )
        )
    return ValueProvenance(origin=_str(value, "origin", where), sources=tuple(out))


def _change(value: Any, where: str, param: str | None) -> VerdictChange | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DecisionMalformed(f"{where} must be an object or null")
    compared = _number(value, "value", where)
    if compared is not None and param is not None and _secret_param(param):
        compared = None  # the value of a secret-named parameter is not repeated
    needed = value.get("context_needed")
    return VerdictChange(
        kind=_str(value, "kind", where),
        text=redact_values(_str(value, "text", where)),
        approver_group=_opt_str(value, "approver_group", where),
        fact=_opt_str(value, "fact", where),
        threshold=_number(value, "threshold", where),
        value=compared,
        context_needed=()
        if needed is None
        else tuple(redact_values(v) for v in _str_list(needed, f"{where}.context_needed")),
    )


def _reasons(value: Any) -> tuple[Reason, ...]:
    if not isinstance(value, list) or not value:
        raise DecisionMalformed("reasons must be a non-empty list")
    if len(value) > MAX_REASONS:
        raise DecisionMalformed(f"more than {MAX_REASONS} reasons")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise DecisionMalformed(f"reasons[{i}] must be an object")
        where = f"reasons[{i}]"
        param = None if item.get("param") is None else redact_values(_str(item, "param", where))
        out.append(
            Reason(
                code=_str(item, "code", where),
                rule_id=_str(item, "rule_id", where),
                message=redact_values(_str(item, "message", where)),
                param=param,
                provenance=_provenance(item.get("provenance"), f"{where}.provenance"),
                would_change=_change(item.get("would_change"), f"{where}.would_change", param),
            )
        )
    return tuple(out)


def parse_result(body: Any) -> DecisionResult:
    """Parse an OPA Data API response body (``{"result": {...}}``) into a DecisionResult."""
    if not isinstance(body, dict):
        raise DecisionMalformed("response body is not an object")
    if "result" not in body:
        raise DecisionUndefined("decision is undefined for this input")
    doc = body["result"]
    if not isinstance(doc, dict):
        raise DecisionMalformed("result is not an object")

    raw_verdict = doc.get("decision")
    verdict = _VERDICTS.get(raw_verdict) if isinstance(raw_verdict, str) else None
    if verdict is None:
        raise DecisionMalformed("decision is missing or not one of the five verdicts")

    reasons = _reasons(doc.get("reasons"))
    matched = _str_list(doc.get("matched_rules"), "matched_rules")

    risk = _obj(doc, "risk")
    raw_level = risk.get("level")
    level = _LEVELS.get(raw_level) if isinstance(raw_level, str) else None
    if level is None:
        raise DecisionMalformed("risk.level must be LOW, MEDIUM, HIGH or CRITICAL")
    score = risk.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise DecisionMalformed("risk.score must be a finite number")
    if not 0.0 <= score <= 1.0:
        raise DecisionMalformed("risk.score must be within [0, 1]")

    modified: dict[str, Any] | None = None
    approval: Approval | None = None
    deferral: Deferral | None = None
    if verdict is Decision.MODIFY:
        modified = _obj(doc, "modified_parameters")
    elif "modified_parameters" in doc:
        raise DecisionMalformed("modified_parameters present without MODIFY")
    if verdict is Decision.STEP_UP:
        a = _obj(doc, "approval")
        approval = Approval(
            approvers=_str_list(a.get("approvers"), "approval.approvers", non_empty=True),
            timeout_seconds=_timeout(a, "approval"),
        )
    elif "approval" in doc:
        raise DecisionMalformed("approval present without STEP_UP")
    if verdict is Decision.DEFER:
        d = _obj(doc, "deferral")
        deferral = Deferral(
            trigger=_str(d, "trigger", "deferral"),
            context_needed=_str_list(
                d.get("context_needed"), "deferral.context_needed", non_empty=True
            ),
            timeout_seconds=_timeout(d, "deferral"),
        )
    elif "deferral" in doc:
        raise DecisionMalformed("deferral present without DEFER")

    data_classification = doc.get("data_classification")
    if data_classification is not None and data_classification not in DATA_LEVELS:
        raise DecisionMalformed("data_classification must be PUBLIC..RESTRICTED")
    data_labels: tuple[str, ...] = ()
    if "data_labels" in doc:
        data_labels = _str_list(doc["data_labels"], "data_labels")

    return DecisionResult(
        decision=verdict,
        reasons=reasons,
        matched_rules=matched,
        risk_level=level,
        risk_score=float(score),
        modified_parameters=modified,
        approval=approval,
        deferral=deferral,
        data_classification=data_classification,
        data_labels=data_labels,
    )
