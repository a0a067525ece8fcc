"""Validate a DecideRequest and turn it into plain data, in one bounded pass.

Every input is bounded here, before anything else sees it: names, sizes, depth, node
counts, numbers. A violation raises :class:`~aarm_pdp.errors.RequestInvalid` with a
message naming the field and the limit (never echoing the value).
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from aarm_pdp.config import LimitsConfig as Limits
from aarm_pdp.errors import RequestInvalid
from aarm_pdp.model.request import Action, ActionRequest, Delegation, Fact, Identity
from aarm_pdp.model.timestamps import rfc3339

# Tool and operation names: letters, digits, '_' and '-' (dots separate tool and operation).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")
# Fact names: dotted lowercase paths such as "maintenance_window" or "ticket.state".
FACT_RE = re.compile(r"[a-z][a-z0-9_]{0,63}(\.[a-z][a-z0-9_]{0,63}){0,7}")
MAX_ID = 256
_MAX_SAFE_INT = 2**53


class _Budget:
    __slots__ = ("left",)

    def __init__(self, nodes: int) -> None:
        self.left = nodes


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
RESERVED_SESSION_PREFIX = "aarm:"
"""Session ids the service keeps for itself (the revocation chain, ``aarm:revocations``)."""


def _ident(value: str, field: str, *, required: bool = False) -> str:
    if required and not value:
        raise RequestInvalid(f"{field} is required")
    if len(value) > MAX_ID:
        raise RequestInvalid(f"{field} longer than {MAX_ID} characters")
    if _CONTROL.search(value):
        raise RequestInvalid(f"{field} contains control characters")
    return value


def _session_id(value: str) -> str:
    if value.startswith(RESERVED_SESSION_PREFIX):
        raise RequestInvalid(
            f"identity.session_id: {RESERVED_SESSION_PREFIX!r} names the service's own chains"
        )
    return _ident(value, "identity.session_id")


def _ids(values: Any, field: str, limit: int) -> tuple[str, ...]:
    if len(values) > limit:
        raise RequestInvalid(f"{field} has more than {limit} entries")
    return tuple(_ident(v, f"{field}[]", required=True) for v in values)


def _number(x: float, field: str) -> int | float:
    if not math.isfinite(x):
        raise RequestInvalid(f"{field} is not a finite number")
    if x.is_integer() and abs(x) < _MAX_SAFE_INT:
        return int(x)
    return x


def _value(v: struct_pb2.Value, field: str, depth: int, lim: Limits, budget: _Budget) -> Any:
    budget.left -= 1
    if budget.left < 0:
        raise RequestInvalid(f"action.parameters has more than {lim.max_nodes} values")
    kind = v.WhichOneof("kind")
    if kind == "string_value":
        s = v.string_value
        if len(s) > lim.max_string_bytes or len(s.encode()) > lim.max_string_bytes:
            raise RequestInvalid(f"{field}: string longer than {lim.max_string_bytes} bytes")
        return s
    if kind == "number_value":
        return _number(v.number_value, field)
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return _struct(v.struct_value, field, depth + 1, lim, budget)
    if kind == "list_value":
        return _list(v.list_value, field, depth + 1, lim, budget)
    if kind == "null_value":
        return None
    raise RequestInvalid(f"{field}: value has no kind set")


def _list(
    lv: struct_pb2.ListValue, field: str, depth: int, lim: Limits, budget: _Budget
) -> list[Any]:
    if depth > lim.max_depth:
        raise RequestInvalid(f"action.parameters nested deeper than {lim.max_depth}")
    if len(lv.values) > lim.max_list_items:
        raise RequestInvalid(f"{field}: list longer than {lim.max_list_items}")
    return [_value(item, field, depth, lim, budget) for item in lv.values]


def _struct(
    st: struct_pb2.Struct, field: str, depth: int, lim: Limits, budget: _Budget
) -> dict[str, Any]:
    if depth > lim.max_depth:
        raise RequestInvalid(f"action.parameters nested deeper than {lim.max_depth}")
    out: dict[str, Any] = {}
    for key in sorted(st.fields):
        if len(key.encode()) > lim.max_key_bytes:
            raise RequestInvalid(f"{field}: key longer than {lim.max_key_bytes} bytes")
        out[key] = _value(st.fields[key], f"{field}.{key}"[:200], depth, lim, budget)
    return out


def _timestamp(ts: timestamp_pb2.Timestamp, present: bool) -> str:
    if not present:
        return ""
    ns = ts.seconds * 1_000_000_000 + ts.nanos
    return rfc3339(ns)


def to_identity(ident: Any, lim: Limits) -> Identity:
    """Validate an ``aarm.v1.Identity``."""
    delegations = tuple(
        Delegation(
            delegator=_ident(d.delegator, "identity.delegation_chain[].delegator", required=True),
            delegatee=_ident(d.delegatee, "identity.delegation_chain[].delegatee", required=True),
            scopes=_ids(d.scopes, "identity.delegation_chain[].scopes", lim.max_roles),
            issued_at=_timestamp(d.issued_at, d.HasField("issued_at")),
            expires_at=_timestamp(d.expires_at, d.HasField("expires_at")),
        )
        for d in ident.delegation_chain
    )
    if len(delegations) > lim.max_delegations:
        raise RequestInvalid(
            f"identity.delegation_chain has more than {lim.max_delegations} entries"
        )
    return Identity(
        tenant=_ident(ident.tenant, "identity.tenant"),
        human=_ident(ident.human, "identity.human"),
        service=_ident(ident.service, "identity.service"),
        agent=_ident(ident.agent, "identity.agent"),
        session_id=_session_id(ident.session_id),
        roles=_ids(ident.roles, "identity.roles", lim.max_roles),
        delegation_chain=delegations,
        expires_at_ns=ident.expires_at.seconds * 1_000_000_000 + ident.expires_at.nanos
        if ident.HasField("expires_at")
        else 0,
        credential_id=_ident(ident.credential_id, "identity.credential_id"),
    )


def to_action_request(msg: Any, lim: Limits) -> ActionRequest:
    """Validate a ``aarm.v1.DecideRequest`` and return its plain-data form."""
    request_id = _ident(msg.request_id, "request_id")
    identity = to_identity(msg.identity, lim)

    act = msg.action
    if not NAME_RE.fullmatch(act.tool):
        raise RequestInvalid("action.tool must match [A-Za-z0-9][A-Za-z0-9_-]{0,63}")
    if not NAME_RE.fullmatch(act.operation):
        raise RequestInvalid("action.operation must match [A-Za-z0-9][A-Za-z0-9_-]{0,63}")
    if act.original_tool and not NAME_RE.fullmatch(act.original_tool):
        raise RequestInvalid("action.original_tool must match [A-Za-z0-9][A-Za-z0-9_-]{0,63}")
    params = _struct(act.parameters, "action.parameters", 1, lim, _Budget(lim.max_nodes))
    action = Action(
        tool=act.tool,
        operation=act.operation,
        parameters=params,
        depends_on=_ids(act.depends_on, "action.depends_on", lim.max_depends_on),
        original_tool=act.original_tool,
    )

    if len(msg.facts) > lim.max_facts:
        raise RequestInvalid(f"facts has more than {lim.max_facts} entries")
    facts: dict[str, Fact] = {}
    budget = _Budget(lim.max_nodes)
    for f in msg.facts:
        if not FACT_RE.fullmatch(f.name):
            raise RequestInvalid("facts[].name must be a dotted lowercase name")
        if f.name in facts:
            raise RequestInvalid("facts[].name repeated")
        value = _value(f.value, f"facts.{f.name}", 1, lim, budget) if f.HasField("value") else None
        facts[f.name] = Fact(
            value=value,
            source=_ident(f.source, "facts[].source"),
            observed_at=_timestamp(f.observed_at, f.HasField("observed_at")),
        )

    if len(msg.risk_signals) > lim.max_risk_signals:
        raise RequestInvalid(f"risk_signals has more than {lim.max_risk_signals} entries")
    signals: dict[str, float] = {}
    for name, score in msg.risk_signals.items():
        if not FACT_RE.fullmatch(name):
            raise RequestInvalid("risk_signals keys must be lowercase names")
        if not math.isfinite(score):
            raise RequestInvalid("risk_signals values must be finite numbers")
        signals[name] = score

    token = msg.approval_token
    if len(token) > 512 or not re.fullmatch(r"[A-Za-z0-9_.\-]*", token):
        raise RequestInvalid("approval_token is malformed")
    raw = msg.SerializeToString(deterministic=True)
    fingerprint = hashlib.sha256(raw).hexdigest()
    return ActionRequest(
        request_id=request_id,
        identity=identity,
        action=action,
        facts=facts,
        risk_signals=signals,
        fingerprint=fingerprint,
        approval_token=token,
        raw=raw,
    )
