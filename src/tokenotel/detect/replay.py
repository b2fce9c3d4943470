"""Stored history through the rules, in event-time order: what they would have raised."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from tokenotel.detect.engine import NS_PER_S, Alert, Detector, Observed
from tokenotel.detect.rules import Kind, Rule
from tokenotel.query.readable import IP_TEXT_SQL
from tokenotel.store.client import EVENTS_TABLE, Store

#: Each field a rule groups by or counts, as text, in SQL over the events table.
FIELD_SQL = {
    "token": "token_key",
    "ip": IP_TEXT_SQL.format("client_ip"),
    "principal": "principal_id",
    "actor": "actor_id",
    "asn": "if(asn = 0, '', toString(asn))",
    "country": "country",
}
#: The fields the rules read, of the events in one slice of time, oldest first. (An expiry
#: in ns as an Int128: one after April 2262 does not fit in an Int64.)
EVENTS_SQL = f"""
SELECT toUnixTimestamp64Nano(event_time), event_name, outcome, token_status,
       {FIELD_SQL["token"]}, {FIELD_SQL["ip"]}, {FIELD_SQL["principal"]}, {FIELD_SQL["actor"]},
       toInt128(toUnixTimestamp64Milli(expires_at)) * 1000000, {FIELD_SQL["asn"]},
       {FIELD_SQL["country"]}
FROM {EVENTS_TABLE}
WHERE event_time >= fromUnixTimestamp64Nano({{start:Int64}}, 'UTC')
  AND event_time < fromUnixTimestamp64Nano({{end:Int64}}, 'UTC')
  AND ingested_at < fromUnixTimestamp64Milli({{before_ms:Int64}}, 'UTC')
ORDER BY event_time
"""
#: Each token's last event a dormant rule matches, before a time (to the minute).
LAST_SEEN_SQL = """
SELECT token_key, toUnixTimestamp(max(minute)) * 1000000000
FROM token_minutes
WHERE minute < fromUnixTimestamp64Nano({before:Int64}, 'UTC')
  AND (empty({events:Array(String)}) OR event_name IN {events:Array(String)})
  AND ({outcome:String} = '' OR outcome = {outcome:String})
GROUP BY token_key
"""
#: Each token's matching events of each hour of [start, before), from the per-minute rollup.
HOURS_SQL = """
SELECT token_key, toUnixTimestamp(toStartOfHour(minute)) * 1000000000, sum(events)
FROM token_minutes
WHERE minute >= fromUnixTimestamp64Nano({start:Int64}, 'UTC')
  AND minute < fromUnixTimestamp64Nano({before:Int64}, 'UTC')
  AND (empty({events:Array(String)}) OR event_name IN {events:Array(String)})
  AND ({outcome:String} = '' OR outcome = {outcome:String})
GROUP BY 1, 2
"""
#: How much history one read takes: a day of a busy source fits in memory.
SLICE = timedelta(hours=6)


#: Called with the start of the history read and how far it has got.
Progress = Callable[[datetime, datetime], None]


def stored_events(
    store: Store,
    since: datetime,
    until: datetime,
    progress: Progress | None = None,
    committed_before_ms: int = 2**43,  # (the year 2248)
) -> Iterator[Observed]:
    """The events of [since, until) committed before ``committed_before_ms`` (the ingest
    stamp, ms), oldest first, read a slice at a time."""
    start = since
    while start < until:
        end = min(start + SLICE, until)
        rows = store.query(
            EVENTS_SQL,
            {"start": _ns(start), "end": _ns(end), "before_ms": committed_before_ms},
            settings={"max_threads": 1},
        ).result_rows
        for row in rows:
            yield Observed(*row)
        if progress is not None:
            progress(since, end)
        start = end


def replay(
    detector: Detector,
    store: Store,
    since: datetime,
    until: datetime,
    progress: Progress | None = None,
) -> Iterator[Alert]:
    """The alerts ``detector`` raises on the stored events of [since, until). The rules first
    see the events of the longest window before ``since`` (raising nothing), and a dormant
    rule each token's last matching event before that: as a service running all along would
    have known them."""
    warm_up = max(
        (rule.window for rule in detector.rules if rule.kind is not Kind.DORMANT),
        default=timedelta(0),
    )
    start = since - warm_up
    learn_from_rollups(detector, store, start)
    since_ns = _ns(since)
    for event in stored_events(store, start, until, progress):
        alerts = detector.observe(event)
        if event.time_ns >= since_ns:
            yield from alerts


def learn_from_rollups(detector: Detector, store: Store, before: datetime) -> None:
    """What the dormant and spike rules know of the events before ``before`` (a whole minute),
    from token_minutes: each token's last matching minute, and its matching events by hour
    over a spike rule's baseline."""
    for rule in detector.rules:
        if rule.kind is Kind.DORMANT:
            for token, last_ns in last_seen(store, rule, before):
                detector.remember_last(rule, (token,), last_ns)
        elif rule.kind is Kind.SPIKE:
            for token, hour_ns, count in hours(store, rule, before):
                detector.remember_rate(rule, (token,), hour_ns, count)


def hours(store: Store, rule: Rule, before: datetime) -> list[tuple[str, int, int]]:
    """Each token's events ``rule`` matches by hour, over its baseline and window before
    ``before``."""
    params = {
        "start": _ns(before - rule.baseline - rule.window),
        "before": _ns(before),
        "events": list(rule.match.events),
        "outcome": rule.match.outcome or "",
    }
    rows = store.query(HOURS_SQL, params, settings={"max_threads": 1}).result_rows
    return [(token, hour_ns, count) for token, hour_ns, count in rows]


def last_seen(store: Store, rule: Rule, before: datetime) -> list[tuple[str, int]]:
    params = {
        "before": _ns(before),
        "events": list(rule.match.events),
        "outcome": rule.match.outcome or "",
    }
    rows = store.query(LAST_SEEN_SQL, params, settings={"max_threads": 1}).result_rows
    return [(token, last_ns) for token, last_ns in rows]


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * NS_PER_S + moment.microsecond * 1000
