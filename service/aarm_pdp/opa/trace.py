"""OPA's own explanation of the rules that decided: ``opa eval --explain debug``.

For ``aarm-pdp explain`` (never on the decision path): a recorded input is evaluated by
the real OPA binary on the policy layers, staged as the managed sidecar stages them,
with query explanations on. Of OPA's trace only the rules whose METADATA names one of
the wanted rule ids are kept, and of each of their successful evaluations (an ``Exit``
event: one per reason the rule gave):

- the body expressions that held, by source line (``rego/aarm/stepup/policy.rego:84``
  and the line's text), each with the values OPA bound on that line: the rule's own
  variables (``payment``) and the references it evaluated (``payment.value``);
- the source location of the rule.

:func:`explain_rules` runs OPA; :func:`deciding_rules` is the pure part over a parsed
trace (OPA's JSON trace events: ``Op``, ``Node``, ``Location``, ``QueryID``,
``Locals``, ``LocalMetadata``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from aarm_pdp.opa.layers import LayerError, load_layers, policy_version, stage

__all__ = ["TraceError", "deciding_rules", "explain_rules", "term_value"]

ENTRYPOINT = "data.aarm.main.decision"
MAX_INSTANCES = 8
"""Successful evaluations shown per rule (a rule gives one per reason)."""
MAX_VALUE = 240
"""Characters of a bound value shown (a config object is cut)."""
_REF = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[[^\]\s]*\])*")


class TraceError(RuntimeError):
    """OPA could not be run on the layers, or its answer was not a trace."""


@dataclass(frozen=True)
class _Staged:
    """Where a layer's bundle was staged, and what to call its files."""

    prefix: str
    shown: Path


def term_value(term: Any) -> Any:
    """A value of OPA's JSON AST (``{"type": "object", "value": [[k, v], ...]}``) as JSON."""
    if not isinstance(term, Mapping):
        return term
    kind = term.get("type")
    value = term.get("value")
    if kind in ("null", "boolean", "number", "string"):
        return value
    if kind == "array" or kind == "set":
        items = [term_value(v) for v in value or []]
        return items if kind == "array" else sorted(items, key=repr)
    if kind == "object":
        return {str(term_value(k)): term_value(v) for k, v in value or []}
    if kind == "var":
        return f"<{value}>"
    return f"<{kind}>"


def _short(value: Any) -> str:
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _rule_ids(node: Any) -> set[str]:
    if not isinstance(node, Mapping):
        return set()
    out = set()
    for note in node.get("annotations") or []:
        custom = note.get("custom") if isinstance(note, Mapping) else None
        if isinstance(custom, Mapping) and isinstance(custom.get("rule_id"), str):
            out.add(custom["rule_id"])
    return out


def _token(line: str, col: int) -> str:
    """The reference that starts at column ``col`` (1-based) of ``line``, if any
    (``f(…)`` for a call: the value is what it returned)."""
    m = _REF.match(line, max(col - 1, 0))
    if not m:
        return ""
    return m.group(0) + ("(…)" if line[m.end() : m.end() + 1] == "(" else "")


def _head(node: Any) -> str:
    """The name of the rule a trace node is (``deny_reasons``, ``_findings``)."""
    head = node.get("head") if isinstance(node, Mapping) else None
    if not isinstance(head, Mapping):
        return ""
    if isinstance(head.get("name"), str) and head["name"]:
        return str(head["name"])
    ref = head.get("ref") or []
    return ".".join(str(t.get("value")) for t in ref if isinstance(t, Mapping))


def deciding_rules(
    events: Sequence[Mapping[str, Any]],
    rule_ids: Iterable[str],
    *,
    source_line: Callable[[str, int], str],
    shown: Callable[[str], str],
) -> list[dict[str, Any]]:
    """For each wanted rule id: its location and its successful evaluations.

    ``source_line(file, row)`` is the text of a line of a file OPA loaded; ``shown(file)``
    the name to print for it. Rules are in ``rule_ids`` order; a rule id OPA did not
    evaluate to success is listed with no instances.
    """
    wanted = list(dict.fromkeys(rule_ids))
    by_rule: dict[str, dict[str, Any]] = {r: {"rule_id": r, "instances": []} for r in wanted}
    enter_at: dict[int, int] = {}
    for i, ev in enumerate(events):
        op = ev.get("Op")
        node = ev.get("Node")
        if op == "Enter" and _rule_ids(node) & by_rule.keys():
            enter_at[int(ev.get("QueryID", -1))] = i
        if op != "Exit":
            continue
        for rule_id in _rule_ids(node) & by_rule.keys():
            entry = by_rule[rule_id]
            loc = ev.get("Location") or {}
            file = str(loc.get("file", ""))
            entry.setdefault("location", f"{shown(file)}:{loc.get('row', 0)}")
            if len(entry["instances"]) >= MAX_INSTANCES:
                entry["more"] = entry.get("more", 0) + 1
                continue
            query = int(ev.get("QueryID", -1))
            start = enter_at.get(query, 0)
            inst = _instance(events[start:i], ev, query, source_line, shown)
            entry["instances"].append({"rule": _head(node), **inst})
    return [by_rule[r] for r in wanted]


def _instance(
    window: Sequence[Mapping[str, Any]],
    exit_event: Mapping[str, Any],
    query: int,
    source_line: Callable[[str, int], str],
    shown: Callable[[str], str],
) -> dict[str, Any]:
    """One successful evaluation: the body lines that held, with what OPA bound there."""
    rows: dict[tuple[str, int], None] = {}
    for ev in window:
        node = ev.get("Node")
        if ev.get("Op") != "Eval" or ev.get("QueryID") != query:
            continue
        if not isinstance(node, Mapping) or node.get("generated"):
            continue  # compiler-generated: the head's terms, rewritten comprehensions
        loc = ev.get("Location") or {}
        rows[(str(loc.get("file", "")), int(loc.get("row", 0)))] = None
    meta = exit_event.get("LocalMetadata") or {}
    values: dict[tuple[str, int], dict[str, str]] = {}
    for local in exit_event.get("Locals") or []:
        info = meta.get(local.get("name")) or {}
        loc = info.get("location") or {}
        key = (str(loc.get("file", "")), int(loc.get("row", 0)))
        if key not in rows:
            continue
        name = str(info.get("name", ""))
        if name.startswith(("__", "$")):
            name = _token(source_line(*key), int(loc.get("col", 0)))
        if name:
            values.setdefault(key, {})[name] = _short(term_value(local))
    return {
        "expressions": [
            {
                "location": f"{shown(file)}:{row}",
                "text": source_line(file, row).strip(),
                "values": values.get((file, row), {}),
            }
            for file, row in rows
        ]
    }


async def explain_rules(
    binary: str,
    policy_paths: Sequence[Path],
    input_doc: Mapping[str, Any],
    rule_ids: Iterable[str],
    *,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Evaluate ``input_doc`` with OPA's explanations on the layers (the pack first);
    ``{"policy", "result", "reasons", "rules"}``. Raises :class:`TraceError`."""
    with tempfile.TemporaryDirectory(prefix="aarm-explain-") as tmp:
        root = Path(tmp)
        try:
            layers = load_layers(policy_paths, scratch=root / "unpacked")
        except LayerError as exc:
            raise TraceError(f"policy layers unusable: {exc}") from exc
        staged: list[_Staged] = []
        argv = [binary, "eval", "--format", "json", "--explain", "debug", "--stdin-input"]
        for i, la in enumerate(layers):
            dest = stage(la, root / "bundles" / f"{i}-{la.name}")
            staged.append(_Staged(prefix=f"{dest.resolve()}/", shown=_display(la.source)))
            argv += ["--bundle", str(dest)]
        argv.append(ENTRYPOINT)
        out = await _run(argv, orjson.dumps({**input_doc}), timeout)
        try:
            body = orjson.loads(out)
            value = body["result"][0]["expressions"][0]["value"]
            events = body.get("explanation") or []
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            raise TraceError("opa eval gave no decision with an explanation") from exc
        lines: dict[str, list[str]] = {}

        def source_line(file: str, row: int) -> str:
            if file not in lines:
                try:
                    lines[file] = Path(file).read_text(encoding="utf-8").splitlines()
                except OSError:
                    lines[file] = []
            text = lines[file]
            return text[row - 1] if 0 < row <= len(text) else ""

        def shown(file: str) -> str:
            resolved = str(Path(file).resolve()) if file else file
            for s in staged:
                if resolved.startswith(s.prefix):
                    return str(s.shown / resolved[len(s.prefix) :])
            return file

        rules = deciding_rules(events, rule_ids, source_line=source_line, shown=shown)
    return {
        "policy": policy_version(la.effective_revision for la in layers).revision,
        "result": value.get("decision") if isinstance(value, Mapping) else None,
        "matched_rules": list(value.get("matched_rules") or [])
        if isinstance(value, Mapping)
        else [],
        "rules": rules,
    }


def _display(path: Path) -> Path:
    """``path`` relative to the working directory when it is under it (``rego``)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


async def _run(argv: list[str], stdin: bytes, timeout: float) -> bytes:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise TraceError(f"cannot run {argv[0]}: {exc}") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise TraceError(f"opa eval took longer than {timeout:g} s") from None
    if proc.returncode != 0:
        raise TraceError(f"opa eval failed ({proc.returncode}): {err.decode()[-400:]}")
    return out
