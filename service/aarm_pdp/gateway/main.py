"""The gateway's two commands: ``serve`` (stdio or streamable HTTP) and ``catalogue-draft``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from aarm_pdp.gateway import draft, upstream
from aarm_pdp.gateway.config import GatewayConfig
from aarm_pdp.gateway.enforcer import ClientEnforcer
from aarm_pdp.gateway.proxy import Gateway, build_server

log = logging.getLogger("aarm_pdp.gateway")
MCP_PATH = "/mcp"


def _version() -> str:
    try:
        return metadata.version("aarm-pdp")
    except metadata.PackageNotFoundError:
        return ""


async def serve(cfg: GatewayConfig, listen: str) -> None:
    """Connect the upstream servers, then serve MCP on ``listen`` ("stdio" or host:port)
    until the client goes away (stdio) or SIGTERM/SIGINT."""
    enforcer = ClientEnforcer(cfg.decision_service)
    try:
        async with contextlib.AsyncExitStack() as stack:
            upstreams = [await upstream.connect(stack, s) for s in cfg.servers]
            server = build_server(Gateway(cfg, upstreams, enforcer), version=_version())
            if listen == "stdio":
                await _until_signal(_serve_stdio(server))
            else:
                host, _, port = listen.rpartition(":")
                await _serve_http(server, host or "127.0.0.1", int(port))
    finally:
        await enforcer.close()


async def _serve_stdio(server: Server[Any, Any]) -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def _until_signal(main: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _serve_http(server: Server[Any, Any], host: str, port: int) -> None:
    import uvicorn
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.applications import Starlette
    from starlette.routing import Mount

    manager = StreamableHTTPSessionManager(app=server)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    app = Starlette(routes=[Mount(MCP_PATH, app=manager.handle_request)], lifespan=lifespan)

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Ours below: a drained SIGTERM exits 0 (uvicorn's re-raises the signal).
            yield

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    http = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, setattr, http, "should_exit", True)
    log.info("MCP gateway on http://%s:%d%s", host, port, MCP_PATH)
    await http.serve()


async def write_draft(
    cfg: GatewayConfig, *, out: Path | None, bundle: Path | None, name: str, force: bool
) -> int:
    """List every upstream's tools and write the draft overlay catalogue; 0 when written."""
    async with contextlib.AsyncExitStack() as stack:
        ups = [await upstream.connect(stack, s) for s in cfg.servers]
    doc = draft.catalogue([(t.name, t.tool) for up in ups for t in up.tools])
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    targets: list[tuple[Path, str]] = []
    if bundle is not None:
        data = bundle / "aarm" / "overlays" / name / "catalogue" / "data.json"
        targets += [(bundle / ".manifest", json.dumps(draft.manifest(name), indent=2) + "\n")]
        targets += [(data, text)]
    if out is not None:
        targets.append((out, text))
    if not targets:
        sys.stdout.write(text)
        return 0
    existing = [str(p) for p, _ in targets if p.exists()]
    if existing and not force:
        print(
            f"aarm-pdp: not overwriting {', '.join(existing)} (a reviewed catalogue?): "
            "pass --force",
            file=sys.stderr,
        )
        return 1
    for path, body in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    count = len(doc["tools"])
    print(
        f"wrote a draft of {count} tools to {', '.join(str(p) for p, _ in targets)}: "
        "review every entry before loading it as an overlay",
        file=sys.stderr,
    )
    return 0
