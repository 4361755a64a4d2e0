"""The generated HTML report in headless Chromium, offline: no JavaScript errors, every plot drawn, and
every page readable.

Uses Debian's Chromium (``/usr/bin/chromium``, or ``$GDNLAB_CHROMIUM``) driven by the Python
``playwright`` package (no browser download: ``executable_path``). Both come from
``bash scripts/install_browser.sh``. Skips, saying so, only when Chromium is absent.

What a reader sees is read from the rendered page (plotly's DOM, its bounding boxes and its resolved
trace styles in ``gd._fullData``), and each page fails on:

* **overlap**: a legend box intersecting a plot area, another legend or the footnote; the provenance
  footnote intersecting tick labels, axis titles or a plot area; two texts in a figure (subplot titles,
  notes, the footnote) on top of each other; a legend too tall for its figure (a scroll bar hides entries);
* **colours**: two strategies (or two backends) drawn in one colour within a figure; a strategy in
  two colours across the report, or in a colour other than its class declares; two legend entries
  that look alike (same colour, line style, marker and fill);
* **empty cells shown as text**: ``NaN``, ``nan``, ``<NA>``, ``NaT`` or ``None`` in an output;
* **statuses**: a figure footnote, a ``status`` column, a source record or the index naming a status
  other than measured / projected / reported / synthetic (``missing`` only for a source that is
  absent), and a page showing *reported* numbers whose index entry lists no reported source;
* **ticks**: the same label twice on one axis (plotly's ``2 5 10 2 5`` minor labels on a log axis).

:func:`audit_page` returns every finding per kind, so the counts can be compared between builds.
"""
from __future__ import annotations

import os
import re
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from gdnlab.provenance import STATUSES

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("GDNLAB_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
#: the kinds of defect :func:`audit_page` reports
KINDS = ("overlap", "colour", "nan", "status", "ticks")

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

#: Per figure: resolved trace styles, and the boxes of plot areas, legends, the footnote, ticks, titles.
_FIGURES_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => {
    const box = el => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    const shown = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
    const str = v => (v === undefined || v === null) ? null : (Array.isArray(v) ? v.map(String) : String(v));
    const has = a => a && Array.prototype.some.call(a, v => v !== null && v !== undefined &&
                                                        !(typeof v === 'number' && isNaN(v)));
    const cats = t => { const a = t.orientation === 'h' ? t.y : t.x;
                        if (!a || !a.length) return null;
                        const last = Array.isArray(a[0]) ? a[a.length - 1] : a;
                        return Array.prototype.map.call(last, String); };
    const anns = (gd.layout.annotations || []);
    const foot = Array.from(gd.querySelectorAll('g.annotation')).filter(g => {
        const i = +g.getAttribute('data-index'); return anns[i] && anns[i].name === 'provenance'; });
    return {
      title: (gd.layout && gd.layout.title && gd.layout.title.text) || '',
      provenance: (anns.find(a => a.name === 'provenance') || {}).text || null,
      traces: (gd._fullData || []).filter(t => t.visible === true).map(t => ({
        name: t.name, type: t.type, mode: t.mode || null, showlegend: !!t.showlegend,
        legend: t.legend || 'legend', legendgroup: t.legendgroup || '',
        line: t.line ? str(t.line.color) : null, dash: t.line ? str(t.line.dash) : null,
        marker: t.marker ? str(t.marker.color) : null, symbol: t.marker ? str(t.marker.symbol) : null,
        pattern: t.marker && t.marker.pattern ? str(t.marker.pattern.shape) : null,
        fill: t.fillcolor || null, opacity: t.opacity,
        data: has(t.x) || has(t.y) || has(t.values), cats: cats(t) })),
      plots: Array.from(gd.querySelectorAll('.draglayer .nsewdrag')).filter(shown).map(box),
      legends: Array.from(gd.querySelectorAll('.infolayer > g[class^="legend"]')).map(l => ({
        box: box(l.querySelector('rect.bg') || l),
        scroll: Array.from(l.querySelectorAll('rect.scrollbar')).some(r =>
            +(r.getAttribute('height') || 0) > 0 && +(r.getAttribute('width') || 0) > 0) })),
      footnote: foot.map(box),
      annotations: Array.from(gd.querySelectorAll('g.annotation')).filter(shown).filter(g => g.textContent.trim())
        .map(g => ({text: g.textContent.trim(), box: box(g)})),
      labels: Array.from(gd.querySelectorAll('g.xtick text, g.ytick text, g.xtick2 text, g.g-xtitle text, '
                                             + 'g.g-ytitle text')).filter(shown).map(e => ({
        text: e.textContent, box: box(e) })),
      axes: Array.from(gd.querySelectorAll('g.xaxislayer-above, g.yaxislayer-above')).map(a =>
        Array.from(a.querySelectorAll('g.xtick > text, g.ytick > text')).filter(shown).map(e => e.textContent)),
      svgtext: Array.from(gd.querySelectorAll('.main-svg text')).filter(e => !e.closest('.hoverlayer'))
                 .map(e => e.textContent).join(' | ')
    };
})"""

#: Text the page shows outside the figures: output areas, table cells by header, source records.
_PAGE_JS = """() => {
    const outs = Array.from(document.querySelectorAll('.jp-OutputArea-output, .output_area'));
    const tables = Array.from(document.querySelectorAll('table')).map(t => {
        const head = Array.from(t.querySelectorAll('thead th')).map(th => th.textContent.trim());
        const rows = Array.from(t.querySelectorAll('tbody tr')).map(tr =>
            Array.from(tr.querySelectorAll('th, td')).map(td => td.textContent.trim()));
        return {head, rows}; });
    return {
      text: outs.map(o => o.innerText).join('\\n'),
      tables,
      sources: Array.from(document.querySelectorAll('.gdnlab-source > span:first-child, td .src > span:first-child'))
                 .map(s => s.textContent.trim()),
    };
}"""


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

    def wait_for_plots(self, expected: int) -> None:
        if expected:
            self.page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
            self.page.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {expected}", timeout=20_000)

    def close(self):
        self.ctx.close()


def _pages(index: Path, manifest: dict) -> list[Path]:
    return [index.parent / n["html"] for n in manifest["notebooks"] if n.get("html")]


# ---------------------------------------------------------------------------------------------- checks


def _overlap(a, b, eps: float = 1.0) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > eps and min(a[3], b[3]) - max(a[1], b[1]) > eps


def _check_overlaps(fig: dict) -> list[str]:
    out = []
    where = f"figure {fig['title'][:70]!r}"
    for i, leg in enumerate(fig["legends"]):
        if any(_overlap(leg["box"], p) for p in fig["plots"]):
            out.append(f"{where}: legend {i + 1} overlaps a plot area")
        if any(_overlap(leg["box"], f) for f in fig["footnote"]):
            out.append(f"{where}: legend {i + 1} overlaps the footnote")
        if any(_overlap(leg["box"], other["box"]) for other in fig["legends"][i + 1:]):
            out.append(f"{where}: legend {i + 1} overlaps another legend")
        if leg["scroll"]:
            out.append(f"{where}: legend {i + 1} scrolls (the figure is too short for its entries)")
    notes = fig["annotations"]
    for i, a in enumerate(notes):
        for b in notes[i + 1:]:
            if _overlap(a["box"], b["box"], eps=2.0):
                out.append(f"{where}: texts {a['text'][:40]!r} and {b['text'][:40]!r} overlap")
    for f in fig["footnote"]:
        hit = [lab["text"] for lab in fig["labels"] if _overlap(f, lab["box"])]
        if hit:
            out.append(f"{where}: the footnote overlaps axis labels {hit[:4]}")
        if any(_overlap(f, p) for p in fig["plots"]):
            out.append(f"{where}: the footnote overlaps a plot area")
    return out


def _tokens(text) -> set[str]:
    return set(re.findall(r"[A-Za-z0-9_]+", str(text or "")))


def _colour(t: dict, i: int | None = None) -> str | None:
    """The colour a trace is drawn in (lines: the line's, else the marker's; ``i``: the ``i``th of an array)."""
    c = t["line"] if t["mode"] and "lines" in t["mode"] and t["line"] else (t["marker"] or t["line"] or t["fill"])
    if isinstance(c, list):
        return c[i] if i is not None and i < len(c) else None
    return c.lower().replace(" ", "") if isinstance(c, str) else None


def _named(fig: dict, vocab: set[str], exclude: set[str] = frozenset()) -> list[tuple[str, str]]:
    """``(name, colour)`` of every drawn trace (or bar) that names exactly one of ``vocab`` and none of
    ``exclude``: by the trace's name, or per bar by its category when the colours are an array."""
    out = []
    for t in fig["traces"]:
        if not t["data"]:                      # legend-only keys: the drawn traces carry the colour
            continue
        colours = t["line"] if isinstance(t["line"], list) else t["marker"]
        if isinstance(colours, list) and t["cats"]:
            for i, cat in enumerate(t["cats"]):
                hit = _tokens(cat) & vocab
                if len(hit) == 1 and not _tokens(cat) & exclude and _colour(t, i):
                    out.append((hit.pop(), str(_colour(t, i)).lower().replace(" ", "")))
            continue
        toks = _tokens(t["name"])
        hit = toks & vocab
        if len(hit) == 1 and not toks & exclude and _colour(t):
            out.append((hit.pop(), _colour(t)))
    return out


def _check_colours(fig: dict, strategies: set[str], backends: set[str]) -> list[str]:
    out = []
    where = f"figure {fig['title'][:70]!r}"
    for vocab, exclude, what in ((strategies | {"decode"}, set(), "strategies"),
                                 (backends, strategies | {"decode"}, "backends")):
        by_colour = defaultdict(set)
        for name, c in _named(fig, vocab, exclude):
            by_colour[c].add(name)
        for c, names in by_colour.items():
            if len(names) > 1:
                out.append(f"{where}: {what} {sorted(names)} share the colour {c}")
    seen: dict[tuple, str] = {}
    for t in fig["traces"]:
        if not t["showlegend"]:
            continue
        look = (t["legend"], t["type"], _colour(t) if not isinstance(t["marker"], list) else str(t["marker"]),
                t["dash"] if t["mode"] and "lines" in t["mode"] else None,
                t["symbol"] if not t["mode"] or "markers" in t["mode"] else None, str(t["pattern"]), t["opacity"])
        if look in seen and seen[look] != t["name"]:
            out.append(f"{where}: legend entries {seen[look]!r} and {t['name']!r} look alike ({look[2]})")
        seen.setdefault(look, t["name"])
    return out


def _check_report_colours(figs: list[tuple[str, dict]], strategies: set[str]) -> list[str]:
    """A strategy is one colour in every figure of every page: the colour its class declares."""
    from gdnlab.plots.style import strategy_color

    used = defaultdict(set)
    for page, fig in figs:
        for name, c in _named(fig, strategies, {"decode"}):
            used[name].add((c, page, fig["title"][:50]))
    out = []
    for name, uses in used.items():
        colours = {c for c, *_ in uses}
        want = strategy_color(name).lower()
        if colours != {want}:
            out.append(f"strategy {name} drawn in {sorted(colours)} (its class declares {want}): "
                       f"{sorted({(p, t) for c, p, t in uses if c != want})[:3]}")
    return out


_NAN = re.compile(r"(?<![\w.])(NaN|nan|NaT|<NA>)(?![\w])")
_NONE_CELL = re.compile(r"^(None|NaN|nan|NaT|<NA>)$")


def _check_nan(page: dict, figs: list[dict]) -> list[str]:
    out = [f"output text shows {m.group(1)!r}: …{page['text'][max(0, m.start() - 40):m.end() + 20]!r}…"
           for m in _NAN.finditer(page["text"])]
    for t in page["tables"]:
        n = sum(1 for r in t["rows"] for cell in r if _NONE_CELL.match(cell))
        if n:
            out.append(f"table {t['head'][:5]}: {n} cells show NaN/None/<NA>")
    for fig in figs:
        for m in _NAN.finditer(fig["svgtext"]):
            out.append(f"figure {fig['title'][:60]!r} shows {m.group(1)!r}")
    return out


def _first_status(text: str) -> str:
    """The status word a footnote part starts with, after an optional ``label: `` prefix."""
    m = re.match(r"\s*(?:[^·:|<>]{1,40}:\s)?([A-Za-z-]+)", re.sub(r"<[^>]+>", " ", text))
    return m.group(1) if m else text[:20]


def _check_statuses(page: dict, figs: list[dict], allowed_sources=frozenset(("missing",))) -> list[str]:
    out = []
    for fig in figs:
        if fig["provenance"] is None:
            out.append(f"figure {fig['title'][:60]!r} has no provenance footnote")
            continue
        for part in str(fig["provenance"]).split(" | "):
            if _first_status(part) not in STATUSES:
                out.append(f"figure {fig['title'][:60]!r}: footnote status {_first_status(part)!r}")
    for t in page["tables"]:
        for j, h in enumerate(t["head"]):
            if re.search(r"\bstatus\b", h):
                bad = sorted({r[j].split(" ")[0] for r in t["rows"] if j < len(r) and r[j] not in ("", "—")}
                             - set(STATUSES))
                if bad:
                    out.append(f"table column {h!r} shows statuses {bad[:4]}")
    bad = sorted(set(page["sources"]) - set(STATUSES) - set(allowed_sources))
    if bad:
        out.append(f"source records with statuses {bad}")
    return out


_NUMBER = re.compile(r"^[−-]?[\d.,]+[kMGµm]?$")


def _check_ticks(figs: list[dict]) -> list[str]:
    """Numeric tick labels repeated on one axis (category labels repeat legitimately per group)."""
    out = []
    for fig in figs:
        for labels in fig["axes"]:
            dup = sorted({x for x in labels if _NUMBER.match(x.strip()) and labels.count(x) > 1})
            if dup:
                out.append(f"figure {fig['title'][:60]!r}: an axis labels {dup[:5]} more than once ({labels[:10]})")
    return out


def audit_page(browser, html_path: Path) -> tuple[dict[str, list[str]], list[dict], dict]:
    """Every finding on one page by kind (:data:`KINDS`), the figures read and the page's text parts."""
    from gdnlab.backends import names as backend_names
    from gdnlab.strategies.registry import STRATEGY_NAMES

    expected = html_path.read_text(encoding="utf-8").count('class="plotly-graph-div"')
    p = _Page(browser, html_path)
    try:
        p.wait_for_plots(expected)
        figs = p.page.evaluate(_FIGURES_JS)
        page = p.page.evaluate(_PAGE_JS)
    finally:
        p.close()
    strategies, backends = set(STRATEGY_NAMES), set(backend_names())
    found = {"overlap": [x for f in figs for x in _check_overlaps(f)],
             "colour": [x for f in figs for x in _check_colours(f, strategies, backends)],
             "nan": _check_nan(page, figs), "status": _check_statuses(page, figs), "ticks": _check_ticks(figs)}
    return found, figs, page


@pytest.fixture(scope="module")
def audited(browser, built_report):
    index, manifest, _ = built_report
    return {path.stem: audit_page(browser, path) for path in _pages(index, manifest)}


def _report_findings(audited: dict, kind: str) -> list[str]:
    return [f"{name}: {x}" for name, (found, _, _) in audited.items() for x in found[kind]]


# ---------------------------------------------------------------------------------------------- tests


def test_index_opens_offline_and_links_every_notebook(browser, built_report):
    index, manifest, _ = built_report
    p = _Page(browser, index)
    try:
        hrefs = p.page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
        for n in manifest["notebooks"]:
            assert n["html"] in hrefs, f"index does not link {n['html']}"
            assert (index.parent / n["html"]).exists()
        text = p.page.inner_text("body")
        assert "Provenance" in text and all(n["name"] in text for n in manifest["notebooks"])
        statuses = p.page.eval_on_selector_all("td .src > span:first-child", "els => els.map(e => e.textContent)")
        assert statuses and set(statuses) <= {*STATUSES, "missing"}, statuses
        assert not p.errors, p.errors
        assert not p.network, f"index tried the network: {p.network}"
    finally:
        p.close()


def test_every_plot_renders_without_js_errors_or_network(browser, built_report, tmp_path):
    index, manifest, _ = built_report
    shots = Path(os.environ.get("GDNLAB_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    total = 0
    for html_path in _pages(index, manifest):
        expected = html_path.read_text(encoding="utf-8").count('class="plotly-graph-div"')
        p = _Page(browser, html_path)
        try:
            p.wait_for_plots(expected)
            graphs = p.page.evaluate(_GRAPHS_JS)
            assert len(graphs) == expected, f"{html_path.name}: {len(graphs)} of {expected} plots initialised"
            for g in graphs:
                assert g["data"] > 0, f"{html_path.name}: plot {g['title']!r} has no data traces"
                assert g["svg"] > 0 and g["drawn"] > 0, f"{html_path.name}: plot {g['title']!r} not drawn: {g}"
            assert not p.errors, f"{html_path.name}: {p.errors}"
            assert not p.network, f"{html_path.name} tried the network: {p.network}"
            p.page.screenshot(path=str(shots / f"{html_path.stem}.png"), full_page=False)
            total += expected
        finally:
            p.close()
    assert total > 0, "no plot in the whole report: the bundled data should give at least the seed/model plots"


def test_no_legend_or_footnote_overlaps(audited):
    found = _report_findings(audited, "overlap")
    assert not found, "\n".join(found)


def test_strategies_and_backends_have_their_own_colours(audited):
    from gdnlab.strategies.registry import STRATEGY_NAMES

    found = _report_findings(audited, "colour")
    figs = [(name, f) for name, (_, fs, _) in audited.items() for f in fs]
    found += _check_report_colours(figs, set(STRATEGY_NAMES))
    drawn = {s for _, f in figs for s, _ in _named(f, set(STRATEGY_NAMES))}
    assert len(drawn) == len(STRATEGY_NAMES), f"the report should draw every strategy; it draws {sorted(drawn)}"
    assert not found, "\n".join(found)


def test_no_nan_text_on_any_page(audited):
    found = _report_findings(audited, "nan")
    assert not found, "\n".join(found[:30])


def test_every_status_shown_is_one_of_the_four(audited, built_report):
    found = _report_findings(audited, "status")
    _, manifest, _ = built_report
    for n in manifest["notebooks"]:
        _, figs, page = audited.get(n["name"], ({}, [], {}))
        shows_reported = any("reported" in str(f["provenance"]) for f in figs) or any(
            "reported" in (r[j] if j < len(r) else "") for t in page.get("tables", []) for j, h in enumerate(t["head"])
            if re.search(r"\bstatus\b", h) for r in t["rows"])
        listed = {s.get("status") for s in n["sources"]}
        if shows_reported and "reported" not in listed:
            found.append(f"{n['name']}: shows reported numbers but its index entry lists no reported source "
                         f"(sources: {sorted(map(str, listed))})")
    assert not found, "\n".join(found)


def test_log_axes_label_each_tick_once(audited):
    found = _report_findings(audited, "ticks")
    assert not found, "\n".join(found)
