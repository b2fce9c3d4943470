"""The report's HTML printed to PDF by headless Chromium, run as a program and kept off the
network: no update checks, sync, metrics or extensions, and no host name resolves."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tokenotel.errors import ConfigError

#: Names the browser to use (a path, or a program on PATH); otherwise the first of BROWSERS.
CHROMIUM_ENV = "TOKENOTEL_CHROMIUM"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: What keeps the browser to itself: nothing it starts on its own reaches the network, and a
#: request the page makes fails at once, since no host name resolves.
OFFLINE_FLAGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
_NOT_FOUND = "install Debian's `chromium` package or set TOKENOTEL_CHROMIUM"
#: How much of the browser's stderr an error quotes.
_STDERR_LINES = 10


def find_chromium(chromium: str | None = None) -> str:
    """The browser's path: ``chromium``, else $TOKENOTEL_CHROMIUM, else the first of BROWSERS on
    PATH. Each may be a path or a program's name."""
    named = chromium or os.environ.get(CHROMIUM_ENV)
    if named:
        found = shutil.which(named)
        if found is None:
            raise ConfigError(
                f"PDF needs headless Chromium: {named} is not a program; {_NOT_FOUND}"
            )
        return found
    for name in BROWSERS:
        found = shutil.which(name)
        if found is not None:
            return found
    raise ConfigError(f"PDF needs headless Chromium: {_NOT_FOUND}")


def html_to_pdf(
    html: Path, pdf: Path, *, chromium: str | None = None, timeout_s: float = 120
) -> None:
    """Prints the self-contained HTML file ``html`` to ``pdf`` (A4 or Letter as its CSS says,
    no header or footer). ``pdf`` is written only when the browser printed a whole PDF."""
    browser = find_chromium(chromium)
    if not html.is_file():
        raise FileNotFoundError(f"no HTML file to print: {html}")
    with tempfile.TemporaryDirectory(prefix="tokenotel-pdf-") as scratch:
        printed = Path(scratch) / "report.pdf"
        command = [
            browser,
            "--headless",
            "--disable-gpu",
            *(["--no-sandbox"] if os.geteuid() == 0 else []),  # Chromium refuses root otherwise
            f"--user-data-dir={Path(scratch) / 'profile'}",
            *OFFLINE_FLAGS,
            "--no-pdf-header-footer",
            f"--print-to-pdf={printed}",
            html.resolve().as_uri(),
        ]
        # A session of its own: on a timeout the browser's helper processes are killed with it.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise ConfigError(
                f"PDF: {browser} printed nothing within {timeout_s:g} s and was stopped"
            ) from None
        if process.returncode != 0:
            tail = "\n".join(stderr.decode(errors="replace").splitlines()[-_STDERR_LINES:])
            raise ConfigError(f"PDF: {browser} failed (exit status {process.returncode}):\n{tail}")
        if not printed.is_file() or printed.stat().st_size == 0:
            raise ConfigError(f"PDF: {browser} exited without writing a PDF")
        with printed.open("rb") as file:
            if file.read(5) != b"%PDF-":
                raise ConfigError(f"PDF: what {browser} wrote is not a PDF")
        shutil.move(printed, pdf)
