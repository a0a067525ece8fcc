"""Locate and fingerprint the policy files handed to a managed OPA."""

from __future__ import annotations

import hashlib
from pathlib import Path

_POLICY_SUFFIXES = (".rego", ".json", ".yaml", ".yml", ".manifest", ".tar.gz")


def _files(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        return [(path.name, path)]
    return sorted(
        (p.relative_to(path).as_posix(), p)
        for p in path.rglob("*")
        if p.is_file()
        and p.name.endswith(_POLICY_SUFFIXES)
        and not p.name.endswith("_test.rego")
        and not any(
            part.startswith(".") and part != ".manifest" for part in p.relative_to(path).parts
        )
    )


def policy_hash(paths: list[Path]) -> str:
    """sha256 over every policy and data file (not tests), by relative path and content."""
    h = hashlib.sha256()
    for index, root in enumerate(paths):
        for rel, file in _files(root):
            h.update(f"{index}:{rel}\0".encode())
            h.update(hashlib.sha256(file.read_bytes()).digest())
    return h.hexdigest()
