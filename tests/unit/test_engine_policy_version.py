"""Each decision records the policy named in its own answer, not a periodic re-read."""

from __future__ import annotations

import asyncio
from typing import Any

from aarm_pdp.api.validation import to_action_request
from aarm_pdp.config import LimitsConfig
from aarm_pdp.decision.engine import DecisionEngine
from aarm_pdp.model.decision import PolicyVersion
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.opa.fake import FakePolicyEngine
from aarm_pdp.session.catalogue import Catalogue

from tests.support.messages import decide_request, verdict_doc

OLD = PolicyVersion("aarm@1+sha256:" + "1" * 64, "a" * 64)
NEW = PolicyVersion("aarm@2+sha256:" + "2" * 64, "b" * 64)


class _Answers(FakePolicyEngine):
    """Names, per answer, the version given with it (as OPA's provenance does)."""

    def answer_policy(self, body: Any) -> PolicyVersion:
        version = body["version"]
        assert isinstance(version, PolicyVersion)
        return version


def _req() -> Any:
    return to_action_request(decide_request("db", "query", {"limit": 1}), LimitsConfig())


async def test_the_record_names_the_answers_policy_and_a_change_rereads_the_catalogue() -> None:
    answering = [OLD]
    fake = _Answers(lambda _: {**verdict_doc("ALLOW"), "version": answering[0]}, version=OLD)
    seen: list[Catalogue] = []
    engine = DecisionEngine(fake, Metrics(), on_catalogue=seen.append)
    assert await engine.refresh_policy_version() == OLD
    assert len(seen) == 1  # read with the version at start
    assert (await engine.decide(_req())).policy == OLD

    answering[0] = NEW  # OPA now runs other files; nobody re-read anything
    fake._catalogue = {"db.query": {"category": "read", "output_trust": "trusted"}}
    record = await engine.decide(_req())
    assert record.policy == NEW
    assert engine.policy_version == NEW
    for _ in range(10):  # the catalogue re-read runs in the background
        if len(seen) == 2:
            break
        await asyncio.sleep(0)
    assert len(seen) == 2 and seen[1].get("db.query").trusted_output
    assert (await engine.decide(_req())).policy == NEW
    assert len(seen) == 2  # the same policy again: no further read


async def test_a_failure_before_the_query_records_the_last_policy_seen() -> None:
    fake = _Answers(lambda _: {**verdict_doc("ALLOW"), "version": NEW}, version=OLD)
    engine = DecisionEngine(fake, Metrics())
    await engine.refresh_policy_version()
    await engine.decide(_req())
    missing = to_action_request(
        decide_request("db", "query", {}, identity={"tenant": "acme"}), LimitsConfig()
    )
    record = await engine.decide(missing)
    assert record.result.fail_closed and record.policy == NEW
