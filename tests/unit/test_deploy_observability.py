"""deploy/: the Grafana dashboard and the alert rules read only metrics that exist.

Every metric an expression names is one the service exports (the catalogue,
observability/metrics.py, with the process and build collectors), or Prometheus' own
``up``. The rules themselves are unit-tested by promtool (make deploy-check).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from aarm_pdp.model.bounds import BoundStats, Budget
from aarm_pdp.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "aarm-pdp.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
_SERIES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exported_names() -> set[str]:
    """Every sample name a scrape of the service can return (and Prometheus' ``up``)."""
    metrics = Metrics()
    budget = Budget(tenant_bytes=1, total_bytes=1)
    metrics.watch_bounds(lambda: [BoundStats("x", 0, 0, 0, 0, budget, {"ttl": 1}, {"tenant": 1})])
    names = {"up"}
    for family in metrics.registry.collect():
        # A labelled family has no samples until used: name its series by its type.
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SERIES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def _names(expr: str) -> set[str]:
    found = set(_SELECTOR.findall(expr))
    found.update(re.findall(r"label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)", expr))
    return found


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [v for k, v in node.items() if k in ("expr", "query") and isinstance(v, str)]
        for v in node.values():
            out.extend(_exprs(v))
        return out
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def test_dashboard_is_json_with_the_panels_operators_need() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "aarm-pdp"
    titles = {p["title"] for p in dash["panels"]}
    for needed in (
        "Decisions by verdict",
        "Decide latency",
        "Fail-closed by code",
        "OPA health",
        "Store health",
    ):
        assert needed in titles
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p.get("targets") for p in dash["panels"])


def test_dashboard_names_only_exported_metrics() -> None:
    exported = exported_names()
    exprs = _exprs(json.loads(DASHBOARD.read_text()))
    assert len(exprs) > 10
    for expr in exprs:
        names = _names(expr)
        assert names or expr == "prometheus", expr
        unknown = names - exported
        assert not unknown, f"{expr}: {sorted(unknown)} not in the metric catalogue"


def test_alerts_name_only_exported_metrics() -> None:
    exported = exported_names()
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {
        "AarmPdpFailingClosed",
        "AarmPdpOpaDown",
        "AarmPdpStoreFailing",
        "AarmPdpSaturated",
        "AarmPdpTargetDown",
        "AarmPdpAbsent",
    }
    for rule in rules:
        unknown = _names(rule["expr"]) - exported
        bare = set(re.findall(r"rate\(([a-z_]+)\[", rule["expr"])) - exported
        assert not unknown and not bare, f"{rule['alert']}: {sorted(unknown | bare)}"


def test_process_and_build_metrics() -> None:
    names = exported_names()
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "python_info",
        "aarm_build_info",
    ):
        assert name in names
