"""Every way the service can fail to get a policy decision ends in DENY with a code."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aarm.v1 import decision_pb2
from aarm_pdp import server

from tests.support.messages import decide_request
from tests.support.paths import POLICIES, REGO
from tests.support.ports import free_port
from tests.support.processes import opa_command
from tests.support.service import running as serving
from tests.support.service import service_config

pytestmark = pytest.mark.integration
D = decision_pb2
ALLOWED = ("db", "query", {"table": "customers", "limit": 10})


@contextlib.asynccontextmanager
async def running(cfg: Any) -> AsyncIterator[tuple[server.App, Any]]:
    async with serving(cfg) as (app, clients):
        yield app, clients.decide


async def _decide(stub: Any, tool: str, op: str, params: dict[str, Any]) -> Any:
    return await stub.Decide(decide_request(tool, op, params))


async def test_undefined_decision_is_deny(opa_binary: str) -> None:
    async with running(service_config(opa_binary, policy=POLICIES / "undefined")) as (_, stub):
        ok = await _decide(stub, "only", "this", {})
        assert ok.decision == D.DECISION_ALLOW
        resp = await _decide(stub, *ALLOWED)
        assert resp.decision == D.DECISION_DENY
        assert resp.reasons[0].code == "decision_undefined"


@pytest.mark.parametrize("tool", ["permit", "bare"])
async def test_malformed_decision_is_deny(opa_binary: str, tool: str) -> None:
    async with running(service_config(opa_binary, policy=POLICIES / "malformed")) as (_, stub):
        resp = await _decide(stub, tool, "x", {})
        assert resp.decision == D.DECISION_DENY
        assert resp.reasons[0].code == "decision_malformed"


async def test_slow_policy_times_out_to_deny(opa_binary: str) -> None:
    cfg = service_config(opa_binary, policy=POLICIES / "slow", timeout_seconds=0.2)
    async with running(cfg) as (_, stub):
        resp = await _decide(stub, *ALLOWED)
        assert resp.decision == D.DECISION_DENY
        assert resp.reasons[0].code == "opa_timeout"


async def test_grpc_deadline_shorter_than_opa_timeout_still_denies(opa_binary: str) -> None:
    cfg = service_config(opa_binary, policy=POLICIES / "slow", timeout_seconds=5.0)
    async with running(cfg) as (_, stub):
        # The OPA wait is capped by the client's deadline, so the client still gets
        # an explicit DENY instead of a bare DEADLINE_EXCEEDED.
        resp = await stub.Decide(decide_request(*ALLOWED), timeout=0.5)
        assert resp.decision == D.DECISION_DENY
        assert resp.reasons[0].code == "opa_timeout"


async def test_policy_syntax_error_refuses_to_start(opa_binary: str) -> None:
    with pytest.raises(server.StartupError) as err:
        await server.start(service_config(opa_binary, policy=POLICIES / "syntax_error"))
    assert "rego_parse_error" in str(err.value)
    assert "main.rego" in str(err.value)


@contextlib.contextmanager
def external_opa(
    opa_binary: str, policy: Path = REGO
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen(
        opa_command(opa_binary, port, policy),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.kill()
        proc.wait()


async def test_external_opa_url_then_opa_dies(opa_binary: str) -> None:
    with external_opa(opa_binary) as (url, opa):
        async with running(service_config(opa_binary, url=url)) as (app, stub):
            assert app.sidecar is None
            ok = await _decide(stub, *ALLOWED)
            assert ok.decision == D.DECISION_ALLOW
            assert ok.policy.revision
            assert len(ok.policy.hash) == 64
            # Kill the external OPA out from under the service.
            opa.kill()
            await asyncio.to_thread(opa.wait)
            resp = await _decide(stub, *ALLOWED)
            assert resp.decision == D.DECISION_DENY
            assert resp.reasons[0].code == "opa_unavailable"


class _BadOpa:
    """A real HTTP server on loopback that is healthy but answers queries badly."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode()
                length = 0
                for h in head.split(b"\r\n"):
                    if h.lower().startswith(b"content-length:"):
                        length = int(h.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                path = line.split(" ")[1]
                status, body = "200 OK", b"{}"
                if path.startswith("/v1/data/system/bundles") or path.startswith("/v1/policies"):
                    body = b'{"result": {}}'
                elif path.startswith("/v1/data/aarm"):
                    status, body = {
                        "garbage": ("200 OK", b"<html>not json"),
                        "error": ("500 Internal Server Error", b'{"code":"internal_error"}'),
                    }[self.mode]
                writer.write(
                    f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("mode", ["garbage", "error"])
async def test_bad_opa_answers_are_deny(opa_binary: str, mode: str) -> None:
    bad = _BadOpa(mode)
    srv = await asyncio.start_server(bad.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        cfg = service_config(opa_binary, url=f"http://127.0.0.1:{port}")
        async with running(cfg) as (_, stub):
            resp = await _decide(stub, *ALLOWED)
            assert resp.decision == D.DECISION_DENY
            assert resp.reasons[0].code == "opa_bad_response"
    finally:
        srv.close()
        await srv.wait_closed()


async def test_external_opa_never_healthy_refuses_to_start(opa_binary: str) -> None:
    port = free_port()
    cfg = service_config(opa_binary, url=f"http://127.0.0.1:{port}", startup_timeout_seconds=0.5)
    with pytest.raises(server.StartupError, match="not healthy"):
        await server.start(cfg)


async def test_operator_bundle_file_replaces_packaged_policy(
    opa_binary: str, tmp_path: Path
) -> None:
    # An operator ships their own signed/built bundle: a .tar.gz, not our directory.
    custom = tmp_path / "custom"
    (custom / "aarm" / "main").mkdir(parents=True)
    (custom / ".manifest").write_text('{"revision": "ops-7", "roots": ["aarm"]}')
    (custom / "aarm" / "main" / "main.rego").write_text(
        (POLICIES / "undefined" / "aarm" / "main" / "main.rego").read_text()
    )
    bundle = tmp_path / "bundle.tar.gz"
    build = [opa_binary, "build", "--bundle", str(custom), "--output", str(bundle)]
    await asyncio.to_thread(subprocess.run, build, check=True)
    async with running(service_config(opa_binary, policy=bundle)) as (_, stub):
        ok = await _decide(stub, "only", "this", {})
        assert ok.decision == D.DECISION_ALLOW
        # The effective revision: its manifest's, and the digest of what OPA loaded.
        assert ok.policy.revision.startswith("aarm@ops-7+sha256:")
        denied = await _decide(stub, *ALLOWED)
        assert denied.decision == D.DECISION_DENY
