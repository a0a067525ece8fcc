"""aarm-pdp-client against the real service and real OPA: every verdict through a Guard,
blocking and asyncio, sessions, STEP_UP waited for and DEFER answered, failing closed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from aarm.v1 import approval_pb2, receipt_pb2
from aarm_pdp.config import ApprovalConfig
from aarm_pdp_client import (
    ActionDeferred,
    ActionDenied,
    ApprovalInfo,
    AsyncClient,
    Client,
    DeferralInfo,
    Fact,
    Identity,
    Trust,
)

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
    async with serving(cfg.validate()) as (app, clients):
        yield f"127.0.0.1:{app.port}", clients


def approver(c: Clients, *, grant: bool = True) -> Any:
    """An on_step_up hook: the approver answers while the guard waits."""
    tasks: list[asyncio.Task[Any]] = []

    async def resolve(info: ApprovalInfo) -> None:
        await c.approvals.ResolveApproval(
            approval_pb2.ResolveApprovalRequest(
                approval_id=info.approval_id, grant=grant, reason="checked the invoice"
            ),
            metadata=bearer("bob-token"),
        )

    def on_step_up(info: ApprovalInfo) -> None:
        tasks.append(asyncio.get_running_loop().create_task(resolve(info)))

    on_step_up.tasks = tasks  # type: ignore[attr-defined]
    return on_step_up


async def test_async_guard_every_verdict(opa_binary: str, tmp_path: Path) -> None:
    async with service(opa_binary, tmp_path) as (target, c):
        client = AsyncClient(target, token=PLATFORM_TOKEN, timeout=10)
        ran: list[tuple[str, dict[str, Any]]] = []

        def query(table: str, limit: int) -> list[dict[str, Any]]:
            assert type(limit) is int, limit  # MODIFY's 1000.0 came back as the int it was
            ran.append(("query", {"table": table, "limit": limit}))
            return [{"id": 1, "note": "from orders"}]

        async with (
            client,
            await client.start_session(me("s-guard"), "summarise last week's orders") as session,
        ):
            rows = await session.run(
                "db", "query", {"table": "orders", "limit": 7}, query, trust=Trust.TRUSTED
            )
            assert rows == [{"id": 1, "note": "from orders"}]
            # MODIFY: the policy caps the limit; the tool gets an int.
            async with session.guard("db", "query", {"table": "customers", "limit": 5000}) as g:
                assert g.verdict is not None and g.verdict.decision == "MODIFY"
                assert g.parameters == {"table": "customers", "limit": 1000}
                await g.record(query(**g.parameters), trust=Trust.TRUSTED)
            assert ran[-1] == ("query", {"table": "customers", "limit": 1000})
            # DENY: raises before the tool runs, with the policy's reasons.
            with pytest.raises(ActionDenied) as denied:
                async with session.guard("database", "drop", {"database": "production"}):
                    raise AssertionError("a denied action ran")
            assert "forbidden" in denied.value.codes and denied.value.decision_id
            assert len(ran) == 2
        # Each allowed action's outcome and the session's end are in the receipt chain.
        listed = await c.receipts.ListReceipts(
            receipt_pb2.ListReceiptsRequest(tenant="acme", session_id="s-guard")
        )
        kinds = [json.loads(r.payload)["kind"] for r in listed.receipts]
        assert kinds.count("outcome") == 2 and kinds[-1] == "session_end"


async def test_async_guard_waits_for_the_approver_and_resubmits(
    opa_binary: str, tmp_path: Path
) -> None:
    async with service(opa_binary, tmp_path) as (target, c):
        hook = approver(c)
        paid: list[dict[str, Any]] = []
        async with AsyncClient(target, token=PLATFORM_TOKEN) as client:
            session = await client.start_session(me("s-stepup"), "pay the supplier invoice")
            async with session:
                async with session.guard(
                    "payments", "transfer", TRANSFER, on_step_up=hook, approval_wait=30
                ) as g:
                    paid.append(g.parameters)
                    await g.record({"status": "sent"}, trust=Trust.TRUSTED)
                assert g.verdict is not None and g.verdict.decision == "ALLOW"
                assert {r.code for r in g.verdict.reasons} == {"approved"}
                assert g.verdict.request_id.endswith(".approved")
        assert paid == [TRANSFER]
        assert len(hook.tasks) == 1 and hook.tasks[0].done()


async def test_a_rejected_approval_is_a_denial(opa_binary: str, tmp_path: Path) -> None:
    async with service(opa_binary, tmp_path) as (target, c):
        async with AsyncClient(target, token=PLATFORM_TOKEN) as client:
            with pytest.raises(ActionDenied) as denied:
                await client.decide(
                    me("s-reject"),
                    "payments",
                    "transfer",
                    TRANSFER,
                    on_step_up=approver(c, grant=False),
                    approval_wait=30,
                )
        assert denied.value.codes == ("approval_rejected",)
        assert denied.value.decision == "STEP_UP"


async def test_an_approval_not_given_within_the_wait_is_a_denial(
    opa_binary: str, tmp_path: Path
) -> None:
    async with service(opa_binary, tmp_path) as (target, _):
        async with AsyncClient(target, token=PLATFORM_TOKEN) as client:
            with pytest.raises(ActionDenied) as denied:
                await client.decide(
                    me("s-wait"), "payments", "transfer", TRANSFER, approval_wait=0.5
                )
        assert denied.value.codes == ("pdp_timeout",)


async def test_defer_asks_the_context_provider_then_runs(opa_binary: str, tmp_path: Path) -> None:
    async with service(opa_binary, tmp_path) as (target, _):
        asked: list[DeferralInfo] = []

        async def provider(info: DeferralInfo) -> list[Fact]:
            asked.append(info)
            return [Fact("maintenance_window", True, source="change-calendar")]

        async with AsyncClient(target, token=PLATFORM_TOKEN) as client:
            session = await client.start_session(me("s-defer"), "rotate the payment keys")
            async with session.guard(
                "credentials", "rotate", {"target": "prod-payments"}, context_provider=provider
            ) as g:
                await g.record("rotated", trust=Trust.TRUSTED)
            verdict = g.verdict
            assert verdict is not None and verdict.decision == "ALLOW"
            assert [i.context_needed for i in asked] == [("maintenance_window",)]
            # The outcome went to the deferred decision, the one the session settled.
            assert verdict.outcome_decision_id == asked[0].decision_id != verdict.decision_id
            # Without a provider DEFER is not run: ActionDeferred says what is missing.
            with pytest.raises(ActionDeferred) as deferred:
                await client.decide(
                    me("s-defer"), "credentials", "rotate", {"target": "prod-ledger"}
                )
            assert deferred.value.deferral.context_needed == ("maintenance_window",)
            assert isinstance(deferred.value, ActionDenied)


async def test_blocking_client_and_guard(opa_binary: str, tmp_path: Path) -> None:
    async with service(opa_binary, tmp_path) as (target, c):
        loop = asyncio.get_running_loop()

        async def resolve(info: ApprovalInfo) -> None:
            await c.approvals.ResolveApproval(
                approval_pb2.ResolveApprovalRequest(
                    approval_id=info.approval_id, grant=True, reason="ok"
                ),
                metadata=bearer("bob-token"),
            )

        def resolve_from_thread(info: ApprovalInfo) -> None:
            # The approver answers on the service's loop while the agent's thread waits.
            asyncio.run_coroutine_threadsafe(resolve(info), loop)

        def agent() -> list[Any]:
            out: list[Any] = []
            with (
                Client(target, token=lambda: PLATFORM_TOKEN) as client,
                client.start_session(me("s-sync"), "tidy the orders") as session,
            ):
                with session.guard("db", "query", {"table": "customers", "limit": 5000}) as g:
                    out.append(g.parameters)
                    g.record([{"id": 2}], trust=Trust.TRUSTED)
                out.append(
                    session.run(
                        "payments",
                        "transfer",
                        TRANSFER,
                        lambda **kw: kw["amount"],
                        on_step_up=resolve_from_thread,
                        approval_wait=30,
                    )
                )
                try:
                    session.decide("database", "drop", {"database": "production"})
                except ActionDenied as exc:
                    out.append(exc.codes)
            return out

        got = await asyncio.to_thread(agent)
        assert got[0] == {"table": "customers", "limit": 1000}
        assert type(got[0]["limit"]) is int
        assert got[1] == 50000
        assert "forbidden" in got[2]


async def test_the_client_fails_closed(opa_binary: str, tmp_path: Path) -> None:
    async with service(opa_binary, tmp_path) as (target, _):
        # No credential: the service refuses, the client denies.
        async with AsyncClient(target) as anonymous:
            with pytest.raises(ActionDenied) as refused:
                await anonymous.decide(me("s-x"), "db", "query", {"table": "orders", "limit": 1})
        assert refused.value.codes == ("pdp_refused",)
    # Nothing listening any more: unavailable after the retries, a denial.
    async with AsyncClient(target, token=PLATFORM_TOKEN, timeout=1, retries=1) as client:
        with pytest.raises(ActionDenied) as down:
            await client.decide(me("s-x"), "db", "query", {"table": "orders", "limit": 1})
    assert down.value.codes[0] in {"pdp_unavailable", "pdp_timeout"}
    assert down.value.reasons[0].message.startswith(
        (grpc.StatusCode.UNAVAILABLE.name, grpc.StatusCode.DEADLINE_EXCEEDED.name)
    )
