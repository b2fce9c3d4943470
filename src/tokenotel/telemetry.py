"""The service's own telemetry: OpenTelemetry SDK metrics about ingest, the store and
detection, at ``/metrics`` on the OTLP/HTTP port in Prometheus's text format, and exported over
OTLP/gRPC to ``telemetry_otlp_endpoint`` when it is set (README, "The service's own
telemetry"); and the same counters a minute in the store (``HealthMinutes``), the evidence of
when the service was failing that the compliance report reads.

Most instruments are observed when read (counters the pipeline keeps anyway): nothing is added
to a request's path but one histogram record per insert.
"""

from __future__ import annotations

import logging
import threading
import time
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

from tokenotel.errors import StoreUnavailable
from tokenotel.pipeline import Pipeline
from tokenotel.store.client import SERVICE_MINUTES_TABLE

log = logging.getLogger(__name__)

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
                "{request}", "Export requests received.", lambda: pipeline.requests_received
            ),
            "tokenotel.requests.refused": (
                "{request}",
                "Requests asked to slow down (the store falling behind).",
                lambda: pipeline.requests_refused,
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


#: The counters of ``service_minutes`` (docs/schema.md), in its order.
HEALTH_COUNTERS = (
    "requests",
    "requests_refused",
    "records_stored",
    "records_ignored",
    "records_rejected",
    "inserts",
    "inserts_failed",
    "worker_restarts",
)
#: How often the counters are written, in seconds.
HEALTH_EVERY_S = 60.0
#: Most rows kept while the store does not take them: a week of minutes.
HEALTH_KEPT = 7 * 24 * 60


class HealthMinutes:
    """The service's counters written to ``service_minutes`` every ``every_s``: for the minute
    (by ``clock``) a row with what changed since the row before (nothing changed: no row). A
    row the store does not take (it is down) is kept, and written with the next; ``stop``
    writes the last one."""

    def __init__(
        self,
        pipeline: Pipeline,
        instance: str,
        every_s: float = HEALTH_EVERY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pipeline = pipeline
        self.instance = instance
        self.every_s = every_s
        self._clock = clock
        self._last = (0,) * len(HEALTH_COUNTERS)  # (the service's counters start at zero)
        self._unwritten: list[tuple[int, ...]] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _counts(self) -> tuple[int, ...]:
        pipeline, stats = self.pipeline, self.pipeline.stats
        writer = pipeline.writer.stats
        return (
            pipeline.requests_received,
            pipeline.requests_refused,
            stats.records_stored,
            stats.records_ignored,
            stats.records_rejected,
            writer.inserts,
            writer.failed_inserts,
            pipeline.mapping.restarts,
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tokenotel-health", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.every_s):
            self.record()

    def record(self) -> None:
        """Writes what changed since the row before, with the rows the store did not take."""
        counts = self._counts()
        changed = tuple(now - then for now, then in zip(counts, self._last, strict=True))
        self._last = counts
        if any(changed):
            minute = int(self._clock()) // 60 * 60
            self._unwritten = [*self._unwritten[-(HEALTH_KEPT - 1) :], (minute, *changed)]
        if not self._unwritten:
            return
        rows = list(zip(*self._unwritten, strict=True))
        table = pa.table(
            {
                "minute": pa.array(rows[0], pa.int64()).cast(pa.timestamp("s", "UTC")),
                "instance": [self.instance] * len(self._unwritten),
                **{
                    name: pa.array(values, pa.uint64())
                    for name, values in zip(HEALTH_COUNTERS, rows[1:], strict=True)
                },
            }
        )
        try:
            self.pipeline.store.insert_arrow(SERVICE_MINUTES_TABLE, table)
        except StoreUnavailable as e:
            log.debug("the service's counters wait for the store: %s", e)
            return
        except Exception:  # a bug: these minutes are not kept, the service goes on
            log.exception("the service's counters of %d minutes not stored", len(rows[0]))
        self._unwritten = []

    def stop(self) -> None:
        """Stops the thread and writes the last row (before the store closes)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.record()


def _observe(read: Callable[[], int]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(_: CallbackOptions) -> Iterable[Observation]:
        return [Observation(read())]

    return callback
