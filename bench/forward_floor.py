"""The `grpc-forward` lane: the least any Python gRPC front end to OPA must do.

``python -m bench.forward_floor --listen 127.0.0.1:0 --opa-url http://host:port``
serves ``aarm.v1.DecisionService/Decide`` on the service's own stack (grpc.aio on the
event loop ``aarm-pdp serve`` uses, the service's OPA HTTP client) and does only what
any implementation must: decode the DecideRequest, send OPA the Data API body (the
exact body Decide builds for that corpus request, looked up, not built), decode OPA's
JSON and answer a DecideResponse with its verdict. No validation, session context,
receipt, telemetry or metrics.

Its ratio to ``opa-direct`` is the floor of the Decide ratios on this machine: the
share of the gap that is the Python gRPC front end itself rather than the work the
service does per decision. It prints ``READY <port>`` once serving.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc
import orjson
from aarm.v1 import decision_pb2
from aarm_pdp.loop import run_loop
from aarm_pdp.opa.client import OpaClient

from bench.corpus import CORPUS, SESSION_PLACEHOLDER
from tests.support.processes import announce_ready_and_wait

_VERDICT = {
    "ALLOW": decision_pb2.DECISION_ALLOW,
    "DENY": decision_pb2.DECISION_DENY,
    "MODIFY": decision_pb2.DECISION_MODIFY,
    "STEP_UP": decision_pb2.DECISION_STEP_UP,
    "DEFER": decision_pb2.DECISION_DEFER,
}


def _key(request: Any) -> bytes:
    """The request with its session id masked: the generator varies only that."""
    masked = decision_pb2.DecideRequest()
    masked.CopyFrom(request)
    masked.identity.session_id = SESSION_PLACEHOLDER
    return bytes(masked.SerializeToString(deterministic=True))


async def _run(listen: str, opa_url: str) -> None:
    bodies = {_key(c.request()): orjson.loads(c.opa_body())["input"] for c in CORPUS}
    opa = OpaClient(opa_url)

    async def decide(data: bytes, _context: Any) -> bytes:
        request = decision_pb2.DecideRequest.FromString(data)
        answer = await opa.evaluate(bodies[_key(request)], timeout=5.0)
        verdict = (answer.get("result") or {}).get("decision", "DENY")
        code = _VERDICT.get(verdict, decision_pb2.DECISION_DENY)
        response = decision_pb2.DecideResponse(decision=code)
        return bytes(response.SerializeToString())

    handler = grpc.method_handlers_generic_handler(
        "aarm.v1.DecisionService", {"Decide": grpc.unary_unary_rpc_method_handler(decide)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(listen)
    await server.start()
    await announce_ready_and_wait(port)
    await server.stop(1)
    await opa.aclose()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--opa-url", required=True)
    p.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = p.parse_args()
    run_loop(_run(args.listen, args.opa_url), args.event_loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
