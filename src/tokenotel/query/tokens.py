"""The token inventory: the latest state of every token, filtered and a page at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from tokenotel.errors import InvalidArgument
from tokenotel.model import TokenStatus
from tokenotel.query.readable import format_ms, format_ns, ip_to_text
from tokenotel.store.client import Store

#: What the inventory holds of a token, in output order (docs/schema.md, token_inventory).
TOKEN_COLUMNS = """
    token_key, token_id, token_type, token_name, owner, tenant, scopes,
    toUnixTimestamp64Milli(expires_at) AS expires_at, status, lifecycle_status,
    toUnixTimestamp64Nano(lifecycle_at) AS lifecycle_at,
    toUnixTimestamp64Nano(created_at) AS created_at,
    toUnixTimestamp64Nano(last_used_at) AS last_used_at,
    toString(last_ip) AS last_ip, use_count, failure_count,
    toUnixTimestamp64Nano(first_seen) AS first_seen,
    toUnixTimestamp64Nano(last_seen) AS last_seen
"""
TOKENS_SQL = """
SELECT {columns}
FROM token_inventory
WHERE token_key > {{after_key:String}} AND token_key <= {{last_key:String}} AND {where}
ORDER BY token_key
LIMIT {{limit:UInt64}}
"""
#: The next keys of the inventory in key order, read from the key column alone: a page sums up
#: the state of those tokens only, not of every token.
NEXT_KEYS_SQL = """
SELECT DISTINCT token_key FROM token_inventory_state
WHERE token_key > {after_key:String}
ORDER BY token_key
LIMIT {keys:UInt64}
"""
#: The most keys one step of a filtered page sums up (the first step takes the page's size).
MOST_KEYS_A_STEP = 50_000
#: Times the inventory keeps to the nanosecond (the others, expires_at, to the millisecond).
_NS_TIMES = ("lifecycle_at", "created_at", "last_used_at", "first_seen", "last_seen")
T = TypeVar("T")


@dataclass
class TokenFilter:
    """Every condition is optional; those given must all hold."""

    status: TokenStatus | None = None
    principal: str | None = None
    scope: str | None = None
    expires_within: timedelta | None = None
    unused_for: timedelta | None = None
    keys: list[str] | None = None  # token keys (ids, else fingerprints)

    def where(self) -> tuple[str, dict[str, Any]]:
        conditions: list[str] = []
        params: dict[str, Any] = {}
        if self.status is not None:
            conditions.append("status = {status:String}")
            params["status"] = self.status.value
        if self.principal:
            conditions.append("owner = {principal:String}")
            params["principal"] = self.principal
        if self.scope:
            conditions.append("has(scopes, {scope:String})")
            params["scope"] = self.scope
        if self.expires_within is not None:
            _not_negative(self.expires_within, "expires_within")
            conditions.append(
                "expires_at IS NOT NULL AND expires_at <= now64(3) + "
                "toIntervalMillisecond({expires_within:Int64})"
            )
            params["expires_within"] = int(self.expires_within.total_seconds() * 1000)
        if self.unused_for is not None:
            _not_negative(self.unused_for, "unused_for")
            conditions.append(
                "(last_used_at IS NULL OR last_used_at <= now64(9) - "
                "toIntervalMillisecond({unused_for:Int64}))"
            )
            params["unused_for"] = int(self.unused_for.total_seconds() * 1000)
        if self.keys is not None:
            conditions.append("token_key IN {keys:Array(String)}")
            params["keys"] = self.keys
        return (" AND ".join(conditions) or "1"), params


def _not_negative(duration: timedelta, name: str) -> None:
    if duration < timedelta(0):
        raise InvalidArgument(f"{name} must not be negative", field=name)


def list_tokens(
    store: Store,
    token_filter: TokenFilter,
    *,
    limit: int,
    after_key: str = "",
    settings: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The tokens matching ``token_filter``, ordered by key, after ``after_key``, as plain
    dicts ready for JSON."""

    def read(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(store.query(sql, params, settings=settings).named_results())

    found = read_tokens(
        store, token_filter, TOKEN_COLUMNS, read,
        limit=limit, after_key=after_key, settings=settings,
    )  # fmt: skip
    return [readable_token(token) for token in found]


def read_tokens(
    store: Store,
    token_filter: TokenFilter,
    columns: str,
    read: Callable[[str, dict[str, Any]], list[T]],
    *,
    limit: int,
    after_key: str = "",
    settings: dict[str, Any] | None = None,
) -> list[T]:
    """What ``read`` makes of the inventory's ``columns`` of the tokens matching
    ``token_filter``, ordered by key, after ``after_key``. Read a range of keys at a time: the
    page's size first, then more (up to MOST_KEYS_A_STEP) while a filter leaves the page short."""
    where, params = token_filter.where()
    sql = TOKENS_SQL.format(columns=columns, where=where)
    if token_filter.keys is not None:  # named tokens: their state alone, in one read
        if not token_filter.keys:
            return []
        step = params | {"after_key": after_key, "last_key": max(token_filter.keys), "limit": limit}
        return read(sql, step)
    found: list[T] = []
    keys = limit
    while len(found) < limit:
        next_keys = store.query(
            NEXT_KEYS_SQL, {"after_key": after_key, "keys": keys}, settings=settings
        ).result_rows
        if not next_keys:
            break
        last_key = next_keys[-1][0]
        step = params | {"after_key": after_key, "last_key": last_key, "limit": limit - len(found)}
        found += read(sql, step)
        if len(next_keys) < keys:
            break
        after_key, keys = last_key, min(keys * 4, MOST_KEYS_A_STEP)
    return found


def readable_token(token: dict[str, Any]) -> dict[str, Any]:
    """A row of TOKEN_COLUMNS as people and JSON read it."""
    token["scopes"] = list(token["scopes"])
    token["expires_at"] = format_ms(token["expires_at"])
    for name in _NS_TIMES:
        token[name] = None if token[name] is None else format_ns(token[name])
    token["last_ip"] = ip_to_text(token["last_ip"])
    return token
