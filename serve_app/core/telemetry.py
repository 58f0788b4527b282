"""Traces, metrics and structured logs.

Tracing: one trace per task. The ingress opens a server span per request (honouring a client's
W3C `traceparent`) and stores the span context in the task; the task actor and the family replica
continue that trace after the 202 answer, so queue wait, model load, denoising, encoding and the
storage write all hang under the request that created the task. Context crosses process
boundaries as a W3C carrier dict inside the task, not through Ray: that keeps working for work
started long after the request returned.

Metrics go through `ray.util.metrics`; Ray's metrics agent serves them in Prometheus format
(names prefixed `ray_`). Logs are JSON lines carrying task and trace ids.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_setup_lock = threading.Lock()
_configured: tuple | None = None

TRACER_NAME = "tessera"
# The ingress's server span of the current request: handlers tag it with the task they create.
REQUEST_SPAN: contextvars.ContextVar = contextvars.ContextVar("tessera_request_span",
                                                              default=None)


class JsonFileSpanExporter(SpanExporter):
    """One JSON line per finished span, appended to a file several processes share."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

    def export(self, spans) -> SpanExportResult:
        lines = "".join(json.dumps(span_to_dict(s)) + "\n" for s in spans)
        # one write per batch on an O_APPEND file: lines from processes do not interleave
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def span_to_dict(span) -> dict[str, Any]:
    ctx, parent = span.get_span_context(), span.parent
    return {
        "name": span.name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(parent.span_id, "016x") if parent else None,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "resource": dict(span.resource.attributes),
    }


def setup_tracing(settings, data_dir: str, role: str) -> None:
    """Install this process's tracer provider once; later calls with the same settings no-op."""
    global _configured
    key = (settings.model_dump_json(), data_dir, role)
    with _setup_lock:
        if _configured == key or settings.exporter == "none":
            return
        resource = Resource.create({"service.name": settings.service_name,
                                    "tessera.role": role})
        provider = TracerProvider(
            resource=resource,
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
        provider.add_span_processor(_processor(settings, data_dir))
        # The global provider can be set once per process; keep a handle for reconfiguration.
        trace.set_tracer_provider(provider)
        _configured = key


def _processor(settings, data_dir: str):
    if settings.exporter == "file":
        path = settings.path or os.path.join(data_dir, "traces.jsonl")
        return SimpleSpanProcessor(JsonFileSpanExporter(path))
    if settings.exporter == "console":
        return SimpleSpanProcessor(ConsoleSpanExporter())
    if settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return BatchSpanProcessor(OTLPSpanExporter(
            endpoint=endpoint.rstrip("/") + "/v1/traces" if endpoint else None))
    raise ValueError(f"unknown trace exporter {settings.exporter!r}")


def tracer():
    return trace.get_tracer(TRACER_NAME)


def inject() -> dict[str, str]:
    """The current span as a W3C carrier, to store in a task."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


def extract(carrier: dict[str, str] | None):
    return _PROPAGATOR.extract(carrier or {})


def task_attributes(task_id: str, tenant: str, model: str, family: str, **more) -> dict:
    return {"tessera.task_id": task_id, "tessera.tenant": tenant, "tessera.model": model,
            "tessera.family": family, **more}


# ---------------------------------------------------------------- logs


class JsonLogFormatter(logging.Formatter):
    """JSON lines with the task id (from `extra`) and the current trace id."""

    FIELDS = ("task_id", "tenant", "model", "family")

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        for name in self.FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            out["trace_id"] = format(ctx.trace_id, "032x")
            out["span_id"] = format(ctx.span_id, "016x")
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging() -> None:
    """JSON logs for Tessera's own loggers (Ray keeps each process's stderr in its log files)."""
    logger = logging.getLogger("tessera")
    if any(isinstance(h.formatter, JsonLogFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
