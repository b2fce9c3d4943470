"""The write path: concurrent requests share inserts, and each is counted once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inprocess import InProcessIngest
from otlp_builders import export_request, log_record
from tokenotel.store.client import may_renice_threads


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


def test_ingest_runs_below_the_reads_priority_where_clickhouse_may_set_it(tmp_path: Path) -> None:
    # README, ingest_nice: the embedded engine's merges get the nice value (ClickHouse applies
    # it, and the inserts' os_thread_priority, only with CAP_SYS_NICE); ingest works either way.
    ingest = InProcessIngest(tmp_path / "data", ingest_nice=4)
    try:
        assert ingest.pipeline.store.options.ingest_nice == 4
        reniced = may_renice_threads()  # root, or CAP_SYS_NICE outside a user namespace
        assert ingest.pipeline.store.renices_threads is reniced
        assert ingest.rows(
            "SELECT value FROM system.server_settings "
            "WHERE name = 'os_threads_nice_value_merge_mutate'"
        ) == [("4" if reniced else "0",)]
        (result,) = ingest.send_all([_request(0, time.time_ns())])
        assert result.stored == 50
        assert ingest.rows("SELECT count() FROM token_events") == [(50,)]
    finally:
        ingest.close()


CANNOT_RENICE = """
import logging, sys, time
logging.basicConfig(level=logging.INFO)
sys.path.insert(0, sys.argv[2])
from inprocess import InProcessIngest
from otlp_builders import export_request, log_record
from tokenotel.store.client import may_renice_threads
assert not may_renice_threads()
ingest = InProcessIngest(__import__("pathlib").Path(sys.argv[1]), ingest_nice=5)
try:
    now = time.time_ns()
    for n in range(3):  # three parts, and a merge of them
        record = log_record("token.used", {"token.id": f"t{n}"}, time_unix_nano=now)
        request = export_request(record)
        assert ingest.send(request).stored == 1
    ingest.pipeline.store.command("OPTIMIZE TABLE token_events FINAL")
    assert ingest.rows("SELECT count() FROM token_events") == [(3,)]
finally:
    ingest.close()
"""


@pytest.mark.parametrize(
    "launcher",
    [
        ["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice"],
        # CAP_SYS_NICE of a user namespace: a priority can be lowered, not raised again.
        ["unshare", "--user", "--map-root-user"],
    ],
    ids=["no-cap-sys-nice", "user-namespace"],
)
def test_where_threads_cannot_be_reniced_ingest_keeps_working_and_says_so(
    tmp_path: Path, launcher: list[str]
) -> None:
    # ClickHouse asks only for CAP_SYS_NICE before it sets a query's thread priority, and
    # aborts when it cannot give it back; the service tries first, and leaves the inserts
    # and merges at its own priority where it cannot.
    tests = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [*launcher, sys.executable, "-c", CANNOT_RENICE, str(tmp_path / "data"),
         str(tests)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(tests)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "the store's inserts and merges keep the service's" in done.stderr
