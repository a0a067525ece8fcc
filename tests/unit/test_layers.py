"""The layering of docs/architecture.md, checked on the imports themselves.

``api → decision → {opa, session, provenance, analysis, drift, receipts, approvals,
auth, observability} → {model, config} → errors``: a module may import its own package
or a lower layer, never a higher one; packages of the same layer may import each other
only while no circle forms; ``model`` imports nothing of ours but ``errors``; and no
two modules import each other, however indirectly (lazy and type-only imports count).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "service" / "aarm_pdp"
PKG = "aarm_pdp"

LAYERS: dict[str, int] = {
    "errors": 0,
    "model": 1,
    "config": 1,
    "config_file": 1,  # the --config file: config.py's sections from YAML/TOML
    "tasks": 1,  # asyncio helpers of the stop paths, nothing of ours
    "analysis": 2,
    "approvals": 2,
    "auth": 2,
    "drift": 2,
    "observability": 2,
    "opa": 2,
    "provenance": 2,
    "receipts": 2,
    "session": 2,
    "decision": 3,
    "api": 4,
    # the MCP gateway: an enforcement point, a gRPC client of the service (never the engine)
    "gateway": 4,
    # entrypoints and wiring
    "server": 5,
    "cli": 5,
    "loop": 5,
    "__main__": 5,
    "": 5,  # the package's own __init__
}
ALLOWED_BELOW_MODEL = {"errors", "model"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str) -> str:
    """The module a dotted import name lands on (a submodule, or its package)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str) -> Iterator[tuple[str, int]]:
    path = MODULES[module]
    yield from _imports_in(
        ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py"
    )


def _imports_in(tree: ast.AST, module: str, is_pkg: bool) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PKG or alias.name.startswith(PKG + "."):
                    yield _resolve(alias.name), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_pkg else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base != PKG and not base.startswith(PKG + "."):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (_resolve(candidate) if candidate in MODULES else _resolve(base)), node.lineno


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


GRAPH = {m: sorted({t for t, _ in _imports(m) if t != m}) for m in MODULES}


def test_every_package_has_a_layer() -> None:
    unknown = sorted({_package(m) for m in MODULES} - LAYERS.keys())
    assert not unknown, f"packages without a layer in this test and docs/architecture.md: {unknown}"


def test_no_import_runs_upward() -> None:
    upward = []
    for module in MODULES:
        src = _package(module)
        for target, line in _imports(module):
            dst = _package(target)
            if dst == src:
                continue
            if LAYERS[dst] > LAYERS[src] or (src == "model" and dst not in ALLOWED_BELOW_MODEL):
                upward.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def _cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_package_circle() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        src = _package(module)
        packages.setdefault(src, set()).update(_package(t) for t in targets if _package(t) != src)
    circle = _cycle({k: sorted(v) for k, v in packages.items()})
    assert circle is None, "package circle: " + " -> ".join(circle or [])


def test_no_module_circle() -> None:
    # A package's __init__ re-exporting its modules is not a circle of theirs.
    graph = {
        m: [t for t in targets if not (MODULES[t].name == "__init__.py" and m.startswith(t + "."))]
        for m, targets in GRAPH.items()
    }
    circle = _cycle(graph)
    assert circle is None, "module circle: " + " -> ".join(circle or [])


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from aarm_pdp.decision.engine import X\n", ["aarm_pdp.decision.engine"]),
        ("from aarm_pdp.receipts import body\n", ["aarm_pdp.receipts.body"]),
        ("import aarm_pdp.model.levels\n", ["aarm_pdp.model.levels"]),
        ("def f():\n    from ..opa import port\n", ["aarm_pdp.opa.port"]),
        ("import json\nfrom grpc import aio\n", []),
    ],
)
def test_the_walker_sees_every_import(source: str, expected: list[str]) -> None:
    found = [t for t, _ in _imports_in(ast.parse(source), "aarm_pdp.decision.engine", False)]
    assert found == expected
