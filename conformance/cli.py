"""Command line: start (or reach) the deployment, run the probes, write the report."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from conformance import catalog, checks, report
from conformance.harness import (
    Service,
    SiemMock,
    Tokens,
    new_tokens,
    short_timeout_policy,
    write_approvers,
)
from tests.support.grpc_clients import Clients
from tests.support.processes import RedisServer, wait_serving


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    p.add_argument("--target", help="host:port of a running deployment (default: start one)")
    p.add_argument("--metrics", help="its Prometheus URL, e.g. http://host:9464/metrics")
    p.add_argument(
        "--approver-token",
        default=os.environ.get("AARM_CONFORMANCE_APPROVER_TOKEN", ""),
        help="bearer token of an approver in every group the policy names (external target)",
    )
    p.add_argument(
        "--outsider-token",
        default=os.environ.get("AARM_CONFORMANCE_OUTSIDER_TOKEN", ""),
        help="bearer token of an approver outside those groups (external target)",
    )
    p.add_argument(
        "--agent-token",
        default=os.environ.get("AARM_CONFORMANCE_AGENT_TOKEN", ""),
        help="a credential registered to the agent's own identity (external target)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=Path(os.environ.get("AARM_PDP_DEV_TOKEN_FILE", "var/dev-token")),
        help="the enforcement point's bearer token for an external target "
        "(AARM_CONFORMANCE_TOKEN overrides it; default var/dev-token, as `make run` writes)",
    )
    p.add_argument(
        "--telemetry-file",
        type=Path,
        help="the external target's telemetry JSONL sink, readable here (R8 row 52, S24); "
        "without it those checks are not-checkable against --target",
    )
    p.add_argument(
        "--report-dir", type=Path, default=Path("conformance"), help="where report.md/json go"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory (service logs)")
    return p


def _platform_token(path: Path) -> str:
    token = os.environ.get("AARM_CONFORMANCE_TOKEN", "")
    return token or path.read_text().strip()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.telemetry_file and not args.target:
        parser.error("--telemetry-file is for an external --target (managed runs use their own)")
    started = time.monotonic()
    run = uuid.uuid4().hex[:8]
    items = catalog.items()
    workdir = Path(tempfile.mkdtemp(prefix="aarm-conformance-"))
    services: list[Service] = []
    redis: RedisServer | None = None
    siem: SiemMock | None = None
    clients: list[Clients] = []
    try:
        if args.target:
            tokens = Tokens(args.approver_token, args.outsider_token, args.agent_token)
            wait_serving(args.target, timeout=10)
            ctx = checks.Ctx(
                Clients.connect(args.target, token=_platform_token(args.token_file)),
                items,
                tokens,
                run,
                metrics_url=args.metrics,
                telemetry_file=args.telemetry_file,
            )
            target = args.target
        else:
            tokens = new_tokens()
            principals = workdir / "principals.json"
            write_approvers(principals, tokens)
            siem = SiemMock()
            main_svc = Service("main", workdir, [], siem.url("main"), principals)
            redis = RedisServer(workdir)
            short = Service(
                "short-timeouts",
                workdir,
                [
                    "--state",
                    redis.url,
                    "--policy",
                    str(short_timeout_policy(workdir, checks.SHORT_TIMEOUT)),
                ],
                siem.url("short-timeouts"),
                principals,
            )
            broken = Service(
                "broken-policy",
                workdir,
                ["--policy", str(Path(__file__).resolve().parent / "policies" / "broken")],
                siem.url("broken-policy"),
                principals,
            )
            services = [main_svc, short, broken]
            log(
                "starting aarm-pdp serve x3: embedded defaults; short timeouts + redis; "
                f"broken policy (telemetry: JSONL in {workdir}, webhook to {siem.url('<name>')})"
            )
            for svc in services:
                svc.start()
            for svc in services:
                svc.wait()
            ctx = checks.Ctx(
                Clients.connect(main_svc.address),
                items,
                tokens,
                run,
                managed=main_svc,
                metrics_url=main_svc.metrics_url,
                short=Clients.connect(short.address),
                short_service=short,
                redis=redis,
                broken=Clients.connect(broken.address),
                siem=siem,
                siem_path="main",
                telemetry_file=main_svc.telemetry_path,
            )
            target = f"managed ({main_svc.address}, embedded defaults)"
        clients = [x for x in (ctx.c, ctx.short, ctx.broken) if x is not None]
        log(f"running probes against {target}")
        checks.run_probes(ctx, log)
        checks.threat_coverage(ctx)
        policy = ""
        try:
            r = checks.decide(
                ctx.c, "db", "query", {"table": "orders", "limit": 1}, ctx.session("meta")
            )
            policy = f"{r.policy.revision} {r.policy.hash[:12]}"
        except Exception as exc:
            policy = f"unknown ({type(exc).__name__})"
        meta = {
            "target": target,
            "run": run,
            "policy": policy,
            "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seconds": time.monotonic() - started,
        }
        md, js = report.write(items, args.report_dir, meta)
        print(report.summary(items))
        for item in items.values():
            print(f"  {item.id:7} {item.level:6} {item.result.value:15} {item.title}")
        failed = report.failed_must(items)
        log(f"wrote {md} and {js} in {meta['seconds']:.0f}s")
        if failed:
            log(f"MUST failures: {', '.join(failed)}")
        return 1 if failed else 0
    finally:
        for cl in clients:
            cl.close()
        for svc in services:
            svc.stop()
        if redis is not None:
            redis.kill()
        if siem is not None:
            siem.close()
        if args.keep:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
