"""``session.state_version`` for a rolling upgrade over Redis (docs/performance.md,
"Compact sessions"): at 1 a replica writes the JSON state that replicas before the
compact encoding read; a replica at 2 (the default) reads it, continues the session and
writes version 2; either reads both. Real Redis, the service in this process, a
scripted policy engine."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aarm.v1 import decision_pb2
from aarm_pdp.config import SessionConfig
from aarm_pdp.opa.fake import FakePolicyEngine
from aarm_pdp.session.state import SessionState
from aarm_pdp.session.store import session_key

from tests.support.messages import IDENTITY, decide_request, verdict_doc
from tests.support.processes import RedisServer
from tests.support.service import fake_config, running

pytestmark = pytest.mark.integration
D = decision_pb2


def _request(session: str, n: int) -> Any:
    ident = {**IDENTITY, "session_id": session}
    return decide_request("db", "query", {"table": "orders", "limit": n}, identity=ident)


async def _state_blob(url: str, session: str) -> bytes:
    client = aioredis.from_url(url)
    try:
        raw = await client.get(f"aarm:s:{session_key(IDENTITY['tenant'], session)}")
    finally:
        await client.aclose()
    assert isinstance(raw, bytes), "the session's state is in Redis"
    return raw


async def test_version_1_is_json_and_a_version_2_replica_continues_it(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    session = f"sv-{uuid.uuid4().hex[:12]}"
    engine = FakePolicyEngine(lambda _: verdict_doc("ALLOW"))
    old = fake_config(
        tmp_path / "old", session=SessionConfig(state=redis_server.url, state_version=1)
    )
    new = fake_config(tmp_path / "new", session=SessionConfig(state=redis_server.url))
    async with running(old, policy_engine=engine) as (_, a):
        for n in (1, 2):
            resp = await a.decide.Decide(_request(session, n), timeout=30)
            assert resp.decision == D.DECISION_ALLOW
    written_by_old = await _state_blob(redis_server.url, session)
    assert written_by_old[:1] == b"{"  # version 1: what older replicas read
    before = SessionState.from_bytes(written_by_old)
    assert before.action_count == 2

    async with running(new, policy_engine=engine) as (_, b):
        resp = await b.decide.Decide(_request(session, 3), timeout=30)
        assert resp.decision == D.DECISION_ALLOW
    written_by_new = await _state_blob(redis_server.url, session)
    assert written_by_new[:1] == bytes([2])  # compact
    after = SessionState.from_bytes(written_by_new)
    assert after.action_count == 3
    assert after.log_len == before.log_len + 1

    async with running(old, policy_engine=engine) as (_, a):
        resp = await a.decide.Decide(_request(session, 4), timeout=30)
        assert resp.decision == D.DECISION_ALLOW
    back_to_json = await _state_blob(redis_server.url, session)
    assert back_to_json[:1] == b"{"
    assert SessionState.from_bytes(back_to_json).action_count == 4
