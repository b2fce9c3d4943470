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


def apply_retention(client: Client, days: int) -> list[str]:
    """Sets the TTL of every retained table to ``days`` where it differs; returns those changed.

    Existing parts are not rewritten (materialize_ttl_after_modify = 0): with
    ttl_only_drop_parts, whole monthly partitions are dropped once all their rows expire.
    """
    result = client.query(ENGINE_SQL, parameters={"tables": list(RETAINED)})
    engines: dict[str, str] = {name: engine for name, engine in result.result_rows}
    changed = []
    for table, expression in RETAINED.items():
        engine = engines.get(table, "")
        if f"TTL {expression} + toIntervalDay({days})" in engine and (
            "ttl_only_drop_parts = 1" in engine
        ):
            continue
        client.command(
            f"ALTER TABLE {table} MODIFY TTL {expression} + INTERVAL {days} DAY",
            settings={"materialize_ttl_after_modify": 0},
        )
        client.command(f"ALTER TABLE {table} MODIFY SETTING ttl_only_drop_parts = 1")
        changed.append(table)
    if changed:
        log.info("retention set to %d days on %s", days, ", ".join(changed))
    return changed
