"""The service's own telemetry: OpenTelemetry SDK metrics about ingest, the store and
detection, at ``/metrics`` on the OTLP/HTTP port in Prometheus's text format, and exported over
OTLP/gRPC to ``telemetry_otlp_endpoint`` when it is set (README, "The service's own
telemetry").

Most instruments are observed when read (counters the pipeline keeps anyway): nothing is added
to a request's path but one histogram record per insert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pyarrow as pa
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tokenotel.pipeline import Pipeline

#: The text format's media type, as Prometheus asks for it.
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Insert latency buckets, in seconds.
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Rows an insert, in buckets.
_ROWS = (1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000)


class Telemetry:
    """The metrics of ``pipeline``: read by Prometheus from ``render``, pushed to a collector
    every ``interval_s`` when ``otlp_endpoint`` is given."""

    def __init__(
        self, pipeline: Pipeline, otlp_endpoint: str | None = None, interval_s: float = 60.0
    ) -> None:
        self.pipeline = pipeline
        self.registry = CollectorRegistry(auto_describe=False)
        readers: list[MetricReader] = [
            PrometheusMetricReader(registry=self.registry, scope_info_enabled=False)
        ]
        if otlp_endpoint is not None:
            readers.append(
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(endpoint=otlp_endpoint),
                    export_interval_millis=interval_s * 1000,
                )
            )
        self.provider = MeterProvider(
            resource=Resource({"service.name": "tokenotel"}),
            metric_readers=readers,
            views=[
                View(
                    instrument_name="tokenotel.insert.duration",
                    aggregation=ExplicitBucketHistogramAggregation(_SECONDS),
                ),
                View(
                    instrument_name="tokenotel.insert.rows",
                    aggregation=ExplicitBucketHistogramAggregation(_ROWS),
                ),
            ],
        )
        meter = self.provider.get_meter("tokenotel")
        stats, writer = pipeline.stats, pipeline.writer
        counters = {
            "tokenotel.requests": (
                "{request}", "Export requests received.", lambda: stats.requests
            ),
            "tokenotel.requests.refused": (
                "{request}",
                "Requests asked to slow down (the store falling behind).",
                lambda: stats.requests_refused + pipeline.budget.refused,
            ),
            "tokenotel.records.stored": (
                "{event}", "Token events stored.", lambda: stats.records_stored
            ),
            "tokenotel.records.duplicates": (
                "{event}",
                "Token events sent again (a retry) and not stored twice.",
                lambda: stats.records_already_stored,
            ),
            "tokenotel.records.ignored": (
                "{record}", "Log records that hold no token event.", lambda: stats.records_ignored
            ),
            "tokenotel.records.rejected": (
                "{record}", "Log records rejected as malformed.", lambda: stats.records_rejected
            ),
            "tokenotel.inserts": ("{insert}", "Inserts committed.", lambda: writer.stats.inserts),
            "tokenotel.inserts.failed": (
                "{insert}", "Inserts that failed.", lambda: writer.stats.failed_inserts
            ),
            "tokenotel.mapping.worker_restarts": (
                "{worker}",
                "Mapping workers replaced after one stopped.",
                lambda: pipeline.mapping.restarts,
            ),
            "tokenotel.alerts": (
                "{alert}",
                "Alerts the detection rules raised.",
                lambda: pipeline.detection.alerts_raised if pipeline.detection else 0,
            ),
        }  # fmt: skip
        for name, (unit, description, read) in counters.items():
            meter.create_observable_counter(
                name, callbacks=[_observe(read)], unit=unit, description=description
            )
        meter.create_observable_up_down_counter(
            "tokenotel.rows.pending",
            callbacks=[_observe(lambda: writer.pending_rows)],
            unit="{event}",
            description="Token events waiting for the store.",
        )
        meter.create_observable_gauge(
            "tokenotel.store.up",
            callbacks=[_observe(lambda: 0 if writer.failing else 1)],
            unit="1",
            description="1 while the store takes inserts (the last one succeeded), else 0.",
        )
        duration = meter.create_histogram(
            "tokenotel.insert.duration", unit="s", description="Time an insert took."
        )
        rows = meter.create_histogram(
            "tokenotel.insert.rows", unit="{event}", description="Token events an insert held."
        )

        def observe_insert(batch: pa.Table, seconds: float) -> None:
            duration.record(seconds)
            rows.record(batch.num_rows)

        self._observe_insert = observe_insert
        writer.commit_observers.append(observe_insert)

    def render(self) -> bytes:
        """The metrics now, in Prometheus's text format."""
        return generate_latest(self.registry)

    def close(self) -> None:
        """Exports a last time (to the collector, when set) and stops."""
        self.pipeline.writer.commit_observers.remove(self._observe_insert)
        self.provider.shutdown()


def _observe(read: Callable[[], int]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(_: CallbackOptions) -> Iterable[Observation]:
        return [Observation(read())]

    return callback
