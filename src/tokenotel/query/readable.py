"""Stored values as people read them: times in RFC 3339 UTC, addresses as they are written."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime


def format_ns(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 UTC with all nine digits."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{fraction:09d}Z"


def format_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    seconds, fraction = divmod(ms, 1000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{fraction:03d}Z"


#: IP_TEXT_SQL.format(column): ip_to_text in ClickHouse, for a column of IPv6.
IP_TEXT_SQL = (
    "multiIf({0} = toIPv6('::'), '', startsWith(toString({0}), '::ffff:') "
    "AND position(toString({0}), '.') > 0, substring(toString({0}), 8), toString({0}))"
)


def ip_to_text(packed: bytes | str) -> str:
    """A stored IPv6 (16 bytes or ClickHouse text) as people write it: IPv4 for mapped
    addresses, empty for ``::`` (no address), else as ClickHouse writes it (which writes the
    old IPv4-compatible addresses, ::a.b.c.d, with the IPv4 part dotted)."""
    address = ipaddress.IPv6Address(packed)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    number = int(address)
    if number == 0:
        return ""
    if number >> 32 == 0 and number >> 16 != 0:
        return f"::{ipaddress.IPv4Address(number)}"
    return str(address)
