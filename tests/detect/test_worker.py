"""The rules in a process of their own (docs/detection.md): the service hands each insert
over and gets back what the rules in its own process would raise; a rules process that dies
is replaced by one that learns the store's state again."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from test_stream import NEW_IP, _batch

from inprocess import InProcessIngest
from tokenotel.config import load_settings
from tokenotel.detect import Detector
from tokenotel.detect.batch import frame
from tokenotel.detect.stream import StreamDetector
from tokenotel.detect.worker import Rules, RulesStopped
from tokenotel.pipeline import _detection
from tokenotel.store.client import Store

S = 10**9
HISTORY = [(0, "t1", "192.0.2.1"), (60, "t2", "192.0.2.9"), (120, "t1", "192.0.2.1")]
NEW = [(180, "t1", "198.51.100.7"), (240, "t2", "192.0.2.9"), (300, "t2", "203.0.113.4")]


def _outcome(rules: Rules) -> list[tuple[str, tuple[tuple[str, str], ...], int, int]]:
    rules.evaluate(frame(_batch(HISTORY)), 200 * S)
    raised, _ = rules.evaluate(frame(_batch(NEW)), 200 * S)
    _, cleared = rules.evaluate(None, 100_000 * S)
    return [(a.rule.id, a.key, a.count, a.last_ns) for a in raised] + [
        (a.rule.id, a.key, a.count, at) for a, at in cleared
    ]


def test_the_rules_raise_and_clear_in_their_own_process_what_they_do_here() -> None:
    here = Rules(Detector([NEW_IP]), separate=False)
    apart = Rules(Detector([NEW_IP]), separate=True)
    try:
        assert apart.pid is not None and apart.pid != os.getpid()
        expected = _outcome(here)
        assert [(rule, dict(key)["ip"]) for rule, key, _, _ in expected[:2]] == [
            ("new-ip", "198.51.100.7"),
            ("new-ip", "203.0.113.4"),
        ]
        assert len(expected) == 4  # both raised, then both cleared
        assert _outcome(apart) == expected
    finally:
        apart.close()


def test_the_rules_process_runs_at_ingests_priority_below_the_reads() -> None:
    # README, ingest_nice: the rules are ingest's work; the query API's reads go first.
    apart = Rules(Detector([NEW_IP]), separate=True, nice=3)
    try:
        assert apart.pid is not None
        niced = min(os.getpriority(os.PRIO_PROCESS, 0) + 3, 19)
        assert os.getpriority(os.PRIO_PROCESS, apart.pid) == niced
    finally:
        apart.close()


def test_the_service_gives_its_rules_process_ingests_priority(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", mapping_workers=1, ingest_nice=4)
    store = Store(settings.store_options)
    detection = _detection(settings, store)
    try:
        assert detection is not None
        assert (detection.separate_process, detection.nice) == (True, 4)
    finally:
        store.close()


def test_a_rules_process_that_died_is_told_and_then_replaced(tmp_path: Path) -> None:
    apart = Rules(Detector([NEW_IP]), separate=True)
    assert apart.pid is not None
    os.kill(apart.pid, signal.SIGKILL)
    with pytest.raises(RulesStopped, match="stopped"):
        apart.evaluate(frame(_batch(HISTORY)), 0)
    apart.close()

    ingest = InProcessIngest(tmp_path / "data", detection=False)
    detection = StreamDetector(
        ingest.pipeline.store, [NEW_IP], "http://grafana.example", separate_process=True
    )
    try:
        detection.start()
        assert detection.ready.wait(60)
        first = detection.rules_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        detection.committed(_batch(HISTORY))  # lost with the process
        assert detection.drain(60)
        assert detection.rules_pid not in (None, first)
        detection.committed(_batch(HISTORY))
        detection.committed(_batch(NEW))
        assert detection.drain(60)
        rows = ingest.rows("SELECT rule, client_ip FROM token_alerts ORDER BY last_event")
    finally:
        detection.stop()
        ingest.close()
    assert rows == [("new-ip", "198.51.100.7"), ("new-ip", "203.0.113.4")]
