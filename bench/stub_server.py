"""The decide-stub-opa lane: the real service with an in-process stub policy engine.

``python -m bench.stub_server --listen 127.0.0.1:PORT`` calls ``server.start`` with a
:class:`~aarm_pdp.opa.fake.FakePolicyEngine` that answers every query with one fixed,
valid decision document (the ALLOW the reference pack gives ``db.query``). Everything
else -- gRPC, validation, ``build_input``, ``parse_result``, metrics, ``to_response`` --
is the production code path, so this lane measures the Python and gRPC cost alone.

It prints ``READY <port>`` on stdout once serving and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aarm_pdp import server
from aarm_pdp.config import (
    AuthConfig,
    Config,
    MetricsConfig,
    ReceiptConfig,
    ServerConfig,
    TelemetryConfig,
)
from aarm_pdp.loop import run_loop
from aarm_pdp.observability import logging as aarm_logging
from aarm_pdp.opa.fake import FakePolicyEngine

from tests.support.principals import default_file
from tests.support.processes import announce_ready_and_wait

DECISION: dict[str, Any] = {
    "result": {
        "decision": "ALLOW",
        "reasons": [
            {
                "code": "catalogued",
                "rule_id": "aarm.main.catalogued",
                "message": "db.query is a catalogued read tool (risk tier low) and no "
                "policy finding applies",
            }
        ],
        "matched_rules": ["aarm.main.catalogued"],
        "risk": {"level": "LOW", "score": 0.1},
    }
}


def make_engine() -> FakePolicyEngine:
    """A stub engine answering ``DECISION``.

    FakePolicyEngine records every input in ``calls`` (for tests); the handler empties
    that list so a long run does not grow the heap (which would slow the GC and skew
    the lane's CPU per decision).
    """
    engine: FakePolicyEngine

    def answer(_input: dict[str, Any]) -> dict[str, Any]:
        engine.calls.clear()
        return DECISION

    engine = FakePolicyEngine(answer)
    return engine


async def _run(listen: str, receipts: str, key_dir: str, telemetry: str) -> None:
    cfg = Config(
        server=ServerConfig(listen=listen),
        # Authenticated like the decide lane: the same principals, the same token.
        auth=AuthConfig(principals_file=default_file()),
        metrics=MetricsConfig(listen=""),
        receipts=ReceiptConfig(store=receipts, key_dir=Path(key_dir)),
        telemetry=TelemetryConfig(file=Path(telemetry) if telemetry else None),
    )
    app = await server.start(cfg, policy_engine=make_engine())
    await announce_ready_and_wait(app.port)
    await app.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--log-level", default="info")
    p.add_argument("--receipts", required=True, help="SQLite receipt store for this process")
    p.add_argument("--key-dir", required=True)
    p.add_argument("--telemetry-file", default="")
    p.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = p.parse_args()
    aarm_logging.setup(args.log_level, "json")  # as `aarm-pdp serve` does by default
    # The same loop `aarm-pdp serve` runs on by default.
    run_loop(_run(args.listen, args.receipts, args.key_dir, args.telemetry_file), args.event_loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
