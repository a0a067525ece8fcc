"""``aarm-pdp mcp-gateway [catalogue-draft]``: arguments and dispatch (thin)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from aarm_pdp.gateway import config as gwconfig
from aarm_pdp.gateway import naming


def register(sub: Any) -> None:
    """Add ``mcp-gateway`` (and its ``catalogue-draft``) to the CLI's subparsers."""
    g = sub.add_parser(
        "mcp-gateway",
        help="an MCP proxy in front of MCP servers: Decide before every tools/call",
        description="Serve MCP (stdio, or streamable HTTP at http://HOST:PORT/mcp) in front "
        "of the upstream MCP servers of --config; every tools/call is decided first.",
    )
    _common(g, None)
    g.add_argument(
        "--listen",
        default=os.environ.get("AARM_PDP_GATEWAY_LISTEN", "stdio"),
        help="stdio (default: the MCP client starts the gateway) or HOST:PORT (streamable HTTP)",
    )
    gsub = g.add_subparsers(dest="gateway_command")
    d = gsub.add_parser(
        "catalogue-draft",
        help="write a draft overlay catalogue from the upstream tools, for review",
    )
    _common(d, argparse.SUPPRESS)
    d.add_argument("--out", type=Path, help='write the {"tools": ...} document here')
    d.add_argument("--bundle", type=Path, help="write a whole overlay bundle directory here")
    d.add_argument("--name", default="mcp_draft", help="the overlay's name [mcp_draft]")
    d.add_argument("--force", action="store_true", help="overwrite existing files")


def _common(p: argparse.ArgumentParser, default: Any) -> None:
    env = os.environ.get("AARM_PDP_GATEWAY_CONFIG")
    p.add_argument(
        "--config",
        type=Path,
        default=default if default is argparse.SUPPRESS else env,
        help="gateway config (JSON: decision_service, identity, servers)",
    )
    p.add_argument("--target", default=default, help="decision service host:port (overrides)")
    p.add_argument("--token-file", type=Path, default=default, help="bearer token file (overrides)")
    p.add_argument("--log-level", default=default if default is argparse.SUPPRESS else "info")


def run(args: argparse.Namespace) -> int:
    """Load the config, then serve or draft."""
    from aarm_pdp.gateway import main as gwmain

    logging.basicConfig(
        level=str(args.log_level).upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.config is None:
        print("aarm-pdp mcp-gateway: --config is required", file=sys.stderr)
        return 2
    if args.gateway_command == "catalogue-draft" and not naming.valid(args.name):
        print(f"aarm-pdp mcp-gateway: --name {args.name!r} is not [a-z][a-z0-9_]*", file=sys.stderr)
        return 2
    try:
        cfg = gwconfig.load(args.config)
    except gwconfig.GatewayConfigError as exc:
        print(f"aarm-pdp mcp-gateway: {exc}", file=sys.stderr)
        return 2
    ds = cfg.decision_service
    if args.target:
        ds = replace(ds, target=args.target)
    if args.token_file:
        ds = replace(ds, token_file=args.token_file.resolve())
    cfg = replace(cfg, decision_service=ds)
    import asyncio

    from aarm_pdp.gateway.upstream import UpstreamError

    try:
        if args.gateway_command == "catalogue-draft":
            return asyncio.run(
                gwmain.write_draft(
                    cfg, out=args.out, bundle=args.bundle, name=args.name, force=args.force
                )
            )
        asyncio.run(gwmain.serve(cfg, args.listen))
    except UpstreamError as exc:
        print(f"aarm-pdp mcp-gateway: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if exc.name != "aarm_pdp_client":
            raise
        print(
            "aarm-pdp mcp-gateway: needs the aarm-pdp client (make setup installs it; "
            "or pip install -e ./client)",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:
        print(f"aarm-pdp mcp-gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
