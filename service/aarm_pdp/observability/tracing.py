"""OpenTelemetry traces: a span per Decide, children for the session, OPA and the receipt.

Off by default (``tracing.endpoint`` empty): the spans are then the OpenTelemetry API's
no-op ones, which cost a function call each. With an endpoint, :func:`setup` installs an
SDK tracer provider that batches spans to an OTLP/gRPC collector (the ``tracing``
extra: ``opentelemetry-sdk`` and ``opentelemetry-exporter-otlp-proto-grpc``).

The Decide span continues the caller's trace when the call's gRPC metadata carries W3C
trace context (``traceparent``, ``tracestate``); log lines written inside it carry its
``trace_id`` and ``span_id`` (observability/logging.py). Span names and attributes hold
no request content: ids, the tool and operation names, the verdict and error codes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from aarm_pdp.config import TracingConfig

_TRACER_NAME = "aarm_pdp"
_PROPAGATOR = TraceContextTextMapPropagator()
_installed = False
"""Whether :func:`setup` installed a provider (spans are recorded)."""
_OFF: contextlib.AbstractContextManager[Span] = contextlib.nullcontext(trace.INVALID_SPAN)
"""What every span context yields while tracing is off (reusable: it holds no state)."""


def tracer() -> trace.Tracer:
    """The service's tracer (the global provider's; no-op until :func:`setup`)."""
    return trace.get_tracer(_TRACER_NAME)


def setup(cfg: TracingConfig, *, exporter: Any = None) -> Any:
    """Install an SDK provider exporting to ``cfg.endpoint`` (or ``exporter``, for tests).

    Returns the provider (call its ``shutdown()`` at stop to flush), or None when
    tracing is off. Raises RuntimeError when the SDK is not installed.
    """
    if not cfg.endpoint and exporter is None:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "tracing.endpoint is set but the OpenTelemetry SDK is not installed "
            "(pip install 'aarm-pdp[tracing]')"
        ) from exc
    provider = TracerProvider(
        resource=Resource.create({"service.name": cfg.service_name}),
        sampler=ParentBased(TraceIdRatioBased(cfg.sample_ratio)),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        otlp = OTLPSpanExporter(endpoint=cfg.endpoint, insecure=cfg.insecure)
        provider.add_span_processor(BatchSpanProcessor(otlp))
    trace.set_tracer_provider(provider)
    global _installed
    _installed = True
    return provider


def _carrier(metadata: Iterable[Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in metadata or ():
        key, value = item[0], item[1]
        if key in ("traceparent", "tracestate") and isinstance(value, str):
            out[key] = value
    return out


def server_span(
    name: str, metadata: Iterable[Any] | None
) -> contextlib.AbstractContextManager[Span]:
    """A SERVER span continuing the W3C trace context of the call's metadata, if any.

    With tracing off it is a shared null context yielding the invalid (non-recording)
    span: the API's no-op span still costs ~10-30 µs through its context managers, five
    times per Decide (measured in docs/performance.md, "Spans when tracing is off")."""
    if not _installed:
        return _OFF
    return _server_span(name, metadata)


@contextlib.contextmanager
def _server_span(name: str, metadata: Iterable[Any] | None) -> Iterator[Span]:
    parent = _PROPAGATOR.extract(_carrier(metadata))
    with tracer().start_as_current_span(
        name, context=parent, kind=SpanKind.SERVER, attributes={"rpc.system": "grpc"}
    ) as span:
        yield span


def child(
    name: str, **attributes: str | int | float | bool
) -> contextlib.AbstractContextManager[Span]:
    """An INTERNAL span under the current one; an exception marks it as an error (a
    shared null context when tracing is off, as for :func:`server_span`)."""
    if not _installed:
        return _OFF
    return _child(name, attributes)


@contextlib.contextmanager
def _child(name: str, attributes: dict[str, str | int | float | bool]) -> Iterator[Span]:
    with tracer().start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as exc:
            code = getattr(getattr(exc, "code", None), "value", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, str(code)))
            span.set_attribute("aarm.error", str(code))
            raise
