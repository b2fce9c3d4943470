"""Conversions of OTLP AnyValues and attribute text into column values."""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import socket
from datetime import UTC, datetime
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def to_python(value: AnyValue) -> Any:
    """An AnyValue as plain Python: str, bool, int, float, bytes, list, dict or None."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return value.double_value
    if kind == "array_value":
        return [to_python(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: to_python(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value
    return None


def _json_default(obj: Any) -> str:
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode("ascii")
    raise TypeError(type(obj).__name__)


def to_text(value: Any) -> str:
    """A Python attribute value as the text kept in a map column or a string column."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def to_string_list(value: Any) -> list[str]:
    """Scopes: an array of strings, or one string separated by spaces or commas (OAuth style)."""
    if isinstance(value, list):
        return [to_text(v) for v in value if v is not None and v != ""]
    text = to_text(value)
    return [s for s in text.replace(",", " ").split() if s]


#: What a DateTime64(3) column holds: 1900-01-01 to 2299-12-31 (UTC).
MIN_EPOCH_MS, MAX_EPOCH_MS = -2_208_988_800_000, 10_413_791_999_999


def to_epoch_ms(value: Any) -> int | None:
    """A timestamp as epoch milliseconds: ISO 8601 text, or epoch s / ms / us / ns by magnitude.

    None when it is not a time, or one outside what the store's time columns hold.
    """
    ms = _epoch_ms(value)
    return ms if ms is not None and MIN_EPOCH_MS <= ms <= MAX_EPOCH_MS else None


def _epoch_ms(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            try:  # isdigit() also admits digits int() refuses (superscripts), and huge numbers
                return _epoch_ms(int(text))
            except ValueError:
                return None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        if parsed.tzinfo is None:  # a time without zone is taken as UTC
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return int(value * 1000) if abs(value) < 1e11 else _epoch_ms(int(value))
    if isinstance(value, int):
        magnitude = abs(value)
        if magnitude < 10**11:
            return value * 1000
        if magnitude < 10**14:
            return value
        if magnitude < 10**17:
            return value // 1000
        return value // 1_000_000
    return None


def to_ip(value: Any) -> bytes | None:
    """An IPv4 or IPv6 address as 16 bytes (IPv4 mapped), or None when it is not an address."""
    if not isinstance(value, str):
        return None
    try:  # inet_pton is strict and far faster than the ipaddress module
        return _V4_MAPPED_PREFIX + socket.inet_pton(socket.AF_INET, value)
    except (OSError, ValueError):  # ValueError: a NUL character in the text
        pass
    text = value.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 4:
        return _V4_MAPPED_PREFIX + address.packed
    return address.packed
