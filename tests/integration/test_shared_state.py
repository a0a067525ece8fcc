"""Two service replicas sharing one real redis-server; Redis down means DENY."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aarm.v1 import decision_pb2, decision_pb2_grpc
from aarm_pdp import server

from tests.support import scenarios
from tests.support.grpc_clients import sync_channel
from tests.support.messages import decide_request
from tests.support.ports import free_port
from tests.support.processes import RedisServer, serve_command
from tests.support.service import running, service_config

pytestmark = pytest.mark.integration
D = decision_pb2


@contextlib.asynccontextmanager
async def replica(opa_binary: str, redis_url: str) -> AsyncIterator[tuple[Any, Any]]:
    async with running(service_config(opa_binary, state=redis_url)) as (_, clients):
        yield clients.decide, clients.sessions


class Alternating:
    """Sends each call to the next replica in turn."""

    def __init__(self, stubs: list[Any]) -> None:
        self._stubs = stubs
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        async def call(req: Any) -> Any:
            stub = self._stubs[self.calls % len(self._stubs)]
            self.calls += 1
            return await getattr(stub, name)(req)

        return call


@pytest.mark.parametrize("scenario", ["S11", "S15", "S32", "S12"])
async def test_scenario_split_across_two_replicas(
    opa_binary: str, redis_server: RedisServer, scenario: str
) -> None:
    doc = next(d for d in scenarios.load_all() if d["id"] == scenario)
    async with (
        replica(opa_binary, redis_server.url) as (dec_a, ses_a),
        replica(opa_binary, redis_server.url) as (dec_b, ses_b),
    ):
        decisions = Alternating([dec_a, dec_b])
        sessions = Alternating([ses_b, ses_a])
        result = await scenarios.run(doc, decisions, sessions, session_id=f"shared-{scenario}")
        assert result.ok, result.explain()
        assert decisions.calls == len(doc["steps"])


async def test_read_then_send_denied_on_other_replica_without_outcome(
    opa_binary: str, redis_server: RedisServer
) -> None:
    # The enforcement point never reports the read's outcome: the predicted
    # classification recorded at decision time is enough.
    async with (
        replica(opa_binary, redis_server.url) as (dec_a, _),
        replica(opa_binary, redis_server.url) as (dec_b, _),
    ):
        ident = {**scenarios.BASE_IDENTITY, "session_id": "no-outcome"}
        read = await dec_a.Decide(
            decide_request("db", "query", {"table": "customers", "limit": 10}, identity=ident)
        )
        assert read.decision == D.DECISION_ALLOW
        send = await dec_b.Decide(
            decide_request("email", "send", {"to": ["analyst@partner.example"]}, identity=ident)
        )
        assert send.decision == D.DECISION_DENY
        assert "exfiltration_risk" in {r.code for r in send.reasons}


async def test_redis_down_is_deny_and_recovers(opa_binary: str) -> None:
    redis = RedisServer()
    try:
        async with running(service_config(opa_binary, state=redis.url)) as (_, clients):
            stub = clients.decide
            req = decide_request("db", "query", {"table": "orders", "limit": 10})
            assert (await stub.Decide(req)).decision == D.DECISION_ALLOW
            redis.kill()
            down = await stub.Decide(req)
            assert down.decision == D.DECISION_DENY
            assert down.reasons[0].code == "session_store_unavailable"
    finally:
        redis.stop()


async def test_redis_unreachable_at_start_refuses_to_start(opa_binary: str) -> None:
    with pytest.raises(server.StartupError, match="session store"):
        await server.start(service_config(opa_binary, state=f"redis://127.0.0.1:{free_port()}/0"))


async def test_context_log_in_redis_verifies_and_detects_tampering(
    opa_binary: str, redis_server: RedisServer
) -> None:
    import json

    import redis.asyncio as aioredis
    from aarm_pdp.session import state as st
    from aarm_pdp.session.redis_store import RedisSessionStore
    from aarm_pdp.session.store import session_key

    doc = next(d for d in scenarios.load_all() if d["id"] == "S16")
    async with replica(opa_binary, redis_server.url) as (dec, ses):
        result = await scenarios.run(doc, dec, ses, session_id="log-check")
        assert result.ok, result.explain()
    key = session_key(scenarios.BASE_IDENTITY["tenant"], "log-check")
    store = RedisSessionStore(redis_server.url)
    raw = (await store.load(key, [], "acme", [])).state
    assert raw is not None
    state = st.SessionState.from_bytes(raw)
    entries = [json.loads(e) for e in await store.read_log(key)]
    assert len(entries) == state.log_len == 1 + 5 + 4  # start, 5 decisions, 4 outcomes
    assert st.verify_chain(entries, state.log_head) is None
    # An attacker with Redis access rewrites entry 3: detected at 3.
    r = aioredis.Redis.from_url(redis_server.url)
    entries[3]["at_ns"] += 1  # backdate nothing, just one nanosecond
    await r.lset(f"aarm:l:{key}", 3, json.dumps(entries[3]))
    tampered = [json.loads(e) for e in await store.read_log(key)]
    assert st.verify_chain(tampered, state.log_head) == 3
    await r.aclose()
    await store.aclose()


def test_two_service_processes_share_redis_read_then_send(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """S11 across two real `aarm-pdp serve` processes sharing one redis-server."""
    import subprocess
    import time

    procs = []
    ports = []
    for i in range(2):
        port = free_port()
        ports.append(port)
        procs.append(
            subprocess.Popen(
                serve_command(
                    port,
                    "--state",
                    redis_server.url,
                    "--receipts",
                    str(tmp_path / f"r{i}.db"),
                    "--key-dir",
                    str(tmp_path / "keys"),
                    "--telemetry-file",
                    "",
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        stubs = []
        for port in ports:
            ch = sync_channel(f"127.0.0.1:{port}")
            grpc.channel_ready_future(ch).result(timeout=30)
            stubs.append(decision_pb2_grpc.DecisionServiceStub(ch))
        ident = {**scenarios.BASE_IDENTITY, "session_id": f"two-procs-{time.time_ns()}"}
        read = stubs[0].Decide(
            decide_request("db", "query", {"table": "customers", "limit": 10}, identity=ident),
            timeout=10,
        )
        assert read.decision == D.DECISION_ALLOW
        send = stubs[1].Decide(
            decide_request("email", "send", {"to": ["analyst@partner.example"]}, identity=ident),
            timeout=10,
        )
        assert send.decision == D.DECISION_DENY
        assert "exfiltration_risk" in {r.code for r in send.reasons}
        # and the other way round in a fresh session
        ident2 = {**ident, "session_id": ident["session_id"] + "-b"}
        assert (
            stubs[1]
            .Decide(
                decide_request("db", "query", {"table": "customers", "limit": 10}, identity=ident2),
                timeout=10,
            )
            .decision
            == D.DECISION_ALLOW
        )
        assert (
            stubs[0]
            .Decide(
                decide_request(
                    "email", "send", {"to": ["analyst@partner.example"]}, identity=ident2
                ),
                timeout=10,
            )
            .decision
            == D.DECISION_DENY
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
