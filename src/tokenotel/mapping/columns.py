"""Mapped rows as Arrow columns: the hand-off from mapping to the store (columns, not rows)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from tokenotel.model import COLUMN_BY_NAME, ROW_COLUMNS

_SCHEMA = pa.schema([(name, COLUMN_BY_NAME[name].arrow_type) for name in ROW_COLUMNS])


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
