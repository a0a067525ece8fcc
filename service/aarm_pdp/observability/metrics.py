"""The one metric catalogue. Every instrument aarm-pdp exports is declared here.

Names carry the ``aarm_`` prefix, base units (``_seconds``) and ``_total`` on
counters. Label values are bounded: verdicts and error codes are closed sets, and
policy-supplied reason codes pass through :meth:`Metrics.code_label`, which admits
at most ``MAX_POLICY_CODES`` distinct well-formed values and folds the rest into
``other``.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import threading
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aarm_pdp.model.bounds import BoundStats

# Shared bucket constants (seconds).
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

DRIFT_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
MAX_POLICY_CODES = 64
_CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,47}")


class Metrics:
    """All instruments, registered on one registry (a fresh one in tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # process_* (CPU seconds, resident memory, open descriptors, start time) and
        # python_info: what a dashboard and the up/restart alerts read beside ours.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.build = Info(
            "aarm_build",
            "The running build: aarm-pdp version and Python version (value always 1).",
            registry=r,
        )
        self.build.info({"version": _version(), "python": platform.python_version()})
        self.approvals_rejected = Counter(
            "aarm_approval_attempts_rejected_total",
            "Approval RPCs refused: unauthenticated, or approver not allowed (four-eyes).",
            ["reason"],
            registry=r,
        )
        self.approvals_resolved = Counter(
            "aarm_approvals_resolved_total",
            "Approval requests granted or rejected by an approver.",
            ["result"],
            registry=r,
        )
        self.telemetry_emitted = Counter(
            "aarm_telemetry_events_emitted_total",
            "Telemetry events exported.",
            registry=r,
        )
        self.telemetry_failures = Counter(
            "aarm_telemetry_export_failures_total",
            "Failed telemetry export attempts.",
            registry=r,
        )
        self.telemetry_dropped = Counter(
            "aarm_telemetry_dropped_events_total",
            "Telemetry events dropped because the buffer was full.",
            registry=r,
        )
        self.telemetry_rotations = Counter(
            "aarm_telemetry_file_rotations_total",
            "Times the telemetry JSONL file was rotated (it reached its size limit).",
            registry=r,
        )
        self.telemetry_buffer = Gauge(
            "aarm_telemetry_buffer_size",
            "Telemetry events waiting for export.",
            registry=r,
        )
        self.tickets_expired = Counter(
            "aarm_tickets_expired_total",
            "Approvals and deferrals that timed out (each one a DENY).",
            ["kind"],
            registry=r,
        )
        self.decide_duration = Histogram(
            "aarm_decide_duration_seconds",
            "Time to answer Decide, from request validated to response built.",
            ["decision"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "aarm_decisions_total",
            "Decisions returned, by verdict and first reason code.",
            ["decision", "code"],
            registry=r,
        )
        self.auth_failures = Counter(
            "aarm_auth_failures_total",
            "Calls refused at the trust boundary (unauthenticated, permission_denied, "
            "identity_unverified, session ownership), by error code.",
            ["code"],
            registry=r,
        )
        self.drift = Histogram(
            "aarm_drift_score",
            "Per-action drift score (0 aligned .. 1 drifted) computed before policy.",
            buckets=DRIFT_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "aarm_errors_total",
            "Errors met while deciding, by closed error code.",
            ["code"],
            registry=r,
        )
        self.fail_closed = Counter(
            "aarm_fail_closed_total",
            "DENY verdicts forced because no policy decision could be made, by error code.",
            ["code"],
            registry=r,
        )
        self.idempotent_replays = Counter(
            "aarm_idempotent_replays_total",
            "Decide calls answered from the request_id cache.",
            registry=r,
        )
        self.inflight = Gauge(
            "aarm_inflight_requests",
            "Decide calls in progress (admitted, until their decision is made, even when "
            "the client hung up first).",
            registry=r,
        )
        self.opa_errors = Counter(
            "aarm_opa_errors_total",
            "Failed OPA queries, by error code.",
            ["code"],
            registry=r,
        )
        self.opa_query_duration = Histogram(
            "aarm_opa_query_duration_seconds",
            "Round-trip time of one OPA decision query.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.opa_restarts = Counter(
            "aarm_opa_restarts_total",
            "Restarts of the managed OPA sidecar.",
            registry=r,
        )
        self.shadow_verdicts = Counter(
            "aarm_shadow_verdicts_total",
            "Decisions evaluated on the shadow policy too, by the live verdict and the "
            "shadow's (ALLOW, DENY, ...; error: it did not answer; skipped: too many in flight).",
            ["live", "shadow"],
            registry=r,
        )
        self.policy_reloads = Counter(
            "aarm_policy_reloads_total",
            "Hot reloads of the managed OPA's policy: ok (activated) or refused (the new "
            "policy did not load or verify; the running one stays).",
            ["outcome"],
            registry=r,
        )
        self.opa_up = Gauge(
            "aarm_opa_up",
            "1 while the OPA sidecar answers health checks with its policy active.",
            registry=r,
        )
        self.policy = Info(
            "aarm_policy",
            "The policy bundle revision and hash in force.",
            registry=r,
        )
        self.requests_rejected = Counter(
            "aarm_requests_rejected_total",
            "Decide calls rejected before evaluation (INVALID_ARGUMENT), by error code.",
            ["code"],
            registry=r,
        )
        self.admission_rejected = Counter(
            "aarm_admission_rejected_total",
            "aarm.v1 calls refused by admission control (RESOURCE_EXHAUSTED), by method and "
            "the limit reached: decisions, calls, watches (WatchApproval streams) or bytes "
            "in flight, or stream (one DecideStream's own bound); a DecideStream message is "
            "counted as one call.",
            ["method", "reason"],
            registry=r,
        )
        self.admission_limit = Gauge(
            "aarm_admission_limit",
            "Admission limits in force: decisions, calls (other aarm.v1 RPCs), watches, bytes, "
            "stream (decisions in flight on one DecideStream).",
            ["resource"],
            registry=r,
        )
        self.inflight_calls = Gauge(
            "aarm_inflight_calls",
            "aarm.v1 calls other than Decide in progress.",
            registry=r,
        )
        self.inflight_bytes = Gauge(
            "aarm_inflight_bytes",
            "Request bytes of the aarm.v1 calls in progress (serialized size).",
            registry=r,
        )
        self.decide_streams = Gauge(
            "aarm_decide_streams",
            "DecideStream streams open (their messages in flight count as Decide calls in "
            "aarm_inflight_requests).",
            registry=r,
        )
        self._codes: set[str] = set()
        self._codes_lock = threading.Lock()
        self.bounds = _BoundsCollector()
        r.register(self.bounds)

    def watch_bounds(self, source: Callable[[], list[BoundStats]]) -> None:
        """Export a bounded store's bytes, entries, evictions and refusals at each scrape
        (``aarm_store_*``; the ``store`` label is the store's fixed name, no tenant)."""
        self.bounds.sources.append(source)

    def code_label(self, code: str) -> str:
        """A bounded label value for a reason code that may come from policy."""
        if code in self._codes:
            return code
        if not _CODE_RE.fullmatch(code):
            return "other"
        with self._codes_lock:
            if len(self._codes) >= MAX_POLICY_CODES:
                return "other"
            self._codes.add(code)
        return code


def _version() -> str:
    """The installed distribution's version (the package's __init__ is above this layer)."""
    try:
        return importlib.metadata.version("aarm-pdp")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


class _BoundsCollector(Collector):
    """``aarm_store_*``: the memory bounds of the caches and stores (model/bounds.py)."""

    def __init__(self) -> None:
        self.sources: list[Callable[[], list[BoundStats]]] = []

    def describe(self) -> list[Metric]:
        return []  # families are known only when collected (no stores before wiring)

    def collect(self) -> Iterator[Metric]:
        size = GaugeMetricFamily(
            "aarm_store_bytes", "Encoded bytes held by a bounded store or cache.", labels=["store"]
        )
        entries = GaugeMetricFamily(
            "aarm_store_entries", "Entries held by a bounded store or cache.", labels=["store"]
        )
        largest = GaugeMetricFamily(
            "aarm_store_largest_tenant_bytes",
            "Bytes held for the tenant holding the most (no tenant label).",
            labels=["store"],
        )
        budget = GaugeMetricFamily(
            "aarm_store_budget_bytes",
            "Byte budgets of a bounded store: per tenant and in all.",
            labels=["store", "scope"],
        )
        evicted = CounterMetricFamily(
            "aarm_store_evictions",
            "Entries evicted from a bounded store, by reason: ttl, budget (idempotency), "
            "settled (tickets), idle (sessions).",
            labels=["store", "reason"],
        )
        refused = CounterMetricFamily(
            "aarm_store_refusals",
            "Writes a bounded store refused (a DENY or RESOURCE_EXHAUSTED), by the budget "
            "that was full: tenant, total, entry, state.",
            labels=["store", "reason"],
        )
        for source in self.sources:
            for st in source():
                size.add_metric([st.store], st.bytes)
                entries.add_metric([st.store], st.entries)
                largest.add_metric([st.store], st.largest_tenant_bytes)
                budget.add_metric([st.store, "tenant"], st.budget.tenant_bytes)
                budget.add_metric([st.store, "total"], st.budget.total_bytes)
                for reason, n in sorted(st.evictions.items()):
                    evicted.add_metric([st.store, reason], n)
                for reason, n in sorted(st.refusals.items()):
                    refused.add_metric([st.store, reason], n)
        yield from (size, entries, largest, budget, evicted, refused)
