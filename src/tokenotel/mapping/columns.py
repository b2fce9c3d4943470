"""Mapped rows as Arrow columns: the hand-off from mapping to the store (columns, not rows)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from tokenotel.model import ROW_COLUMNS

_TEXT = pa.string()
_TEXT_LIST = pa.list_(pa.string())
_TEXT_MAP = pa.map_(pa.string(), pa.string())

#: Arrow type of each mapped column, matching the ClickHouse type in the migrations.
ARROW_TYPES: dict[str, pa.DataType] = {name: _TEXT for name in ROW_COLUMNS} | {
    "event_time": pa.timestamp("ns", tz="UTC"),
    "observed_delay_ns": pa.int64(),
    "event_id": pa.uint64(),
    "client_ip": pa.binary(16),
    "asn": pa.uint32(),
    "scopes": _TEXT_LIST,
    "scopes_added": _TEXT_LIST,
    "scopes_removed": _TEXT_LIST,
    "expires_at": pa.timestamp("ms", tz="UTC"),
    "issued_at": pa.timestamp("ms", tz="UTC"),
    "http_status": pa.uint16(),
    "severity_number": pa.uint8(),
    "attributes": _TEXT_MAP,
    "resource_attributes": _TEXT_MAP,
}
_SCHEMA = pa.schema([(name, ARROW_TYPES[name]) for name in ROW_COLUMNS])


def rows_to_arrow(rows: list[list[Any]]) -> pa.Table:
    """Transposes mapper rows into one Arrow table with the store's column types."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in ROW_COLUMNS]
    arrays = [_array(col, field.type) for col, field in zip(columns, _SCHEMA, strict=True)]
    return pa.Table.from_arrays(arrays, schema=_SCHEMA)


def _array(values: tuple[Any, ...], type_: pa.DataType) -> pa.Array:
    """Many text columns hold one value for a whole request (service, scope, severity, or
    empty): those are one value repeated, without converting each."""
    if values and type(values[0]) is str and values.count(values[0]) == len(values):
        return pa.repeat(pa.scalar(values[0], type_), len(values))
    return pa.array(values, type=type_)
