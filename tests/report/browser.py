"""A local HTML file opened in the real Chromium, the one the PDF is printed with, driven by
Playwright: what the page logged as errors, what it tried to fetch, and what it looks like.
Nothing leaves the machine: every request but the file itself is recorded and aborted."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import (
    ConsoleMessage,
    Error,
    Request,
    Route,
    ViewportSize,
    sync_playwright,
)

from tokenotel.errors import ConfigError
from tokenotel.report.pdf import OFFLINE_FLAGS, find_chromium

#: Set to 1 (CI does) so that a missing browser fails the tests instead of skipping them.
REQUIRE_BROWSER = "TOKENOTEL_REQUIRE_BROWSER"
#: An A4 page at 150 dots an inch.
VIEWPORT: ViewportSize = {"width": 1240, "height": 1754}
#: Schemes a page reads from its own memory.
IN_PAGE = ("data:", "about:", "blob:")
#: The number of distinct colours in a PNG, decoded by the browser.
_COLOURS = """async (png) => {
    const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
    const image = await createImageBitmap(new Blob([bytes], {type: "image/png"}));
    const canvas = new OffscreenCanvas(image.width, image.height);
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    const pixels = context.getImageData(0, 0, image.width, image.height).data;
    return new Set(new Uint32Array(pixels.buffer)).size;
}"""


@dataclass
class Visit:
    """What happened when a page was opened."""

    #: Console messages of type error, then uncaught exceptions, in the order they came.
    console_errors: list[str]
    #: Every URL requested that is not the file itself nor read from the page's memory.
    outside_requests: list[str]
    #: PNG of the first page (the viewport).
    screenshot: bytes
    #: Distinct colours in the screenshot: 1 for a blank page.
    colours: int
    title: str
    #: document.body.innerText
    text: str


def chromium_path() -> str:
    """The browser the PDF is printed with (found as tokenotel.report.pdf finds it); without one
    the calling test skips, or fails when TOKENOTEL_REQUIRE_BROWSER=1."""
    try:
        return find_chromium()
    except ConfigError as error:
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{error}; {REQUIRE_BROWSER}=1 requires it", pytrace=False)
        pytest.skip(str(error))


def visit(html: Path) -> Visit:
    """Opens ``html`` in headless Chromium, waits until the network has been idle for half a
    second, and reports what happened."""
    url = html.resolve().as_uri()
    console_errors: list[str] = []
    outside_requests: list[str] = []

    def own(request_url: str) -> bool:
        return request_url == url or request_url.startswith(IN_PAGE)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(message.text)

    def on_page_error(error: Error) -> None:
        console_errors.append(error.message)

    def on_request(request: Request) -> None:
        if not own(request.url):
            outside_requests.append(request.url)

    def on_route(route: Route) -> None:
        if own(route.request.url):
            route.continue_()
        else:
            route.abort("blockedbyclient")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=["--disable-gpu", *OFFLINE_FLAGS]
        )
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.route("**/*", on_route)
            context.on("request", on_request)
            page = context.new_page()
            page.on("console", on_console)
            page.on("pageerror", on_page_error)
            page.goto(url, wait_until="networkidle")
            screenshot = page.screenshot()
            title = page.title()
            text = page.evaluate("document.body.innerText")
            blank = browser.new_page()  # no part of the visit: not the page's requests or errors
            colours = blank.evaluate(_COLOURS, base64.b64encode(screenshot).decode())
        finally:
            browser.close()
    return Visit(console_errors, outside_requests, screenshot, colours, title, text)
