"""input.analysis: the catalogue's analysed types, the facts computed before policy, the
session's payment totals, and the engine step that puts them in the input (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aarm_pdp.analysis import ANALYSIS_VERSION, TYPES, analyse
from aarm_pdp.api.validation import to_action_request
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.engine import DecisionEngine
from aarm_pdp.decision.input import build_input, empty_amounts, empty_analysis, empty_context
from aarm_pdp.errors import OpaUnavailable
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.opa.fake import FakePolicyEngine
from aarm_pdp.session import state as st
from aarm_pdp.session.catalogue import Catalogue, ToolInfo
from aarm_pdp.session.context import SessionContext
from aarm_pdp.session.store import MemorySessionStore

from tests.support.messages import decide_request, verdict_doc

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE_DOC: dict[str, Any] = json.loads(
    (ROOT / "rego" / "aarm" / "catalogue" / "data.json").read_text(encoding="utf-8")
)
CATALOGUE = Catalogue.from_policy_data(CATALOGUE_DOC["tools"])
NOW = 1_795_658_400_000_000_000
S = 1_000_000_000


def _request(tool: str, operation: str, parameters: dict[str, Any], session: str = "s-1") -> Any:
    ident = {
        "tenant": "acme",
        "human": "alice@acme.example",
        "service": "agent-platform",
        "agent": "agent-7",
        "session_id": session,
    }
    msg = decide_request(tool, operation, parameters, identity=ident)
    return to_action_request(msg, LimitsConfig())


# --- the catalogue's analysis key -----------------------------------------------------------


def test_the_catalogue_declares_the_types_the_service_analyses() -> None:
    assert sorted(CATALOGUE_DOC["analysis_types"]) == sorted(TYPES)


def test_catalogue_reads_analysis_declarations() -> None:
    assert CATALOGUE.analysis_types("db.execute") == {
        "sql": {"type": "sql", "database": "database", "environment": "environment"},
        "database": "name",
        "environment": "name",
    }
    assert CATALOGUE.analysis_types("shell.exec") == {
        "command": {"type": "shell", "cwd": "cwd"},
        "cwd": "path",
    }
    assert CATALOGUE.analysis_types("email.send") == {"to": "email", "cc": "email", "bcc": "email"}
    assert CATALOGUE.analysis_types("crm.query") == {}
    assert CATALOGUE.analysis_types("no.such_tool") == {}


def test_catalogue_skips_malformed_analysis_declarations() -> None:
    cat = Catalogue.from_policy_data(
        {
            "x.y": {
                "category": "read",
                "parameters": {
                    "a": {"analysis": "yaml"},
                    "b": {"analysis": {"type": "sql", "database": 7}},
                    "c": {"analysis": {"type": "url"}},
                    "d": {"analysis": 3},
                    "e": "not a spec",
                },
            },
            "z.w": {"category": "read", "parameters": "nope"},
        }
    )
    assert cat.analysis_types("x.y") == {"c": {"type": "url"}}
    assert cat.analysis_types("z.w") == {}
    assert ToolInfo(category="read", trusted_output=True).analysis == {}


def test_every_corpus_parameter_of_the_old_stand_in_is_typed() -> None:
    """param_types.json (the stand-in the corpus used) is ported: the same types, now
    from the catalogue, with the SQL connection companions added."""
    assert CATALOGUE.analysis_types("payments.transfer") == {
        "amount": {"type": "amount", "currency": "currency"}
    }
    assert CATALOGUE.analysis_types("db.query")["where"] == {
        "type": "sql_condition",
        "database": "database",
        "environment": "environment",
    }
    assert CATALOGUE.analysis_types("database.drop") == {"database": "name"}
    assert CATALOGUE.analysis_types("file.delete") == {"path": "path"}
    assert CATALOGUE.analysis_types("http.post") == {"url": "url"}
    assert not (ROOT / "tests" / "cases" / "evasion" / "param_types.json").exists()


@pytest.mark.parametrize(
    ("name", "parameters", "want"),
    [
        ("payments.transfer", {"amount": 9999, "currency": "EUR"}, ("EUR", 9999.0)),
        ("payments.refund", {"amount": "USD 20", "currency": "EUR"}, ("USD", 20.0)),
        ("payments.transfer", {"amount": 5}, ("", 5.0)),
        ("payments.transfer", {"amount": -50, "currency": "EUR"}, None),
        ("payments.transfer", {"amount": "NaN", "currency": "EUR"}, None),
        ("payments.transfer", {"currency": "EUR"}, None),
        ("db.query", {"limit": 10}, None),
        ("payments.transfer", "not an object", None),
    ],
)
def test_payment_of_a_call(name: str, parameters: Any, want: tuple[str, float] | None) -> None:
    assert CATALOGUE.payment(name, parameters) == want


# --- session payment totals -------------------------------------------------------------------


def _decide(state: st.SessionState, n: int, verdict: str, pay: tuple[str, float] | None) -> None:
    st.record_decision(
        state,
        decision_id=f"d-{n}",
        name="payments.transfer",
        category="financial",
        verdict=verdict,
        classification=None,
        labels=(),
        defer_depth=0,
        drift=None,
        now_ns=NOW + n * 600 * S,
        payment=pay,
    )


def test_payments_add_up_per_session_and_window() -> None:
    state = st.new_session("s", tenant="t", human="h", service="x", agent="a", now_ns=NOW)
    for n in range(30):
        _decide(state, n, "ALLOW" if n == 0 else "STEP_UP", ("EUR", 9999.0))
    _decide(state, 30, "DENY", ("EUR", 1_000_000.0))  # a denied payment never runs
    _decide(state, 31, "ALLOW", None)
    _decide(state, 32, "ALLOW", ("USD", 1.5))
    totals = st.amount_totals(state, NOW + 32 * 600 * S)
    assert totals["session"] == {
        "count": 31,
        "total": 299_971.5,
        "by_currency": {"EUR": 299_970.0, "USD": 1.5},
    }
    # Decisions are 10 minutes apart: the last hour holds decisions 27 to 32, of which
    # 27, 28, 29 and 32 paid (30 was denied, 31 paid nothing).
    assert totals["windows"]["3600"]["count"] == 4
    assert totals["windows"]["3600"]["total"] == 3 * 9999.0 + 1.5
    assert totals["windows"]["86400"]["count"] == 31
    # Serialised and read back (the Redis store shares the codec).
    again = st.SessionState.from_bytes(state.to_bytes())
    assert st.amount_totals(again, NOW + 32 * 600 * S) == totals
    assert st.summary(state, NOW + 32 * 600 * S)["payments"] == totals


def test_payment_window_list_is_bounded_and_ordered() -> None:
    state = st.new_session("s", tenant="t", human="h", service="x", agent="a", now_ns=NOW)
    for n in range(st.MAX_PAYMENTS + 10):
        st.record_payment(state, currency="EUR", amount=1.0, now_ns=NOW + n)
    st.record_payment(state, currency="EUR", amount=1.0, now_ns=NOW)  # the clock stepped back
    assert len(state.payments) == st.MAX_PAYMENTS
    assert [p[0] for p in state.payments] == sorted(p[0] for p in state.payments)
    assert state.pay_count == st.MAX_PAYMENTS + 11
    assert st.amount_totals(state, NOW + 86_401 * S)["windows"]["86400"]["count"] == 0
    assert st.amount_totals(state, NOW + 86_401 * S)["session"]["total"] == st.MAX_PAYMENTS + 11


# --- the input builder ---------------------------------------------------------------------------


def test_input_carries_analysis_and_amounts() -> None:
    req = _request("db", "execute", {"sql": "DROP/**/TABLE users", "database": "production"})
    facts = analyse(req.action.parameters, CATALOGUE.analysis_types("db.execute"))
    context = empty_context()
    context["session"] = {
        **context["session"],
        "payments": st.amount_totals(
            st.new_session("s", tenant="t", human="h", service="x", agent="a", now_ns=NOW), NOW
        ),
    }
    doc = build_input(req, now_ns=NOW, context=context, analysis=facts)
    analysis = doc["analysis"]
    assert analysis["version"] == ANALYSIS_VERSION
    assert analysis["parameters"]["sql"]["commands"] == ["DROP TABLE"]
    assert analysis["parameters"]["database"]["tokens"] == ["production"]
    assert analysis["unparsed"] == []
    assert analysis["amounts"] == empty_amounts()
    # The totals move from the session summary to analysis.amounts.
    assert "payments" not in doc["session"]
    assert "payments" in context["session"]
    json.dumps(doc)


def test_input_without_analysis_or_context_is_complete() -> None:
    req = _request("crm", "query", {"query": "x"})
    doc = build_input(req, now_ns=NOW)
    assert doc["analysis"] == {**empty_analysis(), "amounts": empty_amounts()}
    assert set(doc["analysis"]["amounts"]["windows"]) == {"3600", "86400"}


# --- the engine: the facts are computed before policy --------------------------------------------


def _engine(
    *, catalogue: Any = None, sessions: Any = None
) -> tuple[DecisionEngine, FakePolicyEngine]:
    fake = FakePolicyEngine(
        lambda _: verdict_doc("ALLOW"),
        catalogue=CATALOGUE_DOC["tools"] if catalogue is None else catalogue,
    )
    return DecisionEngine(fake, Metrics(), clock_ns=lambda: NOW, sessions=sessions), fake


async def test_engine_analyses_the_declared_parameters() -> None:
    engine, fake = _engine()
    await engine.refresh_policy_version()
    await engine.decide(
        _request("shell", "exec", {"command": "cd / && rm -rf *", "timeout_seconds": 5})
    )
    facts = fake.calls[0]["analysis"]["parameters"]
    assert set(facts) == {"command"}
    assert facts["command"]["effects"]["root_wipe"] is True
    # An undeclared tool's parameters cost nothing: no facts, nothing parsed.
    await engine.decide(_request("crm", "query", {"query": "DROP TABLE users"}))
    assert fake.calls[1]["analysis"]["parameters"] == {}


async def test_engine_parses_long_texts_off_the_event_loop() -> None:
    engine, fake = _engine()
    await engine.refresh_policy_version()
    long_sql = "SELECT 1;" * 400 + " DROP TABLE users"
    await engine.decide(_request("db", "execute", {"sql": long_sql}))
    assert fake.calls[0]["analysis"]["parameters"]["sql"]["destructive"] is True


async def test_engine_without_a_catalogue_sends_no_facts() -> None:
    """Before the first refresh (or with a policy that has no catalogue) nothing is
    analysed; the pack denies a declared parameter that arrives without facts."""
    engine, fake = _engine()
    await engine.decide(_request("db", "execute", {"sql": "DROP TABLE users"}))
    assert fake.calls[0]["analysis"]["parameters"] == {}


async def test_engine_keeps_its_catalogue_when_the_policy_cannot_say() -> None:
    engine, fake = _engine()
    await engine.refresh_policy_version()

    async def down() -> Any:
        raise OpaUnavailable("down")

    fake.tool_catalogue = down  # type: ignore[method-assign]
    await engine.refresh_policy_version()
    await engine.decide(_request("http", "get", {"url": "http://evil%2ecom/x"}))
    assert fake.calls[0]["analysis"]["parameters"]["url"]["host"] == "evil.com"


async def test_engine_session_sums_payments_into_the_input() -> None:
    store = MemorySessionStore()
    sessions = SessionContext(store, lambda: CATALOGUE)
    engine, fake = _engine(sessions=sessions)
    await engine.refresh_policy_version()
    pay = {"amount": 9999, "currency": "EUR", "to_account": "DE89370400440532013000"}
    for _ in range(3):
        await engine.decide(_request("payments", "transfer", pay, session="split"))
    totals = [c["analysis"]["amounts"]["session"] for c in fake.calls]
    assert totals == [
        {"count": 0, "total": 0, "by_currency": {}},
        {"count": 1, "total": 9999.0, "by_currency": {"EUR": 9999.0}},
        {"count": 2, "total": 19998.0, "by_currency": {"EUR": 19998.0}},
    ]
    assert fake.calls[2]["analysis"]["parameters"]["amount"]["value"] == 9999.0
