"""Mapped rows become one Arrow table with the store's column types."""

from __future__ import annotations

from otlp_builders import export_request, log_record
from tokenotel.mapping.columns import rows_to_arrow
from tokenotel.mapping.mapper import Mapper
from tokenotel.model import COLUMN_BY_NAME, ROW_COLUMNS


def test_columns_keep_every_value_whether_repeated_or_not() -> None:
    records = [
        log_record("token.used", {"token.id": f"t{i % 2}", "url.path": "/same"}) for i in range(5)
    ]
    rows = Mapper(lambda secret: "fp").map(export_request(*records), 1).rows
    table = rows_to_arrow(rows)
    assert table.schema.names == list(ROW_COLUMNS)
    assert [field.type for field in table.schema] == [
        COLUMN_BY_NAME[n].arrow_type for n in ROW_COLUMNS
    ]
    assert table["token_id"].to_pylist() == ["t0", "t1", "t0", "t1", "t0"]
    assert table["url_path"].to_pylist() == ["/same"] * 5
    assert table["token_name"].to_pylist() == [""] * 5


def test_no_rows_make_an_empty_table_of_the_same_shape() -> None:
    table = rows_to_arrow([])
    assert table.num_rows == 0
    assert table.schema.names == list(ROW_COLUMNS)
