"""Traces reach a real OTLP/gRPC receiver: `aarm-pdp serve` with `tracing.endpoint` set.

The receiver is the OTLP TraceService (the `opentelemetry-proto` stubs) served by grpcio on
a real socket in this test; the service is a real `aarm-pdp serve` process with its
managed OPA, started from a config file. One Decide carrying W3C trace context must arrive
as a SERVER span of the caller's trace with children for the session, OPA and the receipt.
(That log lines written inside a span carry its ids: tests/unit/test_log_format.py.)
"""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from aarm.v1 import decision_pb2, decision_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.support.ports import address, free_port
from tests.support.processes import wait_serving

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
_PARENT = "00f067aa0ba902b7"


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span exported to it: (trace id hex, span id hex, parent hex, name, kind)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str, str, int]] = []
        self.resources: list[dict[str, Any]] = []
        self.got = threading.Condition()

    def Export(  # the OTLP service's method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self.got:
            for rs in request.resource_spans:
                self.resources.append({a.key: a.value.string_value for a in rs.resource.attributes})
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append(
                            (
                                s.trace_id.hex(),
                                s.span_id.hex(),
                                s.parent_span_id.hex(),
                                s.name,
                                s.kind,
                            )
                        )
            self.got.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    def wait_for(self, name: str, timeout: float) -> bool:
        with self.got:
            return self.got.wait_for(lambda: any(s[3] == name for s in self.spans), timeout)


def test_decide_spans_reach_a_real_otlp_receiver(tmp_path: Path) -> None:
    receiver = _Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    otlp_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port = free_port()
    (tmp_path / "rego").symlink_to(ROOT / "rego")
    config = tmp_path / "config.yaml"
    config.write_text(
        "server:\n"
        f'  listen: "{address(port)}"\n'
        "metrics:\n"
        '  listen: ""\n'
        "opa:\n"
        '  policy_paths: ["rego"]\n'
        "tracing:\n"
        f'  endpoint: "http://127.0.0.1:{otlp_port}"\n'
        "  insecure: true\n"
        '  service_name: "aarm-pdp-otlp-test"\n'
    )
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aarm_pdp", "serve", "--config", str(config)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_serving(address(port), timeout=60, proc=proc)
        token = (tmp_path / "var" / "dev-token").read_text().strip()
        with grpc.insecure_channel(address(port)) as ch:
            resp = decision_pb2_grpc.DecisionServiceStub(ch).Decide(
                decision_pb2.DecideRequest(
                    identity=decision_pb2.Identity(
                        human="alice@acme.example", agent="agent-7", session_id="s-otlp"
                    ),
                    action=decision_pb2.Action(tool="database", operation="drop"),
                ),
                timeout=15,
                metadata=(
                    ("authorization", f"Bearer {token}"),
                    ("traceparent", f"00-{_TRACE_ID}-{_PARENT}-01"),
                ),
            )
        assert resp.decision == decision_pb2.DECISION_DENY
    finally:
        proc.terminate()  # the provider's shutdown flushes what is still batched
        proc.wait(timeout=30)
        log.close()
    try:
        assert receiver.wait_for("aarm.v1.DecisionService/Decide", timeout=10), receiver.spans
        ours = [s for s in receiver.spans if s[0] == _TRACE_ID]
        (root,) = [s for s in ours if s[3] == "aarm.v1.DecisionService/Decide"]
        assert root[2] == _PARENT  # continues the caller's span
        assert root[4] == 2  # SPAN_KIND_SERVER
        below = {s[3] for s in ours if s[1] != root[1]}
        assert {"aarm.session.prepare", "aarm.opa.evaluate", "aarm.receipt.append"} <= below
        assert any(r.get("service.name") == "aarm-pdp-otlp-test" for r in receiver.resources)
    finally:
        server.stop(grace=None)
