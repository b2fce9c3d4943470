"""One token's story: what the inventory knows of it, its events, its lifecycle, the scopes it
carried over time and the addresses it was used from."""

from __future__ import annotations

from typing import Any

from tokenotel.errors import NotFound
from tokenotel.query.readable import format_ns, ip_to_text
from tokenotel.query.search import EventFilter, search
from tokenotel.query.tokens import TokenFilter, list_tokens
from tokenotel.store.client import EVENTS_TABLE, Store

#: The key (its id, else its fingerprint) of the token named by an id, a fingerprint or a
#: source's hash (token_aliases), when the store holds an event of it.
KEY_SQL = f"""
SELECT token_key FROM {EVENTS_TABLE}
WHERE token_key IN (
    SELECT {{token:String}} UNION ALL
    SELECT token_key FROM token_aliases WHERE alias = {{token:String}}
)
LIMIT 1
"""
#: Events that changed what the token is. A rotation names the old token as previous id.
LIFECYCLE_SQL = f"""
SELECT toUnixTimestamp64Nano(event_time) AS time, event_name, actor_id, reason,
       previous_token_id, token_id
FROM {EVENTS_TABLE}
WHERE (token_key = {{key:String}} OR previous_token_id = {{key:String}})
  AND event_name IN {{events:Array(String)}}
ORDER BY event_time
"""
LIFECYCLE_EVENTS = [
    "token.created",
    "token.updated",
    "token.rotated",
    "token.enabled",
    "token.disabled",
    "token.revoked",
    "token.expired",
    "token.reuse_detected",
    "token.leak_detected",
    "token.owner_removed",
]
#: Each time the scopes an event carried differ from the ones before.
SCOPES_SQL = f"""
SELECT toUnixTimestamp64Nano(event_time) AS since, scopes
FROM (
    SELECT event_time, CAST(scopes, 'Array(String)') AS scopes,
           lagInFrame(CAST(scopes, 'Array(String)')) OVER (
               ORDER BY event_time ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS before
    FROM {EVENTS_TABLE}
    WHERE token_key = {{key:String}} AND notEmpty(scopes)
)
WHERE scopes != before
ORDER BY since
"""
ADDRESSES_SQL = f"""
SELECT toString(client_ip) AS address,
       toUnixTimestamp64Nano(min(event_time)) AS first_seen,
       toUnixTimestamp64Nano(max(event_time)) AS last_seen,
       count() AS events, countIf(outcome = 'failure') AS failures
FROM {EVENTS_TABLE}
WHERE token_key = {{key:String}} AND client_ip != toIPv6('::')
GROUP BY client_ip
ORDER BY first_seen, address
"""


def timeline(
    store: Store, token: str, *, limit: int, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The timeline of the token with id or fingerprint ``token`` (its first ``limit``
    events); raises NotFound when the store has no event of it."""
    found = store.query(KEY_SQL, {"token": token}, settings=settings).result_rows
    if not found:
        raise NotFound(f"no token {token!r}: give a token id or a fingerprint")
    key = found[0][0]
    (inventory,) = list_tokens(store, TokenFilter(keys=[key]), limit=1, settings=settings)
    events = search(store, EventFilter(tokens=[key]), limit=limit, settings=settings)
    params = {"key": key, "events": LIFECYCLE_EVENTS}
    lifecycle = _rows(store, LIFECYCLE_SQL, params, settings)
    for change in lifecycle:
        change["time"] = format_ns(change["time"])
    scopes = _rows(store, SCOPES_SQL, {"key": key}, settings)
    for scope_set in scopes:
        scope_set["since"] = format_ns(scope_set["since"])
        scope_set["scopes"] = list(scope_set["scopes"])
    addresses = _rows(store, ADDRESSES_SQL, {"key": key}, settings)
    addresses = [{"client_ip": ip_to_text(a.pop("address")), **a} for a in addresses]
    for address in addresses:
        address["first_seen"] = format_ns(address["first_seen"])
        address["last_seen"] = format_ns(address["last_seen"])
    return {
        "token": inventory,
        "events": events,
        "lifecycle": lifecycle,
        "scopes": scopes,
        "addresses": addresses,
    }


def _rows(
    store: Store, sql: str, params: dict[str, Any], settings: dict[str, Any] | None
) -> list[dict[str, Any]]:
    result = store.query(sql, params, settings=settings)
    return list(result.named_results())
