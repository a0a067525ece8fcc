"""Store waits honour the client's deadline (issue 14 item 3).

A Decide whose gRPC deadline is shorter than the store's own timeout, with Redis or
PostgreSQL hung (every process SIGSTOPped: TCP still acknowledges, nothing answers) or
gone, gets an OK DENY with the store's reason code inside that deadline, never
``DEADLINE_EXCEEDED``; readiness follows the store down and back; decisions resume
when it returns, and the receipt chain still verifies.

Real servers, the service in this process, a scripted policy engine (no OPA). The
deadlines are seconds against stores that would wait a minute (or forever), and
readiness changes are awaited on the health Watch stream, not timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aarm.v1 import decision_pb2, receipt_pb2
from aarm_pdp.config import OpaConfig, ReceiptConfig, SessionConfig
from aarm_pdp.opa.fake import FakePolicyEngine
from aarm_pdp.receipts.postgres_store import PostgresReceiptStore
from aarm_pdp.receipts.verify import PublicKeys, verify_chain
from grpc_health.v1 import health_pb2

from tests.support.grpc_clients import Clients
from tests.support.messages import IDENTITY, decide_request, verdict_doc
from tests.support.processes import PG_BIN, PostgresServer, RedisServer, children
from tests.support.service import fake_config, running

pytestmark = pytest.mark.integration
D = decision_pb2
H = health_pb2.HealthCheckResponse
DEADLINE = 3.0
"""The client's deadline: shorter than every store wait below (60 s, 5 s, or forever)."""
WAIT = 60.0
"""Upper bound for recoveries (fails a broken build, never a slow one)."""


def _policy() -> FakePolicyEngine:
    return FakePolicyEngine(lambda _: verdict_doc("ALLOW"))


def _request(session: str) -> Any:
    ident = {**IDENTITY, "session_id": session}
    return decide_request("db", "query", {"table": "orders", "limit": 10}, identity=ident)


def _assert_deny(resp: Any, code: str) -> None:
    assert resp.decision == D.DECISION_DENY, resp
    assert [r.code for r in resp.reasons] == [code]
    assert resp.reasons[0].rule_id == f"aarm.fail_closed.{code}"


@contextlib.contextmanager
def _hung(pids: list[int]) -> Iterator[None]:
    """Every process in ``pids`` stopped (SIGSTOP) until the block ends."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def _readiness(c: Clients, want: int) -> None:
    """Until the server's health is ``want``, on its Watch stream."""
    call = c.health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=WAIT)
    try:
        async for update in call:
            if update.status == want:
                return
    finally:
        call.cancel()
    raise AssertionError(f"health stream ended before {H.ServingStatus.Name(want)}")


async def test_hung_or_dead_redis_is_an_ok_deny_inside_the_deadline(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    try:
        cfg = fake_config(
            tmp_path,
            session=SessionConfig(state=redis.url, store_timeout_seconds=WAIT),
            opa=OpaConfig(health_interval_seconds=0.1),
        )
        async with running(cfg, policy_engine=_policy()) as (_, c):
            assert (await c.decide.Decide(_request("r-1"), timeout=WAIT)).decision == (
                D.DECISION_ALLOW
            )
            with _hung([redis.proc.pid]):
                resp = await c.decide.Decide(_request("r-1"), timeout=DEADLINE)
                _assert_deny(resp, "session_store_unavailable")
                assert resp.receipt.receipt_id  # the DENY itself is receipted
                await _readiness(c, H.NOT_SERVING)
            await _readiness(c, H.SERVING)
            resp = await c.decide.Decide(_request("r-1"), timeout=WAIT)
            assert resp.decision == D.DECISION_ALLOW
            redis.kill()
            resp = await c.decide.Decide(_request("r-1"), timeout=DEADLINE)
            _assert_deny(resp, "session_store_unavailable")
    finally:
        redis.stop()


def _pg_processes(pg: PostgresServer) -> list[int]:
    master = int((pg.data / "postmaster.pid").read_text().split()[0])
    return [master, *(pid for pid, _ in children(master))]


def _pg_ctl(pg: PostgresServer, *args: str) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*prefix, str(PG_BIN / "pg_ctl"), "-D", str(pg.data), *args],
        check=True,
        capture_output=True,
        timeout=WAIT,
    )


def _pg_stop(pg: PostgresServer) -> None:
    _pg_ctl(pg, "-m", "fast", "-w", "stop")


def _pg_start(pg: PostgresServer) -> None:
    options = f"-p {pg.port} -c listen_addresses=127.0.0.1 -k {pg.dir}"
    _pg_ctl(pg, "-l", str(pg.dir / "server.log"), "-o", options, "-w", "-t", "30", "start")


async def _allowed_again(c: Clients, session: str) -> None:
    """Decide until an ALLOW comes back (the pool reconnects on its own schedule)."""
    for _ in range(int(WAIT)):
        resp = await c.decide.Decide(_request(session), timeout=WAIT)
        if resp.decision == D.DECISION_ALLOW:
            return
        _assert_deny(resp, "receipt_store_unavailable")
        await _readiness(c, H.SERVING)
    raise AssertionError("no ALLOW after the receipt store came back")


async def test_blocked_postgres_receipt_store_is_an_ok_deny_inside_the_deadline(
    tmp_path: Path,
) -> None:
    pg = PostgresServer()
    try:
        cfg = fake_config(
            tmp_path,
            receipts=ReceiptConfig(store=pg.create_database(), key_dir=tmp_path / "keys"),
            opa=OpaConfig(health_interval_seconds=0.1),
        )
        async with running(cfg, policy_engine=_policy()) as (_, c):
            first = await c.decide.Decide(_request("p-1"), timeout=WAIT)
            assert first.decision == D.DECISION_ALLOW
            assert first.receipt.receipt_id

            # Hung: no PostgreSQL process runs, yet every socket stays open.
            with _hung(_pg_processes(pg)):
                resp = await c.decide.Decide(_request("p-1"), timeout=DEADLINE)
                _assert_deny(resp, "receipt_store_unavailable")
                assert not resp.receipt.receipt_id
                await _readiness(c, H.NOT_SERVING)
            await _readiness(c, H.SERVING)
            await _allowed_again(c, "p-1")

            # Stopped: the pool would wait its 5 s for a connection.
            _pg_stop(pg)
            try:
                resp = await c.decide.Decide(_request("p-1"), timeout=DEADLINE)
                _assert_deny(resp, "receipt_store_unavailable")
                await _readiness(c, H.NOT_SERVING)
            finally:
                _pg_start(pg)
            await _readiness(c, H.SERVING)
            await _allowed_again(c, "p-1")

            listed = await c.receipts.ListReceipts(
                receipt_pb2.ListReceiptsRequest(tenant="acme", session_id="p-1"), timeout=WAIT
            )
            jwks = await c.receipts.GetPublicKeys(receipt_pb2.GetPublicKeysRequest())
            payloads = [r.payload for r in listed.receipts]
            result = verify_chain(payloads, PublicKeys.from_jwks(jwks.jwks))
            assert result.ok, result.message
            assert payloads[0] == first.receipt.payload
    finally:
        pg.stop()


async def test_a_receipt_store_closed_while_postgres_hangs_leaves_no_pool_task() -> None:
    """Closing while PostgreSQL is hung (the pool mid-reconnect) ends every task of the
    pool: none is left for the event loop's shutdown, where a pool worker that swallowed
    its one cancellation once held the fresh-clone CI for 120 s (the swallowing itself is
    covered in tests/unit/test_loop.py)."""
    pg = PostgresServer()
    try:
        store = PostgresReceiptStore(pg.create_database(), timeout=1.0)
        await store.start()
        assert await store.healthy()
        prefix = "aarm-receipts-"
        mine = [t for t in asyncio.all_tasks() if t.get_name().startswith(prefix)]
        assert mine, "the pool's worker tasks are named after it"
        with _hung(_pg_processes(pg)):
            assert not await store.healthy()
            await store.aclose()
            left = [t for t in asyncio.all_tasks() if t.get_name().startswith(prefix)]
            assert left == [], left
            assert all(t.done() for t in mine)
    finally:
        pg.stop()
