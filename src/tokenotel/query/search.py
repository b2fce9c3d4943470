"""Finds token events by token, principal, IP or range, event type, outcome, token status and
time window; a page at a time, and as they are committed (tail)."""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tokenotel.errors import InvalidArgument
from tokenotel.model import Outcome, TokenStatus
from tokenotel.query.readable import format_ms, format_ns, ip_to_text
from tokenotel.store.client import EVENTS_TABLE, Store

#: What a search returns for each event, in output order. Times come back as integers so
#: no precision is lost; IPs as ClickHouse text.
EVENT_COLUMNS = """
    toUnixTimestamp64Nano(event_time) AS time,
    toUnixTimestamp64Nano(observed_time) AS observed_time,
    event_name, outcome, token_status, failure_reason,
    token_id, token_fingerprint, token_hash, token_type, token_name, token_hint, previous_token_id,
    principal_id, principal_type, actor_id, tenant,
    toString(client_ip) AS client_address, user_agent, country, asn,
    scopes, scopes_added, scopes_removed,
    toUnixTimestamp64Milli(expires_at) AS expires_at,
    toUnixTimestamp64Milli(issued_at) AS issued_at,
    http_method, http_route, url_path, http_status, request_id,
    reason, source, service_name, environment, scope_name,
    trace_id, span_id, severity_text, severity_number, body,
    attributes, resource_attributes
"""
#: A total order of events: equal events (the same in every column) are interchangeable, so
#: a page boundary never skips or repeats one.
EVENT_ORDER = "event_time, token_key, ingested_at, event_id, cityHash64(*)"
SEARCH_SQL = f"""
SELECT {{columns}}
FROM {EVENTS_TABLE}
WHERE {{where}}
ORDER BY {EVENT_ORDER}
LIMIT {{{{limit:UInt64}}}} OFFSET {{{{offset:UInt64}}}}
"""
#: The events of the inserts stamped after a point, in the order they were committed.
COMMITTED_SQL = f"""
SELECT {{columns}}
FROM {EVENTS_TABLE}
WHERE ingested_at > fromUnixTimestamp64Milli({{{{after:Int64}}}}, 'UTC')
  AND ingested_at <= fromUnixTimestamp64Milli({{{{up_to:Int64}}}}, 'UTC')
  AND {{where}}
ORDER BY ingested_at, {EVENT_ORDER}
LIMIT {{{{limit:UInt64}}}} OFFSET {{{{skip:UInt64}}}}
"""
#: The stamps of what COMMITTED_SQL reads, in its order: within one insert its events are in
#: an order of their own, but they share the stamp.
STAMPS_SQL = f"""
SELECT toUnixTimestamp64Milli(ingested_at)
FROM {EVENTS_TABLE}
WHERE ingested_at > fromUnixTimestamp64Milli({{{{after:Int64}}}}, 'UTC')
  AND ingested_at <= fromUnixTimestamp64Milli({{{{up_to:Int64}}}}, 'UTC')
  AND {{where}}
ORDER BY ingested_at
LIMIT {{{{limit:UInt64}}}} OFFSET {{{{skip:UInt64}}}}
"""
#: The stamp of the newest insert: with the service stopped, everything up to it is committed.
NEWEST_STAMP_SQL = f"SELECT toUnixTimestamp64Milli(max(ingested_at)) FROM {EVENTS_TABLE}"


@dataclass
class EventFilter:
    """Every condition is optional; those given must all hold."""

    tokens: list[str] = field(default_factory=list)
    principal: str | None = None
    ip: str | None = None
    events: list[str] = field(default_factory=list)
    outcome: Outcome | None = None
    statuses: list[TokenStatus] = field(default_factory=list)
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        """The WHERE clause and its parameters (server-side bound, never interpolated).
        Raises InvalidArgument for an address that is not one."""
        conditions: list[str] = []
        params: dict[str, Any] = {}
        if self.tokens:  # token keys, and the keys of fingerprints and hashes
            conditions.append(
                "token_key IN (SELECT arrayJoin({tokens:Array(String)}) UNION ALL "
                "SELECT token_key FROM token_aliases WHERE alias IN {tokens:Array(String)})"
            )
            params["tokens"] = self.tokens
        if self.principal:
            conditions.append("principal_id = {principal:String}")
            params["principal"] = self.principal
        if self.ip:
            low, high = ip_range(self.ip)
            conditions.append(
                "client_ip BETWEEN toIPv6({ip_low:String}) AND toIPv6({ip_high:String})"
            )
            params |= {"ip_low": low, "ip_high": high}
        if self.events:
            conditions.append("event_name IN {events:Array(String)}")
            params["events"] = self.events
        if self.outcome:
            conditions.append("outcome = {outcome:String}")
            params["outcome"] = self.outcome.value
        if self.statuses:
            conditions.append("token_status IN {statuses:Array(String)}")
            params["statuses"] = [status.value for status in self.statuses]
        if self.since:
            conditions.append("event_time >= fromUnixTimestamp64Nano({since:Int64}, 'UTC')")
            params["since"] = int(self.since.timestamp() * 1e9)
        if self.until:
            conditions.append("event_time <= fromUnixTimestamp64Nano({until:Int64}, 'UTC')")
            params["until"] = int(self.until.timestamp() * 1e9)
        return (" AND ".join(conditions) or "1"), params


def ip_range(text: str) -> tuple[str, str]:
    """An address or CIDR as the first and last IPv6 address it covers (IPv4 mapped)."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise InvalidArgument(f"{text!r} is not an IP address or CIDR range", field="ip") from None
    first, last = network.network_address, network.broadcast_address
    if network.version == 4:
        return f"::ffff:{first}", f"::ffff:{last}"
    return str(first), str(last)


def search(
    store: Store,
    event_filter: EventFilter,
    *,
    limit: int,
    offset: int = 0,
    up_to_stamp: int | None = None,
    settings: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Matching events, oldest first, as plain dicts ready for JSON: ``limit`` of them from
    ``offset``, among the events committed by insert ``up_to_stamp`` (all when None)."""
    sql, params = search_query(event_filter, EVENT_COLUMNS, limit, offset, up_to_stamp)
    result = store.query(sql, params, settings=settings)
    return [readable_event(row) for row in result.named_results()]


def search_query(
    event_filter: EventFilter, columns: str, limit: int, offset: int, up_to_stamp: int | None
) -> tuple[str, dict[str, Any]]:
    """The SQL of ``search`` and its parameters, selecting ``columns``."""
    where, params = event_filter.where()
    if up_to_stamp is not None:
        where += " AND ingested_at <= fromUnixTimestamp64Milli({up_to:Int64}, 'UTC')"
        params["up_to"] = up_to_stamp
    params |= {"limit": limit, "offset": offset}
    return SEARCH_SQL.format(columns=columns, where=where), params


def newest_stamp(store: Store) -> int:
    """The stamp (ms) of the newest insert in the store, 0 when it holds nothing."""
    return int(store.query(NEWEST_STAMP_SQL).result_rows[0][0] or 0)


@dataclass(frozen=True)
class Cursor:
    """A place in the stream of committed events: after ``skip`` events (as a tail with the
    same filter saw them) of the insert stamped ``stamp``, and everything before it."""

    stamp: int
    skip: int = 0


@dataclass
class Committed:
    """Events committed after a cursor, in commit order, with the stamp of each: any prefix of
    them can be handed on with the cursor after it."""

    events: list[Any]
    stamps: list[int]
    after: Cursor  # where the read began
    up_to_stamp: int
    complete: bool  # everything committed up to up_to_stamp was read

    def cursor(self, n: int) -> Cursor:
        """The cursor after the first ``n`` events."""
        if n == len(self.events) and self.complete:
            return Cursor(self.up_to_stamp) if self.up_to_stamp >= self.after.stamp else self.after
        if n == 0:
            return self.after
        last = self.stamps[n - 1]
        in_last = n - bisect.bisect_left(self.stamps, last, 0, n)
        return Cursor(last, in_last + (self.after.skip if last == self.after.stamp else 0))


def committed(
    store: Store,
    event_filter: EventFilter,
    after: Cursor,
    up_to_stamp: int,
    *,
    limit: int,
    settings: dict[str, Any] | None = None,
) -> Committed:
    """The events committed after ``after``, by inserts up to ``up_to_stamp``, at most
    ``limit`` of them, in the order they were committed. The rest of a partly seen insert is
    skipped by the store (its first ``skip`` events in that order), not read."""
    columns = f"toUnixTimestamp64Milli(ingested_at) AS stamp, {EVENT_COLUMNS}"
    sql, params = committed_query(event_filter, columns, after, up_to_stamp, limit)
    rows = list(store.query(sql, params, settings=settings).named_results())
    stamps = [row.pop("stamp") for row in rows]
    events = [readable_event(row) for row in rows]
    return Committed(events, stamps, after, up_to_stamp, complete=len(rows) < limit)


def committed_query(
    event_filter: EventFilter, columns: str, after: Cursor, up_to_stamp: int, limit: int
) -> tuple[str, dict[str, Any]]:
    """The SQL of ``committed`` and its parameters, selecting ``columns``."""
    where, params = _committed_where(event_filter, after, up_to_stamp, limit)
    return COMMITTED_SQL.format(columns=columns, where=where), params


def _committed_where(
    event_filter: EventFilter, after: Cursor, up_to_stamp: int, limit: int
) -> tuple[str, dict[str, Any]]:
    where, params = event_filter.where()
    params |= {"after": after.stamp - 1 if after.skip else after.stamp, "up_to": up_to_stamp}
    params |= {"limit": limit, "skip": after.skip}
    return where, params


def committed_stamps(
    store: Store,
    event_filter: EventFilter,
    after: Cursor,
    up_to_stamp: int,
    *,
    limit: int,
    settings: dict[str, Any] | None = None,
) -> list[int]:
    """The stamps of the events ``committed`` reads, in its order, read without them."""
    where, params = _committed_where(event_filter, after, up_to_stamp, limit)
    result = store.query(STAMPS_SQL.format(where=where), params, settings=settings)
    return [row[0] for row in result.result_rows]


def readable_event(event: dict[str, Any]) -> dict[str, Any]:
    """A row of EVENT_COLUMNS as people and JSON read it."""
    event["time"] = format_ns(event["time"])
    event["observed_time"] = format_ns(event["observed_time"])
    event["expires_at"] = format_ms(event["expires_at"])
    event["issued_at"] = format_ms(event["issued_at"])
    event["client_address"] = ip_to_text(event["client_address"])
    for name in ("scopes", "scopes_added", "scopes_removed"):
        event[name] = list(event[name])
    for name in ("attributes", "resource_attributes"):  # one order, wherever it is read
        event[name] = dict(sorted(event[name].items()))
    return {("client_ip" if k == "client_address" else k): v for k, v in event.items()}
