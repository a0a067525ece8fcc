"""Signed policy bundles in managed mode (issue 16 item 2; docs/policy-lifecycle.md).

``aarm-pdp policy build --signing-key`` signs the pack and the overlay as built; a
sidecar given ``opa.verification_key`` loads them and names the same effective
revisions as unsigned layers. A signature by another key, a file changed after
signing or an unsigned layer is refused: at start the service does not start (OPA's
own error in the message), on a hot reload the running policy stays and the refusal
is counted.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from pathlib import Path

import pytest
from aarm.v1 import decision_pb2 as D
from aarm_pdp import cli, server
from aarm_pdp.opa import policy_cli
from aarm_pdp.opa.layers import load_layers, policy_version
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.test_policy_reload import (
    LOOKUP,
    _site_gen,
    reload_config,
    site_copy,
    write_site,
)
from tests.support.messages import decide_request
from tests.support.paths import REGO
from tests.support.service import running, scratch

pytestmark = pytest.mark.integration


def _keypair(where: Path, name: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = where / f"{name}.pem", where / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[Path, Path]]:
    where = scratch("signing-keys")
    return {"good": _keypair(where, "good"), "other": _keypair(where, "other")}


def _build(opa_binary: str, site: Path, key: Path, out: Path) -> None:
    text = io.StringIO()
    assert policy_cli.build([REGO, site], out, signing_key=key, binary=opa_binary, out=text) == 0
    assert "(signed)" in text.getvalue()


def _rewrite(bundle: Path, name: str, content: bytes) -> None:
    """Replace one file of a bundle tarball, its signature left as it was."""
    with tarfile.open(bundle) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    files[name] = content
    with tarfile.open(bundle, "w:gz") as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _current(link: Path, target: Path) -> None:
    """Point symlink ``link`` at ``target`` in one rename (how a deploy switches)."""
    tmp = link.with_name(f".{link.name}.new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


async def test_signed_layers_load_and_name_their_effective_revisions(
    opa_binary: str, keys: dict[str, tuple[Path, Path]]
) -> None:
    site = site_copy()
    out = scratch("signed") / "v1"
    private, public = keys["good"]
    # the CLI as an operator runs it
    rc = cli.main(
        [
            *("policy", "build", str(REGO), str(site), "-o", str(out)),
            *("--signing-key", str(private), "--opa-binary", opa_binary),
        ]
    )
    assert rc == 0
    for layer in ("aarm", "site"):
        with tarfile.open(out / f"{layer}.tar.gz") as tar:
            assert ".signatures.json" in tar.getnames()
    expected = policy_version(la.effective_revision for la in load_layers([REGO, site]))
    cfg = reload_config(
        opa_binary, out / "aarm.tar.gz", out / "site.tar.gz", pack=None, verification_key=public
    )
    async with running(cfg) as (_, clients):
        resp = await clients.decide.Decide(decide_request(*LOOKUP))
    assert resp.decision == D.DECISION_ALLOW
    assert (resp.policy.revision, resp.policy.hash) == (expected.revision, expected.hash)


@pytest.mark.parametrize("tamper", ["other key", "file changed", "unsigned overlay"])
async def test_a_bad_signature_refuses_to_start(
    opa_binary: str, keys: dict[str, tuple[Path, Path]], tamper: str
) -> None:
    site = site_copy()
    out = scratch("signed") / "v1"
    private = keys["other" if tamper == "other key" else "good"][0]
    _build(opa_binary, site, private, out)
    layers = (out / "aarm.tar.gz", out / "site.tar.gz")
    if tamper == "file changed":  # the tool taken out of the signed overlay
        _rewrite(out / "site.tar.gz", "aarm/overlays/site/catalogue/data.json", b'{"tools": {}}')
    if tamper == "unsigned overlay":
        layers = (out / "aarm.tar.gz", site)
    cfg = reload_config(opa_binary, *layers, pack=None, verification_key=keys["good"][1])
    with pytest.raises(server.StartupError) as err:
        await server.start(cfg)
    text = str(err.value)
    assert {
        "other key": "verification",
        "file changed": "digest mismatch",
        "unsigned overlay": "missing .signatures.json",
    }[tamper] in text, text


async def test_a_reload_with_a_bad_signature_keeps_the_running_policy(
    opa_binary: str, keys: dict[str, tuple[Path, Path]]
) -> None:
    site = site_copy()
    root = scratch("signed")
    good, public = keys["good"]
    _build(opa_binary, site, good, root / "v0")
    write_site(site, 1)  # revision 1 does not catalogue the tool
    _build(opa_binary, site, keys["other"][0], root / "v1-other")
    _build(opa_binary, site, good, root / "v1")
    current = root / "current"
    _current(current, root / "v0")
    cfg = reload_config(
        opa_binary,
        current / "aarm.tar.gz",
        current / "site.tar.gz",
        pack=None,
        verification_key=public,
    )
    async with running(cfg) as (app, clients):
        sidecar = app.sidecar
        assert sidecar is not None
        _current(current, root / "v1-other")
        await sidecar.wait_reloads(1)
        ok, why = sidecar.reloads[-1]
        assert not ok
        assert "verification" in why, why
        assert app.metrics.policy_reloads.labels("refused")._value.get() == 1
        resp = await clients.decide.Decide(decide_request(*LOOKUP))
        assert (resp.decision, _site_gen(resp.policy.revision)) == (D.DECISION_ALLOW, 0)
        _current(current, root / "v1")
        await sidecar.wait_reloads(2)
        assert sidecar.reloads[-1][0], sidecar.reloads[-1]
        resp = await clients.decide.Decide(decide_request(*LOOKUP))
        assert (resp.decision, _site_gen(resp.policy.revision)) == (D.DECISION_DENY, 1)
        assert app.metrics.policy_reloads.labels("ok")._value.get() == 1
    with contextlib.suppress(FileNotFoundError):
        current.unlink()
