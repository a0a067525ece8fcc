"""Traces: a span per Decide continuing the caller's W3C trace context, with children
for the session, OPA and the receipt (the SDK's in-memory exporter; no collector)."""

from __future__ import annotations

import pytest
from aarm_pdp.config import Config, ConfigError, TracingConfig
from aarm_pdp.observability import tracing
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.api.conftest import Api
from tests.support.messages import decide_request, opa_answer

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_SPAN = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_SPAN:016x}-01"
_EXPORTER = InMemorySpanExporter()
_CHILDREN = {"aarm.session.prepare", "aarm.opa.evaluate", "aarm.receipt.append"}


@pytest.fixture
def spans() -> InMemorySpanExporter:
    # One SDK provider per process (OpenTelemetry allows the global one to be set once).
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        assert getattr(tracing, "_test_provider", None) is not None
    else:
        tracing._test_provider = tracing.setup(TracingConfig(), exporter=_EXPORTER)  # type: ignore[attr-defined]
    _EXPORTER.clear()
    return _EXPORTER


async def test_decide_continues_the_callers_trace(api: Api, spans: InMemorySpanExporter) -> None:
    api.opa.returns(opa_answer("ALLOW"))
    resp = await api.c.decide.Decide(
        decide_request("db", "query"), metadata=(("traceparent", TRACEPARENT),)
    )
    done = {s.name: s for s in spans.get_finished_spans()}
    root = done["aarm.v1.DecisionService/Decide"]
    assert root.context.trace_id == TRACE_ID
    assert root.parent is not None and root.parent.span_id == PARENT_SPAN
    assert root.kind is trace.SpanKind.SERVER
    assert root.attributes is not None
    assert root.attributes["aarm.decision_id"] == resp.decision_id
    assert root.attributes["aarm.decision"] == "DECISION_ALLOW"
    assert _CHILDREN | {"aarm.session.commit"} <= set(done)
    for name in _CHILDREN | {"aarm.session.commit"}:
        child = done[name]
        assert child.context.trace_id == TRACE_ID
        assert child.parent is not None and child.parent.span_id == root.context.span_id


async def test_without_context_a_new_trace(api: Api, spans: InMemorySpanExporter) -> None:
    api.opa.returns(opa_answer("DENY"))
    await api.c.decide.Decide(decide_request("db", "query"))
    done = {s.name: s for s in spans.get_finished_spans()}
    root = done["aarm.v1.DecisionService/Decide"]
    assert root.parent is None and root.context.trace_id != TRACE_ID
    assert set(done) >= _CHILDREN


async def test_a_failing_policy_engine_marks_its_span(
    api: Api, spans: InMemorySpanExporter
) -> None:
    def boom(_: object) -> object:
        raise RuntimeError("policy engine down")

    api.opa.answer = boom
    resp = await api.c.decide.Decide(decide_request("db", "query"))
    assert resp.decision_id
    done = {s.name: s for s in spans.get_finished_spans()}
    assert done["aarm.opa.evaluate"].status.status_code is trace.StatusCode.ERROR


def test_tracing_settings_are_validated() -> None:
    with pytest.raises(ConfigError) as err:
        Config(tracing=TracingConfig(endpoint="collector:4317", sample_ratio=2)).validate()
    assert "tracing.endpoint" in str(err.value) and "sample_ratio" in str(err.value)
    assert tracing.setup(TracingConfig()) is None  # off by default: no provider
