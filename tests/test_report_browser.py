"""The generated HTML report in headless Chromium, offline: no JavaScript errors, every plot drawn.

Uses Debian's Chromium (``/usr/bin/chromium``, or ``$GDNLAB_CHROMIUM``) driven by the Python
``playwright`` package (no browser download: ``executable_path``). Both come from
``bash scripts/install_browser.sh``. Skips, saying so, only when Chromium is absent.

Screenshots go to ``$GDNLAB_SCREENSHOT_DIR`` (default: the test's tmp dir);
``GDNLAB_UPDATE_SCREENSHOT=1`` also writes ``docs/screenshot.png`` (the first notebook, in report
order, that has a figure: 01 once the H100 sweep ships, 03 before).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from test_notebooks import built_report  # noqa: F401  (session fixture: one build for both files)

from gdnlab import report

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("GDNLAB_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
SCREENSHOT = report.REPO_ROOT / "docs" / "screenshot.png"

#: Per plotly graph div: traces in gd.data, the SVG drawn, and the drawn trace groups.
_GRAPHS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
    id: gd.id,
    data: (gd.data || []).length,
    svg: gd.querySelectorAll('.main-svg').length,
    // SVG traces are <g class="trace">; WebGL ones (scattergl) draw into the plot's gl canvas
    drawn: gd.querySelectorAll('g.trace').length +
           (gd.querySelector('canvas.gl-canvas-context')
               ? (gd._fullData || []).filter(t => /gl$/.test(t.type)).length : 0),
    title: (gd.layout && gd.layout.title && gd.layout.title.text) || ''
}))"""


@pytest.fixture(scope="module")
def browser():
    exe = Path(CHROMIUM)
    if not exe.exists():
        found = None if "GDNLAB_CHROMIUM" in os.environ else shutil.which("chromium")
        if not found:
            pytest.skip(f"Chromium not installed ({CHROMIUM} absent): run `bash scripts/install_browser.sh`")
        exe = Path(found)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Chromium is installed but the Python package 'playwright' is not: "
                    "run `bash scripts/install_browser.sh` (or pip install 'playwright>=1.45,<2')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(exe), headless=True, args=FLAGS)
        yield b
        b.close()


class _Page:
    """A page opened offline, recording console errors, page errors and network attempts."""

    def __init__(self, browser, path: Path, viewport=(1280, 900)):
        self.errors: list[str] = []
        self.network: list[str] = []
        self.ctx = browser.new_context(offline=True, viewport={"width": viewport[0], "height": viewport[1]})
        self.page = self.ctx.new_page()
        self.page.on("console",
                     lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.route(re.compile(r"^(?!file:|data:|blob:|about:).*"), self._block)
        self.page.goto(path.as_uri(), wait_until="load")

    def _block(self, route):
        self.network.append(route.request.url)
        route.abort()

    def close(self):
        self.ctx.close()


def _pages(index: Path, manifest: dict) -> list[Path]:
    return [index.parent / n["html"] for n in manifest["notebooks"] if n.get("html")]


def test_index_opens_offline_and_links_every_notebook(browser, built_report):  # noqa: F811
    index, manifest, _ = built_report
    p = _Page(browser, index)
    try:
        hrefs = p.page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
        for n in manifest["notebooks"]:
            assert n["html"] in hrefs, f"index does not link {n['html']}"
            assert (index.parent / n["html"]).exists()
        text = p.page.inner_text("body")
        assert "Provenance" in text and all(n["name"] in text for n in manifest["notebooks"])
        assert not p.errors, p.errors
        assert not p.network, f"index tried the network: {p.network}"
    finally:
        p.close()


def test_every_plot_renders_without_js_errors_or_network(browser, built_report, tmp_path):  # noqa: F811
    index, manifest, _ = built_report
    shots = Path(os.environ.get("GDNLAB_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    total = 0
    best: tuple[int, Path] | None = None
    for html_path in _pages(index, manifest):
        expected = html_path.read_text(encoding="utf-8").count('class="plotly-graph-div"')
        p = _Page(browser, html_path)
        try:
            if expected:
                p.page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
                p.page.wait_for_function(
                    f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {expected}", timeout=20_000)
            graphs = p.page.evaluate(_GRAPHS_JS)
            assert len(graphs) == expected, f"{html_path.name}: {len(graphs)} of {expected} plots initialised"
            for g in graphs:
                assert g["data"] > 0, f"{html_path.name}: plot {g['title']!r} has no data traces"
                assert g["svg"] > 0 and g["drawn"] > 0, f"{html_path.name}: plot {g['title']!r} not drawn: {g}"
            assert not p.errors, f"{html_path.name}: {p.errors}"
            assert not p.network, f"{html_path.name} tried the network: {p.network}"
            if expected:  # the view a reader gets: the first figure with the text above it
                p.page.evaluate("() => { document.querySelector('.js-plotly-plot').scrollIntoView({block: 'start'});"
                                " window.scrollBy(0, -160); }")
            p.page.screenshot(path=str(shots / f"{html_path.stem}.png"), full_page=False)
            total += expected
            if expected and best is None:  # README picture: the first notebook that has a figure
                best = (expected, shots / f"{html_path.stem}.png")
        finally:
            p.close()
    assert total > 0, "no plot in the whole report: the bundled data should give at least the seed/model plots"
    if os.environ.get("GDNLAB_UPDATE_SCREENSHOT") == "1" and best is not None:
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best[1], SCREENSHOT)
