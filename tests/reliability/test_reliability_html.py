"""Reliability corpus, part 3: no live HTML from user strings.

Every string a user hands to the report (notebook parameters, file paths, labels, titles, an error
message a notebook raises) and every name a trace carries must reach the HTML as text. One report is
built from toy notebooks, one per way in (a heading, a table, a data-source note, a missing-data
message, a figure, a trace's kernel names, an error); each case parses the built page with the
standard library's HTML parser and asserts that no element, attribute, link or script came from the
hostile strings, and that the strings are still shown (escaped, not dropped). The reported case runs
the real ``02_nsight_traces`` notebook through ``gdnlab report``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
nbformat = pytest.importorskip("nbformat", reason="notebook extras not installed (pip install -e '.[notebooks]')")

IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"
BREAKOUT = "</script><img src=x onerror=alert(3)>"
JS_LINK = "[click me](javascript:alert(4))"
ATTR = '" onmouseover="alert(5)" x="'
LABELS = [IMG, SCRIPT, BREAKOUT, JS_LINK, ATTR]


class _Page(HTMLParser):
    """Start tags with their attributes, the text of script elements, and the other text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


def _live(page: _Page) -> list[str]:
    """What in ``page`` came alive from the hostile strings."""
    found = []
    for tag, attrs in page.tags:
        for k, v in attrs.items():
            if k.startswith("on") and "alert(" in (v or ""):
                found.append(f"<{tag} {k}={v!r}>")
            if k == "href" and (v or "").strip().lower().startswith("javascript:"):
                found.append(f"<{tag} href={v!r}>")
        if tag == "img" and attrs.get("src") == "x":
            found.append("<img src=x>")
    found += [f"<script>{s.strip()}</script>" for s in page.scripts if s.strip().startswith("alert(")]
    return found


def _notebook(path: Path, *code: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell('labels = ["a", "b", "c", "d", "e"]\ntrace_path = ""')
    p.metadata["tags"] = ["parameters"]
    setup = nbformat.v4.new_code_cell("from gdnlab import report, traces\nimport pandas as pd\nreport.setup()")
    nb.cells = [nbformat.v4.new_markdown_cell("# Toy"), p, setup, *(nbformat.v4.new_code_cell(c) for c in code)]
    nbformat.write(nb, str(path))
    return str(path)


#: one toy notebook per way a string reaches the page: name -> (code, the label it shows)
WAYS_IN: dict[str, tuple[str, str]] = {
    "heading_img": ("report.show(lambda: None, heading=labels[0])", IMG),
    "heading_script": ("report.show(lambda: None, heading=labels[1])", SCRIPT),
    "heading_markdown_link": ("report.show(lambda: None, heading=labels[3])", JS_LINK),
    "heading_attribute": ("report.show(lambda: None, heading=labels[4])", ATTR),
    "table": ("report.show(pd.DataFrame({labels[0]: [labels[1], labels[4]]}))", IMG),
    "note": ("report.note(labels[0], status='measured', detail=labels[1], gpu=labels[4])", IMG),
    "missing": ("report.load(lambda p: p, 'no/such/file', what=labels[0], hint=labels[3])\n"
                "report.show(lambda x: x, report.missing(labels[1]))", IMG),
    "figure": ("import plotly.graph_objects as go\n"
               "fig = go.Figure(go.Scatter(x=[1], y=[2], name=labels[2]), layout={'title': {'text': labels[2]}})\n"
               "report.show(fig)",
               BREAKOUT),
    "trace_names": ("from gdnlab.plots import traces as tp\nt = traces.load(trace_path)\n"
                    "report.show(traces.kernel_summary, t, heading='kernels')\n"
                    "report.show(tp.timeline_figure, t)", IMG),
    "error": ("raise ValueError(labels[0] + ' ' + labels[1])", IMG),
}
#: a notebook whose file name is a URL scheme: its links in the index must stay relative paths
SCHEME_NAME = "javascript:alert(8)"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from gdnlab import report
    from gdnlab.traces import synthetic as tg

    folder = tmp_path_factory.mktemp("hostile")
    b = tg.Builder()
    b.range(IMG, 0, 50_000)
    b.launch(IMG, 1_000, 10_000, 5_000)
    b.launch(SCRIPT, 2_000, 20_000, 5_000)
    trace = tg.write_nsys_sqlite(folder / "hostile.sqlite", b.build())
    paths = [_notebook(folder / f"{name}.ipynb", code) for name, (code, _) in WAYS_IN.items()]
    paths.append(_notebook(folder / f"{SCHEME_NAME}.ipynb", "print('named like a link')"))
    out = folder / "rep"
    with pytest.raises(report.ReportError) as e:            # the "error" notebook fails, by design
        report.build_report(out, notebooks=paths, parameters={"labels": LABELS, "trace_path": str(trace)},
                            jobs=2, log=lambda s: None)
    assert list(e.value.failed) == ["error"]
    return out


def _check_page(page_path: Path, shown: str) -> None:
    page = _Page(page_path.read_text(encoding="utf-8"))
    assert _live(page) == [], _live(page)
    text = " ".join(page.text) + " ".join(page.scripts)
    assert shown in text or json.dumps(shown)[1:-1] in " ".join(page.scripts) \
        or shown.replace("<", "\\u003c").replace(">", "\\u003e") in text, f"{shown!r} is not shown on the page"


@pytest.mark.parametrize("way", sorted(WAYS_IN))
def test_user_strings_reach_the_page_as_text(way, built):
    _check_page(built / (f"{way}.html"), WAYS_IN[way][1])


def test_index_shows_parameters_and_errors_as_text(built):
    page = _Page((built / "index.html").read_text(encoding="utf-8"))
    assert _live(page) == []
    text = " ".join(page.text)
    assert f"ValueError: {IMG} {SCRIPT}" in text                  # the failed notebook's error line
    assert "alert(5)" in text                                     # the parameters, as JSON text


def test_notebook_named_like_a_url_scheme_links_as_a_path(built):
    page = _Page((built / "index.html").read_text(encoding="utf-8"))
    hrefs = [a.get("href") or "" for t, a in page.tags if t == "a"]
    assert not [h for h in hrefs if h.lower().startswith("javascript:")], hrefs
    assert "javascript%3Aalert%288%29.html" in hrefs and (built / f"{SCHEME_NAME}.html").is_file()


def test_failed_page_banner_shows_the_error_as_text(built):
    page = _Page((built / "error.html").read_text(encoding="utf-8"))
    assert _live(page) == [] and any(f"ValueError: {IMG}" in t for t in page.text)


def test_report_json_keeps_the_strings_verbatim(built):
    manifest = json.loads((built / "report.json").read_text())
    assert manifest["meta"]["parameters"]["labels"] == LABELS
    by = {n["name"]: n for n in manifest["notebooks"]}
    assert by["note"]["sources"][0]["source"] == IMG


def test_real_notebook_labels_parameter_is_escaped(tmp_path):
    """The reported case: ``gdnlab report -n 02 -p 'labels=["<img src=x onerror=alert(6)>", ...]'``."""
    out = tmp_path / "rep"
    labels = ["<img src=x onerror=alert(6)>", "<b onclick=alert(7)>triton</b>"]
    done = subprocess.run([sys.executable, "-m", "gdnlab", "report", "-n", "02", "-j", "1", "--out", str(out),
                           "-p", "labels=" + json.dumps(labels)], cwd=str(REPO), text=True, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=400)
    assert done.returncode == 0, done.stderr
    page = _Page((out / "02_nsight_traces.html").read_text(encoding="utf-8"))
    assert _live(page) == [], _live(page)
    assert not [t for t, a in page.tags if t == "b" and "onclick" in a]
    assert any(labels[0] in t for t in page.text)                 # shown as text in the headings
