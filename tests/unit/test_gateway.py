"""The MCP gateway's pure parts, and its proxy over in-memory MCP sessions.

The proxy runs against a real FastMCP upstream (tests/support/mcp_upstream.py) and a
real MCP client, both on the SDK's in-memory transport, with a scripted
:class:`~aarm_pdp.gateway.enforcer.Enforcer` in place of the decision service.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aarm_pdp.gateway import config as gwconfig
from aarm_pdp.gateway import draft, naming
from aarm_pdp.gateway.config import (
    DecisionServiceConfig,
    GatewayConfig,
    IdentityConfig,
    UpstreamConfig,
)
from aarm_pdp.gateway.enforcer import STEP_UP_RULE, ClientEnforcer, EnforcerError, _step_up_end
from aarm_pdp.gateway.proxy import Gateway, build_server
from aarm_pdp.gateway.upstream import Upstream, UpstreamTool, list_all
from aarm_pdp.gateway.verdicts import (
    Outcome,
    Reason,
    SessionIdentity,
    Verdict,
    fail_closed,
    outcome_of,
    refusal,
)
from mcp import ClientSession, types
from mcp.shared.memory import create_connected_server_and_client_session

from tests.support.mcp_upstream import build as build_upstream

# --------------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("read_file", "read_file"),
        ("Read-File", "read_file"),
        ("get.file info", "get_file_info"),
        ("2fa", "t2fa"),
        ("__x__", "x"),
        ("***", "t"),
    ],
)
def test_sanitise(raw: str, want: str) -> None:
    assert naming.sanitise(raw) == want
    assert naming.valid(naming.sanitise(raw))


def test_tool_names_are_catalogue_names_and_clashes_are_errors() -> None:
    names = naming.tool_names("fs", ["read_text_file", "List-Dir"])
    assert [n.exposed for n in names] == ["fs.read_text_file", "fs.list_dir"]
    assert names[1].upstream == "List-Dir"
    with pytest.raises(naming.NameClash, match="'read-file' and 'read_file'"):
        naming.tool_names("fs", ["read-file", "read_file"])


# --------------------------------------------------------------------------- config


def test_config_parses_and_resolves_relative_paths(tmp_path: Path) -> None:
    cfg = gwconfig.parse(
        {
            "decision_service": {"target": "pdp:50051", "token_file": "tok"},
            "identity": {"human": "alice@acme.example"},
            "servers": [
                {"name": "fs", "command": "npx", "args": ["x"], "cwd": "srv"},
                {"name": "web", "url": "https://mcp.example/mcp", "source_trust": "untrusted"},
            ],
        },
        base=tmp_path,
    )
    assert cfg.decision_service.token_file == tmp_path / "tok"
    assert cfg.servers[0].cwd == tmp_path / "srv"
    assert [s.transport for s in cfg.servers] == ["stdio", "http"]
    assert cfg.identity.tenant == gwconfig.DEFAULT_TENANT


def test_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    with pytest.raises(gwconfig.GatewayConfigError) as err:
        gwconfig.parse(
            {
                "identity": {"human": ""},
                "step_up_timeout_seconds": -1,
                "extra": 1,
                "decision_service": {"client_cert": "c.pem"},
                "servers": [
                    {"name": "Bad Name", "command": "x"},
                    {"name": "a", "command": "x", "url": "http://y"},
                    {"name": "b", "url": "ftp://y", "output_classification": "secret"},
                    {"name": "c", "command": "x", "source_trust": "trusted"},
                    {"name": "c", "command": "x"},
                ],
            },
            base=tmp_path,
        )
    text = str(err.value)
    for needle in (
        "extra: unknown key",
        "identity.human",
        "step_up_timeout_seconds: must be above 0",
        "client_cert and client_key go together",
        "'Bad Name' is not",
        "exactly one of command",
        "must be http:// or https://",
        "output_classification",
        "trust is never raised",
        "'c' is used twice",
    ):
        assert needle in text, needle


def test_config_load_names_json_errors(tmp_path: Path) -> None:
    bad = tmp_path / "g.json"
    bad.write_text('{"servers": [\n}')
    with pytest.raises(gwconfig.GatewayConfigError, match="line 2"):
        gwconfig.load(bad)


# --------------------------------------------------------------------------- draft


def _tool(
    name: str, hints: dict[str, Any] | None, schema: dict[str, Any] | None = None
) -> types.Tool:
    return types.Tool(
        name=name,
        description=f"{name} does things.\nMore.",
        inputSchema=schema or {"type": "object", "properties": {}},
        annotations=types.ToolAnnotations(**hints) if hints is not None else None,
    )


@pytest.mark.parametrize(
    ("hints", "category", "tier"),
    [
        ({"readOnlyHint": True, "openWorldHint": False}, "read", "low"),
        ({"readOnlyHint": True}, "read", "medium"),
        (None, "destructive", "critical"),  # no hints: the protocol's cautious defaults
        ({"destructiveHint": False}, "external_communication", "medium"),
        ({"destructiveHint": False, "openWorldHint": False}, "write", "medium"),
    ],
)
def test_draft_category_from_hints(hints: dict[str, Any] | None, category: str, tier: str) -> None:
    entry = draft.entry(_tool("t", hints))
    assert (entry["category"], entry["risk_tier"]) == (category, tier)
    assert entry["output_trust"] == "untrusted"  # never drafted as trusted
    assert entry["description"].startswith("DRAFT, review before use")


def test_draft_parameters_from_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "maxLength": 100, "pattern": "^/"},
            "n": {"anyOf": [{"type": "integer"}, {"type": "null"}], "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
            "mode": {"type": "string", "enum": ["a", "b"]},
        },
        "required": ["path"],
        "additionalProperties": False,
    }
    entry = draft.entry(_tool("t", {"readOnlyHint": True}, schema))
    assert entry["parameters"] == {
        "path": {"type": "string", "required": True, "max_length": 100, "pattern": "^/"},
        "n": {"type": "integer", "minimum": 1},
        "tags": {"type": "array", "items_type": "string", "max_items": 5},
        "mode": {"type": "string", "enum": ["a", "b"]},
    }
    assert entry["additional_parameters"] is False
    doc = draft.catalogue([(naming.ToolName("fs", "t", "t"), _tool("t", None))])
    assert list(doc["tools"]) == ["fs.t"]


# --------------------------------------------------------------------------- verdicts


def test_refusal_names_every_rule_and_what_a_deferral_needs() -> None:
    deny = Verdict(
        "DENY",
        "d-1",
        (Reason("forbidden", "aarm.forbidden.disable_security_control", "never"),),
    )
    result = refusal("ops.disable", deny)
    assert result.isError
    text = result.content[0].text  # type: ignore[union-attr]
    assert "aarm.forbidden.disable_security_control [forbidden]: never" in text
    assert result.meta is not None
    assert result.meta["aarm"]["reasons"][0]["rule_id"] == "aarm.forbidden.disable_security_control"
    defer = Verdict(
        "DEFER",
        "d-2",
        (Reason("missing_context", "aarm.deferral.missing_context", "need a window"),),
        deferral_id="f-1",
        deferral_trigger="missing_context",
        context_needed=("maintenance_window",),
        deferral_timeout_seconds=600,
    )
    text = refusal("ops.rotate", defer).content[0].text  # type: ignore[union-attr]
    assert "deferred" in text and "context needed: maintenance_window" in text
    assert "deferral f-1" in text


def test_outcome_of_text_digest_and_failure() -> None:
    ok = types.CallToolResult(content=[types.TextContent(type="text", text="x" * 70_000)])
    out = outcome_of(ok, started_ns=1, completed_ns=2, classification="internal")
    assert out.executed and len(out.output_text) == 65_536 and len(out.output_digest) == 64
    bad = types.CallToolResult(content=[types.TextContent(type="text", text="boom")], isError=True)
    out = outcome_of(bad, started_ns=1, completed_ns=2)
    assert not out.executed and out.error == "boom"


# --------------------------------------------------------------------------- proxy


class ScriptedEnforcer:
    """The Enforcer port with scripted final verdicts, recording every call."""

    def __init__(self, verdicts: dict[str, list[Verdict]], *, record_fails: bool = False) -> None:
        self.verdicts = verdicts
        self.record_fails = record_fails
        self.calls: list[tuple[str, Any]] = []

    async def start_session(self, who: SessionIdentity, original_request: str) -> None:
        self.calls.append(("start", (who.session_id, original_request)))

    async def decide(
        self,
        who: SessionIdentity,
        tool: str,
        operation: str,
        arguments: dict[str, Any],
        *,
        schema: Any,
        approval_wait: float,
    ) -> Verdict:
        assert schema["type"] == "object"  # the upstream tool's input schema
        self.calls.append(("decide", (f"{tool}.{operation}", arguments, approval_wait)))
        return self.verdicts[f"{tool}.{operation}"].pop(0)

    async def record_outcome(
        self, who: SessionIdentity, decision_id: str, outcome: Outcome
    ) -> None:
        self.calls.append(("outcome", (decision_id, outcome.executed, outcome.output_text)))
        if self.record_fails:
            raise EnforcerError("UNAVAILABLE")

    async def end_session(self, who: SessionIdentity) -> None:
        self.calls.append(("end", who.session_id))

    async def close(self) -> None:
        return None


@contextlib.asynccontextmanager
async def _through_gateway(
    tmp_path: Path, enforcer: ScriptedEnforcer, step_up_timeout: float = 30
) -> AsyncIterator[ClientSession]:
    log = tmp_path / "calls.jsonl"
    log.touch()
    up_cfg = UpstreamConfig(name="notes", command="(in memory)", output_classification="internal")
    async with create_connected_server_and_client_session(build_upstream(log, 0)) as upstream:
        tools = await list_all(upstream)
        names = naming.tool_names("notes", [t.name for t in tools])
        up = Upstream(
            up_cfg,
            upstream,
            [UpstreamTool(n, t, up_cfg) for n, t in zip(names, tools, strict=True)],
        )
        cfg = GatewayConfig(
            servers=(up_cfg,),
            identity=IdentityConfig(human="alice@acme.example"),
            step_up_timeout_seconds=step_up_timeout,
        )
        server = build_server(Gateway(cfg, [up], enforcer))
        async with create_connected_server_and_client_session(server) as client:
            yield client


def _text(result: types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))


async def test_proxy_allow_modify_deny_and_one_session(tmp_path: Path) -> None:
    enforcer = ScriptedEnforcer(
        {
            "notes.read_note": [Verdict("ALLOW", "d-1", arguments={"name": "roadmap"})],
            "notes.search_notes": [Verdict("MODIFY", "d-2", arguments={"query": "q", "limit": 2})],
            "notes.purge_records": [
                Verdict("DENY", "d-3", (Reason("forbidden", "aarm.forbidden.x", "no"),))
            ],
        }
    )
    async with _through_gateway(tmp_path, enforcer) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        assert "notes.read_note" in listed and "notes.purge_records" in listed
        read = await client.call_tool(
            "notes.read_note", {"name": "roadmap"}, meta={"aarm/original_request": "the roadmap"}
        )
        assert not read.isError and "ship the MCP gateway" in _text(read)
        modified = await client.call_tool("notes.search_notes", {"query": "q", "limit": 40})
        assert json.loads(_text(modified))["limit"] == 2
        denied = await client.call_tool("notes.purge_records", {"table": "t"})
        assert denied.isError and "aarm.forbidden.x" in _text(denied)
        unknown = await client.call_tool("notes.nope", {})
        assert unknown.isError and "unknown tool" in _text(unknown)
    kinds = [k for k, _ in enforcer.calls]
    assert kinds == ["start", "decide", "outcome", "decide", "outcome", "decide", "end"]
    session_ids = {v[0] for k, v in enforcer.calls if k == "start"} | {
        v for k, v in enforcer.calls if k == "end"
    }
    assert len(session_ids) == 1  # one AARM session for the one MCP client session
    assert enforcer.calls[0][1][1] == "the roadmap"
    assert ("outcome", ("d-2", True, '{"hits": ["roadmap"], "limit": 2}')) in enforcer.calls


class _Denied(Exception):
    def __init__(self, code: str, message: str, decision: str = "DENY") -> None:
        super().__init__(message)
        self.reasons = (Reason(code, "aarm_pdp_client", message),)
        self.decision = decision


@pytest.mark.parametrize(
    ("code", "decision", "want"),
    [
        ("pdp_timeout", "DENY", "step_up_timeout"),  # the approval wait ran out
        ("approval_rejected", "STEP_UP", "approval_rejected"),
        ("approval_expired", "STEP_UP", "approval_expired"),
        ("pdp_unavailable", "DENY", "approval_unavailable"),  # the watch failed
    ],
)
def test_a_step_up_without_a_grant_ends_in_a_gateway_reason(
    code: str, decision: str, want: str
) -> None:
    reason = _step_up_end(_Denied(code, "why", decision), 2.0)
    assert (reason.code, reason.rule_id) == (want, STEP_UP_RULE)


async def test_a_held_step_up_that_ended_is_refused_with_every_reason(tmp_path: Path) -> None:
    ended = Verdict(
        "STEP_UP",
        "d-1",
        (
            Reason("high_impact", "aarm.stepup.high_impact_tool", "needs a human"),
            Reason("step_up_timeout", STEP_UP_RULE, "no approval within 2 s: denied"),
        ),
        approval_id="a-1",
    )
    enforcer = ScriptedEnforcer({"notes.purge_records": [ended]})
    async with _through_gateway(tmp_path, enforcer, step_up_timeout=2) as client:
        result = await client.call_tool("notes.purge_records", {"table": "t"})
    assert result.isError
    assert "aarm.stepup.high_impact_tool" in _text(result) and "step_up_timeout" in _text(result)
    assert ("decide", ("notes.purge_records", {"table": "t"}, 2)) in enforcer.calls
    assert not (tmp_path / "calls.jsonl").read_text()  # the upstream never saw it


async def test_no_verdict_is_a_denial(tmp_path: Path) -> None:
    enforcer = ScriptedEnforcer(
        {"notes.read_note": [fail_closed("pdp_unavailable", "UNAVAILABLE")]}
    )
    async with _through_gateway(tmp_path, enforcer) as client:
        result = await client.call_tool("notes.read_note", {"name": "roadmap"})
    assert result.isError and "aarm.gateway.fail_closed" in _text(result)
    assert not (tmp_path / "calls.jsonl").read_text()


async def test_an_outcome_not_recorded_withholds_the_output(tmp_path: Path) -> None:
    enforcer = ScriptedEnforcer(
        {"notes.read_note": [Verdict("ALLOW", "d-1", arguments={"name": "roadmap"})]},
        record_fails=True,
    )
    async with _through_gateway(tmp_path, enforcer) as client:
        result = await client.call_tool("notes.read_note", {"name": "roadmap"})
    assert result.isError and "output is withheld" in _text(result)
    assert "ship the MCP gateway" not in _text(result)


async def test_the_client_enforcer_reads_its_token(tmp_path: Path) -> None:
    token = tmp_path / "t"
    token.write_text("secret\n")
    enforcer = ClientEnforcer(DecisionServiceConfig(target="127.0.0.1:1", token_file=token))
    assert enforcer._client.settings.metadata() == (("authorization", "Bearer secret"),)
    await enforcer.close()


def test_cli_refuses_a_bad_config_or_overlay_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aarm_pdp.cli import main

    cfg = tmp_path / "g.json"
    cfg.write_text("{}")
    assert main(["mcp-gateway", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "identity.human" in err and "at least one upstream server" in err
    assert main(["mcp-gateway", "catalogue-draft", "--config", str(cfg), "--name", "Bad"]) == 2
    assert "is not [a-z][a-z0-9_]*" in capsys.readouterr().err
