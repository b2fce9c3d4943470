"""The service's own metrics: /metrics on the OTLP/HTTP port, read with Prometheus's own text
parser (prometheus_client), count exactly what the OpenTelemetry SDK sent."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable

import pytest
from opentelemetry._logs import LogRecord as SdkRecord
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from prometheus_client.parser import text_string_to_metric_families

from inprocess import embedded_store
from otel_sdk import logger_provider
from processes import ServeProcess

pytestmark = pytest.mark.e2e

STORED_COUNTERS_SQL = """
SELECT groupUniqArray(toString(instance)), sum(requests), sum(requests_refused),
       sum(records_stored), sum(records_ignored), sum(records_rejected), sum(inserts),
       sum(inserts_failed), sum(worker_restarts)
FROM service_minutes
"""


def scrape(serve: ServeProcess) -> dict[str, float]:
    """Every sample of /metrics by name and labels (``name{a="b"}``), as Prometheus reads it."""
    with urllib.request.urlopen(f"{serve.http_url}/metrics", timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain; version=")
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_metrics_count_what_was_sent(serve_factory: Callable[..., ServeProcess]) -> None:
    serve = serve_factory()
    exporter = OTLPLogExporter(endpoint=serve.grpc_target, insecure=True)
    provider = logger_provider(exporter, {"service.name": "metrics-test"})
    logger = provider.get_logger("tests")
    now = time.time_ns()

    def emit(name: str, attributes: dict[str, object]) -> None:
        logger.emit(SdkRecord(timestamp=now, event_name=name, attributes=attributes))  # type: ignore[arg-type]

    for n in range(7):  # one request each (the provider exports as each is emitted)
        emit("token.used", {"token.id": f"tok-{n}", "log.record.uid": f"use-{n}"})
    emit("token.used", {"token.id": "tok-0", "log.record.uid": "use-0"})  # sent again
    emit("http.request", {"http.route": "/health"})  # no token event: ignored
    emit("token.used", {"client.address": "192.0.2.1"})  # no token: rejected
    emit("token.leak_detected", {"token.id": "tok-leaked"})  # an alert
    provider.shutdown()

    deadline = time.monotonic() + 30
    while (samples := scrape(serve)).get("tokenotel_alerts_total", 0) < 1:
        assert time.monotonic() < deadline, samples
        time.sleep(0.2)
    assert samples["tokenotel_requests_total"] == 11
    assert samples["tokenotel_records_stored_total"] == 8
    assert samples["tokenotel_records_duplicates_total"] == 1
    assert samples["tokenotel_records_ignored_total"] == 1
    assert samples["tokenotel_records_rejected_total"] == 1
    assert samples["tokenotel_alerts_total"] == 1
    assert samples["tokenotel_store_up"] == 1
    assert samples["tokenotel_rows_pending"] == 0
    assert samples["tokenotel_mapping_worker_restarts_total"] == 0
    inserts = samples["tokenotel_inserts_total"]
    assert 1 <= inserts <= 9 and samples["tokenotel_inserts_failed_total"] == 0
    # Each insert in the histograms: their counts are the inserts, the rows add up to those
    # stored (and the self-audit's own, none here: auth is off).
    assert samples["tokenotel_insert_rows_count"] == inserts
    assert samples["tokenotel_insert_rows_sum"] == 8
    assert samples['tokenotel_insert_rows_bucket{le="+Inf"}'] == inserts
    assert samples["tokenotel_insert_duration_seconds_count"] == inserts
    assert samples["tokenotel_insert_duration_seconds_sum"] > 0

    # The same counters in the store, a row a minute (the last written as it stops): what the
    # compliance report reads for the times the service was failing.
    assert serve.stop() == 0
    store = embedded_store(serve.data_dir)
    try:
        rows = store.query(STORED_COUNTERS_SQL).result_rows
    finally:
        store.close()
    [(instances, requests, refused, stored, ignored, rejected, inserted, failed, restarts)] = rows
    assert instances == [socket.gethostname()]
    assert (requests, refused, stored, ignored, rejected) == (11, 0, 8, 1, 1)
    assert inserted >= inserts and (failed, restarts) == (0, 0)
