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


def ip_to_text(packed: bytes | str) -> str:
    """A stored IPv6 (16 bytes or ClickHouse text) as people write it: IPv4 for mapped
    addresses, empty for ``::`` (no address)."""
    address = ipaddress.IPv6Address(packed)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if int(address) == 0:
        return ""
    return str(address)
