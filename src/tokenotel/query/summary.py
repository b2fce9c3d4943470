"""The questions a first look asks: what happened, which tokens, which failures, which misuse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenotel.model import DEAD_STATUSES, TokenStatus
from tokenotel.query.readable import format_ns, ip_to_text
from tokenotel.store.client import EVENTS_TABLE, Store

EVENTS_BY_TYPE = f"""
SELECT event_name, outcome, count() AS events
FROM {EVENTS_TABLE}
GROUP BY event_name, outcome
ORDER BY events DESC, event_name, outcome
"""

TOP_TOKENS = f"""
SELECT token_key AS token, any(principal_id) AS principal,
       countIf(event_name = 'token.used') AS uses,
       countIf(outcome = 'failure') AS failures,
       uniqExact(client_ip) AS client_ips
FROM {EVENTS_TABLE}
GROUP BY token
ORDER BY uses DESC, failures DESC, token
LIMIT {{limit:UInt32}}
"""

#: Failures of one token from one IP; a burst is one whose busiest 5 minutes hold
#: ``threshold`` failures or more.
FAILURE_BURSTS = f"""
SELECT token, toString(client_ip) AS client_ip,
       toUnixTimestamp64Nano(min(event_time)) AS first,
       toUnixTimestamp64Nano(max(event_time)) AS last,
       count() AS failures, max(in_5_minutes) AS peak_5m,
       arrayStringConcat(groupUniqArray(failure_reason), ', ') AS reasons
FROM (
    SELECT token_key AS token, client_ip, event_time, failure_reason,
           count() OVER (PARTITION BY token, client_ip ORDER BY toUnixTimestamp(event_time)
                         RANGE BETWEEN 300 PRECEDING AND CURRENT ROW) AS in_5_minutes
    FROM {EVENTS_TABLE}
    WHERE outcome = 'failure'
)
GROUP BY token, client_ip
HAVING peak_5m >= {{threshold:UInt32}}
ORDER BY peak_5m DESC
"""

#: Uses of a token whose status was one of ``statuses`` when they arrived (marked on the row at
#: ingest): a use after revocation or expiry.
USES_WITH_STATUS = f"""
SELECT token_key AS token, token_status AS status,
       toUnixTimestamp64Nano(event_time) AS used_at, toString(client_ip) AS client_ip,
       event_name, outcome
FROM {EVENTS_TABLE}
WHERE token_status IN {{statuses:Array(String)}}
  AND event_name IN ('token.used', 'token.auth_failed', 'token.refreshed')
ORDER BY event_time
"""
_EXPIRED = [TokenStatus.EXPIRED.value]
_REVOKED = sorted(status.value for status in DEAD_STATUSES - {TokenStatus.EXPIRED})


@dataclass
class Summary:
    by_type: list[dict[str, Any]]
    top_tokens: list[dict[str, Any]]
    bursts: list[dict[str, Any]]
    after_revocation: list[dict[str, Any]]
    after_expiry: list[dict[str, Any]]


def summarise(store: Store, top: int = 5, burst_threshold: int = 10) -> Summary:
    return Summary(
        by_type=_rows(store, EVENTS_BY_TYPE),
        top_tokens=_rows(store, TOP_TOKENS, {"limit": top}),
        bursts=_rows(store, FAILURE_BURSTS, {"threshold": burst_threshold}),
        after_revocation=_rows(store, USES_WITH_STATUS, {"statuses": _REVOKED}),
        after_expiry=_rows(store, USES_WITH_STATUS, {"statuses": _EXPIRED}),
    )


def _rows(store: Store, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    result = store.query(sql, params)
    rows = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    for row in rows:
        for key in ("first", "last", "used_at"):
            if key in row:
                row[key] = format_ns(row[key])
        if "client_ip" in row:
            row["client_ip"] = ip_to_text(row["client_ip"])
    return rows
