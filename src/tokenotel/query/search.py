"""Finds token events by token, principal, IP or range, event type, outcome and time window."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tokenotel.model import Outcome
from tokenotel.query.readable import format_ms, format_ns, ip_to_text
from tokenotel.store.client import EVENTS_TABLE, Store

#: What a search returns for each event, in output order. Times come back as integers so
#: no precision is lost; IPs as ClickHouse text.
SELECT_EVENTS = f"""
SELECT
    toUnixTimestamp64Nano(event_time) AS time,
    toUnixTimestamp64Nano(observed_time) AS observed_time,
    event_name, outcome, token_status, failure_reason,
    token_id, token_fingerprint, token_type, token_name, token_hint, previous_token_id,
    principal_id, principal_type, actor_id, tenant,
    toString(client_ip) AS client_address, user_agent, country, asn,
    scopes, scopes_added, scopes_removed,
    toUnixTimestamp64Milli(expires_at) AS expires_at,
    toUnixTimestamp64Milli(issued_at) AS issued_at,
    http_method, http_route, url_path, http_status, request_id,
    reason, source, service_name, environment, scope_name,
    trace_id, span_id, severity_text, severity_number, body,
    attributes, resource_attributes
FROM {EVENTS_TABLE}
WHERE {{where}}
ORDER BY event_time, token_key
LIMIT {{{{limit:UInt64}}}}
"""


@dataclass
class EventFilter:
    """Every condition is optional; those given must all hold."""

    tokens: list[str] = field(default_factory=list)
    principal: str | None = None
    ip: str | None = None
    events: list[str] = field(default_factory=list)
    outcome: Outcome | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 1000

    def where(self) -> tuple[str, dict[str, Any]]:
        """The WHERE clause and its parameters (server-side bound, never interpolated)."""
        conditions: list[str] = []
        params: dict[str, Any] = {"limit": self.limit}
        if self.tokens:
            conditions.append(
                "token_key IN (SELECT arrayJoin({tokens:Array(String)}) UNION ALL "
                "SELECT DISTINCT token_key FROM token_events "
                "WHERE token_fingerprint IN {tokens:Array(String)})"
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
        raise ValueError(f"{text!r} is not an IP address or CIDR range") from None
    first, last = network.network_address, network.broadcast_address
    if network.version == 4:
        return f"::ffff:{first}", f"::ffff:{last}"
    return str(first), str(last)


def search(store: Store, event_filter: EventFilter) -> list[dict[str, Any]]:
    """Matching events, oldest first, as plain dicts ready for JSON."""
    where, params = event_filter.where()
    result = store.query(SELECT_EVENTS.format(where=where), params)
    return [
        _readable(dict(zip(result.column_names, row, strict=True))) for row in result.result_rows
    ]


def _readable(event: dict[str, Any]) -> dict[str, Any]:
    event["time"] = format_ns(event["time"])
    event["observed_time"] = format_ns(event["observed_time"])
    event["expires_at"] = format_ms(event["expires_at"])
    event["issued_at"] = format_ms(event["issued_at"])
    event["client_address"] = ip_to_text(event["client_address"])
    for name in ("scopes", "scopes_added", "scopes_removed"):
        event[name] = list(event[name])
    return {("client_ip" if k == "client_address" else k): v for k, v in event.items()}
