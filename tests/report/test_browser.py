"""The report's browser, proved on small pages: the harness sees what a page logs and fetches
and what it looks like, and html_to_pdf prints with the same Chromium or says why it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import chromium_path, visit

from tokenotel.errors import ConfigError
from tokenotel.report.pdf import CHROMIUM_ENV, html_to_pdf

#: A page as the report is written: inline CSS, an inline SVG, a table, nothing from elsewhere.
REPORT_LIKE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Token report</title>
<style>
  @page { size: A4; margin: 15mm; }
  body { font-family: sans-serif; color: #222; }
  table { border-collapse: collapse; }
  td, th { border: 1px solid #888; padding: 4px 8px; }
  th { background: #dde6f0; }
</style></head>
<body>
<h1>Tokens seen</h1>
<svg width="300" height="120" viewBox="0 0 300 120" role="img" aria-label="events a day">
  <rect x="10" y="60" width="40" height="60" fill="#3b6ea5"/>
  <rect x="70" y="20" width="40" height="100" fill="#c0392b"/>
  <rect x="130" y="90" width="40" height="30" fill="#27ae60"/>
</svg>
<table>
  <tr><th>token</th><th>events</th><th>failures</th></tr>
  <tr><td>billing_ci</td><td>1204</td><td>40</td></tr>
  <tr><td>deploy_bot</td><td>311</td><td>0</td></tr>
</table>
</body></html>
"""

#: A page that breaks the rules: it fetches from elsewhere, logs an error and throws.
MISBEHAVING = """<!doctype html>
<html><head><title>bad</title></head><body>
<p>bad</p>
<img src="https://example.com/x.png" alt="">
<script>
  console.error("the report failed to draw");
  throw new Error("uncaught on purpose");
</script>
</body></html>
"""


def _page(directory: Path, name: str, html: str) -> Path:
    path = directory / name
    path.write_text(html, encoding="utf-8")
    return path


def _fake_browser(directory: Path, script: str) -> str:
    """A program standing in for Chromium: a shell script that ignores its arguments."""
    path = directory / "fake-chromium"
    path.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    path.chmod(0o755)
    return str(path)


@pytest.mark.e2e
def test_a_report_like_page_renders_offline_without_errors(tmp_path: Path) -> None:
    seen = visit(_page(tmp_path, "report.html", REPORT_LIKE))
    assert seen.console_errors == []
    assert seen.outside_requests == []
    assert seen.title == "Token report"
    assert "Tokens seen" in seen.text
    assert "billing_ci\t1204\t40" in seen.text  # the table, cells tab-separated
    assert seen.screenshot.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(seen.screenshot) > 5_000
    assert seen.colours > 50  # text, borders, the chart's bars, anti-aliasing


@pytest.mark.e2e
def test_a_blank_page_has_one_colour(tmp_path: Path) -> None:
    """The colour count is honest: what the report-like page's count is compared with."""
    seen = visit(_page(tmp_path, "blank.html", "<!doctype html><title>blank</title><body>"))
    assert seen.colours == 1
    assert (seen.console_errors, seen.outside_requests, seen.text) == ([], [], "")


@pytest.mark.e2e
def test_the_harness_reports_outside_requests_and_errors(tmp_path: Path) -> None:
    seen = visit(_page(tmp_path, "bad.html", MISBEHAVING))
    assert seen.outside_requests == ["https://example.com/x.png"]
    assert "the report failed to draw" in seen.console_errors
    assert any("uncaught on purpose" in error for error in seen.console_errors)


@pytest.mark.e2e
def test_html_to_pdf_prints_a_pdf(tmp_path: Path) -> None:
    pdf = tmp_path / "out" / "report.pdf"
    pdf.parent.mkdir()
    html_to_pdf(_page(tmp_path, "report.html", REPORT_LIKE), pdf, chromium=chromium_path())
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    assert len(data) > 1_000
    assert list(pdf.parent.iterdir()) == [pdf]


def test_a_missing_browser_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    html = _page(tmp_path, "report.html", REPORT_LIKE)
    with pytest.raises(ConfigError, match="PDF needs headless Chromium: /nonexistent"):
        html_to_pdf(html, tmp_path / "a.pdf", chromium="/nonexistent")
    monkeypatch.setenv(CHROMIUM_ENV, "/nonexistent")
    with pytest.raises(ConfigError, match="/nonexistent is not a program"):
        html_to_pdf(html, tmp_path / "a.pdf")
    monkeypatch.delenv(CHROMIUM_ENV)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="install Debian's `chromium` package"):
        html_to_pdf(html, tmp_path / "a.pdf")
    assert not (tmp_path / "a.pdf").exists()


def test_a_failing_browser_is_a_config_error_quoting_its_stderr(tmp_path: Path) -> None:
    browser = _fake_browser(tmp_path, "echo starting >&2\necho 'no display here' >&2\nexit 3")
    with pytest.raises(ConfigError, match=r"exit status 3\):\nstarting\nno display here$"):
        html_to_pdf(_page(tmp_path, "r.html", REPORT_LIKE), tmp_path / "a.pdf", chromium=browser)


def test_a_browser_that_writes_no_pdf_is_a_config_error(tmp_path: Path) -> None:
    browser = _fake_browser(tmp_path, "exit 0")
    with pytest.raises(ConfigError, match="without writing a PDF"):
        html_to_pdf(_page(tmp_path, "r.html", REPORT_LIKE), tmp_path / "a.pdf", chromium=browser)
    assert not (tmp_path / "a.pdf").exists()


def test_a_browser_that_writes_something_else_is_a_config_error(tmp_path: Path) -> None:
    # Writes an HTML file where --print-to-pdf=<path> says.
    write = 'for a; do case "$a" in --print-to-pdf=*) echo html > "${a#*=}";; esac; done'
    browser = _fake_browser(tmp_path, write)
    with pytest.raises(ConfigError, match="is not a PDF"):
        html_to_pdf(_page(tmp_path, "r.html", REPORT_LIKE), tmp_path / "a.pdf", chromium=browser)
    assert not (tmp_path / "a.pdf").exists()


def test_a_browser_that_hangs_is_stopped(tmp_path: Path) -> None:
    # A helper process keeps stderr open as Chromium's do: it is stopped with the browser.
    browser = _fake_browser(tmp_path, "sleep 60 &\nsleep 60")
    with pytest.raises(ConfigError, match=r"within 0\.5 s and was stopped"):
        html_to_pdf(
            _page(tmp_path, "r.html", REPORT_LIKE),
            tmp_path / "a.pdf",
            chromium=browser,
            timeout_s=0.5,
        )
