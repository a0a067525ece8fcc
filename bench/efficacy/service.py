"""The real service for an efficacy run: ``aarm-pdp serve`` as a child process.

Managed OPA sidecar, embedded defaults, everything it writes (receipts, keys, the
principals file) in a temporary directory, a free loopback port. Two principals: the
enforcing service (enforcer role in tenant ``default``) and an approver (approver
groups ``*``) that resolves approvals; their tokens are fresh for every run and the file
holds only their hashes.

The policy is the reference pack plus the overlay catalogue ``tools/*.json``:

- ``bundle``: ``--policy <pack> --policy <overlay>``, the overlay built by
  ``bench/efficacy/overlay.py`` (``build_overlay(out_dir)``, an OPA bundle named
  ``efficacy``);
- ``merge``: a temporary copy of the pack with the tools merged into its catalogue
  ``data.json`` (never written back), for a pack or service without overlay support;
- ``auto``: ``bundle`` when the builder exists and the pack's manifest leaves
  ``aarm/overlays`` to other bundles, else ``merge``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.efficacy.corpus import TOOLS
from tests.support.ports import address, free_port
from tests.support.processes import grpc_serving, serve_command, wait_until

ROOT = Path(__file__).resolve().parents[2]
OPA = ROOT / "bin" / "opa"
REGO = ROOT / "rego"
CATALOGUE = Path("aarm") / "catalogue" / "data.json"
ENFORCER = "efficacy-enforcer"
APPROVER = "efficacy-approver"
TENANT = "default"
START_TIMEOUT = 120.0


@dataclass(frozen=True)
class Endpoint:
    """A running service: its gRPC target and the two principals' tokens."""

    target: str
    enforcer_token: str
    approver_token: str
    overlay: str  # how the overlay was loaded: bundle, merge or none


def _hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def principals_doc(enforcer_token: str, approver_token: str) -> dict[str, Any]:
    """The enforcing service principal and an approver for every group."""
    return {
        "version": 1,
        "principals": [
            {
                "id": ENFORCER,
                "kind": "service",
                "description": "the efficacy runner's enforcement point",
                "roles": {TENANT: ["enforcer"]},
                "tokens": [_hash(enforcer_token)],
            },
            {
                "id": APPROVER,
                "kind": "user",
                "description": "the human who approves (or rejects) STEP_UP actions",
                "roles": {TENANT: ["approver"]},
                "approver_groups": ["*"],
                "tokens": [_hash(approver_token)],
            },
        ],
    }


def overlay_tools(directory: Path = TOOLS) -> dict[str, Any]:
    """The overlay catalogue: every ``tools/*.json`` entry by ``tool.operation``."""
    tools: dict[str, Any] = {}
    for path in sorted(directory.glob("*.json")):
        tools.update(json.loads(path.read_text(encoding="utf-8"))["tools"])
    return tools


def merged_pack(pack: Path, out: Path) -> Path:
    """A copy of ``pack`` at ``out`` whose catalogue also holds the overlay's tools."""
    shutil.copytree(pack, out)
    data_path = out / CATALOGUE
    data = json.loads(data_path.read_text(encoding="utf-8"))
    clash = set(data["tools"]) & set(overlay_tools())
    if clash:
        raise ValueError(f"overlay tools already in the pack's catalogue: {sorted(clash)}")
    data["tools"].update(overlay_tools())
    data_path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return out


def overlay_builder() -> Any:
    """``bench.efficacy.overlay.build_overlay`` when it exists, else None."""
    try:
        module = importlib.import_module("bench.efficacy.overlay")
    except ModuleNotFoundError:
        return None
    return getattr(module, "build_overlay", None)


OVERLAY_ROOT = "aarm/overlays/efficacy"


def takes_overlays(pack: Path) -> bool:
    """True when no root of ``pack``'s manifest covers the overlay's root (a pack from
    before policy layers claims all of ``aarm``, and OPA refuses overlapping bundles)."""
    manifest = pack / ".manifest"
    if not manifest.exists():
        return False
    roots = json.loads(manifest.read_text(encoding="utf-8")).get("roots", [""])
    return not any(
        r == "" or OVERLAY_ROOT.startswith(r.rstrip("/") + "/") or r.startswith(OVERLAY_ROOT)
        for r in roots
    )


def resolve_mode(mode: str, pack: Path) -> str:
    """``auto`` is ``bundle`` when the overlay builder exists and ``pack`` takes
    overlays, else ``merge``."""
    if mode == "auto":
        bundle = overlay_builder() is not None and takes_overlays(pack)
        return "bundle" if bundle else "merge"
    return mode


def policy_args(mode: str, pack: Path, workdir: Path) -> list[str]:
    """The ``--policy`` arguments of ``mode`` (bundle, merge, or none: the pack alone)."""
    if mode == "none":
        return ["--policy", str(pack)]
    if mode == "bundle":
        build = overlay_builder()
        if build is None:
            raise RuntimeError("bench/efficacy/overlay.py (build_overlay) is not there yet")
        overlay = build(workdir / "overlay")
        return ["--policy", str(pack), "--policy", str(overlay)]
    return ["--policy", str(merged_pack(pack, workdir / "policy"))]


def snapshot(rev: str, out: Path) -> Path:
    """``service``, ``gen`` and ``rego`` of git revision ``rev`` extracted under ``out``
    (a shared working tree may be mid-edit; a commit is consistent)."""
    out.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "service", "gen", "rego"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {rev}: {archive.stderr.decode(errors='replace')}")
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out


@contextlib.contextmanager
def running(
    workdir: Path,
    *,
    mode: str = "auto",
    pack: Path = REGO,
    opa: Path = OPA,
    source: Path | None = None,
    opa_timeout: float = 10.0,
) -> Iterator[Endpoint]:
    """Start the service in ``workdir``, wait until it serves Decide, stop it after.

    ``source`` is a tree holding ``service`` and ``gen/python`` to run instead of the
    checkout's (see :func:`snapshot`). ``opa_timeout`` is generous: the run is not
    timed, and a query cut by CPU contention would fail closed (scored as an error).
    """
    if not opa.exists():
        raise RuntimeError(f"{opa} missing: make setup builds it")
    enforcer_token = secrets.token_urlsafe(32)
    approver_token = secrets.token_urlsafe(32)
    principals = workdir / "principals.json"
    principals.write_text(json.dumps(principals_doc(enforcer_token, approver_token), indent=1))
    principals.chmod(0o600)
    mode = resolve_mode(mode, pack)
    policy = policy_args(mode, pack, workdir)
    port = free_port()
    cmd = serve_command(
        port,
        "--opa-binary",
        str(opa),
        *policy,
        "--receipts",
        str(workdir / "receipts.db"),
        "--key-dir",
        str(workdir / "keys"),
        "--telemetry-file",
        "",
        "--opa-timeout",
        str(opa_timeout),
        "--log-level",
        "warning",
        principals=principals,
    )
    env = dict(os.environ)
    if source is not None:
        paths = [str(source / "service"), str(source / "gen" / "python")]
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(":")
    log_path = workdir / "service.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=source or ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            target = address(port)
            try:
                wait_until(
                    "aarm-pdp serve",
                    lambda: grpc_serving(target, "aarm.v1.DecisionService"),
                    proc=proc,
                    timeout=START_TIMEOUT,
                )
            except RuntimeError as exc:
                tail = log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{exc}\n--- service log ---\n{tail}") from exc
            yield Endpoint(target, enforcer_token, approver_token, mode)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def service_log(workdir: Path) -> str:
    """The service's log of a run in ``workdir``."""
    path = workdir / "service.log"
    return path.read_text(errors="replace") if path.exists() else ""
