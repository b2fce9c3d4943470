"""The real OpenTelemetry SDK as a sender: a logger provider around a given exporter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags


class CheckedExporter(LogRecordExporter):
    """Passes every batch to the real exporter and keeps its results, which the SDK drops."""

    def __init__(self, exporter: LogRecordExporter) -> None:
        self.exporter = exporter
        self.results: list[LogRecordExportResult] = []

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result = self.exporter.export(batch)
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def logger_provider(exporter: LogRecordExporter, resource: dict[str, Any]) -> LoggerProvider:
    """A provider exporting each record as it is emitted (one request per record).

    ``Resource(...)`` rather than ``Resource.create(...)``: the resource holds exactly what the
    test gives, so the stored resource attributes can be compared exactly.
    """
    provider = LoggerProvider(resource=Resource(resource))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    return provider


def span_context(trace_id: int, span_id: int) -> Context:
    """A context whose current span has the given ids, as an instrumented request would have."""
    span_ctx = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1))
    return trace.set_span_in_context(NonRecordingSpan(span_ctx))


def token_uses(count: int) -> tuple[ReadableLogRecord, ...]:
    """``count`` uses of tokens ``tok-00``, ``tok-01`` … as the SDK hands them to an exporter."""
    captured = InMemoryLogRecordExporter()
    provider = logger_provider(captured, {"service.name": "api"})
    logger = provider.get_logger("api.auth")
    for i in range(count):
        logger.emit(event_name="token.used", attributes={"token.id": f"tok-{i:02d}"})
    provider.shutdown()
    return captured.get_finished_logs()
