"""Stored history through the rules, in event-time order: what they would have raised."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from tokenotel.detect.engine import NS_PER_S, Alert, Detector, Observed
from tokenotel.store.client import EVENTS_TABLE, Store

#: The fields the rules read, of the events in one slice of time, oldest first.
EVENTS_SQL = f"""
SELECT toUnixTimestamp64Nano(event_time), event_name, outcome, token_status, token_key,
       replaceRegexpOne(IPv6NumToString(client_ip), '^(::ffff:|::$)', ''),
       principal_id, actor_id, toUnixTimestamp64Nano(toDateTime64(expires_at, 9, 'UTC'))
FROM {EVENTS_TABLE}
WHERE event_time >= fromUnixTimestamp64Nano({{start:Int64}}, 'UTC')
  AND event_time < fromUnixTimestamp64Nano({{end:Int64}}, 'UTC')
ORDER BY event_time
"""
#: How much history one read takes: a day of a busy source fits in memory.
SLICE = timedelta(hours=6)


def stored_events(store: Store, since: datetime, until: datetime) -> Iterator[Observed]:
    """The events of [since, until), oldest first, read a slice at a time."""
    start = since
    while start < until:
        end = min(start + SLICE, until)
        rows = store.query(
            EVENTS_SQL, {"start": _ns(start), "end": _ns(end)}, settings={"max_threads": 1}
        ).result_rows
        for row in rows:
            yield Observed(*row)
        start = end


def replay(detector: Detector, store: Store, since: datetime, until: datetime) -> Iterator[Alert]:
    """The alerts ``detector`` raises on the stored events of [since, until)."""
    return detector.observe_all(stored_events(store, since, until))


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * NS_PER_S + moment.microsecond * 1000
