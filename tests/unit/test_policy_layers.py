"""Policy layers (aarm_pdp.opa.layers): checks, digests, effective revisions, versions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from aarm_pdp.errors import OpaBadResponse
from aarm_pdp.model.decision import PolicyVersion
from aarm_pdp.opa.client import OpaClient
from aarm_pdp.opa.layers import (
    LayerError,
    content_digest,
    load_layers,
    merge_config,
    merged_documents,
    policy_version,
    stage,
)

D1, D2, D3 = "1" * 64, "2" * 64, "3" * 64


def _bundle(root: Path, manifest: dict[str, Any] | None, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    if manifest is not None:
        (root / ".manifest").write_text(json.dumps(manifest))
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _pack(tmp: Path, roots: list[str] | None = None) -> Path:
    return _bundle(
        tmp / "pack",
        {"revision": "p-1", "roots": roots or ["aarm/main", "aarm/catalogue", "aarm/config"]},
        {
            "aarm/main/policy.rego": "package aarm.main\n",
            "aarm/main/policy_test.rego": "package aarm.main_test\n",
            "aarm/catalogue/data.json": json.dumps({"tools": {"a.read": {"x": 1}}}),
            "aarm/config/data.json": json.dumps({"risk": {"w": 1, "list": [1, 2]}, "k": "v"}),
        },
    )


def _overlay(tmp: Path, name: str, tools: dict[str, Any], config: Any = None) -> Path:
    files = {f"aarm/overlays/{name}/catalogue/data.json": json.dumps({"tools": tools})}
    if config is not None:
        files[f"aarm/overlays/{name}/config/data.json"] = json.dumps(config)
    return _bundle(tmp / name, {"revision": f"{name}-1", "roots": [f"aarm/overlays/{name}"]}, files)


def test_version_orders_the_pack_first_then_overlays_by_name() -> None:
    revs = [f"zeta@z+sha256:{D3}", f"aarm@p+sha256:{D1}", f"beta@b+sha256:{D2}"]
    v = policy_version(revs)
    want = f"aarm@p+sha256:{D1},beta@b+sha256:{D2},zeta@z+sha256:{D3}"
    assert v == PolicyVersion(want, hashlib.sha256(want.encode()).hexdigest())
    assert policy_version(reversed(revs)) == v


def test_revisions_not_built_by_us_follow_the_layers_and_no_bundle_is_empty() -> None:
    assert policy_version(["raw-2", f"aarm@p+sha256:{D1}", "raw-1"]).revision == (
        f"aarm@p+sha256:{D1},raw-1,raw-2"
    )
    assert policy_version([]) == PolicyVersion("", "")
    assert policy_version([""]) == PolicyVersion("", "")


def test_digest_covers_policies_and_data_not_tests_or_the_manifest(tmp_path: Path) -> None:
    pack = _pack(tmp_path)
    before = content_digest(pack)
    (pack / "aarm/main/policy_test.rego").write_text("package aarm.main_test\n# edited\n")
    (pack / ".manifest").write_text(json.dumps({"revision": "p-2", "roots": ["aarm"]}))
    (pack / "capabilities.json").write_text("{}")
    assert content_digest(pack) == before
    (pack / "aarm/catalogue/data.json").write_text(json.dumps({"tools": {}}))
    assert content_digest(pack) != before


def test_staged_layers_carry_the_effective_revision_and_no_tests(tmp_path: Path) -> None:
    pack, site = _pack(tmp_path), _overlay(tmp_path, "site", {"s.op": {}})
    layers = load_layers([pack, site])
    assert [la.name for la in layers] == ["aarm", "site"]
    out = stage(layers[0], tmp_path / "out" / "aarm")
    manifest = json.loads((out / ".manifest").read_text())
    assert manifest["revision"] == f"aarm@p-1+sha256:{content_digest(pack)}"
    assert manifest["roots"] == ["aarm/main", "aarm/catalogue", "aarm/config"]
    assert not (out / "aarm/main/policy_test.rego").exists()
    assert (out / "aarm/main/policy.rego").exists()
    # The staged bundle is the same layer: staging it again changes nothing.
    again = load_layers([out])[0]
    assert again.effective_revision == layers[0].effective_revision


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (None, "no .manifest"),
        ({"roots": ["aarm/overlays/site"]}, "non-empty string 'revision'"),
        ({"revision": "a,b", "roots": ["aarm/overlays/site"]}, "comma or space"),
        ({"revision": "1", "roots": []}, "needs 'roots'"),
        ({"revision": "1", "roots": ["aarm/catalogue"]}, "exactly one root"),
        ({"revision": "1", "roots": ["aarm/overlays/a", "aarm/overlays/b"]}, "exactly one root"),
        ({"revision": "1", "roots": ["aarm/overlays/Site"]}, "must match"),
        ({"revision": "1", "roots": ["aarm/overlays/aarm"]}, "must match"),
    ],
)
def test_bad_overlays_are_refused_with_the_reason(
    tmp_path: Path, manifest: dict[str, Any] | None, message: str
) -> None:
    bad = _bundle(tmp_path / "bad", manifest, {})
    with pytest.raises(LayerError, match=message) as err:
        load_layers([_pack(tmp_path), bad])
    assert str(bad) in str(err.value)


def test_overlapping_roots_are_refused(tmp_path: Path) -> None:
    site = _overlay(tmp_path, "site", {})
    with pytest.raises(LayerError, match="overlaps root 'aarm/overlays/site'"):
        load_layers([_pack(tmp_path), site, site])
    greedy = _pack(tmp_path / "greedy", roots=["aarm"])
    assert load_layers([greedy])[0].name == "aarm"  # alone it may claim everything
    with pytest.raises(LayerError, match="must list its own packages"):
        load_layers([greedy, site])
    with pytest.raises(LayerError, match="does not exist"):
        load_layers([tmp_path / "nowhere"])


def test_a_layer_naming_an_input_member_the_service_does_not_send_is_refused(
    tmp_path: Path,
) -> None:
    pack = _pack(tmp_path)
    rule = "package aarm.overlays.site.rules\n\ndeny_reasons contains 1 if {\n"
    rule += "\tcount(input.session.pending_deferrals) > 3\n}\n"
    site = _bundle(
        tmp_path / "site",
        {"revision": "s-1", "roots": ["aarm/overlays/site"]},
        {"aarm/overlays/site/rules/policy.rego": rule},
    )
    with pytest.raises(LayerError, match="'pending_deferrals', which the service does not send"):
        load_layers([pack, site])
    # A context rule's path is data: refused the same way. Tests are not evaluated.
    conf = _overlay(
        tmp_path, "conf", {}, {"context_rules": [{"conditions": [{"path": ["session", "x"]}]}]}
    )
    (conf / "aarm/overlays/conf/config/data.json").write_text(
        json.dumps({"context_rules": [{"conditions": [{"path": ["pending_deferrals"]}]}]})
    )
    with pytest.raises(LayerError, match=r"config/data\.json: names input member"):
        load_layers([pack, conf])
    tested = _overlay(tmp_path, "tested", {})
    (tested / "aarm/overlays/tested/x_test.rego").write_text("# pending_deferrals\n")
    assert [la.name for la in load_layers([pack, tested])] == ["aarm", "tested"]


def test_merged_documents_follow_the_rego_rule(tmp_path: Path) -> None:
    pack = _pack(tmp_path)
    b = _overlay(tmp_path, "b", {"b.op": {"v": "b"}, "a.read": {"v": "b"}}, {"risk": {"w": 2}})
    a = _overlay(tmp_path, "a", {"a.read": {"v": "a"}}, {"risk": {"list": [3]}, "new": 1})
    tools, config = merged_documents(load_layers([pack, b, a]))  # applied a, then b
    assert tools == {"a.read": {"v": "b"}, "b.op": {"v": "b"}}
    assert config == {"risk": {"w": 2, "list": [3]}, "k": "v", "new": 1}
    assert merge_config({"x": {"y": 1}}, {"x": 5}) == {"x": 5}


def _answer(bundles: dict[str, Any] | None) -> dict[str, Any]:
    prov: dict[str, Any] = {"version": "1.22.3"}
    if bundles is not None:
        prov["bundles"] = bundles
    return {"result": {}, "provenance": prov}


def test_client_takes_the_version_from_the_answer_and_caches_it() -> None:
    client = OpaClient("http://127.0.0.1:1")
    body = _answer(
        {
            "/b/site": {"revision": f"site@s+sha256:{D2}"},
            "/b/p": {"revision": f"aarm@p+sha256:{D1}"},
        }
    )
    v = client.answer_policy(body)
    assert v.revision == f"aarm@p+sha256:{D1},site@s+sha256:{D2}"
    assert client.answer_policy(_answer(dict(body["provenance"]["bundles"]))) is v
    assert client.answer_policy(_answer({})) == PolicyVersion("", "")
    assert client.answer_policy(_answer(None)) == PolicyVersion("", "")
    with pytest.raises(OpaBadResponse, match="no provenance"):
        client.answer_policy({"result": {}})
