"""The token layout: status at ingest, inventory, rollups, upgrades from the first schema."""

from __future__ import annotations

import time
from pathlib import Path

import clickhouse_connect
import pytest

from inprocess import InProcessIngest, embedded_store
from otlp_builders import export_request, log_record
from tokenotel.errors import DeadlineExceeded
from tokenotel.mapping.columns import rows_to_arrow
from tokenotel.mapping.fingerprint import Fingerprinter
from tokenotel.mapping.mapper import Mapper
from tokenotel.store.migrate import migrate

HOUR = 3_600_000_000_000
MINUTE = 60_000_000_000


def _event(name: str, t: int, token: str, **attributes: object):
    return log_record(name, {"token.id": token, **attributes}, time_unix_nano=t)


@pytest.fixture
def ingest(tmp_path: Path):
    ingest = InProcessIngest(tmp_path / "data")
    yield ingest
    ingest.close()


def test_lifecycle_marks_each_event_and_the_inventory(ingest: InProcessIngest) -> None:
    now = time.time_ns()
    t0 = now - 10 * HOUR
    expiry_ms = (now - 2 * HOUR) // 1_000_000  # passes while the scenario runs
    # "tok_a": created -> used from 2 IPs -> scopes updated -> revoked -> used again.
    # "tok_b": created with an expiry -> used -> expiry passes (no token.expired event) -> used.
    sent = [
        _event(
            "token.created",
            t0,
            "tok_a",
            **{
                "token.scopes": ["repo"],
                "user.id": "alice",
                "token.type": "pat",
                "token.expires_at": (now + 90 * 24 * HOUR) // 10**6,
            },
        ),
        _event("token.used", t0 + HOUR, "tok_a", **{"client.address": "192.0.2.10"}),
        _event("token.used", t0 + 2 * HOUR, "tok_a", **{"client.address": "2001:db8::10"}),
        _event(
            "token.updated",
            t0 + 3 * HOUR,
            "tok_a",
            **{"token.scopes": ["repo", "workflow"], "token.scopes_added": ["workflow"]},
        ),
        _event("token.revoked", t0 + 4 * HOUR, "tok_a", **{"token.reason": "leak"}),
        _event(
            "token.used",
            t0 + 5 * HOUR,
            "tok_a",
            **{
                "client.address": "198.51.100.7",
                "token.outcome": "failure",
                "token.failure_reason": "revoked",
            },
        ),
        _event("token.created", t0, "tok_b", **{"token.expires_at": expiry_ms, "user.id": "bob"}),
        _event("token.used", t0 + HOUR, "tok_b", **{"client.address": "192.0.2.20"}),
        _event("token.used", now - HOUR, "tok_b", **{"client.address": "192.0.2.20"}),
    ]
    for record in sent:  # one request each, as separate exporters would send them
        assert ingest.send(export_request(record)).rejected == 0

    statuses = ingest.rows(
        "SELECT token_key, event_name, toString(client_ip), token_status FROM token_events "
        "ORDER BY token_key, event_time"
    )
    assert [(r[0], r[1], r[3]) for r in statuses] == [
        ("tok_a", "token.created", "active"),
        ("tok_a", "token.used", "active"),
        ("tok_a", "token.used", "active"),
        ("tok_a", "token.updated", "active"),
        ("tok_a", "token.revoked", "revoked"),
        ("tok_a", "token.used", "revoked"),
        ("tok_b", "token.created", "active"),
        ("tok_b", "token.used", "active"),
        ("tok_b", "token.used", "expired"),
    ]

    inventory = {
        row[0]: row[1:]
        for row in ingest.rows(
            "SELECT token_key, owner, token_type, scopes, lifecycle_status, status, "
            "toUnixTimestamp64Nano(created_at), toUnixTimestamp64Nano(last_used_at), "
            "toString(last_ip), use_count, failure_count, toUnixTimestamp64Milli(expires_at) "
            "FROM token_inventory"
        )
    }
    assert inventory["tok_a"] == (
        "alice",
        "pat",
        ["repo", "workflow"],
        "revoked",
        "revoked",
        t0,
        t0 + 2 * HOUR,
        "::ffff:198.51.100.7",
        3,
        1,
        (now + 90 * 24 * HOUR) // 10**6,
    )
    assert inventory["tok_b"] == (
        "bob",
        "",
        [],
        "active",
        "expired",
        t0,
        now - HOUR,
        "::ffff:192.0.2.20",
        2,
        0,
        expiry_ms,
    )
    ingest.feed_rollups()  # (fed within a second of the commit while the service runs)
    first_seen = ingest.rows(
        "SELECT token_key, toString(client_ip) AS ip, toUnixTimestamp(min(first_seen)) "
        "FROM token_ip_first_seen GROUP BY token_key, client_ip ORDER BY token_key, client_ip"
    )
    assert first_seen == [
        ("tok_a", "::ffff:192.0.2.10", (t0 + HOUR) // 10**9),
        ("tok_a", "::ffff:198.51.100.7", (t0 + 5 * HOUR) // 10**9),
        ("tok_a", "2001:db8::10", (t0 + 2 * HOUR) // 10**9),
        ("tok_b", "::ffff:192.0.2.20", (t0 + HOUR) // 10**9),
    ]


def test_status_survives_a_restart(tmp_path: Path) -> None:
    """A new service process learns revocations from the inventory before its first insert."""
    now = time.time_ns()
    first = InProcessIngest(tmp_path / "data")
    first.send(export_request(_event("token.revoked", now - HOUR, "tok_r")))
    first.close()
    second = InProcessIngest(tmp_path / "data")
    try:
        second.send(export_request(_event("token.used", now - MINUTE, "tok_r")))
        rows = second.rows("SELECT event_name, token_status FROM token_events ORDER BY event_time")
    finally:
        second.close()
    assert rows == [("token.revoked", "revoked"), ("token.used", "revoked")]


ROLLUPS_CONSISTENT = {
    "token_minutes": (
        "SELECT token_key, event_name, outcome, sum(events) FROM token_minutes "
        "GROUP BY ALL ORDER BY ALL",
        "SELECT token_key, event_name, outcome, count() FROM token_events "
        "GROUP BY ALL ORDER BY ALL",
    ),
    "event_minutes": (
        "SELECT minute, event_name, outcome, sum(events) FROM event_minutes "
        "GROUP BY ALL ORDER BY ALL",
        "SELECT toStartOfMinute(event_time) AS m, event_name, outcome, count() FROM token_events "
        "GROUP BY ALL ORDER BY ALL",
    ),
    "token_hours": (
        "SELECT hour, token_key, sum(events), sum(failures) FROM token_hours "
        "GROUP BY ALL ORDER BY ALL",
        "SELECT toStartOfHour(event_time) AS h, token_key, count(), countIf(outcome = 'failure') "
        "FROM token_events GROUP BY ALL ORDER BY ALL",
    ),
    "ip_failure_minutes": (
        "SELECT minute, client_ip, sum(failures), uniqMerge(tokens) FROM ip_failure_minutes "
        "GROUP BY ALL ORDER BY ALL",
        "SELECT toStartOfMinute(event_time) AS m, client_ip, count(), uniqExact(token_key) "
        "FROM token_events WHERE outcome = 'failure' GROUP BY ALL ORDER BY ALL",
    ),
    "token_inventory": (
        "SELECT token_key, use_count, failure_count FROM token_inventory ORDER BY token_key",
        "SELECT token_key, countIf(event_name = 'token.used'), countIf(outcome = 'failure') "
        "FROM token_events GROUP BY token_key ORDER BY token_key",
    ),
    "token_ip_first_seen": (
        "SELECT token_key, client_ip, toDateTime(min(first_seen)) FROM token_ip_first_seen "
        "GROUP BY ALL ORDER BY ALL",
        "SELECT token_key, client_ip, toDateTime(min(event_time)) FROM token_events "
        "WHERE client_ip != '::' GROUP BY ALL ORDER BY ALL",
    ),
    "token_aliases": (
        "SELECT DISTINCT alias, token_key FROM token_aliases ORDER BY ALL",
        "SELECT DISTINCT alias, token_key FROM token_events "
        "ARRAY JOIN [token_fingerprint, token_hash] AS alias WHERE alias != '' ORDER BY ALL",
    ),
}


def _scenario(now: int, offset: int) -> list:
    records = []
    for i in range(60):
        token = f"tok_{i % 7}"
        name = ["token.used", "token.used", "token.auth_failed", "token.created"][i % 4]
        records.append(
            log_record(
                name,
                {
                    "token.id": token,
                    "token.value": f"ghp_{i % 7:036d}",
                    "user.id": f"user{i % 3}",
                    "client.address": f"203.0.113.{i % 5}",
                    "token.scopes": ["repo"],
                    "http.response.status_code": 401 if name == "token.auth_failed" else 200,
                },
                time_unix_nano=now - offset - i * MINUTE,
            )
        )
    return records


def test_upgrade_from_the_first_schema_keeps_every_row_and_fills_the_rollups(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    now = time.time_ns()
    # The fixture: a database made by the first schema alone, filled as its writer did.
    client = clickhouse_connect.get_client(dsn=f"chdb://{data_dir}")
    client.command("CREATE DATABASE tokenotel")
    client.close()
    client = clickhouse_connect.get_client(dsn=f"chdb://{data_dir}", database="tokenotel")
    assert [m.version for m in migrate(client, up_to=1)] == [1]
    rows = Mapper(Fingerprinter(b"k" * 32)).map(export_request(*_scenario(now, HOUR)), now).rows
    # (the columns later migrations added are not in the first schema)
    first = rows_to_arrow(rows).drop_columns(["event_id", "token_hash"])
    client.insert_arrow("token_events", first)
    before = client.query("SELECT * FROM token_events ORDER BY token_key, event_time").result_rows
    client.close()

    # A newer version starts on it: migrations run, rows stay, rollups are filled.
    ingest = InProcessIngest(data_dir, fingerprint_key_file=_key_file(tmp_path))
    try:
        assert [m.version for m in ingest.pipeline.store.applied_migrations] == list(range(2, 12))
        columns = [
            c[0]
            for c in ingest.rows(
                "SELECT name FROM system.columns WHERE database = 'tokenotel' "
                "AND table = 'token_events' "
                "AND name NOT IN ('token_status', 'event_id', 'token_hash') "
                "AND default_kind != 'ALIAS' "
                "AND default_kind != 'MATERIALIZED' ORDER BY position"
            )
        ]
        after = ingest.rows(
            f"SELECT {', '.join(columns)} FROM token_events ORDER BY token_key, event_time"
        )
        assert len(after) == len(before) == 60
        assert after == before
        for name, (rollup, events) in ROLLUPS_CONSISTENT.items():
            assert ingest.rows(rollup) == ingest.rows(events), name
        # What was stored before tamper evidence is sealed as found (docs/tamper-evidence.md).
        assert ingest.rows("SELECT sum(rows), min(recovered) FROM ledger") == [(60, True)]

        # And the views keep them consistent for what arrives after the upgrade.
        assert ingest.send(export_request(*_scenario(now, 0))).rejected == 0
        assert ingest.rows("SELECT count() FROM token_events") == [(120,)]
        ingest.feed_rollups()
        for name, (rollup, events) in ROLLUPS_CONSISTENT.items():
            assert ingest.rows(rollup) == ingest.rows(events), name
    finally:
        ingest.close()


def _key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key.hex"
    path.write_text((b"k" * 32).hex())
    return path


def test_retention_is_a_part_dropping_ttl(tmp_path: Path) -> None:
    store = embedded_store(tmp_path / "data", retention_days=730)
    try:
        engines = dict(
            store.query(
                "SELECT name, engine_full FROM system.tables WHERE database = 'tokenotel'"
            ).result_rows
        )
    finally:
        store.close()
    # Date32, not DateTime: an event stamped after 2106 would wrap to the past and expire.
    assert "TTL toDate32(event_time) + toIntervalDay(730)" in engines["token_events"]
    for table in ("token_events", "token_minutes", "token_hours", "event_minutes"):
        assert "toIntervalDay(730)" in engines[table], table
        assert "ttl_only_drop_parts = 1" in engines[table], table


def test_event_ids_are_kept_for_a_day_then_cleared(tmp_path: Path) -> None:
    store = embedded_store(tmp_path / "data")
    try:
        store.command(
            "INSERT INTO token_events (event_time, event_name, token_id, ingested_at, event_id) "
            "VALUES (now64(9), 'token.used', 'old', now64(3) - INTERVAL 25 HOUR, 11), "
            "(now64(9), 'token.used', 'new', now64(3), 22)"
        )
        store.command("OPTIMIZE TABLE token_events FINAL")
        rows = store.query("SELECT token_id, event_id FROM token_events ORDER BY token_id")
        assert rows.result_rows == [("new", 22), ("old", 0)]
    finally:
        store.close()


def test_a_query_past_its_time_limit_is_stopped_and_says_so(tmp_path: Path) -> None:
    """The query API turns a client's deadline into max_execution_time: ClickHouse stops the
    query, and the error is a deadline, not a store that is down."""
    store = embedded_store(tmp_path / "data")
    try:
        with pytest.raises(DeadlineExceeded, match="ran past its time limit"):
            store.query(
                "SELECT count() FROM numbers(10000000000) WHERE sipHash64(number) = 1",
                settings={"max_execution_time": 1},
            )
        assert store.query("SELECT 1").result_rows == [(1,)]  # the store goes on
    finally:
        store.close()
