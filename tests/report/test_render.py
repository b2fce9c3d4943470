"""The CSV form of a report (docs/report.md, "The file and its seal"): read back by a CSV
reader, it gives every value of every table, whatever the value holds."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from tokenotel.report.model import Policy, Report, Section, Table
from tokenotel.report.render import render_csv

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
