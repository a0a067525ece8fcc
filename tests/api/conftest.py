"""The API tier: the real gRPC servicers in this process, a scripted OPA behind them.

``aarm_pdp.server.start(cfg, policy_engine=FakePolicyEngine(...))`` serves every
aarm.v1 service on a loopback port; :class:`ScriptedOpa` decides what "OPA" answers
(one document for every query, or a function of the input), so each test states the
policy answer it needs and asserts on what the API makes of it. No OPA process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aarm_pdp import server
from aarm_pdp.config import ApprovalConfig
from aarm_pdp.opa.fake import FakePolicyEngine

from tests.support.grpc_clients import Clients
from tests.support.messages import verdict_doc
from tests.support.service import fake_config, running, with_approvers

APPROVERS = {
    "bob-token": ("bob@acme.example", ["data-owners", "finance-approvers", "identity-admins"]),
    "agent-token": ("agent-7", ["data-owners"]),  # the agent's own identity: never an approver
    "carol-token": ("carol@acme.example", ["marketing"]),
}
"""Bearer token -> (approver id, groups), the approvers file of every API-tier server."""


class ScriptedOpa:
    """The fake engine's handler: answers ``answer(input)``; ALLOW until told otherwise."""

    def __init__(self) -> None:
        self.answer: Callable[[dict[str, Any]], Any] = lambda _: verdict_doc("ALLOW")

    def returns(self, body: Any) -> None:
        """Answer ``body`` to every query from now on."""
        self.answer = lambda _: body

    def __call__(self, input_doc: dict[str, Any]) -> Any:
        return self.answer(input_doc)


@dataclass
class Api:
    """A running in-process server, its clients, and the scripted OPA behind it."""

    app: server.App
    c: Clients
    opa: ScriptedOpa
    engine: FakePolicyEngine

    def metric(self, name: str, **labels: str) -> float:
        value = self.app.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture
def opa() -> ScriptedOpa:
    return ScriptedOpa()


@pytest.fixture
async def api(tmp_path: Path, opa: ScriptedOpa) -> AsyncIterator[Api]:
    cfg = fake_config(
        tmp_path,
        auth=with_approvers(tmp_path, APPROVERS),
        approvals=ApprovalConfig(sweep_interval_seconds=0.05),
    )
    engine = FakePolicyEngine(opa)
    async with running(cfg, policy_engine=engine) as (app, clients):
        yield Api(app, clients, opa, engine)
