"""Log lines: UTC RFC 3339 with milliseconds, decision and trace ids, JSON off a terminal."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from aarm_pdp.observability import logging as aarm_logging
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _record() -> logging.LogRecord:
    record = logging.LogRecord("aarm_pdp.test", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    record.created = 1_764_595_186.1234  # 2025-12-01T13:19:46.123Z
    return record


def test_utc_milliseconds() -> None:
    assert aarm_logging.utc_timestamp(1_764_595_186.1234) == "2025-12-01T13:19:46.123Z"


def test_json_line_carries_decision_and_trace_ids() -> None:
    ctx = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(1),
    )
    token = aarm_logging.bind(decision_id="d-1")
    try:
        with trace.use_span(NonRecordingSpan(ctx)):
            doc = json.loads(aarm_logging.JsonFormatter().format(_record()))
            text = aarm_logging.TextFormatter().format(_record())
    finally:
        aarm_logging.reset(token)
    assert doc["time"] == "2025-12-01T13:19:46.123Z"
    assert doc["decision_id"] == "d-1"
    assert doc["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert doc["span_id"] == "00f067aa0ba902b7"
    assert text.startswith("2025-12-01T13:19:46.123Z INFO aarm_pdp.test: hello x")
    assert "decision_id=d-1" in text and "trace_id=4bf92f3577b34da6a3ce929d0e0e4736" in text


def test_no_span_no_trace_fields() -> None:
    doc = json.loads(aarm_logging.JsonFormatter().format(_record()))
    assert "trace_id" not in doc and STAMP.fullmatch(doc["time"])


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_json_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert aarm_logging.resolve_format("auto") == "json"
    monkeypatch.setattr("sys.stderr", _Tty())
    assert aarm_logging.resolve_format("auto") == "text"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert aarm_logging.resolve_format("auto") == "json"
    assert aarm_logging.resolve_format("text") == "text"
