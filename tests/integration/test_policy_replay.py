"""Decision records and replay (issue 16 item 3; docs/policy-lifecycle.md, "Replay").

Decisions made with the overlay ``site`` keep their redacted policy input beside the
receipt, bound by ``decision.input_sha256``. Replayed against the same layers plus one
new rule (SKUs ``AB-*`` withdrawn), exactly the decisions that rule matches change,
ALLOW -> DENY, and the report names the rule.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from aarm.v1 import decision_pb2 as D
from aarm_pdp import cli
from aarm_pdp.receipts.body import input_sha256

from tests.integration.test_policy_reload import reload_config, site_copy
from tests.support.messages import decide_request
from tests.support.paths import REGO
from tests.support.service import running, scratch

pytestmark = pytest.mark.integration

RULE = """package aarm.overlays.site.rules

# METADATA
# title: sku_withdrawn
# custom:
#   code: site_sku_withdrawn
#   rule_id: aarm.overlays.site.rules.sku_withdrawn
deny_reasons contains {
	"code": rego.metadata.rule().custom.code,
	"rule_id": rego.metadata.rule().custom.rule_id,
	"message": "the AB- SKU range is withdrawn",
} if {
	input.action.tool == "inventory"
	startswith(input.action.parameters.sku, "AB-")
}
"""
SECRET = "AKIAIOSFODNN7EXAMPLE"


def _candidate(site: Path) -> Path:
    changed = scratch("candidate") / "site"
    shutil.copytree(site, changed)
    rules = changed / "aarm/overlays/site/rules"
    rules.mkdir(parents=True)
    (rules / "policy.rego").write_text(RULE)
    return changed


async def test_replay_reports_exactly_the_decisions_the_changed_rule_changes(
    opa_binary: str,
) -> None:
    site = site_copy()
    store = scratch("replay") / "receipts.db"
    cfg = reload_config(opa_binary, site, receipts=str(store), reload_seconds=0)
    requests = [
        ("AB-1", "inventory", "lookup", {"sku": "AB-1"}),
        ("AB-2", "inventory", "lookup", {"sku": "AB-2"}),
        ("CD-1", "inventory", "lookup", {"sku": "CD-1"}),
        ("CD-2", "inventory", "lookup", {"sku": "CD-2"}),
        ("unknown", "nothing", "here", {"x": 1}),
        ("secret", "inventory", "lookup", {"sku": "CD-3", "token": SECRET}),
    ]
    decided: dict[str, tuple[str, int]] = {}
    async with running(cfg) as (_, clients):
        for i, (name, tool, op, params) in enumerate(requests):
            req = decide_request(tool, op, params)
            req.identity.session_id = f"replay-{i}"
            resp = await clients.decide.Decide(req)
            decided[name] = (resp.decision_id, resp.decision)
    assert decided["AB-1"][1] == decided["CD-1"][1] == D.DECISION_ALLOW
    assert decided["unknown"][1] == D.DECISION_DENY

    # every record is beside its receipt, bound by hash, its secret withheld
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "SELECT r.canonical, d.record FROM receipts r JOIN decision_records d"
            " ON d.receipt_id = r.receipt_id"
        ).fetchall()
    assert len(rows) == len(requests)
    for receipt_text, record_text in rows:
        record = json.loads(record_text)
        assert json.loads(receipt_text)["decision"]["input_sha256"] == input_sha256(record)
        assert SECRET not in record_text
        assert SECRET not in receipt_text

    out = io.StringIO()
    argv = ["policy", "replay", "--policy", str(REGO), "--policy", str(_candidate(site))]
    argv += ["--store", str(store), "--json", "--opa-binary", opa_binary]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdout", out)
        assert await asyncio.to_thread(cli.main, argv) == 0
    report = json.loads(out.getvalue())
    assert report["replayed"] == len(requests)
    assert (report["unbound"], report["failed"]) == (0, 0)
    assert report["changed"] == 2
    assert report["unchanged"] == len(requests) - 2
    assert report["transitions"] == {"ALLOW->DENY": 2}
    assert report["rules"] == {"aarm.overlays.site.rules.sku_withdrawn": 2}
    assert report["rules_gone"] == {"aarm.main.catalogued": 2}
    changed = {ex["decision_id"] for ex in report["examples"]["ALLOW->DENY"]}
    assert changed == {decided["AB-1"][0], decided["AB-2"][0]}
    assert report["redacted"] == 1
    assert "site@site-0" in report["policy"]

    # the same layers as recorded: nothing changes; --tenant of nobody: nothing replayed
    out = io.StringIO()
    argv = ["policy", "replay", "--policy", str(REGO), "--policy", str(site)]
    argv += ["--store", str(store), "--opa-binary", opa_binary]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdout", out)
        assert await asyncio.to_thread(cli.main, argv) == 0
    assert f"replayed {len(requests)}: {len(requests)} unchanged, 0 changed" in out.getvalue()
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdout", out)
        assert await asyncio.to_thread(cli.main, [*argv, "--tenant", "nobody", "--json"]) == 0
    assert json.loads(out.getvalue())["replayed"] == 0


async def test_explain_names_the_rules_the_record_and_what_a_candidate_says(
    opa_binary: str,
) -> None:
    site = site_copy()
    store = scratch("explain") / "receipts.db"
    cfg = reload_config(opa_binary, site, receipts=str(store), reload_seconds=0)
    async with running(cfg) as (_, clients):
        req = decide_request("inventory", "lookup", {"sku": "AB-7", "token": SECRET})
        req.identity.session_id = "explain-1"
        resp = await clients.decide.Decide(req)
    assert resp.decision == D.DECISION_ALLOW
    out = io.StringIO()
    argv = ["explain", resp.decision_id, "--store", str(store), "--json"]
    argv += ["--policy", str(REGO), "--policy", str(_candidate(site)), "--opa-binary", opa_binary]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdout", out)
        assert await asyncio.to_thread(cli.main, argv) == 0
    doc = json.loads(out.getvalue())
    assert doc["result"] == "ALLOW"
    assert doc["matched_rules"] == ["aarm.main.catalogued"]
    assert doc["policy"]["revision"] == resp.policy.revision
    assert doc["record"]["bound"] is True
    assert doc["record"]["policy_verdict"]["decision"] == "ALLOW"
    assert doc["record"]["input"]["action"]["parameters"]["sku"] == "AB-7"
    assert SECRET not in out.getvalue()
    assert doc["now"]["result"] == "DENY"
    assert doc["now"]["matched_rules"] == ["aarm.overlays.site.rules.sku_withdrawn"]
    # text form, and a decision the store does not hold
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdout", out)
        assert await asyncio.to_thread(cli.main, argv[:4]) == 0
        assert await asyncio.to_thread(cli.main, ["explain", "nope", "--store", str(store)]) == 1
    text = out.getvalue()
    assert f"decision {resp.decision_id}" in text
    assert "reason aarm.main.catalogued" in text
    assert "bound to the receipt" in text
    assert "no decision 'nope'" in text


async def test_a_shadow_policy_is_counted_and_never_enforced(opa_binary: str) -> None:
    site = site_copy()
    shadow = (REGO, _candidate(site))
    cfg = reload_config(opa_binary, site, reload_seconds=0, shadow_policy_paths=shadow)
    async with running(cfg) as (app, clients):
        verdicts = []
        for i, sku in enumerate(["AB-1", "AB-2", "CD-1"]):
            req = decide_request("inventory", "lookup", {"sku": sku})
            req.identity.session_id = f"shadow-{i}"
            verdicts.append((await clients.decide.Decide(req)).decision)
        assert verdicts == [D.DECISION_ALLOW] * 3  # the live policy decides
        counter = app.metrics.shadow_verdicts
        # the shadow answers after the live verdict, in the background: wait for it
        await asyncio.wait_for(asyncio.gather(*list(app.engine._background)), 10)
        assert counter.labels("ALLOW", "DENY")._value.get() == 2
        assert counter.labels("ALLOW", "ALLOW")._value.get() == 1
        assert app.shadow_sidecar is not None
        assert [la.name for la in app.shadow_sidecar.layers] == ["aarm", "site"]
