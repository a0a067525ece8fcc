"""The fault matrix's judging (faults/rig.py): which calls lie inside a fault window,
what fails a row; and the scripted OPA's modes on a real loopback socket."""

from __future__ import annotations

import asyncio
import json

from faults.bad_opa import ScriptedOpa
from faults.load import Sample
from faults.rig import Row, Sampler, _judge_row


class _Points(Sampler):
    def __init__(self) -> None:
        self.points = [(5.0, 100 << 20, 50 << 20, 10), (15.0, 120 << 20, 60 << 20, 12)]


def _row() -> Row:
    return Row("f", "rig", t_start=0.0, t_in=10.0, t_heal=20.0, t_end=30.0)


def test_only_calls_wholly_inside_the_window_are_judged() -> None:
    samples = [
        Sample(9.0, 11.0, "DECISION_ALLOW", ("catalogued",), "d1", "r1"),  # sent before: straddles
        Sample(11.0, 12.0, "DECISION_DENY", ("opa_timeout",), "d2", "r2"),
        Sample(12.0, 20.0, "DECISION_DENY", ("opa_timeout",), "d3", "r3"),  # answered at heal
        Sample(19.0, 21.0, "DECISION_ALLOW", ("catalogued",), "d4", "r4"),  # answered after
        Sample(13.0, 14.0, "grpc:UNAVAILABLE"),
        Sample(25.0, 26.0, "DECISION_ALLOW", ("catalogued",), "d5", "r5"),
    ]
    row = _row()
    _judge_row(row, samples, [], _Points(), {"r1", "r2", "r3", "r4", "r5"})
    assert (row.decisions_during, row.allows_during) == (2, 0)
    assert row.reason_codes == {"DENY:opa_timeout": 2}
    assert row.errors_during == {"UNAVAILABLE": 1}
    assert (row.straddling, row.straddling_allows) == (2, 2)
    assert (row.receipts_seen, row.receipts_lost) == (5, 0)
    assert (row.peak_rss_mib, row.peak_opa_rss_mib) == (120.0, 60.0)
    assert row.passed, row.failures


def test_an_allow_inside_a_lost_receipt_and_a_silent_deny_fail_the_row() -> None:
    samples = [
        Sample(11.0, 12.0, "DECISION_ALLOW", ("catalogued",), "d1", "r1"),
        Sample(12.0, 13.0, "DECISION_DENY", (), "d2", "r2"),
        Sample(14.0, 19.0, "grpc:DEADLINE_EXCEEDED"),
    ]
    row = _row()
    _judge_row(row, samples, [(11.0, 4.0, "DEADLINE_EXCEEDED")], _Points(), {"r2"})
    assert row.allows_during == 1
    assert row.receipts_lost == 1
    assert sorted(row.failures) == sorted(
        [
            "1 ALLOW during the fault",
            "1 DENY without a reason code",
            "1 receipts lost",
            "1 health checks unanswered",
            "1 client deadlines exceeded",
        ]
    )


def test_health_misses_while_the_service_is_down_are_excused() -> None:
    row = _row()
    row.health_excused = (10.0, 20.0)
    health = [(9.5, 3.0, "UNAVAILABLE"), (15.0, 3.0, "DEADLINE_EXCEEDED"), (25.0, 0.01, "SERVING")]
    samples = [Sample(12.0, 13.0, "grpc:UNAVAILABLE")]
    _judge_row(row, samples, health, _Points(), set())
    assert (row.health_checks, row.health_unanswered) == (1, 0)
    assert row.detail["health_excused_checks"] == 2
    assert row.passed, row.failures


async def _query(port: int, path: str) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"input": {}}'
    writer.write(
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
    )
    await writer.drain()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        return head.split(b"\r\n")[0], await reader.readexactly(length)
    finally:
        writer.close()


async def test_scripted_opa_modes_touch_policy_queries_only() -> None:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        body = b'{"result": {"decision": "ALLOW"}}'
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    real = await asyncio.start_server(upstream, "127.0.0.1", 0)
    proxy = ScriptedOpa(f"http://127.0.0.1:{real.sockets[0].getsockname()[1]}")
    await proxy.start()
    try:
        status, body = await _query(proxy.port, "/v1/data/aarm/main/decision")
        assert status.endswith(b"200 OK")
        assert json.loads(body)["result"]["decision"] == "ALLOW"
        proxy.mode = "http500"
        assert (await _query(proxy.port, "/v1/data/aarm/main/decision"))[0].startswith(
            b"HTTP/1.1 500"
        )
        assert (await _query(proxy.port, "/v1/data/system/bundles"))[0].endswith(b"200 OK")
        proxy.mode = "garbage"
        _, body = await _query(proxy.port, "/v1/data/aarm/main/decision")
        assert body.startswith(b"<html>")
        proxy.mode = "reset"
        try:
            await _query(proxy.port, "/v1/data/aarm/main/decision")
            raise AssertionError("expected the connection to be reset")
        except (ConnectionResetError, asyncio.IncompleteReadError):
            pass
        assert proxy.faulted == 3
    finally:
        await proxy.stop()
        real.close()
        await real.wait_closed()
