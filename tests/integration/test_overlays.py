"""Policy overlays on the reference pack, with the managed sidecar and an external OPA.

The fixture overlay ``policies/overlay_site`` (layer ``site``) catalogues one tool the
pack does not know, ``inventory.lookup``. Every response and receipt names the policy
of its own OPA answer: both layers' effective revisions (docs/overlays.md), the same
for the same files in both modes, and the new one as soon as OPA runs edited files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aarm.v1 import decision_pb2 as D
from aarm_pdp import server
from aarm_pdp.config import Config
from aarm_pdp.opa import policy_cli
from aarm_pdp.opa.layers import content_digest, load_layers, merged_documents

from tests.support.messages import decide_request
from tests.support.paths import POLICIES, REGO
from tests.support.processes import wait_until
from tests.support.service import running, scratch, service_config

pytestmark = pytest.mark.integration

OVERLAY = POLICIES / "overlay_site"
LOOKUP = ("inventory", "lookup", {"sku": "AB-12"})


def _layers(cfg: Config, *paths: Path) -> Config:
    return dataclasses.replace(cfg, opa=dataclasses.replace(cfg.opa, policy_paths=paths))


def _pack_revision() -> str:
    return str(json.loads((REGO / ".manifest").read_text())["revision"])


def _expected_revision(overlay: Path = OVERLAY, revision: str = "site-1") -> str:
    return (
        f"aarm@{_pack_revision()}+sha256:{content_digest(REGO)},"
        f"site@{revision}+sha256:{content_digest(overlay)}"
    )


def _receipt_policy(resp: Any) -> dict[str, str]:
    doc = json.loads(resp.receipt.payload)
    return dict(doc["decision"]["policy"])


def _copy_overlay(name: str = "site") -> Path:
    dest = scratch("overlay") / name
    shutil.copytree(OVERLAY, dest)
    return dest


async def test_managed_overlay_tool_is_decided_and_both_layers_are_named(
    opa_binary: str,
) -> None:
    cfg = _layers(service_config(opa_binary), REGO, OVERLAY)
    async with running(cfg) as (_, c):
        resp = await c.decide.Decide(decide_request(*LOOKUP))
        assert resp.decision == D.DECISION_ALLOW, resp
        assert "catalogued" in {r.code for r in resp.reasons}
        revision = _expected_revision()
        assert resp.policy.revision == revision
        assert resp.policy.hash == hashlib.sha256(revision.encode()).hexdigest()
        assert _receipt_policy(resp) == {"revision": revision, "hash": resp.policy.hash}
    # Without the overlay the tool is unknown to the pack.
    async with running(service_config(opa_binary, policy=REGO)) as (_, c):
        resp = await c.decide.Decide(decide_request(*LOOKUP))
        assert resp.decision != D.DECISION_ALLOW
        assert resp.policy.revision == f"aarm@{_pack_revision()}+sha256:{content_digest(REGO)}"


@contextlib.contextmanager
def _external_opa(opa_binary: str, *bundles: Path) -> Iterator[str]:
    """``opa run --server -b ...`` on a unix socket of its own; yields its url."""
    sock = scratch("opa-sock") / "opa.sock"
    argv = [opa_binary, "run", "--server", "--addr", f"unix://{sock}", "--log-level", "error"]
    argv += ["--skip-version-check", *(a for b in bundles for a in ("--bundle", str(b)))]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until("external opa", lambda: _unix_healthy(sock), proc=proc)
        yield f"unix://{sock}"
    finally:
        proc.kill()
        proc.wait()


def _unix_healthy(sock: Path) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(1)
        s.connect(str(sock))
        s.sendall(b"GET /health?bundles=true HTTP/1.0\r\n\r\n")
        return s.recv(64).split(b" ", 2)[1] == b"200"


async def test_external_opa_reports_the_same_revision_and_hash(opa_binary: str) -> None:
    built = scratch("built")
    assert policy_cli.build([REGO, OVERLAY], built, out=io.StringIO()) == 0
    async with running(_layers(service_config(opa_binary), REGO, OVERLAY)) as (_, c):
        managed = await c.decide.Decide(decide_request(*LOOKUP))
    with _external_opa(opa_binary, built / "aarm", built / "site") as url:
        async with running(service_config(opa_binary, url=url)) as (app, c):
            external = await c.decide.Decide(decide_request(*LOOKUP))
            assert len(app.engine._catalogue) > 0  # the merged catalogue, read from OPA
            assert app.engine._catalogue.get("inventory.lookup").category == "read"
    assert external.decision == managed.decision == D.DECISION_ALLOW
    assert (external.policy.revision, external.policy.hash) == (
        managed.policy.revision,
        managed.policy.hash,
    )
    assert _receipt_policy(external) == _receipt_policy(managed)


async def test_external_opa_on_the_source_directories_names_the_manifests(
    opa_binary: str,
) -> None:
    # `opa run -s -b rego -b site` works too; its revisions carry no digest.
    with _external_opa(opa_binary, REGO, OVERLAY) as url:
        async with running(service_config(opa_binary, url=url)) as (_, c):
            resp = await c.decide.Decide(decide_request(*LOOKUP))
    assert resp.decision == D.DECISION_ALLOW
    assert resp.policy.revision == f"{_pack_revision()},site-1"
    assert resp.policy.hash == hashlib.sha256(resp.policy.revision.encode()).hexdigest()


async def test_after_opa_restarts_with_an_edited_overlay_the_next_receipt_names_it(
    opa_binary: str,
) -> None:
    overlay = _copy_overlay()
    cfg = _layers(service_config(opa_binary), REGO, overlay)
    async with running(cfg) as (app, c):
        before = await c.decide.Decide(decide_request(*LOOKUP))
        assert before.policy.revision == _expected_revision(overlay)
        data = overlay / "aarm" / "overlays" / "site" / "catalogue" / "data.json"
        doc = json.loads(data.read_text())
        doc["tools"]["inventory.lookup"]["description"] = "Look up one item (edited)."
        data.write_text(json.dumps(doc))
        assert app.sidecar is not None
        pid = app.sidecar.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:  # DENY opa_unavailable until the new child answers
            after = await c.decide.Decide(decide_request(*LOOKUP))
            if after.reasons[0].code != "opa_unavailable":
                break
            assert time.monotonic() < deadline, "opa did not come back"
        assert after.decision == D.DECISION_ALLOW
        assert after.policy.revision == _expected_revision(overlay)
        assert after.policy.hash != before.policy.hash
        assert _receipt_policy(after)["hash"] == after.policy.hash


def _manifest(root: Path, doc: dict[str, Any]) -> None:
    (root / ".manifest").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"revision": "x-1", "roots": ["aarm/catalogue"]}, "exactly one root"),
        ({"revision": "x-1", "roots": ["aarm/overlays/Site"]}, "must match"),
        (None, "no .manifest"),
        ({"roots": ["aarm/overlays/site"]}, "non-empty string 'revision'"),
    ],
)
async def test_a_bad_overlay_fails_at_start_with_a_clear_message(
    opa_binary: str, manifest: dict[str, Any] | None, message: str
) -> None:
    overlay = _copy_overlay()
    if manifest is None:
        (overlay / ".manifest").unlink()
    else:
        _manifest(overlay, manifest)
    with pytest.raises(server.StartupError, match="policy layers unusable") as err:
        await server.start(_layers(service_config(opa_binary), REGO, overlay))
    assert message in str(err.value)
    assert str(overlay) in str(err.value)


async def test_overlays_whose_roots_overlap_fail_at_start(opa_binary: str) -> None:
    first, second = _copy_overlay(), _copy_overlay()
    with pytest.raises(server.StartupError, match="overlaps root 'aarm/overlays/site'"):
        await server.start(_layers(service_config(opa_binary), REGO, first, second))
    # A pack that still claims all of aarm cannot take overlays.
    pack = scratch("pack") / "rego"
    shutil.copytree(REGO, pack)
    _manifest(pack, {**json.loads((REGO / ".manifest").read_text()), "roots": ["aarm"]})
    with pytest.raises(server.StartupError, match="must list its own packages"):
        await server.start(_layers(service_config(opa_binary), pack, first))


def test_policy_check_passes_on_a_good_overlay(opa_binary: str) -> None:
    out = io.StringIO()
    assert policy_cli.check([OVERLAY], pack=REGO, binary=opa_binary, out=out) == 0, out.getvalue()
    assert "policy check: site: ok" in out.getvalue()


def test_policy_check_fails_on_a_catalogue_error(opa_binary: str) -> None:
    overlay = _copy_overlay()
    data = overlay / "aarm" / "overlays" / "site" / "catalogue" / "data.json"
    doc = json.loads(data.read_text())
    doc["tools"]["inventory.lookup"]["category"] = "telepathy"
    data.write_text(json.dumps(doc))
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "aarm-pdp"),
            "policy",
            "check",
            "--pack",
            str(REGO),
            "--opa-binary",
            opa_binary,
            str(overlay),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "error: catalogue: inventory.lookup: unknown category telepathy" in proc.stdout


def _opa_value(opa_binary: str, bundles: list[Path], query: str) -> Any:
    argv = [opa_binary, "eval", "--format", "json"]
    argv += [a for b in bundles for a in ("-b", str(b))]
    proc = subprocess.run([*argv, query], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]


def _zeta(tools: dict[str, Any]) -> Path:
    """Overlay ``zeta``: ``tools`` and a config patch."""
    zeta = scratch("zeta") / "zeta"
    base = zeta / "aarm" / "overlays" / "zeta"
    (base / "catalogue").mkdir(parents=True)
    (base / "config").mkdir()
    _manifest(zeta, {"revision": "z-1", "roots": ["aarm/overlays/zeta"]})
    (base / "catalogue" / "data.json").write_text(json.dumps({"tools": tools}))
    patch = {"egress": {"internal_domains": ["zeta.example"]}, "default_posture": "DENY"}
    (base / "config" / "data.json").write_text(json.dumps(patch))
    return zeta


REPLACED = {"category": "write", "risk_tier": "medium", "output_trust": "trusted"}


def test_python_merge_matches_what_opa_merges(opa_binary: str) -> None:
    zeta = _zeta({"inventory.lookup": {**REPLACED, "parameters": {}}, "zeta.op": REPLACED})
    bundles = [REGO, zeta, OVERLAY]
    want_tools, want_config = merged_documents(load_layers(bundles))  # site, then zeta
    assert want_tools["inventory.lookup"]["category"] == "write"
    assert want_config["egress"]["internal_domains"] == ["zeta.example"]
    assert _opa_value(opa_binary, bundles, "data.aarm.layers.tools") == want_tools
    assert _opa_value(opa_binary, bundles, "data.aarm.layers.config") == want_config


def test_an_overlay_entry_replaces_the_packs_entry_of_the_same_name(opa_binary: str) -> None:
    bundles = [REGO, _zeta({"db.query": REPLACED})]
    assert merged_documents(load_layers(bundles))[0]["db.query"] == REPLACED
    assert _opa_value(opa_binary, bundles, 'data.aarm.layers.tool("db.query")') == REPLACED
    assert _opa_value(opa_binary, bundles, "data.aarm.layers.tools")["db.query"] == REPLACED
