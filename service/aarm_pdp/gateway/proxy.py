"""The MCP server MCP clients talk to: namespaced upstream tools, a verdict per call.

One AARM session per MCP client session: the low-level server enters its lifespan
once per client session (a stdio connection, a streamable HTTP ``Mcp-Session-Id``),
so the session id is minted there and EndSession is sent when it ends. The first user
request, when the client supplies it as ``_meta["aarm/original_request"]`` on
``initialize`` or on the first ``tools/call``, opens the session with StartSession
(otherwise the first Decide opens it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp import types
from mcp.server.lowlevel import Server

from aarm_pdp.gateway.config import GatewayConfig
from aarm_pdp.gateway.enforcer import Enforcer, EnforcerError, now_ns
from aarm_pdp.gateway.upstream import Upstream, UpstreamTool
from aarm_pdp.gateway.verdicts import (
    Outcome,
    SessionIdentity,
    Verdict,
    failure,
    outcome_of,
    refusal,
)

log = logging.getLogger("aarm_pdp.gateway")

ORIGINAL_REQUEST_META = "aarm/original_request"
"""The ``_meta`` key an MCP client puts the user's request under."""
_END_SESSION_SECONDS = 5.0


@dataclass(slots=True)
class ClientState:
    """One MCP client session's AARM session."""

    who: SessionIdentity
    opened: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Gateway:
    """The proxy's logic, independent of the MCP transport that serves it."""

    def __init__(self, cfg: GatewayConfig, upstreams: list[Upstream], enforcer: Enforcer) -> None:
        self._cfg = cfg
        self._enforcer = enforcer
        self._tools: dict[str, UpstreamTool] = {}
        self._sessions: dict[str, Upstream] = {}
        for up in upstreams:
            for t in up.tools:
                self._tools[t.name.exposed] = t
                self._sessions[t.name.exposed] = up

    def new_client(self) -> ClientState:
        ident = self._cfg.identity
        who = SessionIdentity(
            tenant=ident.tenant,
            human=ident.human,
            service=ident.service,
            agent=ident.agent,
            session_id=f"mcp-{uuid.uuid4()}",
        )
        return ClientState(who)

    async def close_client(self, state: ClientState) -> None:
        if not state.opened:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(_END_SESSION_SECONDS):
            try:
                await self._enforcer.end_session(state.who)
            except EnforcerError as exc:
                log.warning("session %s: %s", state.who.session_id, exc)

    def list_tools(self) -> list[types.Tool]:
        return [t.tool.model_copy(update={"name": exposed}) for exposed, t in self._tools.items()]

    async def call(
        self, state: ClientState, exposed: str, arguments: dict[str, Any], original_request: str
    ) -> types.CallToolResult:
        """Decide, then forward or refuse; ``_meta["aarm"]`` names the decision and session."""
        result = await self._call(state, exposed, arguments, original_request)
        meta = dict(result.meta or {})
        meta["aarm"] = {**meta.get("aarm", {}), "session_id": state.who.session_id}
        return result.model_copy(update={"meta": meta})

    async def _call(
        self, state: ClientState, exposed: str, arguments: dict[str, Any], original_request: str
    ) -> types.CallToolResult:
        tool = self._tools.get(exposed)
        if tool is None:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=f"unknown tool {exposed!r}")],
                isError=True,
            )
        await self._open(state, original_request)
        verdict = await self._enforcer.decide(
            state.who,
            tool.name.server,
            tool.name.operation,
            arguments,
            schema=tool.tool.inputSchema,
            approval_wait=self._cfg.step_up_timeout_seconds,
        )
        if not verdict.runs:
            return refusal(exposed, verdict)
        args = verdict.arguments if verdict.arguments is not None else arguments
        return await self._forward(state, tool, verdict, args)

    async def _open(self, state: ClientState, original_request: str) -> None:
        async with state.lock:
            if state.opened:
                return
            state.opened = True  # the first Decide opens it when StartSession does not
            if not original_request:
                return
            try:
                await self._enforcer.start_session(state.who, original_request)
            except EnforcerError as exc:
                log.warning("session %s: %s", state.who.session_id, exc)

    async def _forward(
        self, state: ClientState, tool: UpstreamTool, verdict: Verdict, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        up = self._sessions[tool.name.exposed]
        started = now_ns()
        try:
            result = await up.session.call_tool(tool.name.upstream, arguments)
        except Exception as exc:
            log.warning("%s: upstream call failed: %s", tool.name.exposed, exc)
            await self._record(
                state, verdict, failure(str(exc), started_ns=started, completed_ns=now_ns())
            )
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=f"upstream call failed: {exc}")],
                isError=True,
            )
        outcome = outcome_of(
            result,
            started_ns=started,
            completed_ns=now_ns(),
            classification=up.cfg.output_classification,
            source_trust=up.cfg.source_trust,
        )
        if not await self._record(state, verdict, outcome):
            # As the client withholds it: later decisions could not see where it came from.
            return types.CallToolResult(
                content=[
                    types.TextContent(
                        type="text",
                        text=f"{tool.name.exposed} ran, but its outcome was not recorded "
                        f"(decision {verdict.decision_id}): its output is withheld",
                    )
                ],
                isError=True,
            )
        meta = dict(result.meta or {})
        meta["aarm"] = {"decision": verdict.decision, "decision_id": verdict.decision_id}
        return result.model_copy(update={"meta": meta})

    async def _record(self, state: ClientState, verdict: Verdict, outcome: Outcome) -> bool:
        try:
            await self._enforcer.record_outcome(state.who, verdict.decision_id, outcome)
        except EnforcerError as exc:
            log.warning("%s: outcome not recorded: %s", verdict.decision_id, exc)
            return False
        return True


def build_server(
    gateway: Gateway, *, name: str = "aarm-mcp-gateway", version: str = ""
) -> Server[ClientState, Any]:
    """The low-level MCP server over ``gateway``; serve it over stdio or streamable HTTP."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Server[ClientState, Any]) -> AsyncIterator[ClientState]:
        state = gateway.new_client()
        try:
            yield state
        finally:
            await gateway.close_client(state)

    server: Server[ClientState, Any] = Server(name, version=version or None, lifespan=lifespan)

    @server.list_tools()  # type: ignore[no-untyped-call, untyped-decorator]
    async def list_tools() -> list[types.Tool]:
        return gateway.list_tools()

    @server.call_tool(validate_input=False)  # type: ignore[untyped-decorator]
    async def call_tool(tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
        ctx = server.request_context
        return await gateway.call(ctx.lifespan_context, tool, arguments, _original_request(ctx))

    return server


def _original_request(ctx: Any) -> str:
    """``_meta["aarm/original_request"]`` of this call, else of the client's initialize."""
    for meta in (ctx.meta, getattr(ctx.session.client_params, "meta", None)):
        extra = getattr(meta, "model_extra", None) or {}
        value = extra.get(ORIGINAL_REQUEST_META)
        if isinstance(value, str) and value:
            return value
    return ""
