"""What every probe shares: the context object, request helpers, the probe registry.

A probe that raises records a failure on every item it covers, so a crash can never
read as a pass."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aarm.v1 import (
    decision_pb2,
    deferral_pb2,
    receipt_pb2,
    session_pb2,
)
from google.protobuf import json_format

from conformance import receipts as rc
from conformance.harness import Service, SiemMock, Tokens
from conformance.model import Item, Result
from tests.support import scenarios
from tests.support.grpc_clients import Clients, bearer
from tests.support.processes import RedisServer

D = decision_pb2
P, F, NI, NC, NA = (
    Result.PASS,
    Result.FAIL,
    Result.NOT_IMPLEMENTED,
    Result.NOT_CHECKABLE,
    Result.NOT_APPLICABLE,
)
EXTERNAL = "not checkable against an external target"


@dataclass
class Ctx:
    """Everything a probe needs."""

    c: Clients
    items: dict[str, Item]
    tokens: Tokens
    run: str
    managed: Service | None = None
    metrics_url: str | None = None
    short: Clients | None = None
    short_service: Service | None = None
    redis: RedisServer | None = None
    broken: Clients | None = None
    siem: SiemMock | None = None
    """The SIEM mock the managed services post telemetry batches to."""
    siem_path: str = "main"
    """The path the target (``c``) posts to on the SIEM mock."""
    telemetry_file: Path | None = None
    """The target's JSONL telemetry sink: the managed scratch file or ``--telemetry-file``."""
    scen: dict[str, scenarios.ScenarioResult] = field(default_factory=dict)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    jwks: dict[str, Any] | None = None
    jwks_error: str = ""

    def record(
        self, item: str, description: str, result: Result, evidence: list[str] | str = ""
    ) -> None:
        ev = [evidence] if isinstance(evidence, str) else evidence
        from conformance.model import Check

        self.items[item].checks.append(Check(description, result, [e for e in ev if e]))

    def expect(self, item: str, description: str, ok: bool, evidence: list[str] | str = "") -> bool:
        self.record(item, description, P if ok else F, evidence)
        return ok

    def session(self, name: str) -> str:
        return f"cf-{self.run}-{name}"

    def approver_md(self) -> tuple[tuple[str, str]]:
        return bearer(self.tokens.approver)


# --- request helpers -------------------------------------------------------------------

BASE = scenarios.BASE_IDENTITY


def ident(session: str, **over: Any) -> dict[str, Any]:
    return {**BASE, "session_id": session, **over}


def request(
    tool: str,
    op: str,
    params: dict[str, Any] | None,
    session: str,
    *,
    identity: dict[str, Any] | None = None,
    facts: dict[str, Any] | None = None,
    risk: dict[str, float] | None = None,
    depends_on: list[str] | None = None,
    token: str = "",
    request_id: str = "",
) -> Any:
    body: dict[str, Any] = {
        "requestId": request_id,
        "identity": identity if identity is not None else ident(session),
        "action": {
            "tool": tool,
            "operation": op,
            "parameters": params or {},
            "dependsOn": depends_on or [],
        },
        "facts": [
            {"name": k, "value": v, "source": "conformance"}
            for k, v in sorted((facts or {}).items())
        ],
        "riskSignals": risk or {},
        "approvalToken": token,
    }
    return json_format.ParseDict(body, D.DecideRequest())


def decide(c: Clients, *args: Any, **kw: Any) -> Any:
    return c.decide.Decide(request(*args, **kw), timeout=10)


def verdict(resp: Any) -> str:
    return str(D.Decision.Name(resp.decision).removeprefix("DECISION_"))


def codes(resp: Any) -> list[str]:
    return [r.code for r in resp.reasons]


def ev(resp: Any, label: str = "") -> str:
    trig = f" trigger={resp.deferral.trigger}" if resp.deferral.trigger else ""
    pre = f"{label}: " if label else ""
    return f"{pre}{verdict(resp)} {codes(resp)}{trig} decision_id={resp.decision_id}"


def ident_pb(session: str, **over: Any) -> Any:
    return json_format.ParseDict(ident(session, **over), D.Identity())


def rpc_code(fn: Callable[[], Any]) -> grpc.StatusCode | None:
    try:
        fn()
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return None


def receipt_obj(resp: Any) -> dict[str, Any] | None:
    return rc.parse(resp.receipt.payload) if resp.HasField("receipt") else None


# --- the probe registry ------------------------------------------------------------------

Probe = Callable[[Ctx], None]
REGISTRY: dict[str, tuple[tuple[str, ...], Probe]] = {}
"""Every probe by name, with the items it covers; run in the order ``checks.ORDER`` gives."""


def probe(*covers: str) -> Callable[[Probe], Probe]:
    def register(fn: Probe) -> Probe:
        REGISTRY[fn.__name__] = (covers, fn)
        return fn

    return register


def run_probes(
    ctx: Ctx, probes: list[tuple[str, tuple[str, ...], Probe]], log: Callable[[str], None]
) -> None:
    for name, covers, fn in probes:
        started = time.monotonic()
        try:
            fn(ctx)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError):
                detail = f"gRPC {exc.code().name}: {exc.details()}"
            else:
                detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            frames = [
                f for f in traceback.extract_tb(exc.__traceback__) if "conformance" in f.filename
            ]
            where = frames[-1] if frames else traceback.extract_tb(exc.__traceback__)[-1]
            for item in covers:
                ctx.record(
                    item,
                    f"probe {name} crashed",
                    F,
                    f"{detail} at {Path(where.filename).name}:{where.lineno}",
                )
        log(f"  {name}: {time.monotonic() - started:.1f}s")


def scen_ok(ctx: Ctx, sid: str) -> tuple[bool, list[str]]:
    res = ctx.scen.get(sid)
    if res is None:
        return False, [f"{sid} did not run"]
    return res.ok, [f"{sid} {s.evidence()}" for s in res.steps]


def scen_step(ctx: Ctx, sid: str, index: int) -> Any:
    res = ctx.scen.get(sid)
    if res is None or len(res.steps) < index:
        return None
    return res.steps[index - 1]


HEX64 = set("0123456789abcdef")


def is_hex64(s: str) -> bool:
    return len(s) == 64 and set(s) <= HEX64


def outcome(
    ctx: Ctx,
    session: str,
    decision_id: str,
    text: str,
    cls: str | None,
    labels: list[str] | None = None,
) -> Any:
    req = session_pb2.RecordOutcomeRequest(
        identity=ident_pb(session),
        decision_id=decision_id,
        status=session_pb2.OUTCOME_STATUS_EXECUTED,
        output_text=text,
        labels=labels or [],
    )
    if cls:
        req.classification = scenarios.enum_value(
            session_pb2.Classification, f"CLASSIFICATION_{cls}"
        )
    return ctx.c.sessions.RecordOutcome(req, timeout=10)


CLEANUP = ("database", "delete", {"table": "test_records", "created_by": BASE["human"]})


def start_cleanup(ctx: Ctx, c: Clients, s: str, **over: Any) -> None:
    c.sessions.StartSession(
        session_pb2.StartSessionRequest(
            identity=ident_pb(s, **over),
            original_request="clean up the test data I created yesterday",
            intent_class="data_cleanup",
        ),
        timeout=10,
    )


def provide(c: Clients, session: str, deferral_id: str, facts: dict[str, Any], **over: Any) -> Any:
    return c.deferrals.ProvideContext(
        deferral_pb2.ProvideContextRequest(
            identity=ident_pb(session, **over),
            deferral_id=deferral_id,
            facts=[
                json_format.ParseDict(
                    {"name": k, "value": v, "source": "conformance-resolver"}, D.Fact()
                )
                for k, v in facts.items()
            ],
        ),
        timeout=10,
    )


SHORT_TIMEOUT = 2


def session_receipts(c: Clients, session: str) -> list[dict[str, Any]]:
    resp = c.receipts.ListReceipts(
        receipt_pb2.ListReceiptsRequest(tenant="acme", session_id=session), timeout=10
    )
    return [r for r in (rc.parse(x.payload) for x in resp.receipts) if r is not None]


def verify_one(receipt: dict[str, Any], keys: Any) -> str | None:
    res = rc.verify_receipt(receipt, keys)
    return None if res.ok else str(res)
