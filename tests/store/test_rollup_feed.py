"""The analytics rollups of the embedded store, fed after commit (docs/schema.md, "Rollups"):
fewer inserts reach their views, and what a crash or a failed feed leaves out is counted again
from the events, never twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs.export import LogRecordExportResult

from inprocess import InProcessIngest
from otel_sdk import token_uses
from otlp_builders import export_request, log_record
from processes import ServeProcess, clean_env, kill_serve
from rollups import rollup_differences, rollup_differences_in
from tokenotel.errors import StoreUnavailable
from tokenotel.pipeline import FEED_FILE
from tokenotel.store.migrate import FEED_TABLE

MINUTE = 60_000_000_000


def _requests(count: int, per_request: int = 20) -> list:
    """Uses and failures of seven tokens from five addresses, over the last hours."""
    now = time.time_ns()
    requests = []
    for r in range(count):
        records = []
        for i in range(per_request):
            n = r * per_request + i
            name = ["token.used", "token.used", "token.auth_failed", "token.created"][n % 4]
            records.append(
                log_record(
                    name,
                    {
                        "token.id": f"tok_{n % 7}",
                        "user.id": f"user{n % 3}",
                        "client.address": f"203.0.113.{n % 5}",
                        "token.scopes": ["repo"],
                    },
                    time_unix_nano=now - n * MINUTE,
                )
            )
        requests.append(export_request(*records))
    return requests


def _rollup_rows(ingest: InProcessIngest) -> int:
    return ingest.rows("SELECT sum(events) FROM token_minutes")[0][0]


def test_the_rollups_are_fed_after_commit_in_fewer_inserts(tmp_path: Path) -> None:
    ingest = InProcessIngest(tmp_path / "data", rollup_delay_ms=3_600_000)
    try:
        for request in _requests(5):
            assert ingest.send(request).rejected == 0
        writer = ingest.pipeline.writer
        assert writer.stats.inserts == 5
        # Committed, stored and in the inventory; the analytics rollups wait for the feed.
        assert ingest.rows("SELECT count() FROM token_events") == [(100,)]
        assert ingest.rows("SELECT sum(use_count) FROM token_inventory") == [(50,)]
        assert _rollup_rows(ingest) == 0
        assert (tmp_path / "data" / FEED_FILE).exists()

        ingest.feed_rollups()
        assert writer.stats.feeds == 1  # the five inserts in one
        assert _rollup_rows(ingest) == 100
        assert rollup_differences(ingest.pipeline.store) == {}
        assert not (tmp_path / "data" / FEED_FILE).exists()
    finally:
        ingest.close()


def test_what_is_committed_is_fed_when_the_service_stops(tmp_path: Path) -> None:
    ingest = InProcessIngest(tmp_path / "data", rollup_delay_ms=3_600_000)
    try:
        for request in _requests(3):
            assert ingest.send(request).rejected == 0
    finally:
        ingest.close()
    assert rollup_differences_in(tmp_path / "data") == {}
    assert not (tmp_path / "data" / FEED_FILE).exists()


def test_a_feed_that_failed_is_counted_again_before_the_next_insert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest = InProcessIngest(tmp_path / "data", rollup_delay_ms=3_600_000)
    try:
        store = ingest.pipeline.store
        real_insert = store.insert_arrow
        failed: list[int] = []

        def feed_fails_once(table: str, data: Any, *args: Any) -> None:
            if table == FEED_TABLE and not failed:
                real_insert(table, data.slice(0, data.num_rows // 2), *args)  # half arrived
                failed.append(data.num_rows)
                raise StoreUnavailable("the store went away", 0.2)
            real_insert(table, data, *args)

        monkeypatch.setattr(store, "insert_arrow", feed_fails_once)
        requests = _requests(4)
        for request in requests[:2]:
            assert ingest.send(request).rejected == 0
        ingest.feed_rollups()
        assert failed == [40]
        assert rollup_differences(store) != {}  # half of the feed is in some rollups
        for request in requests[2:]:  # the next insert settles it first
            assert ingest.send(request).rejected == 0
        ingest.feed_rollups()
        assert _rollup_rows(ingest) == 80
        assert rollup_differences(store) == {}
    finally:
        ingest.close()
    assert rollup_differences_in(tmp_path / "data") == {}


def test_events_not_fed_when_the_service_was_killed_are_counted_at_the_next_start(
    tmp_path: Path, serve_factory: Callable[..., ServeProcess]
) -> None:
    data = tmp_path / "data"
    env = clean_env(TOKENOTEL_ROLLUP_DELAY_MS="3600000")  # nothing is fed before the kill
    serve = serve_factory(data_dir=data, env=env)
    exporter = OTLPLogExporter(endpoint=serve.grpc_target, insecure=True, timeout=30)
    try:
        assert exporter.export(token_uses(20)) == LogRecordExportResult.SUCCESS
    finally:
        exporter.shutdown()
    kill_serve(serve)
    assert (data / FEED_FILE).exists()

    serve = serve_factory(data_dir=data, env=env)
    assert serve.stop() == 0, serve.output()
    assert "reached the rollups: counting them again" in serve.output()
    assert not (data / FEED_FILE).exists()
    assert rollup_differences_in(data) == {}
