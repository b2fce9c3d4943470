"""Detection in the service (docs/detection.md): every committed insert goes through the rules;
alerts are stored in token_alerts and POSTed to webhooks as Alertmanager's JSON; a restart
neither raises again what was raised nor loses a window in progress."""

from __future__ import annotations

import ipaddress
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "grafana"))

import grafana_scenarios as scenarios

from inprocess import InProcessIngest
from otlp_builders import export_request, log_record
from tokenotel.detect import Alert, Detector, Observed, shipped_rules
from tokenotel.detect.batch import evaluate, frame, observations
from tokenotel.detect.replay import replay
from tokenotel.detect.rules import parse_rules
from webhook_receiver import Receiver, running_receiver

S = 10**9
DAY = 86_400 * S
ALERTS_SQL = "SELECT rule, token_key, client_ip, event_count, link FROM token_alerts"


def _alerts(ingest: InProcessIngest) -> list[tuple[Any, ...]]:
    assert ingest.pipeline.detection is not None
    assert ingest.pipeline.detection.drain(60)
    return ingest.rows(ALERTS_SQL + " ORDER BY raised_at, rule, token_key, client_ip")


@pytest.mark.parametrize("name", ["attack", "benign"])
def test_the_service_raises_what_a_replay_of_the_same_history_raises(
    tmp_path: Path, name: str
) -> None:
    now_ns = time.time_ns()
    ingest = InProcessIngest(tmp_path / "data")
    try:
        for request in scenarios.build(name, now_ns).requests():
            assert not ingest.send(request).rejected
        rows = _alerts(ingest)
        now = datetime.fromtimestamp(now_ns / 1e9, UTC)
        window = now - timedelta(days=400), now + timedelta(seconds=1)
        replayed = list(replay(Detector(shipped_rules()), ingest.pipeline.store, *window))
    finally:
        ingest.close()
    streamed = [(rule, token or ip, count) for rule, token, ip, count, _ in rows]
    assert sorted(streamed) == sorted(
        (a.rule.id, a.labels.get("token") or a.labels["ip"], a.count) for a in replayed
    )
    spray = [row for row in rows if row[0] == "token-spray"]
    if name == "attack":
        (spray_alert,) = spray
        assert spray_alert[2] == scenarios.SPRAY_IP and spray_alert[3] == 15
        burst = next(row for row in rows if row[0] == "failure-burst")
        assert burst[1] == scenarios.BURST_TOKEN
        link = urlsplit(burst[4])
        assert link.path == "/d/tokenotel-investigation/tokenotel-token-investigation"
        assert parse_qs(link.query)["var-token"] == [scenarios.BURST_TOKEN]
    else:
        assert spray == []


def test_a_token_that_expires_after_2262_is_long_lived_live_and_in_a_replay(
    tmp_path: Path,
) -> None:
    """An expiry is kept to 2299; in nanoseconds one after April 2262 overflows an Int64."""
    now_ns = time.time_ns()
    soon = datetime.fromtimestamp(now_ns / 1e9 + 30 * 86400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    created = [
        log_record(
            "token.created",
            {"token.id": token, "token.expires_at": expiry, "user.id": "alice"},
            time_unix_nano=now_ns + n,
        )
        for n, (token, expiry) in enumerate([("far", "2290-01-01T00:00:00.250Z"), ("soon", soon)])
    ]
    ingest = InProcessIngest(tmp_path / "data")
    try:
        assert ingest.send(export_request(*created)).stored == 2
        live = [row[1] for row in _alerts(ingest) if row[0] == "long-lived-token-created"]
        now = datetime.fromtimestamp(now_ns / 1e9, UTC)
        window = now - timedelta(hours=1), now + timedelta(seconds=1)
        replayed = [
            alert.labels["token"]
            for alert in replay(Detector(shipped_rules()), ingest.pipeline.store, *window)
            if alert.rule.id == "long-lived-token-created"
        ]
    finally:
        ingest.close()
    assert live == replayed == ["far"]
    # What the rules read of the insert: the expiry at the last nanosecond an Int64 holds.
    batch = _as_batch([Observed(now_ns, "token.created", "success", "", "far", "", "", "", None)])
    far_ms = pa.array([int(datetime(2290, 1, 1, tzinfo=UTC).timestamp() * 1000)])
    batch = batch.set_column(
        batch.column_names.index("expires_at"), "expires_at", far_ms.cast(pa.timestamp("ms", "UTC"))
    )
    assert frame(batch)["expires_at"].to_pylist() == [(2**63 - 1) // 1_000_000 * 1_000_000]


def _failure(token: str, at_ns: int, n: int) -> Any:
    return log_record(
        "token.auth_failed",
        {
            "token.id": token,
            "token.name": f"{token} deploy key",
            "user.id": f"owner-of-{token}",
            "client.address": "203.0.113.9",
            "log.record.uid": f"f-{token}-{n}",
        },
        time_unix_nano=at_ns,
    )


def test_a_restart_keeps_windows_in_progress_and_what_was_raised(tmp_path: Path) -> None:
    now = time.time_ns()
    revoked = [
        log_record("token.revoked", {"token.id": "tok-gone"}, time_unix_nano=now - 600 * 10**9),
        log_record("token.used", {"token.id": "tok-gone", "log.record.uid": "use-1"},
                   time_unix_nano=now - 300 * 10**9),
    ]  # fmt: skip
    first = InProcessIngest(tmp_path / "data")
    try:
        first.send(export_request(*revoked))
        # Six failures of ten within five minutes: no alert yet.
        first.send(export_request(*(_failure("tok-a", now - (120 - n) * 10**9, n)
                                    for n in range(6))))  # fmt: skip
        assert [row[0] for row in _alerts(first)] == ["use-after-revocation-or-expiry"]
    finally:
        first.close()

    second = InProcessIngest(tmp_path / "data")
    try:
        assert second.pipeline.detection is not None
        assert second.pipeline.detection.ready.wait(30)
        # The revoked token again, within the hour its alert keeps the rule quiet: nothing new.
        used_again = log_record("token.used", {"token.id": "tok-gone", "log.record.uid": "use-2"},
                                time_unix_nano=now - 60 * 10**9)  # fmt: skip
        second.send(export_request(used_again))
        # Four more failures: ten within five minutes, across the restart.
        second.send(export_request(*(_failure("tok-a", now - (60 - n) * 10**9, n)
                                     for n in range(6, 10))))  # fmt: skip
        rows = _alerts(second)
    finally:
        second.close()
    assert [(rule, token, count) for rule, token, _, count, _ in rows] == [
        ("use-after-revocation-or-expiry", "tok-gone", 1),
        ("failure-burst", "tok-a", 10),
    ]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as receiver:
        yield receiver


def test_alerts_are_posted_as_alertmanager_webhook_messages(
    tmp_path: Path, receiver: Receiver
) -> None:
    now = time.time_ns()
    ingest = InProcessIngest(
        tmp_path / "data",
        alert_webhook_urls=receiver.url("/alerts"),
        grafana_url="https://grafana.example.com/",
    )
    try:
        ingest.send(export_request(*(_failure("tok-b", now - (100 - n) * 10**9, n)
                                     for n in range(10))))  # fmt: skip
        _alerts(ingest)
    finally:
        ingest.close()  # what waits for the webhook is sent
    assert receiver.refused == 1  # sent again after the receiver failed
    assert set(receiver.content_types) == {"application/json"}
    (message,) = receiver.documents
    assert message["version"] == "4" and message["status"] == "firing"
    assert message["groupLabels"] == {"alertname": "failure-burst"}
    assert message["externalURL"] == "https://grafana.example.com/"
    (alert,) = message["alerts"]
    assert alert["labels"] == {
        "alertname": "failure-burst",
        "severity": "warning",
        "token": "tok-b",
    }
    assert alert["annotations"]["count"] == "10"
    assert alert["annotations"]["token_name"] == "tok-b deploy key"
    assert alert["annotations"]["principal"] == "owner-of-tok-b"
    assert "tok-b" in alert["annotations"]["summary"]
    assert alert["startsAt"] < alert["annotations"]["last_event"]
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["generatorURL"].startswith(
        "https://grafana.example.com/d/tokenotel-investigation/tokenotel-token-investigation?"
    )
    assert "var-token=tok-b" in alert["generatorURL"]
    assert len(alert["fingerprint"]) == 16


NEW_IP = parse_rules(
    """
rules:
  - id: new-ip
    severity: warning
    description: d
    runbook: r
    kind: new_value
    match: {events: [token.used]}
    group_by: [token]
    new_of: ip
    window: 1h
    suppress_for: 1m
""",
    "test",
)[0]


def _batch(events: list[tuple[int, str, str]]) -> pa.Table:
    """Committed rows as the rules read them: (time s, token, IPv4)."""
    return _as_batch(
        [
            Observed(t * S, "token.used", "success", "", token, ip, "", "", None)
            for t, token, ip in events
        ]
    )


def test_a_rule_reads_the_first_event_of_each_key_and_value_in_an_insert_up_to_the_last() -> None:
    events = [(1000 + s, "t1", "192.0.2.1") for s in range(500)]
    events += [(1100, "t1", "192.0.2.2"), (1200, "t2", "192.0.2.1")]
    seen = observations(NEW_IP, frame(_batch(events)))
    # (time, the token, the address, events it stands for, the last of them)
    assert [(at // 10**9, key, ip, n, until // 10**9) for at, key, ip, n, until in seen] == [
        (1000, ("t1",), "192.0.2.1", 1, 1499),
        (1100, ("t1",), "192.0.2.2", 1, 1100),
        (1200, ("t2",), "192.0.2.1", 1, 1200),
    ]
    # An insert spread over the window or more (a backfill): every event counts.
    spread = [(0, "t1", "192.0.2.1"), (1800, "t1", "192.0.2.1"), (3600, "t1", "192.0.2.1")]
    assert len(observations(NEW_IP, frame(_batch(spread)))) == 3


def test_a_rule_reads_nothing_of_events_that_lack_a_field_it_groups_by_or_counts() -> None:
    told = [(1000, "t1", "192.0.2.1"), (1001, "t2", "192.0.2.2")]
    untold = frame(_batch([*told, (1002, "t1", "0.0.0.0"), (1003, "", "192.0.2.3")]))
    # (an address of :: is none: the source gave none)
    untold = untold.set_column(
        untold.schema.get_field_index("client_ip"),
        "client_ip",
        pa.array([*untold["client_ip"].to_pylist()[:2], b"\0" * 16, b"\0" * 16], pa.binary(16)),
    )
    assert observations(NEW_IP, untold) == observations(NEW_IP, frame(_batch(told)))
    assert len(observations(NEW_IP, untold)) == 2


def _traffic(seed: int) -> list[Observed]:
    """Years of a few tokens' uses and failures from a few addresses and networks (some
    untold), mostly seconds apart, with quiet spells of days between some of them."""
    rng = random.Random(seed)
    at, events = 0, []
    for _ in range(1500):
        at += rng.choice([1, 2, 5, 30]) * S if rng.random() > 0.02 else rng.randrange(1, 60) * DAY
        failed = rng.random() < 0.3
        events.append(
            Observed(
                at + rng.randrange(S),
                "token.auth_failed" if failed else "token.used",
                "failure" if failed else "success",
                "active",
                f"t{rng.randrange(4)}",
                rng.choice(["", "192.0.2.1", "192.0.2.2", "198.51.100.7", "2001:db8::1"]),
                "someone",
                "",
                None,
                rng.choice(["", "64500", "64501"]),
                rng.choice(["", "DE", "FR"]),
            )
        )
    return events


def _as_batch(events: list[Observed]) -> pa.Table:
    """``events`` as the rows of an insert."""

    def address(text: str) -> bytes:
        return ipaddress.IPv6Address(f"::ffff:{text}" if "." in text else text or "::").packed

    return pa.table(
        {
            "event_time": pa.array([e.time_ns for e in events], pa.timestamp("ns", "UTC")),
            "event_name": [e.event for e in events],
            "outcome": [e.outcome for e in events],
            "token_status": [e.token_status for e in events],
            "token_id": [e.token for e in events],
            "token_fingerprint": [""] * len(events),
            "client_ip": pa.array([address(e.ip) for e in events], pa.binary(16)),
            "principal_id": [e.principal for e in events],
            "actor_id": [e.actor for e in events],
            "asn": pa.array([int(e.asn or 0) for e in events], pa.uint32()),
            "country": [e.country for e in events],
            "expires_at": pa.array([None] * len(events), pa.timestamp("ms", "UTC")),
        }
    )


@pytest.mark.parametrize("seed", range(4))
def test_the_rules_raise_over_whole_inserts_what_they_raise_event_by_event(seed: int) -> None:
    events = _traffic(seed)
    one_by_one = Detector(shipped_rules())
    expected = [alert for event in events for alert in one_by_one.observe(event)]
    inserts, rng, start = Detector(shipped_rules()), random.Random(seed), 0
    found = []
    while start < len(events):
        end = start + rng.randrange(1, 200)
        found += evaluate(inserts, frame(_as_batch(events[start:end])))
        start = end

    def said(alerts: list[Alert]) -> list[tuple[object, ...]]:
        return sorted((a.rule.id, a.key, a.count, a.first_ns, a.last_ns) for a in alerts)

    assert said(found) == said(expected)
    assert {a.rule.id for a in expected} >= {"new-ip-for-token", "dormant-token-used"}


def test_an_address_seen_again_in_an_insert_is_known_for_the_window_after_the_last_time() -> None:
    def use(minute: int, ip: str) -> Observed:
        return Observed(minute * 60 * S, "token.used", "success", "", "t1", ip, "", "", None)

    first = [use(0, "192.0.2.1"), use(50, "192.0.2.1"), use(55, "192.0.2.2")]
    then = [use(100, "192.0.2.1")]  # (an hour after the first use, 50 minutes after the last)
    one_by_one = Detector([NEW_IP])
    expected = [alert for event in first + then for alert in one_by_one.observe(event)]
    inserts = Detector([NEW_IP])
    found = evaluate(inserts, frame(_as_batch(first))) + evaluate(inserts, frame(_as_batch(then)))
    assert [a.labels["ip"] for a in found] == [a.labels["ip"] for a in expected] == ["192.0.2.2"]


def test_a_resolved_notice_follows_when_the_condition_clears(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.refused = 1  # (no refusal here)
    hour_ago = time.time_ns() - 3600 * 10**9
    ingest = InProcessIngest(tmp_path / "data", alert_webhook_urls=receiver.url("/alerts"))
    try:
        # A burst of an hour ago: its five-minute window has long emptied.
        ingest.send(export_request(*(_failure("tok-c", hour_ago + n * 10**9, n)
                                     for n in range(10))))  # fmt: skip
        _alerts(ingest)
    finally:
        ingest.close()
    firing, resolved = receiver.documents
    assert firing["status"] == "firing" and resolved["status"] == "resolved"
    (alert,) = resolved["alerts"]
    assert alert["status"] == "resolved"
    assert alert["labels"] == {
        "alertname": "failure-burst",
        "severity": "warning",
        "token": "tok-c",
    }
    # Cleared when the window that made it emptied: five minutes after its last event.
    assert alert["endsAt"] > alert["annotations"]["last_event"]
    assert alert["endsAt"][:16] == _minute(hour_ago + 9 * 10**9 + 300 * 10**9)


def _minute(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M")
