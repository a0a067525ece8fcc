"""Admission control: bounded decisions, calls and request bytes in flight; past a limit
RESOURCE_EXHAUSTED with the reason, counted; health answered while Decide is saturated;
the connection limits passed to grpc are the ones grpc enforces.

Saturation is made with a policy engine that holds every query until the test lets it
go (an event, not a sleep), so nothing here depends on how fast the machine is: the
deadlines below are only there to fail a broken build instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from aarm.v1 import decision_pb2, receipt_pb2
from aarm_pdp import server
from aarm_pdp.api.admission import Admission, hold_until_done
from aarm_pdp.config import Config, ConfigError, ServerConfig, default_inflight
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.opa.fake import FakePolicyEngine
from grpc_health.v1 import health_pb2

from tests.support.grpc_clients import Clients, aio_channel
from tests.support.messages import IDENTITY, decide_request, verdict_doc
from tests.support.service import fake_config, running

pytestmark = pytest.mark.api
D = decision_pb2
WAIT = 30.0
"""Upper bound for anything the test waits on (fails a broken build, never a slow one)."""
DECIDE = "/aarm.v1.DecisionService/Decide"


@dataclass
class Gate:
    """The policy engine's handler: every query waits until :meth:`open` is called."""

    entered: int = 0
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def __call__(self, _input: dict[str, Any]) -> Any:
        async with self.arrived:
            self.entered += 1
            self.arrived.notify_all()
        await self.opened.wait()
        return verdict_doc("ALLOW")

    async def until_entered(self, n: int) -> None:
        async def entered() -> None:
            async with self.arrived:
                await self.arrived.wait_for(lambda: self.entered >= n)

        await asyncio.wait_for(entered(), WAIT)

    def open(self) -> None:
        self.opened.set()


def _request(i: int, *, pad: int = 0) -> Any:
    params: dict[str, Any] = {"table": "orders", "limit": 10}
    if pad:
        params["note"] = "x" * pad
    return decide_request("db", "query", params, identity={**IDENTITY, "session_id": f"s-{i}"})


def _server(**limits: Any) -> ServerConfig:
    return ServerConfig(listen="127.0.0.1:0", grace_seconds=0.5, **limits)


@contextlib.asynccontextmanager
async def _gated(tmp_path: Path, **limits: Any) -> AsyncIterator[tuple[server.App, Clients, Gate]]:
    gate = Gate()
    cfg = fake_config(tmp_path, server=_server(**limits))
    async with running(cfg.validate(), policy_engine=FakePolicyEngine(gate)) as (app, c):
        try:
            yield app, c, gate
        finally:
            gate.open()  # never leave a held decision behind for stop()


def _sample(app: server.App, name: str, **labels: str) -> float:
    value = app.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def _until(predicate: Any) -> None:
    """Wait (polling, bounded by WAIT) until ``predicate()`` is true: for a gauge that is
    read at scrape time there is no event to wait on."""
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on but the value
            await asyncio.sleep(0.01)


async def test_decide_overflow_is_resource_exhausted_and_health_still_answers(
    tmp_path: Path,
) -> None:
    async with _gated(tmp_path, max_inflight_decisions=4, max_inflight_calls=4) as (app, c, gate):
        held = [asyncio.ensure_future(c.decide.Decide(_request(i), timeout=WAIT)) for i in range(4)]
        await gate.until_entered(4)
        assert _sample(app, "aarm_inflight_requests") == 4

        for i in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await c.decide.Decide(_request(10 + i), timeout=WAIT)
            assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert err.value.details() == (
                "overloaded: too many decisions in flight; retry with backoff"
            )
        # Health (whole server and per service) and the other RPCs' own budget still answer.
        for service in ("", "aarm.v1.DecisionService"):
            health = await c.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        keys = await c.receipts.GetPublicKeys(receipt_pb2.GetPublicKeysRequest(), timeout=5)
        assert keys.jwks
        assert gate.entered == 4  # no overflow call reached the policy engine

        gate.open()
        answers = await asyncio.gather(*held)
        assert [a.decision for a in answers] == [D.DECISION_ALLOW] * 4
        assert all(a.receipt.receipt_id for a in answers)
        assert _sample(app, "aarm_inflight_requests") == 0  # released before answering
        after = await c.decide.Decide(_request(20), timeout=WAIT)
        assert after.decision == D.DECISION_ALLOW
        rejected = "aarm_admission_rejected_total"
        assert _sample(app, rejected, method="Decide", reason="decisions") == 3
        assert _sample(app, "aarm_admission_limit", resource="decisions") == 4
        assert _sample(app, "aarm_inflight_bytes") == 0


async def test_request_bytes_in_flight_are_bounded(tmp_path: Path) -> None:
    limits = {"max_request_bytes": 64 << 10, "max_inflight_bytes": 100_000}
    async with _gated(tmp_path, **limits) as (app, c, gate):
        big = [_request(i, pad=40_000) for i in range(3)]
        held = [asyncio.ensure_future(c.decide.Decide(r, timeout=WAIT)) for r in big[:2]]
        await gate.until_entered(2)
        in_flight = sum(r.ByteSize() for r in big[:2])
        assert _sample(app, "aarm_inflight_bytes") == in_flight

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.decide.Decide(big[2], timeout=WAIT)
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too many request bytes in flight" in (err.value.details() or "")
        # A small request still fits beside them.
        small = asyncio.ensure_future(c.decide.Decide(_request(9), timeout=WAIT))
        await gate.until_entered(3)

        gate.open()
        answers = await asyncio.gather(*held, small)
        assert [a.decision for a in answers] == [D.DECISION_ALLOW] * 3
        assert _sample(app, "aarm_admission_rejected_total", method="Decide", reason="bytes") == 1
        assert _sample(app, "aarm_inflight_bytes") == 0


async def test_a_client_that_hangs_up_leaves_no_slot_behind(tmp_path: Path) -> None:
    async with _gated(tmp_path, max_inflight_decisions=1) as (app, c, gate):
        call = c.decide.Decide(_request(1), timeout=WAIT)
        await gate.until_entered(1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        # The shielded decision still runs: its slot is held until it is decided.
        assert _sample(app, "aarm_inflight_requests") == 1
        gate.open()
        await _until(lambda: _sample(app, "aarm_inflight_requests") == 0)
        answer = await c.decide.Decide(_request(2), timeout=WAIT)
        assert answer.decision == D.DECISION_ALLOW
        assert _sample(app, "aarm_inflight_bytes") == 0


# --- the budgets themselves, on a bare handler (no network) ------------------------------


class _Context:
    """The two ServicerContext methods the admission wrapper uses."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise grpc.aio.AbortError()


def _wrapped(admission: Admission, behaviour: Any) -> Any:
    inner = grpc.method_handlers_generic_handler(
        "aarm.v1.DecisionService",
        {"Decide": grpc.unary_unary_rpc_method_handler(behaviour)},
    )
    details = type("Details", (), {"method": DECIDE, "invocation_metadata": ()})()
    return admission.wrap(inner).service(details).unary_unary


async def test_a_cancelled_call_holds_its_slot_only_when_its_work_goes_on() -> None:
    admission = Admission(
        Metrics(), max_decisions=1, max_calls=1, max_bytes=1 << 20, decide_methods={DECIDE}
    )
    work_done = asyncio.Event()

    async def shielded(request: bytes, context: Any) -> bytes:  # as Decide does
        work = asyncio.ensure_future(work_done.wait())
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            hold_until_done(work)
            raise
        return request

    call = _wrapped(admission, shielded)
    task = asyncio.ensure_future(call(b"abc", _Context()))
    await asyncio.sleep(0)
    assert (admission.decisions, admission.bytes) == (1, 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (admission.decisions, admission.bytes) == (1, 3)  # held by the running work
    refused = _Context()
    with pytest.raises(grpc.aio.AbortError):
        await call(b"x", refused)
    assert refused.aborted is not None
    assert refused.aborted[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
    work_done.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert (admission.decisions, admission.bytes) == (0, 0)

    async def plain(request: bytes, context: Any) -> bytes:
        await asyncio.Event().wait()
        return request

    task = asyncio.ensure_future(_wrapped(admission, plain)(b"abcd", _Context()))
    await asyncio.sleep(0)
    assert admission.decisions == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (admission.decisions, admission.bytes) == (0, 0)  # nothing goes on: released


async def test_one_call_is_always_admitted_whatever_its_size() -> None:
    admission = Admission(Metrics(), max_decisions=4, max_calls=4, max_bytes=10, decide_methods=())

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    assert await _wrapped(admission, echo)(b"x" * 100, _Context()) == b"x" * 100
    assert admission.bytes == 0


# --- configuration ---------------------------------------------------------------------------


def test_defaults_are_sized_for_the_machine() -> None:
    s = ServerConfig()
    assert s.max_inflight_decisions == default_inflight() >= 16
    assert s.inflight_bytes == s.max_request_bytes
    assert s.max_streams_per_connection > 4 * (s.max_inflight_decisions + s.max_inflight_calls)
    assert 16 <= s.max_connections <= 4096


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        ({"max_inflight_decisions": 0}, "server.max_inflight_decisions must be >= 1"),
        ({"max_inflight_calls": 0}, "server.max_inflight_calls must be >= 1"),
        ({"max_connections": 0}, "server.max_connections must be >= 1"),
        ({"max_inflight_bytes": -1}, "server.max_inflight_bytes must be >= 0"),
        ({"max_streams_per_connection": 0}, "server.max_streams_per_connection must be >= 1"),
        ({"max_inflight_bytes": 1000}, "must be >= server.max_request_bytes"),
        ({"connection_idle_seconds": 0}, "connection_idle_seconds and handshake"),
        ({"connection_age_seconds": -1}, "server.connection_age_seconds must be >= 0"),
    ],
)
def test_limits_are_validated(limits: dict[str, Any], problem: str) -> None:
    cfg = Config(server=ServerConfig(**limits))
    with pytest.raises(ConfigError, match=problem):
        cfg.validate()


# --- connections: what grpc is told is what it enforces ---------------------------------------


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server closes ``sock`` (EOF or reset), waiting at most WAIT."""
    sock.settimeout(WAIT)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(4096) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False


async def test_connections_past_the_limit_are_closed_and_freed_slots_serve(
    tmp_path: Path,
) -> None:
    cfg = fake_config(
        tmp_path, server=_server(max_connections=3, handshake_timeout_seconds=WAIT * 4)
    )
    engine = FakePolicyEngine(lambda _: verdict_doc("ALLOW"))
    app = await server.start(cfg, policy_engine=engine)
    try:
        idle = [socket.create_connection(("127.0.0.1", app.port)) for _ in range(3)]
        extra = socket.create_connection(("127.0.0.1", app.port))
        assert await asyncio.to_thread(_closed_by_server, extra)
        assert all(_still_open(s) for s in idle)  # held: their handshake time is long
        for s in idle:
            s.close()
        extra.close()
        async with asyncio.timeout(WAIT):  # the slots come back as the sockets close
            while True:
                try:
                    async with aio_channel(f"127.0.0.1:{app.port}") as channel:
                        await Clients(channel).decide.Decide(_request(1), timeout=5)
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.05)
    finally:
        await app.stop()


async def test_a_connection_that_never_handshakes_is_closed(tmp_path: Path) -> None:
    cfg = fake_config(tmp_path, server=_server(handshake_timeout_seconds=0.2))
    app = await server.start(cfg, policy_engine=FakePolicyEngine(lambda _: verdict_doc()))
    try:
        silent = socket.create_connection(("127.0.0.1", app.port))
        assert await asyncio.to_thread(_closed_by_server, silent)
        silent.close()
    finally:
        await app.stop()


async def test_an_idle_connection_is_closed(tmp_path: Path) -> None:
    cfg = fake_config(tmp_path, server=_server(connection_idle_seconds=0.2))
    async with running(cfg, policy_engine=FakePolicyEngine(lambda _: verdict_doc())) as (_, c):
        await c.decide.Decide(_request(1), timeout=WAIT)
        channel = c.channel
        async with asyncio.timeout(WAIT):  # GOAWAY "idle": the channel goes back to IDLE
            state = channel.get_state()
            while state is not grpc.ChannelConnectivity.IDLE:
                await channel.wait_for_state_change(state)
                state = channel.get_state()
        answer = await c.decide.Decide(_request(2), timeout=WAIT)  # and reconnects
        assert answer.decision == D.DECISION_ALLOW


def test_server_options_carry_the_limits() -> None:
    s = ServerConfig(max_connections=77, connection_idle_seconds=1.5, connection_age_seconds=0)
    options = dict(server.server_options(s))
    assert options["grpc.max_allowed_incoming_connections"] == 77
    assert options["grpc.max_concurrent_streams"] == s.max_streams_per_connection
    assert options["grpc.server.max_pending_requests"] == server.PENDING_CALLS
    assert options["grpc.max_connection_idle_ms"] == 1500
    assert "grpc.max_connection_age_ms" not in options
    assert options["grpc.http2.max_ping_strikes"] == 2
    aged = dict(server.server_options(ServerConfig(connection_age_seconds=60)))
    assert aged["grpc.max_connection_age_ms"] == 60_000
