"""gdnlab.report: notebook resolution, parameters, offline HTML export, partial reports, notebook helpers.

Toy notebooks made in tmp_path keep this fast (one tiny kernel run); the real notebooks are
exercised in tests/test_notebooks.py and the browser test.
"""
from __future__ import annotations

import argparse
import json
import re

import pytest

nbformat = pytest.importorskip("nbformat", reason="notebook extras not installed (pip install -e '.[notebooks]')")

from gdnlab import report


def _nb(*cells: tuple[str, str], params: str | None = "x = 1") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = [nbformat.v4.new_markdown_cell("# Toy notebook")]
    if params is not None:
        c = nbformat.v4.new_code_cell(params)
        c.metadata["tags"] = ["parameters"]
        out.append(c)
    for kind, src in cells:
        out.append(nbformat.v4.new_code_cell(src) if kind == "code" else nbformat.v4.new_markdown_cell(src))
    nb.cells = out
    return nb


def _write(path, nb) -> str:
    nbformat.write(nb, str(path))
    return str(path)


# --- notebook names -------------------------------------------------------------------------

def test_notebook_path_accepts_stem_number_and_part():
    assert report.notebook_path("01_kernel_sweep").name == "01_kernel_sweep.ipynb"
    assert report.notebook_path("2").name == "02_nsight_traces.ipynb"
    assert report.notebook_path("02").name == "02_nsight_traces.ipynb"
    assert report.notebook_path("acceptance").name == "03_acceptance_length.ipynb"
    assert [p.stem for p in report.resolve_notebooks(None)] == list(report.NOTEBOOKS)


@pytest.mark.parametrize("bad", ["nope", "0", "_"])
def test_notebook_path_rejects_unknown_or_ambiguous(bad):
    with pytest.raises(ValueError, match="notebooks"):
        report.notebook_path(bad)


def test_notebook_parameters_reads_the_tagged_cell(tmp_path):
    p = _write(tmp_path / "a.ipynb", _nb(params='data_dir = "traces/h100"  # where\nlive = False\nn: int = 3'))
    assert report.notebook_parameters(p) == {"data_dir": '"traces/h100"', "live": "False", "n": "3"}
    assert report.notebook_parameters(_write(tmp_path / "b.ipynb", _nb(params=None))) == {}


# --- CLI ------------------------------------------------------------------------------------

def test_cli_parses_options_and_typed_parameters():
    parser = argparse.ArgumentParser()
    report.configure_parser(parser)
    a = parser.parse_args(["--out", "x", "--hide-code", "--notebook", "01", "03",
                           "-p", "live=true", "-p", "batches=[1,4]", "-p", "data_dir=/d/h100", "-p", "n=none"])
    assert a.out == "x" and a.hide_code and a.notebook == ["01", "03"]
    assert dict(a.parameter) == {"live": True, "batches": [1, 4], "data_dir": "/d/h100", "n": None}
    with pytest.raises(SystemExit):
        parser.parse_args(["-p", "no_equals_sign"])


def test_unknown_parameter_is_a_clear_value_error(tmp_path):
    p = _write(tmp_path / "a.ipynb", _nb(("code", "print(x)")))
    with pytest.raises(ValueError, match=r"parameters: \['typo'\]"):
        report.build_report(tmp_path / "out", notebooks=[p], parameters={"typo": 1})
    with pytest.raises(ValueError, match="parameters must be a dict"):
        report.build_report(tmp_path / "out", notebooks=[p], parameters=[("x", 1)])


def test_unknown_kernel_is_a_clear_value_error():
    with pytest.raises(ValueError, match="kernel_name"):
        report.ensure_kernel("no-such-kernel-xyz")
    assert report.ensure_kernel() in ("python3",) or report.ensure_kernel().startswith("gdnlab-")


# --- HTML export ----------------------------------------------------------------------------

def _executed_plot_notebook():
    import plotly.graph_objects as go
    import plotly.io as pio

    report.setup()  # registers the offline renderer (outside a kernel nothing is displayed)
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2]))
    bundle = pio.renderers["gdnlab_offline"].to_mimebundle(fig.to_dict())
    assert "cdn" not in bundle["text/html"].lower()
    nb = _nb(("code", "fig  # CODE_MARKER"))
    nb.cells[-1].outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    nb.cells[-1].execution_count = 1
    return nb


def test_export_html_is_offline_and_hides_code(tmp_path):
    ipynb = tmp_path / "plot.ipynb"
    _write(ipynb, _executed_plot_notebook())
    page = report.export_html(ipynb, tmp_path / "plot.html", banner="<b>BANNER</b>").read_text()
    # no script or stylesheet fetched from the network (require.js / MathJax CDN dropped)
    assert not re.findall(r'<script[^>]+src="https?://', page)
    assert not re.findall(r'<link[^>]+href="https?://', page)
    assert "plotly-graph-div" in page and "Plotly.newPlot" in page
    # plotly.js inlined exactly once, before the figure that needs it
    from plotly.offline import get_plotlyjs
    js = get_plotlyjs()
    assert page.count(js[:200]) == 1 and page.index(js[:200]) < page.index("Plotly.newPlot")
    assert "BANNER" in page and "<title>Toy notebook</title>" in page
    assert "CODE_MARKER" in page
    hidden = report.export_html(ipynb, tmp_path / "hidden.html", hide_code=True).read_text()
    assert "CODE_MARKER" not in hidden and "plotly-graph-div" in hidden


def test_export_html_without_figures_does_not_embed_plotly(tmp_path):
    ipynb = tmp_path / "t.ipynb"
    _write(ipynb, _nb(("markdown", "just text")))
    page = report.export_html(ipynb, tmp_path / "t.html").read_text()
    assert "Plotly.newPlot" not in page and len(page) < 1_000_000


# --- build: a failing notebook does not lose the others ---------------------------------------

def test_build_report_keeps_partial_outputs_and_names_the_failure(tmp_path):
    good = _write(tmp_path / "good.ipynb", _nb(
        ("code", "from gdnlab import report\nreport.setup()"),
        ("code", "report.note('traces/h100/sweep.parquet', status='measured', rows=x, gpu='H100')"),
        ("code", "print('x is', x)")))
    bad = _write(tmp_path / "bad.ipynb", _nb(("code", "raise RuntimeError('boom ' + str(x))")))
    out = tmp_path / "rep"
    with pytest.raises(report.ReportError) as ei:
        report.build_report(out, notebooks=[bad, good], parameters={"x": 7, "good": {"x": 5}}, jobs=2)
    err = ei.value
    assert list(err.failed) == ["bad"] and "RuntimeError: boom 7" in err.failed["bad"]
    assert err.index == out / "index.html" and err.index.exists()
    # both pages written; the failed one is partial but present
    assert (out / "good.html").exists() and (out / "bad.html").exists()
    good_page = (out / "good.html").read_text()
    assert "x is 5" in good_page  # per-notebook parameter beats the common one
    manifest = json.loads((out / "report.json").read_text())
    by = {n["name"]: n for n in manifest["notebooks"]}
    assert by["good"]["ok"] and not by["bad"]["ok"]
    assert by["good"]["sources"] == [{"source": "traces/h100/sweep.parquet", "status": "measured",
                                      "detail": "", "rows": 5, "gpu": "H100"}]
    index = err.index.read_text()
    assert 'href="good.html"' in index and "FAILED" in index and "boom 7" in index
    assert "measured" in index and "traces/h100/sweep.parquet" in index
    assert manifest["meta"]["parameters"] == {"x": 7, "good": {"x": 5}}



def test_cli_exit_codes_and_arguments(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_build(**kw):
        seen.update(kw)
        if kw["notebooks"] == ["bad"]:
            raise report.ReportError(tmp_path / "index.html", {"bad": "RuntimeError: boom (cell [2])"})
        return tmp_path / "index.html"

    monkeypatch.setattr(report, "build_report", fake_build)
    parser = argparse.ArgumentParser()
    report.configure_parser(parser)
    assert report.run(parser.parse_args(["--notebook", "bad"])) == 1
    err = capsys.readouterr().err
    assert "bad: RuntimeError: boom" in err and "partial report" in err
    assert report.run(parser.parse_args(["--out", "o", "-n", "01", "-j", "1", "--hide-code", "-p", "live=false"])) == 0
    assert seen == {"out_dir": "o", "notebooks": ["01"], "hide_code": True, "parameters": {"live": False},
                    "kernel_name": None, "timeout": 600, "jobs": 1}
    assert capsys.readouterr().out.strip() == str(tmp_path / "index.html")


# --- notebook-side helpers (outside a kernel they print) --------------------------------------

def test_missing_data_becomes_a_message_not_a_call(tmp_path, capsys):
    called = []
    m = report.load(lambda p: called.append(p), tmp_path / "nowhere", what="H100 traces",
                    hint="run `gdnlab capture`")
    assert isinstance(m, report.Missing) and not m and not called
    assert "no H100 traces" in m.message and "gdnlab capture" in m.message
    assert "<code>gdnlab capture</code>" in m._repr_html_()
    (tmp_path / "empty").mkdir()
    m2 = report.load(lambda p: p, tmp_path / "empty", what="traces", pattern="*.sqlite")
    assert isinstance(m2, report.Missing) and "*.sqlite" in m2.message
    with pytest.raises(report.MissingData, match="no traces"):
        report.load(lambda p: p, tmp_path / "empty", what="traces", pattern="*.sqlite", strict=True)
    assert report.show(lambda d: called.append(d), m) is None and not called
    assert "no H100 traces" in capsys.readouterr().out
    assert isinstance(report.load(lambda p: p, None, what="seed"), report.Missing)


def test_load_calls_the_loader_and_summarises_provenance(tmp_path, capsys):
    import pandas as pd

    f = tmp_path / "sweep.parquet"
    f.write_bytes(b"")
    df = pd.DataFrame({"time_us": [1.0, 2.0], "gpu": ["NVIDIA H100 80GB HBM3"] * 2, "status": ["measured"] * 2})
    got = report.load(lambda p: df if p == f else None, f, what="sweep")
    assert got is df
    line = capsys.readouterr().out
    assert "measured" in line and "2 rows" in line and "NVIDIA H100 80GB HBM3" in line


def test_resolve_path_prefers_existing_and_keeps_absolute(tmp_path, monkeypatch):
    assert report.resolve_path(None) is None and report.resolve_path("") is None
    assert report.resolve_path(tmp_path) == tmp_path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.txt").write_text("x")
    assert report.resolve_path("here.txt") == (tmp_path / "here.txt").resolve()
    # a notebook runs in notebooks/: repo-root-relative paths still resolve
    assert report.resolve_path("gdnlab/report.py") == (report.REPO_ROOT / "gdnlab/report.py").resolve()


def test_show_displays_results_and_returns_none(capsys):
    assert report.show(lambda a, b: f"sum={a + b}", 2, b=3) is None
    assert "sum=5" in capsys.readouterr().out


def test_live_sweep_without_cuda_says_so_and_falls_back(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    got = report.sweep_data(tmp_path / "none.parquet", live=True, live_out=tmp_path / "live.parquet",
                            concurrency=[1])
    out = capsys.readouterr().out
    assert "live=True needs a CUDA GPU" in out
    assert isinstance(got, report.Missing) and "none.parquet" in got.message
    assert not (tmp_path / "live.parquet").exists()


@pytest.mark.gpu
def test_live_sweep_on_gpu_measures_rows(cuda_device, tmp_path):
    df = report.sweep_data(None, live=True, live_out=tmp_path / "live.parquet", concurrency=[1, 4],
                           draft_tokens=[2], state_dtypes=["float32"], warmup=1, repeats=3)
    assert (tmp_path / "live.parquet").exists() and len(df) > 0
    assert set(df["gpu"]) != {"cpu"} and (df["status"] == "ok").any()


def test_ensure_kernel_installs_one_for_this_python_when_python3_is_foreign(monkeypatch):
    from types import SimpleNamespace

    import ipykernel.kernelspec as iks
    from jupyter_client import kernelspec as jks

    installed = {}

    def fake_get(self, name):
        if name == "python3":
            return SimpleNamespace(argv=["/opt/other-env/bin/python", "-m", "ipykernel_launcher"])
        if name in installed:
            return SimpleNamespace(argv=[installed[name]])
        raise jks.NoSuchKernel(name)

    def fake_install(user, kernel_name, display_name):
        assert user is True
        installed[kernel_name] = "this python"

    monkeypatch.setattr(jks.KernelSpecManager, "get_kernel_spec", fake_get)
    monkeypatch.setattr(iks, "install", fake_install)
    name = report.ensure_kernel()
    assert name.startswith("gdnlab-") and name in installed
    assert report.ensure_kernel() == name and len(installed) == 1  # the second call reuses it
