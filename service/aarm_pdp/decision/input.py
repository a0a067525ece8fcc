"""Build the OPA ``input`` document from a request. PURE: no I/O, no clock.

The shape is documented in ``docs/opa-contract.md``; ``INPUT_VERSION`` names it.
Every optional part is present (empty) so policies need no existence guards.

The session part carries what policy reads, not everything the session holds: the
open deferrals of the whole session (``pending_deferrals``) are left out and each of
the ``recent`` actions is cut to ``RECENT_MEMBERS`` (:func:`policy_session`). Those
grow with the session's history and no rule of the pack reads them (OPA decodes every
byte of the input, read or not: docs/performance.md, "Policy input"). The decision
record keeps this input, so it is still exactly what OPA saw.
"""

from __future__ import annotations

from typing import Any

from aarm_pdp.analysis import ANALYSIS_VERSION
from aarm_pdp.model.levels import NO_CLASSIFICATION
from aarm_pdp.model.request import ActionRequest, delegation_doc
from aarm_pdp.model.timestamps import rfc3339
from aarm_pdp.session.state import PAYMENT_WINDOWS

INPUT_VERSION = "aarm.v1"

RECENT_MEMBERS = ("decision_id", "name", "outcome")
"""The members of a ``session.recent`` entry the input carries (what the pack reads:
where untrusted content entered the session, aarm.explain / aarm.provenance)."""

UNSENT_SESSION_MEMBERS = frozenset({"pending_deferrals", "payments"})
"""Members of the session context the input leaves out: the session's open deferrals
(policy reads the ones this action depends on, ``input.dependencies.deferred``) and
the payment totals (moved to ``input.analysis.amounts``)."""


def policy_session(session: dict[str, Any]) -> dict[str, Any]:
    """The ``input.session`` of a session context part: without
    ``UNSENT_SESSION_MEMBERS``, each recent action cut to ``RECENT_MEMBERS``."""
    out = {k: v for k, v in session.items() if k not in UNSENT_SESSION_MEMBERS}
    recent = out.get("recent")
    if recent:
        out["recent"] = [{k: r[k] for k in RECENT_MEMBERS if k in r} for r in recent]
    return out


def empty_amounts() -> dict[str, Any]:
    """``input.analysis.amounts`` of a session with no payment decided yet."""
    none = {"count": 0, "total": 0, "by_currency": {}}
    return {"session": dict(none), "windows": {str(w): dict(none) for w in PAYMENT_WINDOWS}}


def empty_analysis() -> dict[str, Any]:
    """``input.analysis`` of an action with no analysed parameter (the facts part)."""
    return {"version": ANALYSIS_VERSION, "parameters": {}, "unparsed": [], "names": {}}


def empty_context() -> dict[str, Any]:
    """The context parts for a request judged without any session history."""
    return {
        "session": {
            "known": False,
            "original_request": None,
            "action_count": 0,
            "elapsed_seconds": 0,
            "tools_used": [],
            "categories_used": [],
            "highest_classification": NO_CLASSIFICATION,
            "labels": [],
            "untrusted_content": False,
            "counts": {"60": {"all": 0}, "3600": {"all": 0}},
            "recent": [],
            "pending_deferrals": [],
            "artifact_classification": NO_CLASSIFICATION,
        },
        "dependencies": {"deferred": [], "denied": [], "unknown": [], "depth": 0},
        "provenance": {"parameters": {}, "untrusted_only": [], "unseen": []},
        "drift": {
            "action": 0.0,
            "alignment": 1.0,
            "max": 0.0,
            "ema": 0.0,
            "components": {"scope": 0.0, "classification": 0.0, "novelty": 0.0, "chain": 0.0},
            "scope_expansion": False,
            "classification_escalation": False,
        },
    }


def build_input(
    request: ActionRequest,
    *,
    now_ns: int,
    context: dict[str, Any] | None = None,
    analysis: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The versioned OPA input for ``request`` evaluated at ``now_ns``.

    ``context`` holds the ``session``, ``dependencies``, ``provenance`` and ``drift``
    parts computed from the session (see :mod:`aarm_pdp.session.context`).
    ``analysis`` is :func:`aarm_pdp.analysis.analyse` of the action's parameters with
    the catalogue's analysed types; it becomes ``input.analysis`` together with the
    session's payment totals (``session.payments`` of the context, moved to
    ``analysis.amounts``: they are sums of analysed amounts, not session history).
    The session part is :func:`policy_session` of the context's.
    """
    ident = request.identity
    action = request.action
    parts = context if context is not None else empty_context()
    session = parts["session"]
    amounts = session.get("payments") or empty_amounts()
    session = policy_session(session)
    facts = analysis if analysis is not None else empty_analysis()
    return {
        "version": INPUT_VERSION,
        "request_id": request.request_id,
        "now": rfc3339(now_ns),
        "now_ns": now_ns,
        "identity": {
            "tenant": ident.tenant,
            "human": ident.human,
            "service": ident.service,
            "agent": ident.agent,
            "session_id": ident.session_id,
            "roles": list(ident.roles),
            "delegation_chain": [delegation_doc(d) for d in ident.delegation_chain],
            "expires_at": rfc3339(ident.expires_at_ns) if ident.expires_at_ns else "",
        },
        "action": {
            "tool": action.tool,
            "operation": action.operation,
            "name": action.name,
            "parameters": action.parameters,
            "depends_on": list(action.depends_on),
            "original_tool": action.original_tool,
        },
        "facts": {
            name: {"value": f.value, "source": f.source, "observed_at": f.observed_at}
            for name, f in sorted(request.facts.items())
        },
        "risk_signals": dict(sorted(request.risk_signals.items())),
        **parts,
        "session": session,
        "analysis": {**facts, "amounts": amounts},
    }
