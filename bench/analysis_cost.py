"""Cost of the analysis step, in microseconds per decision, over the evasion corpus' inputs.

    make bench-analysis                                # this, alone (seconds)
    .venv/bin/python bench/analysis_cost.py            # table
    .venv/bin/python bench/analysis_cost.py --json     # machine-readable
    .venv/bin/python bench/analysis_cost.py --compare  # also the candidates not chosen

``make bench`` and ``make bench-quick`` report the same numbers (``bench/run.py``, key
``analysis`` of the results). The analysed types are the catalogue's (the ``analysis``
key of each parameter in ``rego/aarm/catalogue/data.json``), exactly as the engine uses
them: the step the engine runs before each query is
``analyse(parameters, Catalogue.analysis_types(tool))``.

For each analysed type: every corpus value of that type through ``analyse_value``, timed
over several rounds (best round kept: the machine is shared and noisy), reported as mean
and worst µs per value. Then per decision: that ``analyse`` call for every corpus call
(what a decision pays), the same for the 40 requests of the bench load corpus
(``bench/corpus.py``: mostly tools with no analysed parameter), and the same calls with no
analysed types (what a decision for a tool with no typed parameters pays: the floor, ~0).

``--compare`` times the alternatives measured when the libraries were chosen
(docs/analysis.md): sqlglot against pglast on the corpus SQL (and how many statements
sqlglot could only keep as an opaque ``Command``), and Python's ``urllib.parse`` against
ada on the corpus URLs (how many hosts differ).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "service"))

from aarm_pdp.analysis import analyse, analyse_value  # noqa: E402
from aarm_pdp.session.catalogue import Catalogue  # noqa: E402

CORPUS = ROOT / "tests" / "cases" / "evasion"
CATALOGUE = ROOT / "rego" / "aarm" / "catalogue" / "data.json"


def _types() -> dict[str, dict[str, Any]]:
    """Tool -> the analysed types of its parameters, as the engine reads them."""
    catalogue = Catalogue.from_policy_data(json.loads(CATALOGUE.read_text())["tools"])
    names = json.loads(CATALOGUE.read_text())["tools"]
    return {name: dict(catalogue.analysis_types(name)) for name in names}


def _load() -> tuple[list[tuple[str, dict[str, Any]]], dict[str, dict[str, Any]]]:
    types = _types()
    calls: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(CORPUS.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]:
            for call in [*case.get("history", []), case["call"]]:
                calls.append((call["tool"], call["parameters"]))
    return calls, types


def _values(
    calls: list[tuple[str, dict[str, Any]]], types: dict[str, dict[str, Any]]
) -> dict[str, list[tuple[Any, dict[str, Any]]]]:
    """Per analysed type: (value, context) of every typed corpus value, list items flattened."""
    out: dict[str, list[tuple[Any, dict[str, Any]]]] = defaultdict(list)
    for tool, params in calls:
        for name, spec in types.get(tool, {}).items():
            value = params.get(name)
            if value is None:
                continue
            kind = spec if isinstance(spec, str) else spec["type"]
            companions = (
                {} if isinstance(spec, str) else {k: v for k, v in spec.items() if k != "type"}
            )
            context = {role: params.get(param) for role, param in companions.items()}
            for item in value if isinstance(value, list) else [value]:
                out[kind].append((item, context))
    return dict(out)


def _time_each(fn: Callable[[], object], rounds: int, inner: int) -> float:
    """Best-of-rounds mean seconds per call of ``fn``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def _per_value(kind: str, values: list[tuple[Any, dict[str, Any]]], rounds: int) -> dict[str, Any]:
    timings: list[float] = []
    for value, context in values:
        analyse_value(kind, value, context=context)  # warm
        inner = 20 if kind == "shell" else 50
        timings.append(
            _time_each(lambda v=value, c=context: analyse_value(kind, v, context=c), rounds, inner)
            * 1e6
        )
    return {
        "values": len(values),
        "mean_us": round(statistics.fmean(timings), 1),
        "median_us": round(statistics.median(timings), 1),
        "max_us": round(max(timings), 1),
    }


def _per_call(
    calls: list[tuple[str, dict[str, Any]]], types: dict[str, dict[str, Any]], rounds: int
) -> dict[str, Any]:
    typed = [(params, types.get(tool, {})) for tool, params in calls]

    def all_typed() -> None:
        for params, spec in typed:
            analyse(params, spec)

    def none_typed() -> None:
        for params, _ in typed:
            analyse(params, {})

    def baseline() -> None:
        for params, _ in typed:
            _noop(params, {})

    n = len(typed)
    return {
        "calls": n,
        # What one decision of the corpus pays for input.analysis (the key make bench reports).
        "analysed_us_per_call": round(_time_each(all_typed, rounds, 1) / n * 1e6, 1),
        "no_analysed_types_us_per_call": round(_time_each(none_typed, rounds, 5) / n * 1e6, 3),
        "empty_function_us_per_call": round(_time_each(baseline, rounds, 5) / n * 1e6, 3),
    }


def _noop(parameters: object, param_types: object) -> dict[str, Any]:
    return {}


def _bench_corpus(types: dict[str, dict[str, Any]], rounds: int) -> dict[str, Any]:
    """The same step for the bench load corpus (realistic mix, few analysed parameters)."""
    sys.path.insert(0, str(ROOT))
    from bench.corpus import CORPUS as LOAD_CORPUS

    typed = [(c.parameters, types.get(f"{c.tool}.{c.operation}", {})) for c in LOAD_CORPUS]

    def run() -> None:
        for params, spec in typed:
            analyse(params, spec)

    return {
        "calls": len(typed),
        "with_analysed_parameters": sum(1 for _, spec in typed if spec),
        "analysed_us_per_call": round(_time_each(run, rounds, 3) / len(typed) * 1e6, 1),
    }


def measure(rounds: int = 5, *, compare: bool = False) -> dict[str, Any]:
    """Every number of this module, as one document (``make bench`` stores it)."""
    calls, types = _load()
    values = _values(calls, types)
    result: dict[str, Any] = {
        "per_type": {kind: _per_value(kind, vals, rounds) for kind, vals in sorted(values.items())},
        "per_call": _per_call(calls, types, rounds),
        "bench_corpus": _bench_corpus(types, rounds),
        "rounds": rounds,
    }
    if compare:
        result["compare"] = _compare(calls, rounds)
    return result


def summary_line(result: dict[str, Any]) -> str:
    """One line for the bench report."""
    pc, bc = result["per_call"], result["bench_corpus"]
    worst = max(result["per_type"].items(), key=lambda kv: kv[1]["mean_us"])
    return (
        f"analysis step (input.analysis, in-process, best of {result['rounds']}): "
        f"{pc['analysed_us_per_call']} µs per decision over the evasion corpus "
        f"({pc['calls']} calls); {bc['analysed_us_per_call']} µs over the bench corpus "
        f"({bc['with_analysed_parameters']} of {bc['calls']} requests analysed); "
        f"{pc['no_analysed_types_us_per_call']} µs with no analysed parameter; "
        f"costliest type {worst[0]} {worst[1]['mean_us']} µs mean per value"
    )


def _compare(calls: list[tuple[str, dict[str, Any]]], rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sqls = [p["sql"] for _, p in calls if isinstance(p.get("sql"), str)]
    from pglast import parser as pg

    out["pglast_parse_sql_json_us"] = round(
        _time_each(lambda: [_try(pg.parse_sql_json, s) for s in sqls], rounds, 5) / len(sqls) * 1e6,
        1,
    )
    try:
        import sqlglot
        from sqlglot import exp
    except ImportError:
        out["sqlglot"] = "not installed"
    else:
        logging.getLogger("sqlglot").setLevel(logging.CRITICAL)
        opaque = failed = 0
        for text in sqls:
            try:
                trees = sqlglot.parse(text, dialect="postgres")
            except Exception:
                failed += 1
                continue
            opaque += sum(isinstance(t, exp.Command) for t in trees)
        out["sqlglot_version"] = sqlglot.__version__
        out["sqlglot_us"] = round(
            _time_each(
                lambda: [_try(sqlglot.parse, s, dialect="postgres") for s in sqls], rounds, 1
            )
            / len(sqls)
            * 1e6,
            1,
        )
        out["sqlglot_opaque_command_statements"] = opaque
        out["sqlglot_parse_errors"] = failed
    out["sql_values"] = len(sqls)
    from urllib.parse import urlsplit

    urls = [p["url"] for _, p in calls if isinstance(p.get("url"), str)]
    differ = sum(analyse_value("url", u)["parser_differential"] for u in urls)
    out["urls"] = len(urls)
    out["urllib_names_another_host"] = differ
    out["urllib_urlsplit_us"] = round(
        _time_each(lambda: [_try(urlsplit, u) for u in urls], rounds, 20) / len(urls) * 1e6, 2
    )
    return out


def _try(fn: Callable[..., object], *args: object, **kwargs: object) -> object:
    try:
        return fn(*args, **kwargs)
    except Exception:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds, best kept (default 5)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--compare", action="store_true", help="also time the candidates not chosen")
    args = ap.parse_args()
    result = measure(args.rounds, compare=args.compare)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'type':<15}{'values':>8}{'mean µs':>10}{'median µs':>11}{'max µs':>10}")
    for kind, row in result["per_type"].items():
        print(
            f"{kind:<15}{row['values']:>8}{row['mean_us']:>10}{row['median_us']:>11}{row['max_us']:>10}"
        )
    per_call = result["per_call"]
    print(
        f"\nper decision over the corpus ({per_call['calls']} calls): "
        f"analysed {per_call['analysed_us_per_call']} µs; "
        f"no analysed types {per_call['no_analysed_types_us_per_call']} µs "
        f"(an empty function call: {per_call['empty_function_us_per_call']} µs)"
    )
    bench = result["bench_corpus"]
    print(
        f"per decision over the bench load corpus ({bench['calls']} requests, "
        f"{bench['with_analysed_parameters']} with analysed parameters): "
        f"{bench['analysed_us_per_call']} µs"
    )
    if args.compare:
        print("\ncompare:", json.dumps(result["compare"], indent=2))


if __name__ == "__main__":
    main()
