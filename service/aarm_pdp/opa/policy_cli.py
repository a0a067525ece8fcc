"""``aarm-pdp policy check | build``: lint an overlay, build layers for an external OPA.

``check OVERLAY...`` runs, over the pack and the overlays together, each step an
operator must pass before loading them (exit status 1 and one line per problem):

1. the layers themselves (manifest, name, roots that overlap no other layer's);
2. the catalogue lint on the merged catalogue: ``data.aarm.catalogue.errors`` empty;
3. ``opa check --strict`` with the pack's pinned capabilities and input schema;
4. the pack's own Rego tests (and the overlays'), run against the merged catalogue.

``build LAYER... -o OUT`` writes each layer (the pack first) as the bundle a managed
sidecar would load, effective revision in its manifest, to ``OUT/<layer name>``, and
prints the ``opa run`` command that serves them (docs/overlays.md). With
``--signing-key`` each layer is written as a signed bundle ``OUT/<layer name>.tar.gz``
instead (``opa sign``: its ``.signatures.json`` covers the manifest with the effective
revision), for a managed sidecar with ``opa.verification_key`` or an OPA run with
``--verification-key`` (docs/policy-lifecycle.md).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import TextIO

from aarm_pdp.opa.layers import Layer, LayerError, load_layers, policy_version, stage

_TIMEOUT = 300.0


def _opa(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the configured opa binary, our arguments
        [binary, *args], capture_output=True, text=True, timeout=_TIMEOUT, check=False
    )


def _tail(text: str, lines: int = 40) -> list[str]:
    """OPA's complaint: the messages of a JSON error report, else the last lines."""
    try:
        errors = json.loads(text).get("errors")
        messages = [str(e.get("message", e)) for e in errors]
    except (ValueError, AttributeError, TypeError):
        return [line for line in text.strip().splitlines()[-lines:] if line.strip()]
    return messages[:lines]


def lint_catalogue(binary: str, bundles: list[Path]) -> list[str]:
    """The merged catalogue's lint errors (``data.aarm.catalogue.errors``), or why not."""
    args = ["eval", "--format", "json"]
    for b in bundles:
        args += ["--bundle", str(b)]
    proc = _opa(binary, *args, "data.aarm.catalogue.errors")
    if proc.returncode != 0:
        return ["catalogue lint: opa eval failed:", *_tail(proc.stderr or proc.stdout)]
    try:
        results = json.loads(proc.stdout).get("result") or []
        errors = results[0]["expressions"][0]["value"] if results else None
    except (ValueError, KeyError, IndexError, TypeError):
        return [f"catalogue lint: unreadable answer from opa eval: {proc.stdout[:300]!r}"]
    if errors is None:
        return ["catalogue lint: data.aarm.catalogue.errors is undefined (not the aarm pack?)"]
    return [f"catalogue: {e}" for e in sorted(errors)]


def strict_check(binary: str, pack: Path, bundles: list[Path]) -> list[str]:
    """``opa check --strict`` over every layer (the pack's capabilities and schemas)."""
    args = ["check", "--strict"]
    if (pack / "capabilities.json").is_file():
        args += ["--capabilities", str(pack / "capabilities.json")]
    if (pack / "schemas").is_dir():
        args += ["--schema", str(pack / "schemas")]
    proc = _opa(binary, *args, "--bundle", *map(str, bundles))
    if proc.returncode == 0:
        return []
    return ["opa check --strict failed:", *_tail(proc.stderr or proc.stdout)]


def run_tests(binary: str, bundles: list[Path]) -> list[str]:
    """``opa test`` of every layer's tests, loaded together (the merged catalogue)."""
    proc = _opa(binary, "test", "--bundle", *map(str, bundles))
    if proc.returncode == 0:
        return []
    failing = [line for line in proc.stdout.splitlines() if "FAIL" in line or "ERROR" in line]
    return ["opa test failed (pack and overlay tests on the merged catalogue):"] + (
        failing[:40] or _tail(proc.stderr or proc.stdout)
    )


def check(overlays: list[Path], *, pack: Path, binary: str, out: TextIO = sys.stdout) -> int:
    """Run every check; print problems; 0 when there are none, else 1."""
    try:
        layers = load_layers([pack, *overlays])
    except LayerError as exc:
        print(f"error: {exc}", file=out)
        return 1
    bundles = [layer.path for layer in layers]
    problems: list[str] = []
    try:
        problems += lint_catalogue(binary, bundles)
        problems += strict_check(binary, layers[0].path, bundles)
        problems += run_tests(binary, bundles)
    except (OSError, subprocess.SubprocessError) as exc:
        problems.append(f"cannot run {binary}: {exc}")
    names = ", ".join(layer.name for layer in layers[1:]) or "(no overlay)"
    if problems:
        for line in problems:
            print(f"error: {line}", file=out)
        print(f"policy check: {names}: {len(problems)} problem line(s)", file=out)
        return 1
    print(f"policy check: {names}: ok ({_summary(layers)})", file=out)
    return 0


def _summary(layers: list[Layer]) -> str:
    return policy_version(layer.effective_revision for layer in layers).revision


def _tar(src: Path, dest: Path, *extra: Path) -> None:
    """``src``'s files as a bundle tarball (names relative to the bundle root)."""
    with tarfile.open(dest, "w:gz") as tar:
        for file in sorted(p for p in src.rglob("*") if p.is_file()):
            tar.add(file, arcname="/" + file.relative_to(src).as_posix())
        for file in extra:
            tar.add(file, arcname="/" + file.name)


def sign(
    binary: str, staged: Path, dest: Path, signing_key: Path, *, alg: str = "RS256"
) -> list[str]:
    """Write ``dest``, the bundle tarball of directory ``staged`` with its signature
    (``opa sign``: ``.signatures.json`` over every file); problems, if any.

    A tarball, not a directory: ``opa run`` checks a directory bundle's signature
    against file names that include the directory's own path, so a signed directory
    would verify only where it was signed. The token names no key id: ``opa run``
    verifies with the key its ``--verification-key-id`` names (``default``).
    """
    with tempfile.TemporaryDirectory(prefix="aarm-sign-") as tmp:
        unsigned = Path(tmp) / "unsigned.tar.gz"
        _tar(staged, unsigned)
        args = ["sign", "--bundle", str(unsigned), "--output-file-path", tmp]
        proc = _opa(binary, *args, "--signing-key", str(signing_key), "--signing-alg", alg)
        if proc.returncode != 0:
            return [f"opa sign {staged} failed:", *_tail(proc.stderr or proc.stdout)]
        _tar(staged, dest, Path(tmp) / ".signatures.json")
    return []


def build(
    layers_in: list[Path],
    out_dir: Path,
    *,
    out: TextIO = sys.stdout,
    signing_key: Path | None = None,
    signing_alg: str = "RS256",
    binary: str = "opa",
) -> int:
    """Stage every layer under ``out_dir/<name>`` (signed with ``signing_key`` when
    given); print the opa command and the version."""
    try:
        layers = load_layers(layers_in)
    except LayerError as exc:
        print(f"error: {exc}", file=out)
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    if signing_key is None:
        staged = [stage(layer, out_dir / layer.name) for layer in layers]
    else:
        staged = [out_dir / f"{layer.name}.tar.gz" for layer in layers]
        problems: list[str] = []
        try:
            with tempfile.TemporaryDirectory(prefix="aarm-build-") as tmp:
                for layer, dest in zip(layers, staged, strict=True):
                    unsigned = stage(layer, Path(tmp) / layer.name)
                    problems += sign(binary, unsigned, dest, signing_key, alg=signing_alg)
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append(f"cannot run {binary}: {exc}")
        if problems:
            for line in problems:
                print(f"error: {line}", file=out)
            return 1
    version = policy_version(layer.effective_revision for layer in layers)
    bundles = " ".join(f"-b {shlex.quote(str(p))}" for p in staged)
    verify = ""
    if signing_key is not None:
        verify = f"--verification-key PUBLIC_KEY.pem --signing-alg {signing_alg} "
    signed = " (signed)" if signing_key is not None else ""
    print(f"built {len(staged)} layer(s) in {out_dir}{signed}", file=out)
    print(f"revision {version.revision}", file=out)
    print(f"hash     {version.hash}", file=out)
    print(f"serve with: opa run --server {verify}{bundles}", file=out)
    return 0
