"""Hot reload of the managed OPA (issue 16 item 1; docs/policy-lifecycle.md).

The overlay ``site`` is rewritten 20 times while Decide calls run: even revisions
catalogue ``inventory.lookup`` (ALLOW), odd ones do not (the pack DENYs an unknown
tool). No decision fails, and every verdict is the one of the revision its receipt
names: each answer came from one OPA holding one whole policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from aarm.v1 import decision_pb2 as D
from aarm_pdp.config import Config

from tests.support.messages import decide_request
from tests.support.paths import POLICIES, REGO
from tests.support.service import running, scratch, service_config

pytestmark = pytest.mark.integration

RELOADS = 20
LOOKUP = ("inventory", "lookup", {"sku": "AB-12"})
TOOL = json.loads((POLICIES / "overlay_site/aarm/overlays/site/catalogue/data.json").read_text())


def _write(path: Path, text: str) -> None:
    """Replace ``path`` whole (rename), as an editor or a deploy would."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_site(site: Path, gen: int) -> None:
    """Revision ``site-<gen>``: the tool catalogued when ``gen`` is even."""
    tools = TOOL if gen % 2 == 0 else {"tools": {}}
    _write(site / "aarm/overlays/site/catalogue/data.json", json.dumps(tools))
    manifest = {"revision": f"site-{gen}", "roots": ["aarm/overlays/site"], "rego_version": 1}
    _write(site / ".manifest", json.dumps(manifest))


def site_copy() -> Path:
    site = scratch("reload") / "site"
    shutil.copytree(POLICIES / "overlay_site", site)
    write_site(site, 0)
    return site


def reload_config(opa_binary: str, *layers: Path, pack: Path | None = REGO, **opa: Any) -> Config:
    """Hot reload every 50 ms, on ``pack`` (when not None) and ``layers``."""
    cfg = service_config(opa_binary, **{"reload_seconds": 0.05, **opa})
    paths = (pack, *layers) if pack is not None else layers
    return dataclasses.replace(cfg, opa=dataclasses.replace(cfg.opa, policy_paths=paths))


def _site_gen(revision: str) -> int:
    layer = next(part for part in revision.split(",") if part.startswith("site@"))
    return int(layer.split("@", 1)[1].split("+", 1)[0].removeprefix("site-"))


@pytest.mark.timeout(300)
async def test_twenty_reloads_under_load_no_failed_or_mixed_decision(opa_binary: str) -> None:
    site = site_copy()
    cfg = reload_config(opa_binary, site)
    answers: list[tuple[int, int, int, int]] = []  # (verdict, receipt gen, response gen, seen)
    failures: list[str] = []
    async with running(cfg) as (app, clients):
        sidecar = app.sidecar
        assert sidecar is not None
        stop = asyncio.Event()

        async def load(worker: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                req = decide_request(*LOOKUP)
                req.identity.session_id = f"reload-{worker}-{i}"
                seen = sidecar.generation
                try:
                    resp: Any = await clients.decide.Decide(req, timeout=10)
                except Exception as exc:  # every failure is counted
                    failures.append(repr(exc))
                    continue
                receipt = json.loads(resp.receipt.payload)["decision"]["policy"]
                answers.append(
                    (
                        resp.decision,
                        _site_gen(receipt["revision"]),
                        _site_gen(resp.policy.revision),
                        seen,
                    )
                )
                if any(r.code.startswith("opa_") for r in resp.reasons):
                    failures.append(f"{resp.reasons[0].code}: {resp.reasons[0].message}")

        workers = [asyncio.create_task(load(w)) for w in range(8)]
        try:
            for gen in range(1, RELOADS + 1):
                before = len(answers)
                write_site(site, gen)
                await sidecar.wait_reloads(gen)
                assert sidecar.reloads[-1][0], sidecar.reloads[-1]
                assert f"site@site-{gen}+" in sidecar.reloads[-1][1]
                while len(answers) < before + 8:  # some decisions on each revision
                    await asyncio.sleep(0)
                    await asyncio.sleep(0.001)
        finally:
            stop.set()
            await asyncio.gather(*workers)
        assert sidecar.generation == RELOADS
        assert sidecar.exit_codes == []  # no OPA died; each replaced one was stopped
    assert failures == []
    by_gen: dict[int, int] = {}
    for verdict, receipt_gen, response_gen, seen in answers:
        assert receipt_gen == response_gen
        # decided by the policy its receipt names: even catalogues the tool
        expected = D.DECISION_ALLOW if receipt_gen % 2 == 0 else D.DECISION_DENY
        assert verdict == expected, (verdict, receipt_gen)
        # never older than the policy active when the call was sent
        assert receipt_gen >= seen
        by_gen[receipt_gen] = by_gen.get(receipt_gen, 0) + 1
    assert set(by_gen) == set(range(RELOADS + 1)), by_gen
    print(f"{len(answers)} decisions over {RELOADS} reloads, per revision: {by_gen}")


async def test_a_policy_that_does_not_load_is_refused_and_the_old_one_stays(
    opa_binary: str,
) -> None:
    site = site_copy()
    cfg = reload_config(opa_binary, site)
    async with running(cfg) as (app, clients):
        sidecar = app.sidecar
        assert sidecar is not None
        bad = site / "aarm/overlays/site/broken.rego"
        _write(bad, "package aarm.overlays.site\n\nthis is not rego {\n")
        await sidecar.wait_reloads(1)
        ok, why = sidecar.reloads[-1]
        assert not ok
        assert "broken.rego" in why
        resp = await clients.decide.Decide(decide_request(*LOOKUP))
        assert resp.decision == D.DECISION_ALLOW
        assert _site_gen(resp.policy.revision) == 0
        assert sidecar.generation == 0
        metric = app.metrics.policy_reloads.labels("refused")._value.get()
        assert metric == 1
        # fixed: reloaded
        bad.unlink()
        write_site(site, 1)
        await sidecar.wait_reloads(2)
        assert sidecar.reloads[-1][0]
        resp = await clients.decide.Decide(decide_request(*LOOKUP))
        assert resp.decision == D.DECISION_DENY
        assert _site_gen(resp.policy.revision) == 1
