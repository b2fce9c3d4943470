"""The write path: concurrent requests share inserts, and each is counted once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from inprocess import InProcessIngest
from otlp_builders import export_request, log_record


def _request(n: int, now: int) -> object:
    return export_request(
        *(
            log_record("token.used", {"token.id": f"t{n}"}, time_unix_nano=now + n * 1000 + i)
            for i in range(50)
        )
    )


def test_concurrent_requests_share_inserts_and_are_counted_once(tmp_path: Path) -> None:
    now = time.time_ns()
    requests = [_request(n, now) for n in range(8)]
    ingest = InProcessIngest(tmp_path / "data", batch_max_delay_ms=200)
    try:
        results = ingest.send_all([*requests, requests[0]])  # the last one is a retry
        assert all(r.rejected == 0 for r in results)
        assert ingest.rows("SELECT count() FROM token_events") == [(400,)]
        assert ingest.pipeline.stats.records_stored == 400
        assert ingest.pipeline.writer.stats.duplicates_dropped == 50
        assert ingest.pipeline.writer.stats.inserts < len(requests)
    finally:
        ingest.close()


@pytest.mark.timeout(120)
def test_a_writer_told_nothing_more_will_come_stores_at_once(tmp_path: Path) -> None:
    # An import that sent its last requests: they are stored as soon as they are mapped, not
    # after the writer's wait for others to share their insert (an hour here).
    now = time.time_ns()
    ingest = InProcessIngest(tmp_path / "data", batch_max_delay_ms=3_600_000)
    try:
        ingest.pipeline.stop_waiting()
        results = ingest.send_all([_request(0, now), _request(1, now)])
        assert [r.stored for r in results] == [50, 50]
        assert ingest.rows("SELECT count() FROM token_events") == [(100,)]
    finally:
        ingest.close()
