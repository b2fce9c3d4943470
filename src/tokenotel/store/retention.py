"""Retention: how long events and rollups are kept, as TTLs that drop whole parts.

PCI DSS 10.5.1 asks for 12 months of audit history with the last 3 immediately available;
the default ``retention_days`` of 400 keeps all of it in the same (fast) tables.
"""

from __future__ import annotations

import logging

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

#: Table -> the date expression its TTL counts from. The inventory, first-seen pairs
#: and fingerprint lookup are kept for good: they are one row per token (or token and IP).
#: Events count in Date32 (to 2299), not DateTime: a DateTime ends in 2106, and an event
#: stamped later would wrap to the past, expire at once and be dropped with its part.
RETAINED = {
    "token_events": "toDate32(event_time)",
    "token_minutes": "minute",
    "token_hours": "hour",
    "event_minutes": "minute",
    "ip_failure_minutes": "minute",
}

ENGINE_SQL = """
SELECT name, engine_full FROM system.tables
WHERE database = currentDatabase() AND name IN {tables:Array(String)}
"""


def retention_changes(client: Client, days: int) -> list[str]:
    """The retained tables whose TTL is not ``days`` yet (read from system.tables only)."""
    result = client.query(ENGINE_SQL, parameters={"tables": list(RETAINED)})
    engines: dict[str, str] = {name: engine for name, engine in result.result_rows}
    return [
        table
        for table, expression in RETAINED.items()
        if f"TTL {expression} + toIntervalDay({days})" not in engines.get(table, "")
        or "ttl_only_drop_parts = 1" not in engines.get(table, "")
    ]


def apply_retention(client: Client, days: int, tables: list[str]) -> None:
    """Sets the TTL of ``tables`` (retained tables, see retention_changes) to ``days``.

    Existing parts are not rewritten (materialize_ttl_after_modify = 0): with
    ttl_only_drop_parts, whole monthly partitions are dropped once all their rows expire.
    """
    for table in tables:
        client.command(
            f"ALTER TABLE {table} MODIFY TTL {RETAINED[table]} + INTERVAL {days} DAY",
            settings={"materialize_ttl_after_modify": 0},
        )
        client.command(f"ALTER TABLE {table} MODIFY SETTING ttl_only_drop_parts = 1")
    if tables:
        log.info("retention set to %d days on %s", days, ", ".join(tables))
