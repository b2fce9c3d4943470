"""The report as a file: one self-contained HTML page (inline CSS and SVG, no script, nothing
fetched), JSON, or CSV (every row of every table); the PDF is printed from the HTML."""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Iterator
from enum import StrEnum
from importlib import resources

import jinja2
import orjson
from markupsafe import escape

from tokenotel.report.model import Chart, Report, Table, Value

#: One colour a source in the chart (dark enough for white gaps, distinct in grey print).
PALETTE = ["#1f5f8b", "#d9822b", "#3a7d44", "#a23b72", "#6b6b6b", "#8c6d1f", "#2a9d8f"]
CHART_W, CHART_H, CHART_PAD = 900, 180, 40


class ReportFormat(StrEnum):
    HTML = "html"
    PDF = "pdf"
    JSON = "json"
    CSV = "csv"


def render_html(report: Report, seal: str) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FunctionLoader(_template),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["cell"] = _cell
    environment.globals["chart"] = chart_svg
    return environment.get_template("report.html.j2").render(
        report=report, header=report.header(), seal=seal
    )


def render_json(report: Report, seal: str) -> str:
    return (
        orjson.dumps(report.as_dict() | {"seal": seal}, option=orjson.OPT_INDENT_2).decode() + "\n"
    )


def render_csv(report: Report, seal: str) -> str:
    """Every figure and every row of every table, one value a line: section, table, row,
    column, value (a spreadsheet pivots it back into the tables). RFC 4180: a value with a
    comma, a quote or a line break is quoted."""
    lines = ["section,table,row,column,value\n"]
    for name, value in _header(report):
        lines.append(f"report,report,0,{_field(name)},{_field(value)}\n")
    for section in report.sections:
        label = _field(f"{section.number}. {section.key}")
        for name, value in section.figures.items():
            lines.append(f"{label},figures,0,{_field(name)},{_field(value)}\n")
        for table in section.tables:
            lines.append(_csv_table(f"{label},{_field(table.name)},", table))
    lines.append(f"report,seal,0,seal,{_field(seal)}\n")
    return "".join(lines)


def _csv_table(head: str, table: Table) -> str:
    """A table's lines. A report's tables hold a few million values: each column's values
    are made text together (None as nothing, a number as Python writes it) and quoted only
    when one of them needs it: less than half the time the csv module takes."""
    if not table.rows:
        return ""
    cells = []
    for name, values in zip(table.columns, zip(*table.rows, strict=True), strict=True):
        texts = list(map(_NOTHING.get, values, map(str, values)))
        if _SPECIAL.search("".join(texts)):
            texts = list(map(_quoted, texts))
        cells.append(map(operator.add, itertools.repeat(_field(name) + ","), texts))
    lines = []
    for number, row in enumerate(zip(*cells, strict=True), 1):
        start = f"{head}{number},"
        lines.append(start + f"\n{start}".join(row) + "\n")
    return "".join(lines)


#: What makes a CSV value need quotes.
_SPECIAL = re.compile(r'[",\r\n]')


#: None is written as nothing; any other value as str() writes it.
_NOTHING = {None: ""}


def _field(value: Value) -> str:
    """A value as CSV writes it: None as nothing, a number as Python writes it."""
    return _quoted("" if value is None else str(value))


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if _SPECIAL.search(text) else text


def _header(report: Report) -> Iterator[tuple[str, Value]]:
    header = report.header()
    for name in ("period", "since", "until", "generated_at", "trail", "checkpoint"):
        yield name, header[name]
    for name, value in header["policy"].items():
        yield f"policy.{name}", " ".join(value) if isinstance(value, list) else value


def _cell(value: Value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _template(name: str) -> str:
    return resources.files("tokenotel.report").joinpath("templates", name).read_text("utf-8")


def chart_svg(chart: Chart) -> str:
    """Stacked bars, a bar a day, with a legend: inline SVG (the template marks it safe)."""
    days = len(chart.days)
    if not days:
        return ""
    totals = [sum(s[i] for s in chart.series.values()) for i in range(days)]
    top = max(totals) or 1
    width = (CHART_W - 2 * CHART_PAD) / days
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {CHART_W} {CHART_H + 40}" '
        f'role="img" aria-label="{escape(chart.title)}">',
        f'<line x1="{CHART_PAD}" y1="{CHART_H}" x2="{CHART_W - CHART_PAD}" y2="{CHART_H}" '
        'stroke="#444"/>',
        f'<text x="{CHART_PAD - 4}" y="{CHART_PAD - 24}" text-anchor="end" '
        f'font-size="11">{top:,}</text>',
    ]
    scale = (CHART_H - CHART_PAD + 20) / top
    base = [float(CHART_H)] * days
    for colour, (source, counts) in zip(
        _colours(len(chart.series)), chart.series.items(), strict=True
    ):
        for i, n in enumerate(counts):
            if not n:
                continue
            h = n * scale
            base[i] -= h
            parts.append(
                f'<rect x="{CHART_PAD + i * width:.1f}" y="{base[i]:.1f}" '
                f'width="{max(width - 1, 0.5):.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(chart.days[i])} {escape(source)}: {n:,}</title>"
                "</rect>"
            )
    for label_at in sorted({0, days - 1}):
        parts.append(
            f'<text x="{CHART_PAD + label_at * width:.1f}" y="{CHART_H + 14}" '
            f'font-size="11">{escape(chart.days[label_at])}</text>'
        )
    x = CHART_PAD
    for colour, source in zip(_colours(len(chart.series)), chart.series, strict=True):
        parts.append(
            f'<rect x="{x}" y="{CHART_H + 24}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{CHART_H + 33}" font-size="11">'
            f"{escape(source or '(none)')}</text>"
        )
        x += 24 + 7 * len(source or "(none)")
    parts.append("</svg>")
    return "".join(parts)


def _colours(n: int) -> list[str]:
    return [PALETTE[i % len(PALETTE)] for i in range(n)]
