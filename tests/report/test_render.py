"""The CSV form of a report (docs/report.md, "The file and its seal"): read back by a CSV
reader, it gives every value of every table, whatever the value holds; and a large table's
rows, made when read."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from tokenotel.report.model import Policy, Report, Rows, Section, Table, Value
from tokenotel.report.render import render_csv, render_html, render_json

AWKWARD = ["a, b", 'said "no"', "two\nlines", "carriage\rreturn", "", "plain", "ünï"]


def test_every_value_reads_back_from_the_csv_as_it_was_written() -> None:
    rows: list[list[str | int | float | None]] = [
        [text, n, n / 4, None] for n, text in enumerate(AWKWARD)
    ]
    section = Section(2, "inventory", "Inventory", [], figures={"tokens, all": 7, "none": None})
    section.tables = [
        Table("odd", "Odd values", ["text", "count", "share", 'missing, or "not"'], rows),
        Table("empty", "No rows", ["a"], []),
    ]
    moment = datetime(2026, 10, 1, tzinfo=UTC)
    report = Report("2026-Q3", moment, moment, moment, "trail", Policy(), None, [section])

    lines = list(csv.reader(io.StringIO(render_csv(report, "the seal"), newline="")))

    assert lines[0] == ["section", "table", "row", "column", "value"]
    assert lines[-1] == ["report", "seal", "0", "seal", "the seal"]
    figures = [line[3:] for line in lines if line[1] == "figures"]
    assert figures == [["tokens, all", "7"], ["none", ""]]
    cells = [line[2:] for line in lines if line[1] == "odd"]
    assert cells == [
        [str(number), column, "" if value is None else str(value)]
        for number, row in enumerate(rows, 1)
        for column, value in zip(section.tables[0].columns, row, strict=True)
    ]
    assert not [line for line in lines if line[1] == "empty"]


def test_the_html_makes_only_the_rows_it_shows_and_the_csv_and_json_hold_every_row() -> None:
    made: list[int] = []

    def row(n: int) -> list[Value]:
        made.append(n)
        return [f"token-{n:04d}", n]

    section = Section(2, "inventory", "Inventory", [])
    rows = Rows(range(1000), row)
    section.tables = [Table("many", "Many rows", ["token", "n"], rows, shown=20)]
    moment = datetime(2026, 10, 1, tzinfo=UTC)
    report = Report("2026-Q3", moment, moment, moment, "trail", Policy(), None, [section])

    html = render_html(report, "the seal")
    assert sorted(made) == list(range(20))
    assert "token-0019" in html and "token-0020" not in html
    assert "The first 20 of 1,000 rows" in html

    document = json.loads(render_json(report, "the seal"))
    assert document["sections"][0]["tables"][0]["rows"] == [
        [f"token-{n:04d}", n] for n in range(1000)
    ]
    lines = list(csv.reader(io.StringIO(render_csv(report, "the seal"), newline="")))
    assert [line[4] for line in lines if line[1] == "many" and line[3] == "n"] == [
        str(n) for n in range(1000)
    ]
    assert len(made) == 20 + 1000  # the rows are made once for every format that reads all
    assert rows == [[f"token-{n:04d}", n] for n in range(1000)]
    assert rows[999] == ["token-0999", 999] and rows[-2:] == [
        ["token-0998", 998],
        ["token-0999", 999],
    ]
