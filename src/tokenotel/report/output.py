"""A report as the bytes of its file, sealed (docs/report.md), made from a trail: a stopped
data directory, a ClickHouse server, or the store a running service holds."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tokenotel.integrity.signing import SigningKey
from tokenotel.report.build import Integrity, Progress, build_report, collector_paused
from tokenotel.report.model import Policy, Report
from tokenotel.report.pdf import html_to_pdf
from tokenotel.report.render import ReportFormat, render_csv, render_html, render_json
from tokenotel.report.seal import PLACEHOLDER, append_placeholder, seal
from tokenotel.store.client import Store


@dataclass(frozen=True)
class Trail:
    """What a report is made from: the store, how its integrity is checked, the retention it
    is kept under, and the key that seals the report (None: the seal is unsigned)."""

    store: Store
    name: str
    integrity: Integrity
    retention_days: int | None
    key: SigningKey | None

    def report(
        self,
        since: datetime,
        until: datetime,
        policy: Policy,
        form: ReportFormat,
        progress: Progress | None = None,
    ) -> bytes:
        with collector_paused():  # one pause for the build and the file written from it
            report = build_report(
                self.store,
                since,
                until,
                policy,
                trail=self.name,
                integrity=self.integrity,
                retention_days=self.retention_days,
                progress=progress,
            )
            return report_bytes(report, form, self.key)


def report_bytes(report: Report, form: ReportFormat, key: SigningKey | None) -> bytes:
    """The sealed file; PDF is printed from the sealed HTML by headless Chromium."""
    with collector_paused():  # a few million cells written out
        return _report_bytes(report, form, key)


def _report_bytes(report: Report, form: ReportFormat, key: SigningKey | None) -> bytes:
    if form is ReportFormat.PDF:
        html = _report_bytes(report, ReportFormat.HTML, key)
        with tempfile.TemporaryDirectory(prefix="tokenotel-report-") as directory:
            source, printed = Path(directory, "report.html"), Path(directory, "report.pdf")
            source.write_bytes(html)
            html_to_pdf(source, printed)
            return seal(append_placeholder(printed.read_bytes()), report, key)
    render = {
        ReportFormat.HTML: render_html,
        ReportFormat.JSON: render_json,
        ReportFormat.CSV: render_csv,
    }[form]
    return seal(render(report, PLACEHOLDER).encode(), report, key)
