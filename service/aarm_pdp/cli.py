"""Command line: ``aarm-pdp serve | decide | receipts | mcp-gateway | version``.

Thin: parse, configure, delegate.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from aarm_pdp import __version__
from aarm_pdp.config import (
    DEFAULT_DEV_TOKEN_FILE,
    Config,
    ConfigError,
    OpaConfig,
)
from aarm_pdp.loop import run_loop


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"AARM_PDP_{name}", default)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aarm-pdp", description="AARM runtime decision service")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve aarm.v1 over gRPC (managed OPA by default)")
    s.add_argument(
        "--config",
        type=Path,
        default=_env("CONFIG"),
        help="configuration file (YAML, or TOML by its .toml suffix): every setting, a "
        "section per subsystem (deploy/config.example.yaml); flags and env override it",
    )
    s.add_argument("--listen", default=_env("LISTEN"), help="gRPC host:port [127.0.0.1:50051]")
    s.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default=_env("EVENT_LOOP"),
        help="event loop implementation [uvloop]",
    )
    s.add_argument(
        "--principals",
        type=Path,
        default=_env("PRINCIPALS"),
        help="principals file (JSON: roles per tenant, token hashes, mTLS, JWT); "
        "none: a development principal on loopback (token in --dev-token-file)",
    )
    s.add_argument(
        "--dev-token-file",
        type=Path,
        default=_env("DEV_TOKEN_FILE"),
        help="the development principal's token (var/dev-token, mode 0600)",
    )
    s.add_argument("--tls-cert", type=Path, default=_env("TLS_CERT"), help="PEM certificate")
    s.add_argument("--tls-key", type=Path, default=_env("TLS_KEY"), help="PEM key of --tls-cert")
    s.add_argument(
        "--tls-client-ca",
        type=Path,
        default=_env("TLS_CLIENT_CA"),
        help="require client certificates signed by these PEM CAs (mutual TLS)",
    )
    s.add_argument(
        "--insecure-listen",
        action="store_true",
        default=True if _env("INSECURE_LISTEN", "") == "1" else None,
        help="allow plaintext gRPC on a non-loopback address",
    )
    s.add_argument(
        "--metrics-listen",
        default=_env("METRICS_LISTEN"),
        help="Prometheus host:port (127.0.0.1:9464); empty disables",
    )
    s.add_argument(
        "--opa-url",
        default=_env("OPA_URL"),
        help="use an external OPA (http(s)://host:port or unix:///path)",
    )
    s.add_argument(
        "--opa-ca-file",
        type=Path,
        default=_env("OPA_CA_FILE"),
        help="PEM CAs trusted for an https:// OPA (default: the system trust store)",
    )
    s.add_argument(
        "--opa-client-cert",
        type=Path,
        default=_env("OPA_CLIENT_CERT"),
        help="PEM client certificate for mutual TLS to an https:// OPA (with --opa-client-key)",
    )
    s.add_argument(
        "--opa-client-key",
        type=Path,
        default=_env("OPA_CLIENT_KEY"),
        help="unencrypted PEM key of --opa-client-cert",
    )
    s.add_argument("--opa-binary", default=_env("OPA_BIN"), help="opa executable (./bin/opa)")
    s.add_argument(
        "--policy",
        action="append",
        type=Path,
        help="policy layer for the managed OPA, repeatable: the pack first (./rego), then "
        "overlays (docs/overlays.md); env AARM_PDP_POLICY, paths joined by ':'",
    )
    s.add_argument(
        "--policy-verification-key",
        type=Path,
        default=_env("POLICY_VERIFICATION_KEY"),
        help="managed OPA: load only layers signed for this PEM public key "
        "(aarm-pdp policy build --signing-key; docs/policy-lifecycle.md)",
    )
    s.add_argument(
        "--policy-reload-seconds",
        type=float,
        default=_env("POLICY_RELOAD_SECONDS"),
        help="managed OPA: how often the layers are checked for a hot reload (2; 0: off)",
    )
    s.add_argument("--opa-timeout", type=float, help="seconds per OPA query (1.0)")
    s.add_argument(
        "--state",
        default=_env("STATE"),
        help="session state: 'memory' (default) or redis://host:port/db",
    )
    s.add_argument(
        "--receipts",
        default=_env("RECEIPTS"),
        help="receipt store: SQLite path (var/receipts.db) or postgresql:// URL",
    )
    s.add_argument(
        "--key-dir", type=Path, default=_env("KEY_DIR"), help="receipt signing keys (var/keys)"
    )
    s.add_argument(
        "--telemetry-file",
        default=_env("TELEMETRY_FILE"),
        help="append telemetry events (JSONL) here (var/telemetry.jsonl); '' disables",
    )
    s.add_argument(
        "--telemetry-webhook", default=_env("TELEMETRY_WEBHOOK"), help="POST telemetry batches here"
    )
    s.add_argument(
        "--telemetry-max-bytes",
        type=int,
        default=_env("TELEMETRY_MAX_BYTES"),
        help="rotate the telemetry file before it passes this size (67108864: 64 MiB)",
    )
    s.add_argument(
        "--telemetry-keep",
        type=int,
        default=_env("TELEMETRY_KEEP"),
        help="rotated telemetry files kept: <file>.1 ... <file>.N (5)",
    )
    s.add_argument(
        "--telemetry-decisions",
        default=_env("TELEMETRY_DECISIONS"),
        help="export only these verdicts, comma-separated (default: all)",
    )
    s.add_argument(
        "--approval-webhook",
        default=_env("APPROVAL_WEBHOOK"),
        help="POST each new approval request here (approvals.webhook_url)",
    )
    s.add_argument("--no-reflection", action="store_true", help="disable gRPC reflection")
    s.add_argument(
        "--max-inflight-decisions",
        type=int,
        default=_env("MAX_INFLIGHT_DECISIONS"),
        help="Decide calls admitted at once; more are RESOURCE_EXHAUSTED (32 per CPU)",
    )
    s.add_argument(
        "--max-inflight-calls",
        type=int,
        default=_env("MAX_INFLIGHT_CALLS"),
        help="other aarm.v1 calls admitted at once (32 per CPU)",
    )
    s.add_argument(
        "--max-inflight-bytes",
        type=int,
        default=_env("MAX_INFLIGHT_BYTES"),
        help="request bytes in flight over all calls (one largest request)",
    )
    s.add_argument(
        "--max-connections",
        type=int,
        default=_env("MAX_CONNECTIONS"),
        help="client connections open at once (half the descriptor limit, at most 4096)",
    )
    s.add_argument(
        "--connection-idle",
        type=float,
        default=_env("CONNECTION_IDLE"),
        help="seconds without calls before a connection is closed (300)",
    )
    s.add_argument("--grace", type=float, help="seconds to drain on SIGTERM (10)")
    s.add_argument("--log-level", default=_env("LOG_LEVEL"), help="debug|info|warning|error")
    s.add_argument(
        "--log-format",
        default=_env("LOG_FORMAT"),
        help="json, text or auto (default: text on a terminal, JSON otherwise, e.g. in a "
        "container)",
    )

    d = sub.add_parser("decide", help="send one DecideRequest (JSON) and print the response")
    d.add_argument("--target", default="localhost:50051")
    d.add_argument(
        "--token-file",
        type=Path,
        default=_env("DEV_TOKEN_FILE", str(DEFAULT_DEV_TOKEN_FILE)),
        help="bearer token file (var/dev-token); AARM_PDP_TOKEN overrides it",
    )
    d.add_argument("--ca-file", type=Path, help="PEM CAs of a TLS --target")
    d.add_argument("request", help="DecideRequest as JSON, or - for stdin")

    r = sub.add_parser("receipts", help="verify, export and manage signed receipts (offline)")
    rsub = r.add_subparsers(dest="receipts_command", required=True)
    v = rsub.add_parser("verify", help="verify receipt chains against public keys, offline")
    v.add_argument("--store", default="var/receipts.db", help="SQLite path or postgresql:// URL")
    v.add_argument("--export", dest="export_file", help="verify an export file instead")
    v.add_argument("--jwks", required=True, help="public keys (JWKS JSON file)")
    v.add_argument("--tenant")
    v.add_argument("--session")
    v.add_argument("--complete", action="store_true", help="require a session_end receipt")
    v.add_argument(
        "--archive",
        dest="archives",
        action="append",
        default=[],
        help="archive file (repeatable): verify archived prefixes and the store end to end",
    )
    e = rsub.add_parser("export", help="export one session's chain as JSONL")
    e.add_argument("--store", default="var/receipts.db")
    e.add_argument("--tenant", required=True)
    e.add_argument("--session", required=True)
    e.add_argument("--out", help="file (default stdout)")
    e.add_argument("--key-dir", help="sign the export header with the active key")
    k = rsub.add_parser("keys", help="print the public keys (JWKS)")
    k.add_argument("--key-dir", default="var/keys")
    rot = rsub.add_parser("rotate", help="new active signing key; older keys kept, then retired")
    rot.add_argument("--key-dir", default="var/keys")
    rot.add_argument(
        "--retire-after",
        help="overlap before the older keys are retired: 0, 90s, 15m, 1h (default), 7d",
    )
    a = rsub.add_parser(
        "archive", help="move receipts older than a cutoff to a file; leave signed checkpoints"
    )
    a.add_argument("--store", default="var/receipts.db", help="SQLite path or postgresql:// URL")
    a.add_argument(
        "--before", required=True, help="cutoff: RFC 3339 time or an age (30d, 12h, 90m)"
    )
    a.add_argument("--out", required=True, help="new archive file (JSONL; never overwritten)")
    a.add_argument("--key-dir", default="var/keys", help="signs the checkpoints and headers")
    a.add_argument("--jwks", help="verify prefixes against this JWKS (default: the key dir's)")

    from aarm_pdp.gateway.command import register as register_gateway

    register_gateway(sub)

    pol = sub.add_parser("policy", help="check an overlay; build layers for an external OPA")
    psub = pol.add_subparsers(dest="policy_command", required=True)
    pc = psub.add_parser("check", help="lint overlays against the pack (exit 1 on problems)")
    pc.add_argument("overlays", nargs="+", type=Path, metavar="DIR")
    pc.add_argument("--pack", type=Path, help="the reference pack (./rego)")
    pc.add_argument("--opa-binary", default=_env("OPA_BIN"), help="opa executable (./bin/opa)")
    pb = psub.add_parser("build", help="write the layers as bundles with effective revisions")
    pb.add_argument("layers", nargs="+", type=Path, metavar="DIR", help="the pack, then overlays")
    pb.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    pb.add_argument(
        "--signing-key",
        type=Path,
        help="sign each bundle with this PEM private key (opa sign; docs/policy-lifecycle.md)",
    )
    pb.add_argument("--signing-alg", default="RS256", help="signature algorithm (RS256)")
    pb.add_argument("--opa-binary", default=_env("OPA_BIN"), help="opa executable (./bin/opa)")
    pr = psub.add_parser(
        "replay", help="re-evaluate recorded decisions against a candidate policy, print changes"
    )
    pr.add_argument(
        "--policy",
        dest="layers",
        action="append",
        type=Path,
        required=True,
        help="candidate layer, repeatable: the pack first, then overlays",
    )
    pr.add_argument("--store", default=_env("RECEIPTS", "var/receipts.db"), help="receipt store")
    pr.add_argument("--since", help="only decisions since: RFC 3339 time or an age (7d, 12h)")
    pr.add_argument("--tenant", help="only this tenant's decisions")
    pr.add_argument("--json", action="store_true", help="print the report as JSON")
    pr.add_argument(
        "--examples",
        type=int,
        default=5,
        metavar="N",
        help="changed decisions listed per verdict change (default 5; 0: every one)",
    )
    pr.add_argument("--opa-binary", default=_env("OPA_BIN"), help="opa executable (./bin/opa)")
    h = sub.add_parser(
        "health",
        help="probe the local service's gRPC health (exit 0 if SERVING): for exec probes",
    )
    h.add_argument("--config", type=Path, default=_env("CONFIG"), help="the serve config file")
    h.add_argument("--service", default="aarm.liveness", help="health name [aarm.liveness]")
    h.add_argument("--ca-file", type=Path, help="PEM CAs of the TLS listener (ca.crt)")
    h.add_argument("--server-name", default="aarm-pdp", help="TLS name to verify [aarm-pdp]")
    h.add_argument("--timeout", type=float, default=4.0)
    ex = sub.add_parser("explain", help="why a recorded decision came out as it did")
    ex.add_argument("decision_id", metavar="DECISION_ID")
    ex.add_argument("--store", default=_env("RECEIPTS", "var/receipts.db"), help="receipt store")
    ex.add_argument(
        "--policy",
        dest="layers",
        action="append",
        type=Path,
        help="also evaluate the recorded input on these layers (the pack first), repeatable",
    )
    ex.add_argument("--json", action="store_true", help="print the explanation as JSON")
    ex.add_argument("--opa-binary", default=_env("OPA_BIN"), help="opa executable (./bin/opa)")
    sub.add_parser("version", help="print the version")
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    """A validated Config from ``serve`` arguments: flags win over AARM_PDP_* env, both
    over the ``--config`` file, the file over the built-in defaults."""
    from aarm_pdp import config_file

    problems: list[str] = []
    base = config_file.read(args.config, problems) if args.config else Config()
    server = base.server
    if args.event_loop:
        server = replace(server, event_loop=args.event_loop)

    def path(value: str | Path | None) -> Path | None:
        return Path(value).resolve() if value else None

    auth = base.auth
    if args.principals:
        auth = replace(auth, principals_file=path(args.principals))
    if args.tls_cert:
        auth = replace(auth, tls_cert=path(args.tls_cert))
    if args.tls_key:
        auth = replace(auth, tls_key=path(args.tls_key))
    if args.tls_client_ca:
        auth = replace(auth, tls_client_ca=path(args.tls_client_ca))
    if args.insecure_listen:
        auth = replace(auth, insecure_listen=True)
    if args.dev_token_file:
        auth = replace(auth, dev_token_file=Path(args.dev_token_file).resolve())
    if args.listen:
        server = replace(server, listen=args.listen)
    if args.no_reflection:
        server = replace(server, reflection=False)
    if args.grace is not None:
        server = replace(server, grace_seconds=args.grace)
    for flag, name in (
        ("max_inflight_decisions", "max_inflight_decisions"),
        ("max_inflight_calls", "max_inflight_calls"),
        ("max_inflight_bytes", "max_inflight_bytes"),
        ("max_connections", "max_connections"),
        ("connection_idle", "connection_idle_seconds"),
    ):
        value = getattr(args, flag)
        if value is not None:
            server = replace(server, **{name: value})
    opa = base.opa
    if args.opa_url:
        opa = replace(opa, url=args.opa_url)
    if args.opa_binary:
        opa = replace(opa, binary=args.opa_binary)
    if args.opa_ca_file:
        opa = replace(opa, ca_file=Path(args.opa_ca_file).resolve())
    if args.opa_client_cert:
        opa = replace(opa, client_cert=Path(args.opa_client_cert).resolve())
    if args.opa_client_key:
        opa = replace(opa, client_key=Path(args.opa_client_key).resolve())
    if args.policy_verification_key:
        opa = replace(opa, verification_key=Path(args.policy_verification_key).resolve())
    if args.policy_reload_seconds is not None:
        opa = replace(opa, reload_seconds=float(args.policy_reload_seconds))
    policy = args.policy or [Path(p) for p in (_env("POLICY") or "").split(os.pathsep) if p]
    if policy:
        opa = replace(opa, policy_paths=tuple(p.resolve() for p in policy))
    if args.opa_timeout is not None:
        opa = replace(opa, timeout_seconds=args.opa_timeout)
    session = base.session
    if args.state:
        session = replace(session, state=args.state)
    approvals = base.approvals
    if args.approval_webhook:
        approvals = replace(approvals, webhook_url=args.approval_webhook)
    receipts = base.receipts
    if args.receipts:
        receipts = replace(receipts, store=args.receipts)
    if args.key_dir:
        receipts = replace(receipts, key_dir=Path(args.key_dir).resolve())
    telemetry = base.telemetry
    if args.telemetry_file is not None:
        telemetry = replace(
            telemetry, file=Path(args.telemetry_file).resolve() if args.telemetry_file else None
        )
    if args.telemetry_webhook:
        telemetry = replace(telemetry, webhook_url=args.telemetry_webhook)
    if args.telemetry_max_bytes is not None:
        telemetry = replace(telemetry, max_bytes=int(args.telemetry_max_bytes))
    if args.telemetry_keep is not None:
        telemetry = replace(telemetry, keep=int(args.telemetry_keep))
    if args.telemetry_decisions:
        chosen = tuple(v.strip().upper() for v in args.telemetry_decisions.split(",") if v.strip())
        telemetry = replace(telemetry, decisions=chosen)
    metrics = base.metrics
    if args.metrics_listen is not None:
        metrics = replace(metrics, listen=args.metrics_listen)
    log = base.log
    if args.log_level:
        log = replace(log, level=args.log_level)
    if args.log_format:
        log = replace(log, format=args.log_format)
    cfg = replace(
        base,
        server=server,
        auth=auth,
        opa=opa,
        metrics=metrics,
        session=session,
        approvals=approvals,
        receipts=receipts,
        telemetry=telemetry,
        log=log,
    )
    return config_file.validate_all(cfg, problems)


def _decide(target: str, raw: str, token_file: Path, ca_file: Path | None) -> int:
    import grpc
    from aarm.v1 import decision_pb2, decision_pb2_grpc
    from google.protobuf import json_format

    token = os.environ.get("AARM_PDP_TOKEN", "")
    if not token:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            print(f"error: no token: {token_file}: {exc.strerror}", file=sys.stderr)
            return 2
    text = sys.stdin.read() if raw == "-" else raw
    request = json_format.Parse(text, decision_pb2.DecideRequest())
    channel = (
        grpc.secure_channel(
            target, grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes())
        )
        if ca_file is not None
        else grpc.insecure_channel(target)
    )
    with channel:
        stub = decision_pb2_grpc.DecisionServiceStub(channel)
        try:
            response = stub.Decide(
                request, timeout=10, metadata=(("authorization", f"Bearer {token}"),)
            )
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 2
    print(json_format.MessageToJson(response, indent=2))
    return 0


def _health(args: argparse.Namespace) -> int:
    """One gRPC health check of this pod's listener (port and TLS from the config file)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from aarm_pdp import config_file

    cfg = config_file.read(args.config) if args.config else Config()
    port = cfg.server.listen.rpartition(":")[2]
    target = f"127.0.0.1:{port}"
    if cfg.auth.tls_cert is not None:
        ca = (args.ca_file or cfg.auth.tls_cert).read_bytes()
        client = (
            (cfg.auth.tls_key.read_bytes(), cfg.auth.tls_cert.read_bytes())
            if cfg.auth.tls_client_ca is not None and cfg.auth.tls_key is not None
            else (None, None)
        )
        creds = grpc.ssl_channel_credentials(ca, client[0], client[1])
        options = (("grpc.ssl_target_name_override", args.server_name),)
        channel = grpc.secure_channel(target, creds, options=options)
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"{args.service}: {exc.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    print(f"{args.service}: {status}")
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``aarm-pdp`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    if args.command == "health":
        try:
            return _health(args)
        except (ConfigError, OSError) as exc:
            print(f"aarm-pdp health: {exc}", file=sys.stderr)
            return 2
    if args.command == "mcp-gateway":
        from aarm_pdp.gateway.command import run as run_gateway

        return run_gateway(args)
    if args.command == "policy":
        from aarm_pdp.opa import policy_cli

        defaults = OpaConfig()
        if args.policy_command == "replay":
            from aarm_pdp.decision import replay

            return replay.run(
                args.store,
                args.layers,
                binary=args.opa_binary or defaults.binary,
                since=args.since,
                tenant=args.tenant,
                as_json=args.json,
                examples=args.examples,
            )
        if args.policy_command == "build":
            return policy_cli.build(
                args.layers,
                args.out,
                signing_key=args.signing_key,
                signing_alg=args.signing_alg,
                binary=args.opa_binary or defaults.binary,
            )
        pack = args.pack or (defaults.policy_paths[0] if defaults.policy_paths else Path("rego"))
        return policy_cli.check(args.overlays, pack=pack, binary=args.opa_binary or defaults.binary)
    if args.command == "explain":
        from aarm_pdp.decision import explain

        return explain.run(
            args.store,
            args.decision_id,
            layers=args.layers,
            binary=args.opa_binary or OpaConfig().binary,
            as_json=args.json,
        )
    if args.command == "decide":
        return _decide(args.target, args.request, args.token_file, args.ca_file)
    if args.command == "receipts":
        from aarm_pdp.receipts import cli as rcli

        rc = args.receipts_command
        if rc == "verify":
            return rcli.verify(
                args.export_file or args.store,
                args.jwks,
                session=args.session,
                export_file=args.export_file,
                require_complete=args.complete,
                tenant=args.tenant,
                archives=args.archives,
            )
        if rc == "export":
            return rcli.export(
                args.store, args.tenant, args.session, args.out, key_dir=args.key_dir
            )
        if rc == "keys":
            return rcli.keys(args.key_dir)
        if rc == "archive":
            return rcli.archive(
                args.store, args.before, args.out, key_dir=args.key_dir, jwks_path=args.jwks
            )
        return rcli.rotate(args.key_dir, retire_after=args.retire_after)

    from aarm_pdp import server
    from aarm_pdp.observability import logging as aarm_logging

    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        print(f"aarm-pdp: {exc}", file=sys.stderr)
        return 2
    aarm_logging.setup(cfg.log.level, cfg.log.format)
    try:
        run_loop(server.serve(cfg), cfg.server.event_loop)
    except server.StartupError as exc:
        print(f"aarm-pdp: not ready: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
