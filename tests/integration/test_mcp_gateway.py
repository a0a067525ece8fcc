"""`aarm-pdp mcp-gateway` end to end, every part real.

The real service (managed OPA, the reference pack plus a test-only overlay that
catalogues the test's MCP tools) decides; behind the gateway run a FastMCP server written for the
tests (tests/support/mcp_upstream.py) over stdio and over streamable HTTP, and the
reference filesystem server from the npm registry over stdio. A real MCP client
session talks to the gateway process over stdio (and one over streamable HTTP): tools
listed, reads answered, a forbidden call an MCP tool error with its rule id, a MODIFY
forwarded with the capped arguments, a STEP_UP call held until an approver resolves
it over gRPC or denied when the wait times out; then `aarm-pdp receipts verify` of
the service's receipt store is ok, offline. `catalogue-draft` writes an overlay that
a service then decides with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from aarm.v1 import approval_pb2, decision_pb2, receipt_pb2
from aarm_pdp.config import ApprovalConfig, Config, ReceiptConfig
from google.protobuf import json_format
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.support.grpc_clients import Clients, aio_channel, bearer
from tests.support.paths import REGO, ROOT
from tests.support.pki import CertificateAuthority
from tests.support.ports import accepts, free_port
from tests.support.principals import PLATFORM_TOKEN, TENANT, write_principals
from tests.support.processes import wait_until
from tests.support.service import running, service_config, with_approvers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

FS_PACKAGE = "@modelcontextprotocol/server-filesystem"
FS_VERSION = "2026.8.31"
FS_CACHE = ROOT / "var" / "mcp-servers"
APPROVER = {"dora-token": ("dora@acme.example", ["data-owners"])}
HUMAN = "alice@acme.example"
GATEWAY_SPIFFE = "spiffe://acme.test/mcp-gateway"
AUDITOR_SPIFFE = "spiffe://acme.test/auditor"
USER_REQUEST = "summarise the roadmap note for me"


def _notes_tools(server: str) -> dict[str, Any]:
    name = {"type": "string", "required": True, "max_length": 64}
    return {
        f"{server}.read_note": {
            "category": "read",
            "risk_tier": "low",
            "output_trust": "trusted",
            "description": "Read one note.",
            "parameters": {"name": name},
        },
        f"{server}.search_notes": {
            "category": "read",
            "risk_tier": "low",
            "output_trust": "trusted",
            "description": "Search the notes.",
            "parameters": {
                "query": {"type": "string", "required": True, "max_length": 256},
                "limit": {"type": "integer", "minimum": 1, "cap": 3, "default_value": 3},
            },
        },
        f"{server}.disable_audit_logging": {
            "category": "security_control",
            "risk_tier": "high",
            "output_trust": "trusted",
            "description": "Switch the audit log off.",
            "parameters": {"reason": {"type": "string", "max_length": 256}},
        },
        f"{server}.purge_records": {
            "category": "destructive",
            "risk_tier": "critical",
            "output_trust": "trusted",
            "description": "Delete every record of a table.",
            "parameters": {"table": {"type": "string", "required": True, "max_length": 64}},
        },
    }


FS_TOOLS = {
    "fs.read_text_file": {
        "category": "read",
        "risk_tier": "low",
        "output_trust": "untrusted",
        "description": "Read a text file (reference filesystem server).",
        "parameters": {
            "path": {"type": "string", "required": True, "max_length": 4096, "analysis": "path"},
            "head": {"type": "integer"},
            "tail": {"type": "integer"},
        },
    },
}


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test-only overlay bundle (layer ``mcp_gateway_test``) cataloguing the test's tools."""
    root = tmp_path_factory.mktemp("gateway-overlay") / "mcp_gateway_test"
    data = root / "aarm" / "overlays" / "mcp_gateway_test" / "catalogue" / "data.json"
    data.parent.mkdir(parents=True)
    manifest = {"revision": "test-1", "roots": ["aarm/overlays/mcp_gateway_test"]}
    (root / ".manifest").write_text(json.dumps({**manifest, "rego_version": 1}))
    tools = {**_notes_tools("local"), **_notes_tools("remote"), **FS_TOOLS}
    data.write_text(json.dumps({"tools": tools}, indent=1))
    return root


def _layered(cfg: Config, *overlays: Path) -> Config:
    """The reference pack with ``overlays`` on it (``--policy rego --policy <overlay>``)."""
    return replace(cfg, opa=replace(cfg.opa, policy_paths=(REGO, *overlays)))


@pytest.fixture(scope="module")
def filesystem_server() -> Path:
    """The reference filesystem server, installed from the npm registry once into var/."""
    entry = FS_CACHE / "node_modules" / FS_PACKAGE / "dist" / "index.js"
    if not entry.exists() or _installed_version() != FS_VERSION:
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            pytest.skip(f"node/npm not installed: {FS_PACKAGE} comes from the npm registry")
        FS_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", f"{FS_PACKAGE}@{FS_VERSION}"],
            cwd=FS_CACHE,
            check=True,
            timeout=180,
        )
    return entry


def _installed_version() -> str | None:
    pkg = FS_CACHE / "node_modules" / FS_PACKAGE / "package.json"
    return json.loads(pkg.read_text())["version"] if pkg.exists() else None


@pytest.fixture
def http_upstream(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The FastMCP server over streamable HTTP: (its URL, its call log)."""
    port, log = free_port(), tmp_path / "remote.jsonl"
    log.touch()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.mcp_upstream",
            "--http",
            str(port),
            "--log",
            str(log),
        ],
        cwd=ROOT,
    )
    try:
        wait_until("FastMCP over HTTP", lambda: accepts(port), proc=proc, timeout=30)
        yield f"http://127.0.0.1:{port}/mcp", log
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Env:
    clients: Clients
    config: Path
    local_log: Path
    remote_log: Path
    receipts: Path
    files: Path
    work: Path


@contextlib.asynccontextmanager
async def _environment(
    opa_binary: str,
    tmp_path: Path,
    policy: Path,
    fs_entry: Path,
    remote: tuple[str, Path],
    *,
    step_up_timeout: float = 60,
) -> AsyncIterator[Env]:
    cfg = _layered(service_config(opa_binary), policy)
    receipts = tmp_path / "receipts.db"
    cfg = replace(
        cfg,
        auth=with_approvers(tmp_path, APPROVER),
        approvals=ApprovalConfig(sweep_interval_seconds=0.1),
        receipts=ReceiptConfig(store=str(receipts), key_dir=tmp_path / "keys"),
    )
    files = tmp_path / "files"
    files.mkdir()
    (files / "hello.txt").write_text("hello from the filesystem server\n")
    token = tmp_path / "gateway-token"
    token.write_text(PLATFORM_TOKEN + "\n")
    token.chmod(0o600)
    local_log = tmp_path / "local.jsonl"
    local_log.touch()
    async with running(cfg.validate()) as (app, clients):
        config = tmp_path / "gateway.json"
        config.write_text(
            json.dumps(
                {
                    "decision_service": {
                        "target": f"127.0.0.1:{app.port}",
                        "token_file": str(token),
                    },
                    "identity": {"tenant": TENANT, "human": HUMAN, "agent": "mcp-test-agent"},
                    "step_up_timeout_seconds": step_up_timeout,
                    "servers": [
                        {
                            "name": "local",
                            "command": sys.executable,
                            "args": ["-m", "tests.support.mcp_upstream", "--log", str(local_log)],
                            "cwd": str(ROOT),
                            "output_classification": "internal",
                        },
                        {"name": "remote", "url": remote[0], "output_classification": "internal"},
                        {
                            "name": "fs",
                            "command": "node",
                            "args": [str(fs_entry), str(files)],
                            "output_classification": "internal",
                        },
                    ],
                }
            )
        )
        yield Env(clients, config, local_log, remote[1], receipts, files, tmp_path)


def _gateway_argv(config: Path, *extra: str) -> list[str]:
    return ["-m", "aarm_pdp", "mcp-gateway", "--config", str(config), *extra]


@contextlib.asynccontextmanager
async def _mcp_client(config: Path) -> AsyncIterator[ClientSession]:
    """An MCP client session with the gateway, which the client starts over stdio."""
    params = StdioServerParameters(command=sys.executable, args=_gateway_argv(config), cwd=ROOT)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def _text(result: types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))


def _calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


async def _verify_offline(env: Env, session_id: str) -> str:
    jwks = (await env.clients.receipts.GetPublicKeys(receipt_pb2.GetPublicKeysRequest())).jwks
    jwks_file = env.work / "jwks.json"
    jwks_file.write_text(jwks)
    argv = [sys.executable, "-m", "aarm_pdp", "receipts", "verify", "--store", str(env.receipts)]
    argv += ["--jwks", str(jwks_file), "--tenant", TENANT, "--session", session_id, "--complete"]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def _pending_approval(clients: Clients) -> approval_pb2.ApprovalRequest:
    """The one pending approval, as the approver sees it (polled until it is opened)."""
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        listed = await clients.approvals.ListPendingApprovals(
            approval_pb2.ListPendingApprovalsRequest(tenant=TENANT), metadata=bearer("dora-token")
        )
        if listed.approvals:
            return listed.approvals[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no approval was opened")


async def test_reads_answered_forbidden_denied_modify_forwarded(
    opa_binary: str,
    tmp_path: Path,
    policy: Path,
    filesystem_server: Path,
    http_upstream: tuple[str, Path],
) -> None:
    async with _environment(opa_binary, tmp_path, policy, filesystem_server, http_upstream) as env:
        async with _mcp_client(env.config) as mcp:
            names = {t.name for t in (await mcp.list_tools()).tools}
            assert {"local.read_note", "remote.read_note", "fs.read_text_file"} <= names
            assert "fs.write_file" in names  # listed; uncatalogued: the default posture decides

            # Reads answered: FastMCP over stdio, over HTTP, the npm filesystem server.
            first = await mcp.call_tool(
                "local.read_note", {"name": "roadmap"}, meta={"aarm/original_request": USER_REQUEST}
            )
            assert not first.isError, _text(first)
            assert "ship the MCP gateway" in _text(first)
            assert first.meta is not None
            session_id = first.meta["aarm"]["session_id"]
            assert first.meta["aarm"]["decision"] == "ALLOW"
            remote = await mcp.call_tool("remote.read_note", {"name": "oncall"})
            assert not remote.isError, _text(remote)
            assert "bob@acme.example" in _text(remote)
            path = str(env.files / "hello.txt")
            fs = await mcp.call_tool("fs.read_text_file", {"path": path})
            assert not fs.isError, _text(fs)
            assert "hello from the filesystem server" in _text(fs)

            # A forbidden call: an MCP tool error naming the rule; the upstream never saw it.
            denied = await mcp.call_tool("local.disable_audit_logging", {"reason": "noise"})
            assert denied.isError
            assert "aarm.forbidden.disable_security_control" in _text(denied)
            assert denied.meta is not None
            assert denied.meta["aarm"]["decision"] == "DENY"
            # An uncatalogued tool of the third-party server: the default posture denies it.
            unknown = await mcp.call_tool("fs.write_file", {"path": path, "content": "x"})
            assert unknown.isError, _text(unknown)

            # MODIFY: forwarded with the capped limit, an integer again.
            capped = await mcp.call_tool("remote.search_notes", {"query": "q", "limit": 50})
            assert not capped.isError, _text(capped)
            assert capped.meta is not None
            assert capped.meta["aarm"]["decision"] == "MODIFY"
            assert json.loads(_text(capped))["limit"] == 3

        assert (env.files / "hello.txt").read_text() == "hello from the filesystem server\n"
        assert [c["tool"] for c in _calls(env.local_log)] == ["read_note"]
        assert _calls(env.remote_log) == [
            {"tool": "read_note", "arguments": {"name": "oncall"}},
            {"tool": "search_notes", "arguments": {"query": "q", "limit": 3}},
        ]
        # The MCP client session ended, so did the AARM session: the chain is complete
        # and verifies offline; its outcomes carry the upstream outputs.
        kinds = await _session_ended(env.clients, session_id)
        assert kinds.count("outcome") == 4, kinds  # the four calls that ran
        assert "ok" in await _verify_offline(env, session_id)


async def test_step_up_held_until_an_approver_grants_it(
    opa_binary: str,
    tmp_path: Path,
    policy: Path,
    filesystem_server: Path,
    http_upstream: tuple[str, Path],
) -> None:
    async with _environment(opa_binary, tmp_path, policy, filesystem_server, http_upstream) as env:
        async with _mcp_client(env.config) as mcp:
            call = asyncio.create_task(
                mcp.call_tool(
                    "local.purge_records",
                    {"table": "test_records"},
                    meta={"aarm/original_request": "purge the test records I made yesterday"},
                )
            )
            pending = await _pending_approval(env.clients)
            assert "aarm.stepup.high_impact_tool" in [r.rule_id for r in pending.reasons]
            assert not call.done()
            assert _calls(env.local_log) == []  # held: the upstream has not seen it
            granted = await env.clients.approvals.ResolveApproval(
                approval_pb2.ResolveApprovalRequest(
                    approval_id=pending.approval_id, grant=True, reason="test data, go ahead"
                ),
                metadata=bearer("dora-token"),
            )
            assert granted.status == approval_pb2.APPROVAL_STATUS_GRANTED
            result = await asyncio.wait_for(call, 60)
            assert not result.isError, _text(result)
            assert _text(result) == "purged test_records"
            assert result.meta is not None
            assert result.meta["aarm"]["decision"] == "ALLOW"
            session_id = result.meta["aarm"]["session_id"]
        assert _calls(env.local_log) == [
            {"tool": "purge_records", "arguments": {"table": "test_records"}}
        ]
        await _session_ended(env.clients, session_id)
        assert "ok" in await _verify_offline(env, session_id)
        listed = await env.clients.receipts.ListReceipts(
            receipt_pb2.ListReceiptsRequest(tenant=TENANT, session_id=session_id)
        )
        docs = [json.loads(r.payload) for r in listed.receipts]
        approval = next(d for d in docs if d["kind"] == "approval")
        assert approval["approval"]["approver"] == "dora@acme.example"
        allowed = next(
            d for d in docs if d.get("decision_id") == result.meta["aarm"]["decision_id"]
        )
        assert allowed["links"]["approval_id"] == pending.approval_id


async def test_step_up_without_an_answer_times_out_to_a_denial(
    opa_binary: str,
    tmp_path: Path,
    policy: Path,
    filesystem_server: Path,
    http_upstream: tuple[str, Path],
) -> None:
    async with _environment(
        opa_binary, tmp_path, policy, filesystem_server, http_upstream, step_up_timeout=1.5
    ) as env:
        async with _mcp_client(env.config) as mcp:
            result = await mcp.call_tool("remote.purge_records", {"table": "customers"})
            assert result.isError
            text = _text(result)
            assert "aarm.stepup.high_impact_tool" in text
            assert "step_up_timeout" in text and "aarm.gateway.step_up" in text
            assert result.meta is not None
            session_id = result.meta["aarm"]["session_id"]
            # The approval is still open for a human, but this call is over: it never ran.
            pending = await _pending_approval(env.clients)
            assert pending.status == approval_pb2.APPROVAL_STATUS_PENDING
        assert _calls(env.remote_log) == []
        await _session_ended(env.clients, session_id)
        assert "ok" in await _verify_offline(env, session_id)


@contextlib.asynccontextmanager
async def _http_gateway(config: Path) -> AsyncIterator[str]:
    """The gateway serving streamable HTTP (a long-running process many clients share)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *_gateway_argv(config, "--listen", f"127.0.0.1:{port}"), cwd=ROOT
    )
    try:
        for _ in range(1200):
            if accepts(port):
                break
            if proc.returncode is not None:
                raise AssertionError(f"the gateway exited with {proc.returncode}")
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def _session_ended(clients: Clients, session_id: str) -> list[str]:
    """The session's receipt kinds once its session_end receipt is there (polled)."""
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        listed = await clients.receipts.ListReceipts(
            receipt_pb2.ListReceiptsRequest(tenant=TENANT, session_id=session_id)
        )
        kinds = [json.loads(r.payload)["kind"] for r in listed.receipts]
        if kinds and kinds[-1] == "session_end":
            return kinds
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {session_id} did not end")


async def test_http_gateway_one_aarm_session_per_mcp_client_session(
    opa_binary: str,
    tmp_path: Path,
    policy: Path,
    filesystem_server: Path,
    http_upstream: tuple[str, Path],
) -> None:
    async with (
        _environment(opa_binary, tmp_path, policy, filesystem_server, http_upstream) as env,
        _http_gateway(env.config) as url,
    ):

        async def one_client(note: str) -> str:
            async with (
                streamable_http_client(url) as (read, write, _),
                ClientSession(read, write) as mcp,
            ):
                await mcp.initialize()
                result = await mcp.call_tool(
                    "local.read_note",
                    {"name": note},
                    meta={"aarm/original_request": f"read {note}"},
                )
                assert not result.isError, _text(result)
                assert result.meta is not None
                return str(result.meta["aarm"]["session_id"])

        first, second = await asyncio.gather(one_client("roadmap"), one_client("oncall"))
        assert first != second
        for session_id in (first, second):
            # The MCP client deleted its session: the gateway ended the AARM session.
            await _session_ended(env.clients, session_id)
        assert "ok" in await _verify_offline(env, session_id)


async def test_catalogue_draft_from_schemas_and_hints(
    opa_binary: str,
    tmp_path: Path,
    policy: Path,
    filesystem_server: Path,
    http_upstream: tuple[str, Path],
) -> None:
    async with _environment(opa_binary, tmp_path, policy, filesystem_server, http_upstream) as env:
        bundle = tmp_path / "draft"
        argv = [*_gateway_argv(env.config), "catalogue-draft", "--bundle", str(bundle)]
        argv += ["--name", "mcp_review"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv, cwd=ROOT, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert "review every entry" in err.decode()
        # A second run never overwrites a (possibly reviewed) draft.
        again = await asyncio.create_subprocess_exec(
            sys.executable, *argv, cwd=ROOT, stderr=asyncio.subprocess.PIPE
        )
        _, err = await again.communicate()
        assert again.returncode == 1 and "--force" in err.decode()
    manifest = json.loads((bundle / ".manifest").read_text())
    assert manifest["roots"] == ["aarm/overlays/mcp_review"]
    data = bundle / "aarm" / "overlays" / "mcp_review" / "catalogue" / "data.json"
    tools = json.loads(data.read_text())["tools"]
    read = tools["fs.read_text_file"]
    assert (read["category"], read["risk_tier"], read["output_trust"]) == (
        "read",
        "low",
        "untrusted",
    )
    assert read["parameters"]["path"] == {"type": "string", "required": True}
    assert tools["fs.write_file"]["category"] == "destructive"
    assert tools["fs.create_directory"]["category"] == "write"  # destructiveHint false
    assert tools["local.purge_records"]["risk_tier"] == "critical"
    assert tools["remote.search_notes"]["parameters"]["limit"] == {"type": "integer"}
    assert all(t["description"].startswith("DRAFT") for t in tools.values())
    # The draft loads as an overlay over the pack, and a service decides with it: the
    # read-only tool runs, the destructive one waits for a human.
    cfg = replace(
        _layered(service_config(opa_binary), bundle),
        receipts=ReceiptConfig(store=str(tmp_path / "draft.db"), key_dir=tmp_path / "keys"),
    )
    async with running(cfg.validate()) as (_, clients):
        ident = {"tenant": TENANT, "human": HUMAN, "agent": "a", "sessionId": "s-draft"}
        path = str(tmp_path / "files" / "hello.txt")
        for op, params, want in [
            ("read_text_file", {"path": path}, "DECISION_ALLOW"),
            ("write_file", {"path": path, "content": "x"}, "DECISION_STEP_UP"),
        ]:
            req = json_format.ParseDict(
                {
                    "identity": ident,
                    "action": {"tool": "fs", "operation": op, "parameters": params},
                },
                decision_pb2.DecideRequest(),
            )
            resp = await clients.decide.Decide(req)
            assert decision_pb2.Decision.Name(resp.decision) == want, resp


async def test_gateway_authenticates_with_mtls(
    opa_binary: str, tmp_path: Path, policy: Path
) -> None:
    """The gateway's credential is a client certificate (no token): the receipt names
    the principal that certificate maps to."""
    ca = CertificateAuthority.create("gateway-test-ca")
    server_cert, server_key = ca.issue_server().write(tmp_path, "server")
    client_cert, client_key = ca.issue_client(spiffe_id=GATEWAY_SPIFFE).write(tmp_path, "gw")
    ca_file = ca.write(tmp_path)
    principals = write_principals(
        tmp_path / "principals.json",
        extra=[
            {
                "id": "mcp-gateway",
                "kind": "service",
                "roles": {TENANT: ["enforcer"]},
                "mtls": [{"spiffe_id": GATEWAY_SPIFFE}],
            },
            {
                "id": "auditor",
                "kind": "user",
                "roles": {TENANT: ["auditor"]},
                "mtls": [{"spiffe_id": AUDITOR_SPIFFE}],
            },
        ],
    )
    cfg = _layered(service_config(opa_binary, principals=principals), policy)
    cfg = replace(
        cfg,
        auth=replace(cfg.auth, tls_cert=server_cert, tls_key=server_key, tls_client_ca=ca_file),
    )
    log = tmp_path / "local.jsonl"
    log.touch()
    async with running(cfg.validate()) as (app, _):
        config = tmp_path / "gateway.json"
        config.write_text(
            json.dumps(
                {
                    "decision_service": {
                        "target": f"127.0.0.1:{app.port}",
                        "token_file": None,
                        "ca_file": str(ca_file),
                        "client_cert": str(client_cert),
                        "client_key": str(client_key),
                    },
                    "identity": {"tenant": TENANT, "human": HUMAN},
                    "servers": [
                        {
                            "name": "local",
                            "command": sys.executable,
                            "args": ["-m", "tests.support.mcp_upstream", "--log", str(log)],
                            "cwd": str(ROOT),
                        }
                    ],
                }
            )
        )
        async with _mcp_client(config) as mcp:
            result = await mcp.call_tool("local.read_note", {"name": "roadmap"})
        assert not result.isError, _text(result)
        assert "ship the MCP gateway" in _text(result)
        assert result.meta is not None
        auditor = ca.issue_client(spiffe_id=AUDITOR_SPIFFE)
        creds = grpc.ssl_channel_credentials(ca.cert_pem, auditor.key_pem, auditor.cert_pem)
        async with aio_channel(f"127.0.0.1:{app.port}", None, credentials=creds) as channel:
            listed = await Clients(channel).receipts.ListReceipts(
                receipt_pb2.ListReceiptsRequest(
                    tenant=TENANT, session_id=result.meta["aarm"]["session_id"]
                )
            )
        docs = [json.loads(r.payload) for r in listed.receipts]
        doc = next(d for d in docs if d.get("decision_id") == result.meta["aarm"]["decision_id"])
        assert doc["identity"]["principal"] == "mcp-gateway", doc["identity"]
    assert _calls(log) == [{"tool": "read_note", "arguments": {"name": "roadmap"}}]
