"""The client's framework adapters against the real service and real OPA, through each
framework's own tool invocation path (no model: the OpenAI Agents SDK's ScriptedModel
emits the tool calls, LangChain tools are invoked directly): ALLOW, MODIFY in the tool's
types, DENY as the tool's output, STEP_UP waited for, DEFER answered."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aarm.v1 import approval_pb2
from aarm_pdp.config import ApprovalConfig
from aarm_pdp_client import (
    ApprovalInfo,
    AsyncClient,
    AsyncSession,
    Client,
    DeferralInfo,
    Fact,
    Identity,
    Trust,
)
from aarm_pdp_client.adapters.langchain import aarm_tool
from aarm_pdp_client.adapters.openai_agents import aarm_guarded
from agents import Agent, RunConfig, Runner, ToolCallOutputItem, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call
from langchain_core.tools import tool

from tests.support.grpc_clients import Clients, bearer
from tests.support.principals import PLATFORM_TOKEN
from tests.support.service import running as serving
from tests.support.service import service_config, with_approvers

pytestmark = pytest.mark.integration

APPROVERS = {"bob-token": ("bob@acme.example", ["data-owners", "finance-approvers"])}
TRANSFER = {
    "amount": 50000,
    "currency": "USD",
    "to_account": "GB29NWBK6016",
    "from_account": "ACME-OPS-1",
}
CALLS: list[tuple[str, dict[str, Any]]] = []

# The user's request names the kinds of action the tests run (a query, a payment, a
# credential rotation), so the session's derived scope covers them and drift stays low:
# these tests are about the adapters' verdict handling, not about scope.
WEEKLY_OPS = "weekly ops: query the orders, pay the vendor, rotate the prod-payments credentials"


def me(session: str) -> Identity:
    return Identity(
        tenant="acme",
        human="alice@acme.example",
        service="agent-platform",
        agent="agent-7",
        session_id=session,
    )


@contextlib.asynccontextmanager
async def service(opa_binary: str, tmp: Path) -> AsyncIterator[tuple[str, Clients]]:
    cfg = service_config(opa_binary)
    cfg = replace(
        cfg,
        auth=with_approvers(tmp, APPROVERS),
        approvals=ApprovalConfig(sweep_interval_seconds=0.1),
    )
    CALLS.clear()
    async with serving(cfg.validate()) as (app, clients):
        yield f"127.0.0.1:{app.port}", clients


def approve(c: Clients) -> Any:
    """on_step_up: the approver grants while the tool call waits."""

    async def resolve(info: ApprovalInfo) -> None:
        await c.approvals.ResolveApproval(
            approval_pb2.ResolveApprovalRequest(
                approval_id=info.approval_id, grant=True, reason="invoice checked"
            ),
            metadata=bearer("bob-token"),
        )

    return resolve


def maintenance_window(info: DeferralInfo) -> list[Fact]:
    """context_provider: the change calendar (a source the policy trusts for this fact)."""
    assert info.context_needed == ("maintenance_window",)
    return [Fact("maintenance_window", True, source="change-calendar")]


# --- the tools, as each framework declares them -------------------------------------------


def _query(table: str, limit: int) -> str:
    assert type(limit) is int, limit
    CALLS.append(("query", {"table": table, "limit": limit}))
    return f"{limit} rows of {table}"


def _drop(database: str) -> str:
    CALLS.append(("drop", {"database": database}))
    return "dropped"


def _transfer(amount: int, currency: str, to_account: str, from_account: str) -> str:
    CALLS.append(("transfer", {"amount": amount}))
    return f"sent {amount} {currency}"


def _rotate(target: str) -> str:
    CALLS.append(("rotate", {"target": target}))
    return f"rotated {target}"


# --- OpenAI Agents SDK ---------------------------------------------------------------------


def openai_tools(session: AsyncSession, c: Clients) -> list[Any]:
    return [
        aarm_guarded(
            function_tool(_query, name_override="query"),
            session,
            action="db.query",
            trust=Trust.TRUSTED,
        ),
        aarm_guarded(function_tool(_drop, name_override="drop"), session, action="database.drop"),
        aarm_guarded(
            function_tool(_transfer, name_override="transfer"),
            session,
            action="payments.transfer",
            on_step_up=approve(c),
            approval_wait=30,
        ),
        aarm_guarded(
            function_tool(_rotate, name_override="rotate"),
            session,
            action="credentials.rotate",
            context_provider=maintenance_window,
        ),
    ]


async def test_openai_agents_tool_guardrail(opa_binary: str, tmp_path: Path) -> None:
    async with service(opa_binary, tmp_path) as (target, c):
        client = AsyncClient(target, token=PLATFORM_TOKEN)
        async with client, await client.start_session(me("s-oai"), WEEKLY_OPS) as session:
            model = ScriptedModel(
                [
                    [
                        function_call("query", {"table": "orders", "limit": 7}, call_id="c1"),
                        function_call("query", {"table": "customers", "limit": 5000}, call_id="c2"),
                        function_call("drop", {"database": "production"}, call_id="c3"),
                        function_call("transfer", TRANSFER, call_id="c4"),
                        function_call("rotate", {"target": "prod-payments"}, call_id="c5"),
                    ],
                    [assistant_message("done")],
                ]
            )
            agent = Agent(name="ops", model=model, tools=openai_tools(session, c))
            result = await Runner.run(
                agent, "weekly ops", run_config=RunConfig(tracing_disabled=True)
            )
        assert result.final_output == "done"
        outputs = {
            item.raw_item["call_id"]: str(item.output)
            for item in result.new_items
            if isinstance(item, ToolCallOutputItem)
        }
        assert outputs["c1"] == "7 rows of orders"
        assert outputs["c2"] == "1000 rows of customers"  # MODIFY, an int for the tool
        assert outputs["c3"].startswith("Not run: the action was refused by policy (DENY)")
        assert "forbidden" in outputs["c3"]
        assert outputs["c4"] == "sent 50000 USD"  # STEP_UP, approved, re-submitted
        assert outputs["c5"] == "rotated prod-payments"  # DEFER, context provided
        assert sorted(name for name, _ in CALLS) == ["query", "query", "rotate", "transfer"]
        assert ("query", {"table": "customers", "limit": 1000}) in CALLS


# --- LangChain ------------------------------------------------------------------------------


lc_query = tool(_query, description="Query a table.")
lc_drop = tool(_drop, description="Drop a database.")
lc_transfer = tool(_transfer, description="Transfer money.")
lc_rotate = tool(_rotate, description="Rotate a credential.")


async def test_langchain_tool_wrapper_async(opa_binary: str, tmp_path: Path) -> None:
    async with service(opa_binary, tmp_path) as (target, c):
        client = AsyncClient(target, token=PLATFORM_TOKEN)
        async with client, await client.start_session(me("s-lc"), WEEKLY_OPS) as session:
            query = aarm_tool(lc_query, session, action="db.query", trust=Trust.TRUSTED)
            drop = aarm_tool(lc_drop, session, action="database.drop")
            transfer = aarm_tool(
                lc_transfer,
                session,
                action="payments.transfer",
                on_step_up=approve(c),
                approval_wait=30,
            )
            rotate = aarm_tool(
                lc_rotate, session, action="credentials.rotate", context_provider=maintenance_window
            )
            assert query.name == "_query" and query.args == lc_query.args
            assert await query.ainvoke({"table": "orders", "limit": 7}) == "7 rows of orders"
            got = await query.ainvoke({"table": "customers", "limit": 5000})
            assert got == "1000 rows of customers"
            denied = await drop.ainvoke({"database": "production"})
            assert denied.startswith("Not run: the action was refused by policy (DENY)")
            # A tool call as a LangGraph ToolNode makes it: a ToolMessage comes back.
            msg = await transfer.ainvoke(
                {"type": "tool_call", "id": "t1", "name": "_transfer", "args": TRANSFER}
            )
            assert msg.content == "sent 50000 USD" and msg.tool_call_id == "t1"
            assert await rotate.ainvoke({"target": "prod-payments"}) == "rotated prod-payments"
        assert [name for name, _ in CALLS] == ["query", "query", "transfer", "rotate"]


async def test_langchain_tool_wrapper_blocking(opa_binary: str, tmp_path: Path) -> None:
    async with service(opa_binary, tmp_path) as (target, c):
        loop = asyncio.get_running_loop()
        resolve = approve(c)

        def on_step_up(info: ApprovalInfo) -> None:
            asyncio.run_coroutine_threadsafe(resolve(info), loop)

        def agent() -> list[Any]:
            with (
                Client(target, token=PLATFORM_TOKEN) as client,
                client.start_session(me("s-lc-sync"), WEEKLY_OPS) as session,
            ):
                query = aarm_tool(lc_query, session, action="db.query")
                drop = aarm_tool(lc_drop, session, action="database.drop", raise_on_deny=True)
                transfer = aarm_tool(
                    lc_transfer,
                    session,
                    action="payments.transfer",
                    on_step_up=on_step_up,
                    approval_wait=30,
                )
                out: list[Any] = [query.invoke({"table": "customers", "limit": 5000})]
                try:
                    drop.invoke({"database": "production"})
                except Exception as exc:
                    out.append(type(exc).__name__)
                out.append(transfer.invoke(TRANSFER))
                return out

        got = await asyncio.to_thread(agent)
        assert got == ["1000 rows of customers", "ToolException", "sent 50000 USD"]
        assert [name for name, _ in CALLS] == ["query", "transfer"]
