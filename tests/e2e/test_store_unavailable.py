"""The store is down: the service stays up, says it is not ready, asks clients to retry, and once
the store is back every record is stored exactly once; nothing answered OK is ever missing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs.export import LogRecordExportResult

from inprocess import embedded_store
from otel_sdk import token_uses
from otlp_builders import RECENT_NS, export_request, grpc_export, log_record, rfc3339_ns
from processes import (
    ServeProcess,
    free_port,
    http_get,
    http_post,
    query_json,
    stored_row_count,
)
from rollups import rollup_differences_in
from tokenotel.config import load_settings
from tokenotel.pipeline import Pipeline
from tokenotel.service import Service, running_in_thread
from tokenotel.store.client import EVENTS_TABLE, SERVICE_MINUTES_TABLE

pytestmark = pytest.mark.e2e  # starts tokenotel processes

LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"


def retry_delays_s(error: grpc.RpcError) -> tuple[float | None, float | None]:
    """The RetryInfo delay in the status details (where the collector reads it) and in the
    ``google.rpc.retryinfo-bin`` trailer (where the Python SDK reads it); None where absent."""
    in_details = in_trailer = None
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            in_details = info.retry_delay.ToNanoseconds() / 1e9
    trailer = dict(error.trailing_metadata() or ()).get("google.rpc.retryinfo-bin")
    if trailer is not None:
        in_trailer = (
            error_details_pb2.RetryInfo.FromString(trailer).retry_delay.ToNanoseconds() / 1e9
        )
    return in_details, in_trailer


def health_status(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


# -- a ClickHouse server that is not there ----------------------------------------------------


@pytest.fixture
def unreachable(serve_factory: Callable[..., ServeProcess]) -> ServeProcess:
    closed_port = free_port()  # nothing listens there
    return serve_factory(
        "--clickhouse-url", f"http://default:hunter2-pw@127.0.0.1:{closed_port}/tokenotel"
    )


def test_service_starts_and_stays_up_but_is_not_ready(unreachable: ServeProcess) -> None:
    assert http_get(f"{unreachable.http_url}/healthz")[0] == 200
    status, _, body = http_get(f"{unreachable.http_url}/readyz")
    assert (status, json.loads(body)) == (503, {"status": "store unreachable"})
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    assert health_status(unreachable.grpc_target, "") == not_serving
    assert health_status(unreachable.grpc_target, LOGS_SERVICE) == not_serving


def test_grpc_export_is_unavailable_with_retry_info(unreachable: ServeProcess) -> None:
    body = export_request(log_record("token.used", {"token.id": "t1"})).SerializeToString()
    with (
        grpc.insecure_channel(unreachable.grpc_target) as channel,
        pytest.raises(grpc.RpcError) as error,
    ):
        grpc_export(channel, body)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert retry_delays_s(error.value) == (1.0, 1.0)
    assert "cannot reach http://default@127.0.0.1" in error.value.details()
    assert unreachable.alive()


@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/json"])
def test_http_export_is_503_with_retry_after(unreachable: ServeProcess, content_type: str) -> None:
    request = export_request(log_record("token.used", {"token.id": "t1"}))
    if content_type == "application/json":
        body = json_format.MessageToJson(request).encode()
    else:
        body = request.SerializeToString()
    status, headers, _ = http_post(unreachable.logs_url, body, content_type)
    assert (status, headers["Retry-After"], headers.get_content_type()) == (
        503,
        "1",
        content_type,
    )


def test_password_of_the_store_is_never_shown(unreachable: ServeProcess) -> None:
    body = export_request(log_record("token.used", {"token.id": "t1"})).SerializeToString()
    status, _, answer = http_post(unreachable.logs_url, body, "application/x-protobuf")
    assert status == 503
    assert b"hunter2-pw" not in answer
    assert unreachable.stop() == 0
    assert "hunter2-pw" not in unreachable.output()
    assert "starting anyway" in unreachable.output()


def test_a_request_without_token_events_needs_no_store(unreachable: ServeProcess) -> None:
    body = export_request(log_record("http.server.request", {"url.path": "/"})).SerializeToString()
    with grpc.insecure_channel(unreachable.grpc_target) as channel:
        assert grpc_export(channel, body) == ExportLogsServiceResponse()


# -- failures injected into the embedded store's insert path ----------------------------------


def in_process_service(**settings: Any) -> contextlib.AbstractContextManager[Service]:
    """The service on its own event loop in a background thread; stopped (store closed) on exit.

    chDB opens one data path per process, so this must close before another in-process store
    opens; every other test runs the service as a subprocess.
    """
    return running_in_thread(load_settings(api_listen="127.0.0.1:0", **settings))


def retrying_service(data_dir: Path) -> contextlib.AbstractContextManager[Service]:
    """The service in this process on free ports, asking clients to retry after 0.2 s."""
    return in_process_service(
        data_dir=data_dir, grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", retry_after_s=0.2
    )


def disk_full() -> DatabaseError:
    """The error chDB's client raises when the disk is full."""
    return DatabaseError("Code: 243. DB::Exception: Cannot reserve 1.00 MiB (NOT_ENOUGH_SPACE)")


def test_injected_insert_failures_are_retried_until_every_record_is_stored_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    failures = 2
    calls: list[int] = []
    ready_while_failing: list[int] = []
    records = token_uses(20)

    with retrying_service(data_dir) as service:
        # The one fake in the suite: chDB runs inside the service process and cannot be made to
        # fail from outside (no server to stop, no network to cut), so the store's insert into it
        # raises the error a full disk gives, a couple of times, then works again.
        service_store = service.pipeline.store
        real_insert = service_store._insert_in_place
        readyz = f"http://127.0.0.1:{service.otlp_http.port}/readyz"

        def flaky_insert(table: str, data: Any, *args: Any, **kwargs: Any) -> Any:
            if table != EVENTS_TABLE:
                return real_insert(table, data, *args, **kwargs)
            calls.append(data.num_rows)
            if len(calls) > failures:
                return real_insert(table, data, *args, **kwargs)
            if len(calls) == failures:  # the previous insert failed: readiness must say so
                ready_while_failing.append(http_get(readyz)[0])
            raise disk_full()

        monkeypatch.setattr(service_store, "_insert_in_place", flaky_insert)

        target = f"127.0.0.1:{service.otlp_grpc.port}"
        exporters = [OTLPLogExporter(endpoint=target, insecure=True, timeout=60) for _ in range(2)]
        halves = [records[0::2], records[1::2]]
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda e, r: e.export(r), exporters, halves))
        for exporter in exporters:
            exporter.shutdown()
        assert results == [LogRecordExportResult.SUCCESS] * 2
        assert http_get(readyz)[0] == 200

    assert ready_while_failing == [503]
    # The SDK waited as long as the service asked (retry_after_s), not its own backoff.
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries
    assert all("retrying in 0.20s" in message for message in retries)
    assert len(calls) > failures  # failed, then succeeded
    assert sum(calls[failures:]) == len(records)  # each record committed in exactly one insert
    stored = [e["token_id"] for e in query_json(data_dir)]
    assert sorted(stored) == [f"tok-{i:02d}" for i in range(20)]


def test_the_services_counters_count_a_failed_insert_and_wait_for_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """service_minutes (docs/schema.md) holds the failed insert the compliance report names;
    the row of counters the store refused is written with the next one."""
    data_dir = tmp_path / "data"
    with retrying_service(data_dir) as service:
        service_store = service.pipeline.store
        real_insert = service_store._insert_in_place
        refusals = {EVENTS_TABLE: 1, SERVICE_MINUTES_TABLE: 1}

        def flaky_insert(table: str, data: Any, *args: Any, **kwargs: Any) -> Any:
            if refusals.get(table):  # (the fake of the test above)
                refusals[table] -= 1
                raise disk_full()
            return real_insert(table, data, *args, **kwargs)

        monkeypatch.setattr(service_store, "_insert_in_place", flaky_insert)
        target = f"127.0.0.1:{service.otlp_grpc.port}"
        exporter = OTLPLogExporter(endpoint=target, insecure=True, timeout=60)
        assert exporter.export(token_uses(5)) == LogRecordExportResult.SUCCESS
        service.health.record()  # refused by the store: kept
        assert refusals == {EVENTS_TABLE: 0, SERVICE_MINUTES_TABLE: 0}
        assert exporter.export(token_uses(3)) == LogRecordExportResult.SUCCESS
        exporter.shutdown()
    # (the last row written as the service stopped, with the one refused before)
    store = embedded_store(data_dir)
    try:
        [(rows, requests, stored, failed)] = store.query(
            "SELECT count(), sum(requests), sum(records_stored), sum(inserts_failed) "
            f"FROM {SERVICE_MINUTES_TABLE}"
        ).result_rows
    finally:
        store.close()
    # Stored 8: the 5 counted in the refused row are there (kept, then written with the last).
    assert (stored, failed) == (8, 1)
    assert requests >= 2 and rows >= 1  # (a request answered retryable comes again)


def test_an_insert_committed_but_answered_as_failed_is_not_stored_twice_by_the_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store commits, then the answer is lost (a server answering after the client's
    timeout, a connection reset): the client is told to retry, and the retry must find the
    events stored. The rollups the first attempt fed are counted again, not twice."""
    data_dir = tmp_path / "data"
    records = token_uses(20)
    with retrying_service(data_dir) as service:
        service_store = service.pipeline.store
        real_insert = service_store._insert_in_place
        committed_then_failed: list[int] = []

        def insert_then_fail_once(table: str, data: Any, *args: Any, **kwargs: Any) -> Any:
            result = real_insert(table, data, *args, **kwargs)
            if table == EVENTS_TABLE and not committed_then_failed:
                committed_then_failed.append(data.num_rows)
                raise DatabaseError("Code: 210. DB::NetException: Connection reset by peer")
            return result

        monkeypatch.setattr(service_store, "_insert_in_place", insert_then_fail_once)
        exporter = OTLPLogExporter(
            endpoint=f"127.0.0.1:{service.otlp_grpc.port}", insecure=True, timeout=60
        )
        assert exporter.export(records) == LogRecordExportResult.SUCCESS
        exporter.shutdown()
        assert committed_then_failed == [20]
        assert service.pipeline.stats.records_already_stored == 20
    assert rollup_differences_in(data_dir) == {}
    stored = [e["token_id"] for e in query_json(data_dir)]
    assert sorted(stored) == [f"tok-{i:02d}" for i in range(20)]
    assert stored_row_count(data_dir) == 20


def test_grpc_health_is_not_serving_until_the_store_has_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The readiness probe is held until the test releases it, to look at the moment between
    # the gRPC port opening and the first answer from the store (gRPC health starts SERVING).
    answer = threading.Event()

    async def held_ready(self: Pipeline) -> bool:
        await asyncio.to_thread(answer.wait)
        return True

    monkeypatch.setattr(Pipeline, "ready", held_ready)
    with in_process_service(
        data_dir=tmp_path / "data",
        grpc_listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        clickhouse_url=f"http://default:@127.0.0.1:{free_port()}/tokenotel",
    ) as service:
        target = f"127.0.0.1:{service.otlp_grpc.port}"
        try:
            before = health_status(target, "")
        finally:
            answer.set()
        after = [health_status(target, "")]
        while after[-1] != health_pb2.HealthCheckResponse.SERVING and len(after) < 200:
            threading.Event().wait(0.05)
            after.append(health_status(target, ""))
    assert before == health_pb2.HealthCheckResponse.NOT_SERVING
    assert after[-1] == health_pb2.HealthCheckResponse.SERVING


# -- retried requests ------------------------------------------------------------------------


def test_a_retried_request_creates_no_duplicate_rows(
    serve_factory: Callable[..., ServeProcess],
) -> None:
    request = export_request(
        log_record("token.used", {"token.id": "t1"}, time_unix_nano=RECENT_NS + 1_000),
        log_record("token.used", {"token.id": "t1"}, time_unix_nano=RECENT_NS + 2_000),
        log_record(
            "token.created", {"token.value": "opaque-value-1"}, time_unix_nano=RECENT_NS + 500
        ),
    )
    body = request.SerializeToString()
    serve = serve_factory()
    with grpc.insecure_channel(serve.grpc_target) as channel:
        grpc_export(channel, body)
        grpc_export(channel, body)
    status, _, _ = http_post(serve.logs_url, body, "application/x-protobuf")
    assert status == 200
    assert serve.stop() == 0

    # Resent after a restart too: the service remembers what it committed lately.
    again = serve_factory(data_dir=serve.data_dir)
    with grpc.insecure_channel(again.grpc_target) as channel:
        grpc_export(channel, body)
    assert again.stop() == 0

    stored = query_json(serve.data_dir)
    assert [(e["event_name"], e["time"]) for e in stored] == [
        ("token.created", rfc3339_ns(RECENT_NS + 500)),
        ("token.used", rfc3339_ns(RECENT_NS + 1_000)),
        ("token.used", rfc3339_ns(RECENT_NS + 2_000)),
    ]
    assert stored_row_count(serve.data_dir) == 3
