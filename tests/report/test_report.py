"""gdnlab.report and ``gdnlab report``: notebook resolution, parameters and their checks, offline HTML
export with one shared plotly.js, partial reports, Ctrl-C, the report folder, notebook helpers.

Toy notebooks made in tmp_path keep this fast (a tiny kernel run or none); the real notebooks are
exercised in tests/report/test_notebooks.py and the browser test.
"""
from __future__ import annotations

import argparse
import json
import re

import pytest

from gdnlab import errors, report
from gdnlab.cli import report as cli_report

nbformat = pytest.importorskip("nbformat", reason="notebook extras not installed (pip install -e '.[notebooks]')")


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

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    cli_report.configure_parser(parser)
    return parser


def test_cli_parses_options_and_typed_parameters():
    parser = _parser()
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
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_parameters_are_checked_against_their_declarations(tmp_path):
    p = report.notebook_path(_write(tmp_path / "a.ipynb", _nb(params=(
        'max_kernels = 4000  # at least 1: kernels drawn\nlabels = ["a", "b"]  # names\nlive = False\n'
        'rate = 0.5  # a fraction\nbatches = [1, 4]  # at least 1: batch sizes\npath = "traces/x"  # where'))))
    ok = report.check_parameters([p], {"max_kernels": 10, "rate": 1, "batches": [2], "a": {"live": True}})
    assert ok == {"a": {"max_kernels": 10, "rate": 1, "batches": [2], "live": True}}
    bad = [({"max_kernels": -5}, "max_kernels=-5.*at least 1"), ({"max_kernels": 0}, "at least 1"),
           ({"max_kernels": 2.5}, "expects int"), ({"max_kernels": True}, "expects int"),
           ({"max_kernels": None}, "a value is needed"), ({"live": "yes"}, "expects bool"),
           ({"labels": "ab"}, "expects a list"), ({"batches": [1, -4]}, "at least 1"),
           ({"path": 3}, "expects str"), ({"rate": float("nan")}, "expects float")]
    for params, msg in bad:
        with pytest.raises(errors.InputError, match=msg):
            report.check_parameters([p], params)
    with pytest.raises(errors.InputError, match=r"parameters: \['nope'\]"):
        report.check_parameters([p], {"nope": 1})


def test_help_examples_are_valid_for_the_notebooks(capsys):
    """Every example ``gdnlab report --help`` shows parses and passes the parameter checks."""
    from gdnlab.cli import main

    with pytest.raises(SystemExit):
        main(["report", "--help"])
    help_text = capsys.readouterr().out
    parser = _parser()
    for cmd, _ in cli_report.EXAMPLES:
        assert cmd in help_text
        argv = cmd.split()[2:]
        assert argv or cmd == "gdnlab report"
        a = parser.parse_args(argv)
        params = cli_report.parameters_of(a.parameter)
        paths = report.resolve_notebooks(a.notebook)
        report.check_parameters(paths, params)   # raises InputError on a parameter no notebook takes
    for argv, msg in ((["-p", "max_kernels=-5"], "at least 1"), (["-p", "data_dir=/data/h100"], "not declared")):
        a = parser.parse_args(argv)
        with pytest.raises(errors.InputError, match=msg):
            report.check_parameters(report.resolve_notebooks(None), cli_report.parameters_of(a.parameter))


def test_per_notebook_parameter_on_the_command_line():
    a = _parser().parse_args(["-p", "02.max_kernels=100", "-p", "live=true"])
    assert cli_report.parameters_of(a.parameter) == {"02_nsight_traces": {"max_kernels": 100}, "live": True}


def test_report_folder_must_be_new_empty_or_a_report(tmp_path, capsys):
    from gdnlab.cli import main

    readme = tmp_path / "README.md"
    readme.write_text("keep me")
    assert main(["report", "--out", str(readme)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is an existing file, not a folder" in err[0] and "Traceback" not in err[0]
    assert readme.read_text() == "keep me"
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.jpg").write_text("x")
    with pytest.raises(errors.InputError, match="not a gdnlab report"):
        report.build_report(other, notebooks=["01"])
    with pytest.raises(errors.InputError, match="notebooks folder"):
        report.build_report(report.notebooks_dir(), notebooks=["01"])
    assert main(["report", "-n", "02", "-p", "max_kernels=-5", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_kernels=-5" in err[0] and "at least 1" in err[0]
    assert not (tmp_path / "r").exists()


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
    # plotly.js: one shared copy next to the page (plotly's own bundle), loaded once before the figure
    from plotly.offline import get_plotlyjs
    js = get_plotlyjs()
    assert js[:200] not in page
    tags = list(re.finditer(r'<script[^>]*src="' + re.escape(report.PLOTLY_JS) + '"', page))
    assert len(tags) == 1 and tags[0].start() < page.index("Plotly.newPlot")
    shared = (tmp_path / report.PLOTLY_JS).read_text(encoding="utf-8")
    assert len(shared) > 1_000_000 and "plotly" in shared[:2000].lower()
    assert "BANNER" in page and "<title>Toy notebook</title>" in page
    assert "CODE_MARKER" in page
    hidden = report.export_html(ipynb, tmp_path / "hidden.html", hide_code=True).read_text()
    assert "CODE_MARKER" not in hidden and "plotly-graph-div" in hidden


def test_export_html_without_figures_does_not_embed_plotly(tmp_path):
    ipynb = tmp_path / "t.ipynb"
    _write(ipynb, _nb(("markdown", "just text")))
    page = report.export_html(ipynb, tmp_path / "t.html").read_text()
    assert "Plotly.newPlot" not in page and len(page) < 1_000_000
    assert report.PLOTLY_JS not in page and not (tmp_path / report.PLOTLY_JS).exists()


def test_figures_are_stored_once_and_drawn_from_the_mimetype(tmp_path):
    """An executed notebook keeps one copy of each figure (the plotly mimetype, no HTML duplicate);
    the export turns it into a drawn figure."""
    import plotly.graph_objects as go
    import plotly.io as pio

    report.setup()
    assert pio.renderers.default == report.RENDERER == "plotly_mimetype"
    bundle = pio.renderers["plotly_mimetype"].to_mimebundle(go.Figure(go.Scatter(x=[1, 2], y=[2, 1])).to_dict())
    assert list(bundle) == ["application/vnd.plotly.v1+json"]
    nb = _nb(("code", "fig"))
    nb.cells[-1].outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    nb.cells[-1].execution_count = 1
    ipynb = _write(tmp_path / "m.ipynb", nb)
    page = report.export_html(report.notebook_path(ipynb), tmp_path / "m.html").read_text()
    assert page.count('class="plotly-graph-div"') == 1 and "Plotly.newPlot" in page


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
    # the executed notebooks sit beside their pages; nothing is left in the staging folder
    assert (out / "good.ipynb").exists() and not list(tmp_path.glob(".rep.building-*"))


def test_mixed_sweep_fails_the_notebook_unless_allowed_then_is_labelled(tmp_path):
    """A sweep of two GPUs is refused by the notebook's load_sweep; --allow-mixed loads it, and the
    index's source line says what it mixes."""
    from gdnlab import results

    df = results.load_sweep(report.REPO_ROOT / "traces/h100/sweep.parquet")
    df.loc[df.index[::2], "gpu"] = "NVIDIA H200"
    mixed = tmp_path / "mixed.parquet"
    df.to_parquet(mixed, index=False)
    code = f"from gdnlab import report, results\nreport.load(results.load_sweep, {str(mixed)!r}, what='s')"
    nb = _write(tmp_path / "m.ipynb", _nb(("code", code)))
    with pytest.raises(report.ReportError, match="measured on 2 GPUs"):
        report.build_report(tmp_path / "a", notebooks=[nb], jobs=1, log=lambda s: None)
    report.build_report(tmp_path / "b", notebooks=[nb], jobs=1, log=lambda s: None, allow_mixed=True)
    src = json.loads((tmp_path / "b" / "report.json").read_text())["notebooks"][0]["sources"][0]
    assert src["mixed"] == "2 GPUs (NVIDIA H100 80GB HBM3, NVIDIA H200)"
    index = (tmp_path / "b" / "index.html").read_text()
    assert "mixed 2 GPUs" in index and "allowed (--allow-mixed)" in index


def test_ctrl_c_keeps_built_pages_and_writes_the_index(tmp_path, monkeypatch):
    """Ctrl-C while the second notebook runs: the first page stays, the index is written and names the
    interrupted and the not-run notebooks, and the build raises Interrupted (exit 130 on the CLI)."""
    from gdnlab.report import build

    paths = [_write(tmp_path / f"n{i}.ipynb", _nb(("code", f"print('page {i}')"))) for i in (1, 2, 3)]
    real = build.execute_notebook

    def execute(src, out, *a, **kw):
        if src.stem == "n2":
            raise KeyboardInterrupt
        return real(src, out, *a, **kw)

    monkeypatch.setattr(build, "execute_notebook", execute)
    out = tmp_path / "rep"
    with pytest.raises(errors.Interrupted, match="1 of 3 notebooks built"):
        report.build_report(out, notebooks=paths, jobs=1)
    assert "page 1" in (out / "n1.html").read_text()
    manifest = json.loads((out / "report.json").read_text())
    by = {n["name"]: n for n in manifest["notebooks"]}
    assert by["n1"]["ok"] and by["n2"]["interrupted"] and by["n3"]["interrupted"] and not by["n3"]["html"]
    assert manifest["meta"]["interrupted"] is True
    index = (out / "index.html").read_text()
    assert 'href="n1.html"' in index and "INTERRUPTED" in index and "stopped by Ctrl-C" in index
    assert not list(tmp_path.glob(".rep.building-*"))


def test_ctrl_c_on_the_command_line_stops_within_seconds(tmp_path):
    """A real SIGINT to the whole process group (what a terminal's Ctrl-C sends) while one notebook
    sleeps: one line on stderr, no stack traces, exit 130, the finished page and the index kept."""
    import os
    import signal
    import subprocess
    import sys
    import time

    quick = _write(tmp_path / "quick.ipynb", _nb(("code", "print('quick done')")))
    slow = _write(tmp_path / "slow.ipynb", _nb(("code", "import time\ntime.sleep(120)")))
    out = tmp_path / "rep"
    proc = subprocess.Popen([sys.executable, "-m", "gdnlab", "report", "--out", str(out), "-j", "2",
                             "-n", quick, slow], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=str(report.REPO_ROOT))
    try:
        deadline = time.monotonic() + 90
        while not (out / "quick.html").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert (out / "quick.html").exists(), "the quick notebook never finished"
        time.sleep(0.5)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    final = [ln for ln in err.splitlines() if ln.startswith("gdnlab report: interrupted")]
    assert len(final) == 1 and "partial report" in final[0], err
    assert stopped_in < 12, f"took {stopped_in:.1f} s to stop"
    assert (out / "quick.html").exists() and (out / "index.html").exists()
    by = {n["name"]: n for n in json.loads((out / "report.json").read_text())["notebooks"]}
    assert by["quick"]["ok"] and by["slow"]["interrupted"]



def test_cli_exit_codes_and_arguments(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_build(**kw):
        seen.update(kw)
        if kw["notebooks"] == ["bad"]:
            raise report.ReportError(tmp_path / "index.html", {"bad": "RuntimeError: boom (cell [2])"})
        return tmp_path / "index.html"

    monkeypatch.setattr(cli_report, "build_report", fake_build)
    parser = _parser()
    assert cli_report.run(parser.parse_args(["--notebook", "bad"])) == 1
    err = capsys.readouterr().err
    assert "bad: RuntimeError: boom" in err and "partial report" in err
    argv = ["--out", "o", "-n", "01", "-j", "1", "--hide-code", "-p", "live=false"]
    assert cli_report.run(parser.parse_args(argv)) == 0
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


def test_a_loader_that_says_it_found_nothing_is_missing_data(tmp_path, capsys):
    """An empty frame whose attrs["missing"] gives the reason is missing data, like an absent path; an
    empty frame without a reason is data (zero rows)."""
    import pandas as pd

    none = pd.DataFrame({"gpu": pd.Series([], dtype="string")})
    none.attrs["missing"] = "no engine rows in the folder"
    got = report.load(lambda p: none, tmp_path, what="engine rows", hint="run the engine sweep")
    assert isinstance(got, report.Missing) and got.what == "no engine rows in the folder"
    assert got.hint == "run the engine sweep" and "no engine rows in the folder" in capsys.readouterr().out
    with pytest.raises(report.MissingData, match="no engine rows in the folder"):
        report.load(lambda p: none, tmp_path, what="engine rows", strict=True)
    zero = pd.DataFrame({"gpu": pd.Series([], dtype="string")})
    assert report.load(lambda p: zero, tmp_path, what="rows") is zero
    full = pd.DataFrame({"gpu": ["NVIDIA H200"]})
    full.attrs["missing"] = "ignored: the frame has rows"
    assert report.load(lambda p: full, tmp_path, what="rows") is full


def test_resolve_path_prefers_existing_and_keeps_absolute(tmp_path, monkeypatch):
    assert report.resolve_path(None) is None and report.resolve_path("") is None
    assert report.resolve_path(tmp_path) == tmp_path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.txt").write_text("x")
    assert report.resolve_path("here.txt") == (tmp_path / "here.txt").resolve()
    # a notebook runs in notebooks/: repo-root-relative paths still resolve
    here = "gdnlab/report/__init__.py"
    assert report.resolve_path(here) == (report.REPO_ROOT / here).resolve()


def test_show_displays_results_and_returns_none(capsys):
    assert report.show(lambda a, b: f"sum={a + b}", 2, b=3) is None
    assert "sum=5" in capsys.readouterr().out


def test_cuda_ready_without_cuda_says_so(capsys, monkeypatch):
    """The live switch of a notebook: without a GPU it says why and the notebook keeps the shipped data."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert report.cuda_ready() is False
    out = capsys.readouterr().out
    assert "live=True needs a CUDA GPU" in out and "shipped data" in out


def test_report_package_never_runs_a_sweep():
    """The report reads data; measuring is the notebook's own call of the sweep API."""
    import ast

    for f in (report.REPO_ROOT / "gdnlab" / "report").glob("*.py"):
        tree = ast.parse(f.read_text())
        mods = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in mods if m.split(".")[-1] in ("sweep", "capture", "workload")}, (f.name, mods)


def test_status_comes_from_the_data(capsys):
    """A frame that only names an H100 is synthetic; rows gdnlab made on a GPU are measured."""
    import pandas as pd

    from gdnlab import results

    bare = pd.DataFrame({"time_us": [1.0], "gpu": ["NVIDIA H100 80GB HBM3"]})
    assert report.data_status(bare) == "synthetic"
    shipped = results.load_sweep(report.REPO_ROOT / "traces/h100/sweep.parquet")
    assert report.data_status(shipped) == "measured"
    assert report.data_status(shipped.assign(sm=None)) == "synthetic"
    assert report.data_status(shipped.drop(columns=["gdnlab"])) == "synthetic"
    assert report.data_status(pd.DataFrame({"x": [1]})) is None
    report.load(lambda p: bare, report.REPO_ROOT / "README.md", what="a table", status="measured")
    assert capsys.readouterr().out.startswith("README.md: synthetic · 1 rows")


def test_wide_tables_scroll_instead_of_being_cut_off():
    import pandas as pd

    from gdnlab.report.notebook import _Table

    html = _Table(pd.DataFrame([[0] * 58] * 32))._repr_html_()
    assert html.startswith('<div class="gdnlab-table" style="overflow-x:auto')


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
