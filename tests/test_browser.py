"""Browser check of both built editions of the book, every page: served on 127.0.0.1 and opened in headless
Chromium (Debian's package, driven by Playwright with its executable path; Playwright downloads nothing).

For each page (1280 x 900 px): no request to another host, no failed request (network error or HTTP >= 400), no
console error and no uncaught page error, every image loaded, math typeset where the page has math (no raw TeX
left), every internal link resolving to a built file (and its #anchor to an element of that file), the saved widget
state rendered where a notebook has widgets (slider labels and readouts whole), and no code block cut off (text
wider than the content column).
Screenshots go to ``_build/screenshots/<edition>/``.

Needs ``_build/html`` (``make book``) and ``_build/instructor/html`` (``make book-instructor``); ``make test``
builds both first and sets ``TDD_REQUIRE_BROWSER=1``, so that a missing book or browser fails instead of skipping.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from .conftest import ROOT

EDITIONS = {"student": ROOT / "_build" / "html", "instructor": ROOT / "_build" / "instructor" / "html"}
SHOTS = ROOT / "_build" / "screenshots"
REQUIRED = os.environ.get("TDD_REQUIRE_BROWSER") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.browser


def _need(condition: bool, why: str) -> None:
    if not condition:
        (pytest.fail if REQUIRED else pytest.skip)(why)


def pages_of(root: Path) -> list[Path]:
    """Every built HTML page of an edition (not the copied sources or static assets)."""
    return sorted(p for p in root.rglob("*.html")
                  if not ({"_static", "_sources", "_images"} & set(p.relative_to(root).parts)))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output readable
        pass


def _serve(directory: Path):
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


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


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("id", "name") and v:
                self.ids.add(v)


@functools.cache
def _ids_of(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def _foreign(url: str) -> bool:
    u = urlparse(url)
    return u.scheme in ("http", "https", "ws", "wss") and u.hostname not in ("127.0.0.1", "localhost")


def check_page(browser, base: str, root: Path, page_path: Path, shot: Path) -> tuple[list[str], dict]:
    """Open one page; returns (problems, facts)."""
    rel = page_path.relative_to(root).as_posix()
    url = f"{base}/{rel}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests, failed, console, errors = [], [], [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    problems: list[str] = []
    source = page_path.read_text(encoding="utf-8", errors="replace")
    has_widgets = "application/vnd.jupyter.widget-state+json" in source
    try:
        page.goto(url, wait_until="networkidle", timeout=60_000)
        if has_widgets:
            try:
                page.wait_for_selector(".jupyter-widgets.widget-inline-hbox, .widget-slider, .widget-hprogress, "
                                       ".widget-image, .widget-html", timeout=30_000)
            except Exception:  # noqa: BLE001 - reported as a problem below
                problems.append("widget state saved but no widget rendered")
        has_math = page.locator(".math, div.math, span.math").count() > 0
        if has_math:
            page.wait_for_function("() => !window.MathJax || !MathJax.startup || MathJax.startup.promise",
                                   timeout=30_000)
            page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
        page.wait_for_timeout(300)
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=False)
        main = page.inner_text("main") if page.locator("main").count() else page.inner_text("body")
        if has_math:
            if page.locator("mjx-container").count() == 0:
                problems.append("the page has math but MathJax typeset none")
            if "$$" in main or "\\begin{" in main:
                problems.append("raw TeX left in the text")
        images = page.evaluate("() => Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete, "
                               "i.naturalWidth])")
        for src, complete, width in images:
            if not complete or width == 0:
                problems.append(f"image not loaded: {src}")
        sliders = page.locator(".widget-slider").count()
        # code and printed lines fit the content column at 1280 px (book/css/tdd_book.css): no code block is cut
        # off behind a scroll bar (blocks in a closed dropdown or hidden cell measure 0 and pass)
        clipped = page.evaluate("""() => Array.from(document.querySelectorAll(
            'article div.cell_input pre, article div.cell_output pre, article div.highlight pre'))
            .filter(e => e.scrollWidth > e.clientWidth + 1)
            .map(e => [e.scrollWidth, e.clientWidth, e.textContent.split('\\n')
                .reduce((a, l) => l.length > a.length ? l : a, '').trim().slice(0, 50)])""")
        for scroll, client, line in clipped:
            problems.append(f"code block cut off ({scroll} px of text in {client} px): {line!r}")
        # the explorers' slider labels and value readouts are shown whole (not cut off or squeezed to nothing)
        cut = page.evaluate("""() => Array.from(document.querySelectorAll(
            '.widget-slider .widget-label, .widget-slider .widget-readout'))
            .filter(e => getComputedStyle(e).display !== 'none' && e.textContent.trim()
                    && (e.scrollWidth > e.clientWidth + 1 || e.clientWidth === 0))
            .map(e => [e.className, e.textContent.trim(), e.scrollWidth, e.clientWidth])""")
        for cls, text, scroll, client in cut:
            problems.append(f"slider {'label' if 'label' in cls else 'readout'} {text!r} cut off "
                            f"({scroll} px in {client} px)")
        final_url = page.url   # index.html redirects to the intro: links resolve against the page shown
        hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
    finally:
        page.close()
    for h in hrefs:
        target = urlparse(urljoin(final_url, h))
        if target.scheme not in ("http", "https") or target.hostname != "127.0.0.1":
            continue
        path = root / unquote(target.path).lstrip("/")
        if path.is_dir():
            path = path / "index.html"
        if not path.exists():
            problems.append(f"broken link {h}")
        elif target.fragment and path.suffix == ".html" and unquote(target.fragment) not in _ids_of(path):
            problems.append(f"broken anchor {h}")
    problems += [f"request to another host: {u}" for u in requests if _foreign(u)]
    problems += [f"failed request: {f}" for f in failed]
    problems += [f"console error: {c}" for c in console]
    problems += [f"page error: {e}" for e in errors]
    facts = {"images": len(images), "links": len(hrefs), "math": has_math, "widgets": has_widgets,
             "sliders": sliders, "console_errors": len(console) + len(errors)}
    return problems, facts


@pytest.mark.parametrize("edition", sorted(EDITIONS))
def test_every_page_of_the_edition(browser, edition):
    root = EDITIONS[edition]
    _need((root / "index.html").exists(), f"{root}/index.html missing: run `make book` and `make book-instructor`")
    pages = pages_of(root)
    server, base = _serve(root)
    report, facts_all = {}, {}
    try:
        for p in pages:
            rel = p.relative_to(root).as_posix()
            shot = SHOTS / edition / (rel.replace("/", "__").removesuffix(".html") + ".png")
            problems, facts = check_page(browser, base, root, p, shot)
            facts_all[rel] = facts
            if problems:
                report[rel] = problems
    finally:
        server.shutdown()
    n_console = sum(f["console_errors"] for f in facts_all.values())
    print(f"{edition}: {len(pages)} pages, {n_console} console errors, "
          f"{sum(f['images'] for f in facts_all.values())} images, {sum(f['links'] for f in facts_all.values())} "
          f"links, math on {sum(f['math'] for f in facts_all.values())} pages, widgets on "
          f"{sum(f['widgets'] for f in facts_all.values())}")
    assert not report, "\n".join(f"{k}: {v}" for k, v in report.items())
    # the pages a reader must find are there
    names = set(facts_all)
    for must in ("book/intro.html", "book/glossary.html", "book/references.html", "book/for_instructors.html",
                 "book/own_3dmm.html", "notebooks/00_overview.html", "book/exercises/ex01_morphable_model.html"):
        assert must in names, must
    for nb in ("01_morphable_model", "04_displacements", "05_discriminators"):   # the explorers render their sliders
        assert facts_all[f"notebooks/{nb}.html"]["sliders"] >= 3, (nb, facts_all[f"notebooks/{nb}.html"])


def test_start_page_redirects_to_the_intro_with_its_figure(browser):
    root = EDITIONS["student"]
    _need((root / "index.html").exists(), f"{root}/index.html missing: run `make book` first")
    server, base = _serve(root)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/index.html", wait_until="networkidle", timeout=60_000)
        assert page.url.endswith("book/intro.html"), page.url
        fig = page.locator("figure img, img[alt*='Frames']")
        assert fig.count() >= 1, "the intro does not show the pipeline figure"
        assert fig.first.evaluate("img => img.naturalWidth") > 500
        assert "teaching 3DMM CC0" in page.inner_text("footer.bd-footer-content"), "the licence footer is missing"
        assert page.locator("link[rel='icon'], link[rel='shortcut icon']").count() >= 1, "no favicon"
        page.close()
    finally:
        server.shutdown()
