"""The questions a first look asks of a time window: what happened, which tokens, which
failures, which misuse."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tokenotel.model import DEAD_STATUSES, TokenStatus
from tokenotel.query.readable import format_ns, ip_to_text
from tokenotel.store.client import EVENTS_TABLE, Store

#: Every query reads the events of the window (``{{window}}``: since and until, in ns).
WINDOW = (
    "event_time >= fromUnixTimestamp64Nano({since:Int64}, 'UTC') "
    "AND event_time <= fromUnixTimestamp64Nano({until:Int64}, 'UTC')"
)

EVENTS_BY_TYPE = f"""
SELECT event_name, outcome, count() AS events
FROM {EVENTS_TABLE}
WHERE {WINDOW}
GROUP BY event_name, outcome
ORDER BY events DESC, event_name, outcome
"""

TOP_TOKENS = f"""
SELECT token_key AS token, argMaxIf(principal_id, event_time, principal_id != '') AS principal,
       countIf(event_name = 'token.used') AS uses,
       countIf(outcome = 'failure') AS failures,
       uniqExactIf(client_ip, client_ip != toIPv6('::')) AS client_ips
FROM {EVENTS_TABLE}
WHERE {WINDOW}
GROUP BY token
ORDER BY uses DESC, failures DESC, token
LIMIT {{top:UInt32}}
"""

TOP_FAILING_IPS = f"""
SELECT toString(client_ip) AS address, count() AS failures, uniqExact(token_key) AS tokens
FROM {EVENTS_TABLE}
WHERE {WINDOW} AND outcome = 'failure' AND client_ip != toIPv6('::')
GROUP BY client_ip
ORDER BY failures DESC, tokens DESC, address
LIMIT {{top:UInt32}}
"""

#: Failures of one token from one IP; a burst is one whose busiest 5 minutes hold
#: ``threshold`` failures or more.
FAILURE_BURSTS = f"""
SELECT token, toString(client_ip) AS client_ip,
       toUnixTimestamp64Nano(min(event_time)) AS first,
       toUnixTimestamp64Nano(max(event_time)) AS last,
       count() AS failures, max(in_5_minutes) AS peak_5m,
       arrayStringConcat(arraySort(groupUniqArray(failure_reason)), ', ') AS reasons
FROM (
    SELECT token_key AS token, client_ip, event_time, failure_reason,
           count() OVER (PARTITION BY token, client_ip ORDER BY toUnixTimestamp(event_time)
                         RANGE BETWEEN 300 PRECEDING AND CURRENT ROW) AS in_5_minutes
    FROM {EVENTS_TABLE}
    WHERE {WINDOW} AND outcome = 'failure'
)
GROUP BY token, client_ip
HAVING peak_5m >= {{threshold:UInt32}}
ORDER BY peak_5m DESC, token, client_ip
"""

#: Uses of a token whose status was one of ``statuses`` when they arrived (marked on the row at
#: ingest): a use after revocation or expiry.
USES_WITH_STATUS = f"""
SELECT token_key AS token, token_status AS status,
       toUnixTimestamp64Nano(event_time) AS used_at, toString(client_ip) AS client_ip,
       event_name, outcome
FROM {EVENTS_TABLE}
WHERE {WINDOW} AND token_status IN {{statuses:Array(String)}}
  AND event_name IN ('token.used', 'token.auth_failed', 'token.refreshed')
ORDER BY event_time, token
"""
_EXPIRED = [TokenStatus.EXPIRED.value]
_REVOKED = sorted(status.value for status in DEAD_STATUSES - {TokenStatus.EXPIRED})
#: From 1900 to the last nanosecond DateTime64(9) holds: every event.
_EVER = (-2_208_988_800_000_000_000, 2**63 - 1)


@dataclass
class Summary:
    by_event: list[dict[str, Any]]
    top_tokens: list[dict[str, Any]]
    top_failing_ips: list[dict[str, Any]]
    failure_bursts: list[dict[str, Any]]
    uses_after_revocation: list[dict[str, Any]]
    uses_after_expiry: list[dict[str, Any]]


def summarise(
    store: Store,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    top: int = 5,
    burst_threshold: int = 10,
    settings: dict[str, Any] | None = None,
) -> Summary:
    """What happened between ``since`` and ``until`` (the whole store when not given)."""
    window = {
        "since": int(since.timestamp() * 1e9) if since else _EVER[0],
        "until": int(until.timestamp() * 1e9) if until else _EVER[1],
    }

    def rows(sql: str, **params: Any) -> list[dict[str, Any]]:
        return _rows(store, sql, window | params, settings)

    return Summary(
        by_event=rows(EVENTS_BY_TYPE),
        top_tokens=rows(TOP_TOKENS, top=top),
        top_failing_ips=rows(TOP_FAILING_IPS, top=top),
        failure_bursts=rows(FAILURE_BURSTS, threshold=burst_threshold),
        uses_after_revocation=rows(USES_WITH_STATUS, statuses=_REVOKED),
        uses_after_expiry=rows(USES_WITH_STATUS, statuses=_EXPIRED),
    )


def _rows(
    store: Store, sql: str, params: dict[str, Any], settings: dict[str, Any] | None
) -> list[dict[str, Any]]:
    result = store.query(sql, params, settings=settings)
    # (An address read where WHERE also reads client_ip has an alias of its own.)
    names = ["client_ip" if name == "address" else name for name in result.column_names]
    rows = [dict(zip(names, row, strict=True)) for row in result.result_rows]
    for row in rows:
        for key in ("first", "last", "used_at"):
            if key in row:
                row[key] = format_ns(row[key])
        if "client_ip" in row:
            row["client_ip"] = ip_to_text(row["client_ip"])
    return rows
