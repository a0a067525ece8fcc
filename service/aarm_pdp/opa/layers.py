"""Policy layers: the reference pack and the operator's overlays, each an OPA bundle.

A layer is a bundle directory (or ``.tar.gz``) with a ``.manifest``. The first layer is
the pack; every further one is an overlay rooted at exactly ``aarm/overlays/<name>``.
No two layers' roots overlap (so with overlays the pack may not claim all of ``aarm``).

What OPA evaluates for a layer is named by its *effective revision*::

    <layer>@<manifest revision>+sha256:<digest>

``<layer>`` is ``aarm`` for the pack and the overlay's name otherwise; ``<digest>`` is
:func:`content_digest` of the files OPA loads from it (policies and data, not tests).
The service writes it into the manifest of the bundle it hands a managed OPA
(:func:`stage`), ``aarm-pdp policy build`` does the same for an external OPA, and OPA
returns it with every answer (``?provenance=true``). :func:`policy_version` turns the
revisions OPA reports into the :class:`~aarm_pdp.model.decision.PolicyVersion` a
receipt carries: the same files give the same revision and hash in both modes
(docs/overlays.md).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aarm_pdp.model.decision import PolicyVersion

__all__ = [
    "OVERLAY_PREFIX",
    "PACK_LAYER",
    "Layer",
    "LayerError",
    "content_digest",
    "evaluated_files",
    "is_effective",
    "load_layers",
    "merge_config",
    "merged_documents",
    "policy_version",
    "source_fingerprint",
    "stage",
]

PACK_LAYER = "aarm"
"""The pack's layer name in an effective revision (no overlay may take it)."""
OVERLAY_PREFIX = "aarm/overlays/"
NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
_EFFECTIVE_RE = re.compile(r"([a-z][a-z0-9_]*)@(.*)\+sha256:([0-9a-f]{64})")
_DATA_FILES = frozenset({"data.json", "data.yaml", "data.yml"})

UNSENT_INPUT = ("pending_deferrals",)
"""Input members the service no longer sends (``decision/input.py``,
``UNSENT_SESSION_MEMBERS``; docs/opa-contract.md). A layer whose policy or data names
one would silently never see it, so it is refused instead (a rule that should deny on
it must not quietly stop denying)."""
_UNSENT_RE = re.compile(rb"\b(" + b"|".join(m.encode() for m in UNSENT_INPUT) + rb")\b")


class LayerError(ValueError):
    """A layer cannot be used: the message says which and why."""


def evaluated_files(root: Path) -> list[tuple[str, Path]]:
    """The files OPA loads from bundle directory ``root`` as policy or data, sorted.

    Rego modules (not ``*_test.rego``) and ``data.json``/``data.yaml`` documents; hidden
    directories, tests, schemas and other files are not evaluated.
    """
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        name = p.name
        if (name.endswith(".rego") and not name.endswith("_test.rego")) or name in _DATA_FILES:
            out.append((rel.as_posix(), p))
    return sorted(out)


def content_digest(root: Path) -> str:
    """sha256 (hex) over every evaluated file of ``root``: ``path NUL sha256(content)``."""
    h = hashlib.sha256()
    for rel, file in evaluated_files(root):
        h.update(f"{rel}\0".encode())
        h.update(hashlib.sha256(file.read_bytes()).digest())
    return h.hexdigest()


_BUNDLE_META = (".manifest", ".signatures.json")


def source_fingerprint(paths: Iterable[Path]) -> str:
    """sha256 (hex) naming the layers' sources as they are now, cheaply enough to poll.

    A directory: its manifest, signatures and :func:`content_digest`; a bundle file: its
    bytes. Changes when anything OPA would load from them changes (tests and other
    files do not count). Raises ``OSError`` when a source cannot be read.
    """
    h = hashlib.sha256()
    for path in paths:
        h.update(f"{path}\0".encode())
        if path.is_dir():
            for name in _BUNDLE_META:
                meta = path / name
                h.update(hashlib.sha256(meta.read_bytes()).digest() if meta.is_file() else b"-")
            h.update(content_digest(path).encode())
        else:
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


@dataclass(frozen=True)
class Layer:
    """One policy layer, read and checked."""

    name: str
    """``aarm`` for the pack, the overlay's name otherwise."""
    path: Path
    """The bundle directory (a ``.tar.gz`` layer: where it was unpacked)."""
    source: Path
    """The path as given."""
    manifest: Mapping[str, Any]
    revision: str
    """The manifest's own revision."""
    roots: tuple[str, ...]
    digest: str

    @property
    def effective_revision(self) -> str:
        return f"{self.name}@{self.revision}+sha256:{self.digest}"


def _unpack(path: Path, into: Path) -> Path:
    target = Path(tempfile.mkdtemp(prefix="layer-", dir=into))
    try:
        with tarfile.open(path, "r:gz") as tar:
            tar.extractall(target, filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise LayerError(f"{path}: not a readable .tar.gz bundle: {exc}") from exc
    return target


def _read_manifest(path: Path, source: Path) -> dict[str, Any]:
    mfile = path / ".manifest"
    try:
        doc = json.loads(mfile.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LayerError(
            f"{source}: no .manifest (a layer is an OPA bundle: its .manifest names its "
            "revision and roots)"
        ) from None
    except (OSError, ValueError) as exc:
        raise LayerError(f"{source}/.manifest: not readable JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise LayerError(f"{source}/.manifest: not a JSON object")
    return doc


def _overlaps(a: str, b: str) -> bool:
    pa, pb = a.strip("/").split("/"), b.strip("/").split("/")
    n = min(len(pa), len(pb))
    return pa[:n] == pb[:n]


def _layer(source: Path, *, pack: bool, scratch: Path) -> Layer:
    if not source.exists():
        raise LayerError(f"{source}: does not exist")
    path = source if source.is_dir() else _unpack(source, scratch)
    manifest = _read_manifest(path, source)
    revision = manifest.get("revision", "")
    built = (manifest.get("metadata") or {}).get("aarm_layer")
    if isinstance(built, dict) and isinstance(revision, str) and is_effective(revision):
        revision = built.get("revision", "")  # staged before: its own revision again
    if not isinstance(revision, str) or not revision:
        raise LayerError(f"{source}/.manifest: needs a non-empty string 'revision'")
    if "," in revision or any(c.isspace() for c in revision):
        raise LayerError(f"{source}/.manifest: revision {revision!r} has a comma or space")
    roots = manifest.get("roots")
    if not isinstance(roots, list) or not roots or not all(isinstance(r, str) for r in roots):
        raise LayerError(f"{source}/.manifest: needs 'roots', a non-empty list of paths")
    if pack:
        name = PACK_LAYER
    else:
        if len(roots) != 1 or not roots[0].startswith(OVERLAY_PREFIX):
            raise LayerError(
                f"{source}/.manifest: an overlay has exactly one root, "
                f"aarm/overlays/<name>; it has {roots}"
            )
        name = roots[0][len(OVERLAY_PREFIX) :].rstrip("/")
        if not NAME_RE.fullmatch(name) or name == PACK_LAYER:
            raise LayerError(
                f"{source}/.manifest: overlay name {name!r} must match [a-z][a-z0-9_]* "
                f"(and not be {PACK_LAYER!r})"
            )
    for rel, file in evaluated_files(path):
        hit = _UNSENT_RE.search(file.read_bytes())
        if hit:
            raise LayerError(
                f"{source}/{rel}: names input member {hit.group(1).decode()!r}, which the "
                "service does not send (docs/opa-contract.md; for the deferrals an action "
                "depends on, read input.dependencies.deferred)"
            )
    return Layer(
        name=name,
        path=path,
        source=source,
        manifest=manifest,
        revision=revision,
        roots=tuple(roots),
        digest=content_digest(path),
    )


def load_layers(paths: Iterable[Path], *, scratch: Path | None = None) -> list[Layer]:
    """Read and check the layers (first the pack, then overlays); raises :class:`LayerError`.

    ``scratch``: where ``.tar.gz`` layers are unpacked (default: a new temporary
    directory).
    """
    sources = list(paths)
    if not sources:
        raise LayerError("no policy layers given")
    if scratch is None and any(not p.is_dir() for p in sources):
        scratch = Path(tempfile.mkdtemp(prefix="aarm-layers-"))
    layers: list[Layer] = []
    for i, source in enumerate(sources):
        layer = _layer(source, pack=i == 0, scratch=scratch or Path(tempfile.gettempdir()))
        for other in layers:
            clash = [(a, b) for a in layer.roots for b in other.roots if _overlaps(a, b)]
            if clash:
                a, b = clash[0]
                hint = (
                    " (the pack's .manifest must list its own packages, not all of aarm)"
                    if other.name == PACK_LAYER
                    else ""
                )
                raise LayerError(
                    f"{source}: root {a!r} overlaps root {b!r} of layer {other.name!r} "
                    f"({other.source}): every layer owns its own paths{hint}"
                )
        layers.append(layer)
    return layers


def stage(layer: Layer, out_dir: Path) -> Path:
    """Write ``layer`` as the bundle OPA loads: its evaluated files and a manifest whose
    revision is the effective revision (the original one kept in ``metadata``)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for rel, file in evaluated_files(layer.path):
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, dest)
    manifest = dict(layer.manifest)
    metadata = dict(manifest.get("metadata") or {})
    metadata["aarm_layer"] = {"name": layer.name, "revision": layer.revision}
    manifest["metadata"] = metadata
    manifest["revision"] = layer.effective_revision
    (out_dir / ".manifest").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out_dir


def _order(revision: str) -> tuple[int, str, str]:
    m = _EFFECTIVE_RE.fullmatch(revision)
    if m is None:
        return (2, "", revision)  # not built by us: after the layers, in string order
    return (0 if m.group(1) == PACK_LAYER else 1, m.group(1), revision)


def policy_version(revisions: Iterable[str]) -> PolicyVersion:
    """The version of a policy made of bundles with these revisions (any order).

    ``revision``: the effective revisions, the pack first and then the overlays by name,
    joined by ``,``; ``hash``: sha256 (hex) of that text. No bundle: both empty.
    """
    ordered = sorted((r for r in revisions if r), key=_order)
    if not ordered:
        return PolicyVersion(revision="", hash="")
    text = ",".join(ordered)
    return PolicyVersion(revision=text, hash=hashlib.sha256(text.encode()).hexdigest())


def is_effective(revision: str) -> bool:
    """Whether ``revision`` is an effective revision (``<layer>@<rev>+sha256:<digest>``)."""
    return _EFFECTIVE_RE.fullmatch(revision) is not None


def merge_config(base: Any, patch: Any) -> Any:
    """``object.union(base, patch)``: objects merged key by key, recursively; anything
    else (arrays too) replaced by ``patch``."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge_config(base[key], value) if key in base else value
        return out
    return patch


def _json_doc(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError) as exc:
        raise LayerError(f"{path}: not readable JSON: {exc}") from exc


def merged_documents(layers: Sequence[Layer]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The merged tool catalogue and config of ``layers``, as ``aarm.layers`` makes them.

    For Python code that reads the policy's files rather than asking OPA (the service
    asks OPA: ``data.aarm.layers.tools``). The pack's ``aarm/catalogue/data.json`` tools
    and ``aarm/config/data.json``; then each overlay in name order: its tools replace
    entries of the same name, its config is merged over (:func:`merge_config`). JSON
    data documents only.
    """
    pack, overlays = layers[0], sorted(layers[1:], key=lambda la: la.name)
    tools = dict(
        (_json_doc(pack.path / "aarm" / "catalogue" / "data.json") or {}).get("tools") or {}
    )
    config: Any = _json_doc(pack.path / "aarm" / "config" / "data.json") or {}
    for layer in overlays:
        base = layer.path / "aarm" / "overlays" / layer.name
        tools.update((_json_doc(base / "catalogue" / "data.json") or {}).get("tools") or {})
        patch = _json_doc(base / "config" / "data.json")
        if patch is not None:
            config = merge_config(config, patch)
    return tools, config
