"""Browser check of the built book: served on 127.0.0.1, opened in headless Chromium (Debian's package,
driven by Playwright with its executable path; Playwright downloads nothing).

Needs `_build/html` (``make book``; ``make test`` builds it first). Under ``make test`` the check is required
(``TDD_REQUIRE_BROWSER=1``): a missing book or browser fails instead of skipping.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from urllib.parse import urlparse

import pytest

from .conftest import ROOT

HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
REQUIRED = os.environ.get("TDD_REQUIRE_BROWSER") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.browser


def _need(condition: bool, why: str) -> None:
    if not condition:
        (pytest.fail if REQUIRED else pytest.skip)(why)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output readable
        pass


@pytest.fixture(scope="module")
def site():
    _need((HTML / "index.html").exists(), f"{HTML}/index.html missing: run `make book` first")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    _need(CHROMIUM is not None, "no chromium on PATH (Debian package `chromium`; `make browser-deps`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        yield b
        b.close()


def _visit(browser, url: str, shot: str) -> tuple[object, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url, wait_until="networkidle", timeout=60_000)
    page.wait_for_timeout(500)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / shot), full_page=False)
    return page, requests


def _foreign(requests: list[str]) -> list[str]:
    return [u for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")
            and urlparse(u).hostname not in ("127.0.0.1", "localhost")]


def test_start_page_is_offline_and_typesets_math(site, browser):
    page, requests = _visit(browser, f"{site}/index.html", "start_page.png")
    assert page.url.endswith("book/intro.html"), page.url
    assert not _foreign(requests), f"requests to other hosts: {_foreign(requests)}"
    assert page.locator("mjx-container").count() > 0, "MathJax did not typeset any math"
    assert "$$" not in page.inner_text("main")
    page.close()


def test_overview_notebook_page_has_its_figure(site, browser):
    page, requests = _visit(browser, f"{site}/notebooks/00_overview.html", "overview_page.png")
    assert not _foreign(requests), f"requests to other hosts: {_foreign(requests)}"
    imgs = page.locator(".cell_output img")
    assert imgs.count() >= 1, "the overview figure is not in the page"
    width = imgs.first.evaluate("img => img.complete ? img.naturalWidth : 0")
    assert width > 200, f"figure not loaded (naturalWidth={width})"
    page.close()


def test_paper_page_math_is_typeset(site, browser):
    page, requests = _visit(browser, f"{site}/book/paper_in_brief.html", "paper_page.png")
    assert not _foreign(requests)
    assert page.locator("mjx-container").count() >= 10
    assert "$$" not in page.inner_text("main") and "\\mathbf" not in page.inner_text("main")
    page.close()


def test_every_notebook_page_loads_nothing_from_another_host(site, browser):
    pages = sorted((HTML / "notebooks").glob("*.html"))
    _need(bool(pages), "no notebook pages in the built book")
    for html in pages:
        page, requests = _visit(browser, f"{site}/notebooks/{html.name}", f"{html.stem}.png")
        assert not _foreign(requests), f"{html.name}: requests to other hosts: {_foreign(requests)}"
        page.close()


def test_widget_state_renders_in_the_book(site, browser):
    html = HTML / "notebooks" / "01_morphable_model.html"
    _need(html.exists(), "notebook 01 is not in the built book")
    assert "application/vnd.jupyter.widget-state+json" in html.read_text(), "widget state was not saved"
    page, requests = _visit(browser, f"{site}/notebooks/{html.name}", "widgets_page.png")
    assert not _foreign(requests)
    page.wait_for_selector(".widget-slider, .jupyter-widgets", timeout=30_000)
    assert page.locator(".widget-slider").count() >= 1
    page.close()
