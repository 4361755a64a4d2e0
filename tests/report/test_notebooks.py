"""The committed notebooks: clean (no outputs), parameterised, thin, and they run on the bundled data.

``built_report`` (session scope, tests/report/conftest.py) builds the whole report once through
:func:`gdnlab.report.build_report`, exactly as ``gdnlab report`` does; tests/report/test_report_browser.py
opens the same build in Chromium.
"""
from __future__ import annotations

import ast
import json

import pytest

from gdnlab import report

nbformat = pytest.importorskip("nbformat", reason="notebook extras not installed (pip install -e '.[notebooks]')")

NB_DIR = report.REPO_ROOT / "notebooks"
#: Aim for the whole report on CI's 2-core CPU machine (s): reported by the test, not asserted.
BUILD_BUDGET_S = 60.0
#: A notebook cell is "a call or two and a display": at most this many statements.
MAX_STATEMENTS = 4
#: The parameters that point at data files (relative to the repository root); 03 reads the seed
#: tables that ship inside the package, plus the H100 sweep for its measured-kernel what-if.
DATA_PARAMS = {"01_kernel_sweep": ("sweep_path", "counters_path", "counters_sweep_path", "strategy_sweep_path",
                                   "engine_sweep_root"),
               "02_nsight_traces": ("flashinfer_trace", "triton_trace", "strategy_trace_dir"),
               "03_acceptance_length": ("sweep_path",)}


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(str(NB_DIR / f"{name}.ipynb"), as_version=4)


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("name", report.NOTEBOOKS)
def test_committed_without_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{name}: cells {dirty} have outputs; clear them before committing"
    assert "papermill" not in nb.metadata and "widgets" not in nb.metadata
    assert nb.metadata.get("kernelspec", {}).get("language") == "python"


@pytest.mark.parametrize("name", report.NOTEBOOKS)
def test_has_one_parameters_cell_first(name):
    nb = _read(name)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: want exactly one 'parameters'-tagged cell, found {len(tagged)}"
    cell = nb.cells[tagged[0]]
    assert cell.cell_type == "code" and cell is _code_cells(nb)[0], f"{name}: parameters must be the first code cell"
    params = report.notebook_parameters(NB_DIR / f"{name}.ipynb")
    assert params, f"{name}: the parameters cell declares nothing"
    # every parameter is a literal (papermill overrides it; nothing computed there)
    for node in ast.parse(cell.source).body:
        assert isinstance(node, (ast.Assign, ast.AnnAssign)), f"{name}: parameters cell has {ast.dump(node)[:60]}"
        ast.literal_eval(node.value)
    for k in DATA_PARAMS[name]:
        assert k in params and params[k].strip("\"'").startswith("traces/"), f"{name}: data parameter {k}"


def test_kernel_sweep_has_live_switch():
    params = report.notebook_parameters(NB_DIR / "01_kernel_sweep.ipynb")
    assert params.get("live") == "False"


@pytest.mark.parametrize("name", report.NOTEBOOKS)
def test_cells_are_thin(name):
    """Logic lives in gdnlab/: no functions, classes or loops in a notebook, few statements a cell."""
    nb = _read(name)
    for i, c in enumerate(_code_cells(nb)):
        tree = ast.parse(c.source)
        logic = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.While, ast.Lambda)
        banned = [type(n).__name__ for n in ast.walk(tree) if isinstance(n, logic)]
        assert not banned, f"{name} code cell {i}: {banned} belong in gdnlab/, not in the notebook"
        if "parameters" in c.metadata.get("tags", []):
            continue  # literals only, checked above
        work = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
        assert len(work) <= MAX_STATEMENTS, f"{name} code cell {i}: {len(work)} statements"
    assert "report.setup()" in _code_cells(nb)[1].source, f"{name}: second code cell must call report.setup()"


def test_notebooks_execute_on_bundled_data(built_report):
    index, manifest, seconds = built_report
    by = {n["name"]: n for n in manifest["notebooks"]}
    assert sorted(by) == sorted(report.NOTEBOOKS)
    failed = {k: v["error"] for k, v in by.items() if not v["ok"]}
    assert not failed, f"notebooks failed on the bundled data: {failed} (see {index.parent})"
    for name, n in by.items():
        assert (index.parent / n["html"]).stat().st_size > 10_000
        # every notebook states where its data came from (or that it is missing), for the index
        assert n["sources"], f"{name}: no report.load/report.note record"
        assert all(s.get("status") in ("measured", "projected", "reported", "synthetic", "missing")
                   for s in n["sources"]), n["sources"]
    # Build time is a figure, not a pass/fail criterion (speed targets live in benchmarks): print it.
    print(f"report build on bundled data: {seconds:.1f} s (aim <= {BUILD_BUDGET_S:.0f} s on 2 CPU cores)")


def test_missing_data_is_a_message_not_a_traceback(tmp_path):
    """Point every data path at an empty folder: every notebook still runs to the end."""
    names = [n for n in report.NOTEBOOKS if DATA_PARAMS[n]]
    params = {n: {k: str(tmp_path / "empty" / k) for k in DATA_PARAMS[n]} for n in names}
    (tmp_path / "empty").mkdir()
    index = report.build_report(tmp_path / "out", notebooks=names, parameters=params, raise_on_error=False,
                                hide_code=True)
    manifest = json.loads((index.parent / "report.json").read_text())
    failed = {n["name"]: n["error"] for n in manifest["notebooks"] if not n["ok"]}
    assert not failed, failed
    for n in manifest["notebooks"]:
        page = (index.parent / n["html"]).read_text()
        assert "Traceback" not in page and "gdnlab-missing" in page, n["name"]
        assert any(s["status"] == "missing" for s in n["sources"]), n["name"]


def _figures(ipynb):
    """The plotly figures (dicts) an executed notebook stored."""
    nb = nbformat.read(str(ipynb), as_version=4)
    return [out["data"]["application/vnd.plotly.v1+json"] for c in nb.cells for out in c.get("outputs", [])
            if "application/vnd.plotly.v1+json" in out.get("data", {})]


def test_shipped_data_is_labelled_from_its_own_metadata(built_report):
    """The shipped sweeps and traces were made by gdnlab on the GPU their folder names (traces/h100,
    traces/h200): their records say measured. Files a checkout does not have yet are records of
    status missing, not mislabelled data (engine backends' traces ship once captured)."""
    from gdnlab import backends
    from gdnlab.analysis.strategy_traces import parse_trace_name

    index, manifest, _ = built_report
    by = {n["name"]: n for n in manifest["notebooks"]}
    sweeps = [s for s in by["01_kernel_sweep"]["sources"] if s["source"].endswith("sweep.parquet")]
    trace_recs = [s for s in by["02_nsight_traces"]["sources"] if s["source"].endswith(".sqlite")]
    # the H100 sweep (notebook 01) and the H200 sweep and traces of both backends ship with gdnlab
    assert any(s["source"] == "traces/h100/sweep.parquet" for s in sweeps)
    assert any(s["source"] == "traces/h200/sweep.parquet" for s in sweeps)
    for backend in ("flashinfer", "triton"):
        assert any(s["source"].startswith(f"traces/h200/{backend}_") for s in trace_recs), backend
    for rec in sweeps + trace_recs:
        if rec["status"] == "missing" and not rec["source"].startswith(("traces/h100/sweep", "traces/h200/")):
            continue
        named = parse_trace_name(rec["source"])
        if rec["status"] == "missing" and named and backends.get(named["backend"]).engine:
            continue
        gpu = "H200" if rec["source"].startswith("traces/h200/") else "H100"
        assert rec["status"] == "measured" and gpu in (rec.get("gpu") or rec.get("detail") or ""), rec


def test_report_is_small_and_plotly_js_is_shared(built_report):
    """One plotly.min.js per report folder, figures stored once per executed notebook, < 10 MB in all."""
    index, manifest, _ = built_report
    folder = index.parent
    files = [p for p in folder.iterdir() if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert total < 10_000_000, {p.name: p.stat().st_size for p in files}
    head = (folder / report.PLOTLY_JS).read_text(encoding="utf-8")[:200]
    for n in manifest["notebooks"]:
        page = (folder / n["html"]).read_text(encoding="utf-8")
        assert page.count("Plotly.newPlot") >= 1 and head not in page, f"{n['name']}: plotly.js inlined"
        nb = nbformat.read(str(folder / n["ipynb"]), as_version=4)
        for c in nb.cells:
            for out in c.get("outputs", []):
                html = str(out.get("data", {}).get("text/html", ""))
                assert "Plotly.newPlot" not in html, f"{n['name']}: a figure is stored twice"


def test_report_figures_use_the_shared_palette(built_report):
    """Every kernel class has the colour of gdnlab.plots.style in every panel of every figure, and each
    backend's sweep lines have the backend's colour."""
    from gdnlab import backends
    from gdnlab.plots import style

    index, manifest, _ = built_report
    folder = index.parent
    seen_classes, seen_backends = set(), set()
    for n in manifest["notebooks"]:
        for fig in _figures(folder / n["ipynb"]):
            for t in fig["data"]:
                colour = (t.get("line") or {}).get("color")
                if t.get("type") == "scattergl" and colour:
                    assert colour == style.kernel_class_color(t["name"]), (n["name"], t["name"], colour)
                    seen_classes.add(t["name"])
                head = str(t.get("name", "")).split(" · ")[0]
                if n["name"] == "01_kernel_sweep" and head in backends.names() and colour:
                    assert colour == style.backend_color(head), (t["name"], colour)
                    seen_backends.add(head)
    assert {"gdn", "commit"} <= seen_classes
    assert {"flashinfer", "triton"} <= seen_backends


@pytest.mark.gpu
def test_live_sweep_on_gpu_measures_rows(cuda_device, tmp_path):
    """Notebook 01 with live=True measures a small sweep through the sweep API and shows it."""
    out = tmp_path / "live.parquet"
    index = report.build_report(tmp_path / "rep", notebooks=["01"], raise_on_error=False,
                                parameters={"live": True, "live_out": str(out), "batches": [1, 4],
                                            "draft_tokens": [2]})
    manifest = json.loads((index.parent / "report.json").read_text())
    assert manifest["notebooks"][0]["ok"], manifest["notebooks"][0]["error"]
    from gdnlab import results

    df = results.load_sweep(out)
    assert len(df) > 0 and set(df["gpu"]) != {"cpu"} and (df["status"] == "ok").any()
    live = [s for s in manifest["notebooks"][0]["sources"] if s["source"].endswith("live.parquet")]
    assert live and live[0]["status"] == "measured"
