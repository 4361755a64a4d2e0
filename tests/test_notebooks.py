"""The committed notebooks: clean (no outputs), parameterised, thin, and they run on the bundled data.

``built_report`` (session scope) builds the whole report once through :func:`gdnlab.report.build_report`,
exactly as ``gdnlab report`` does; tests/test_report_browser.py opens the same build in Chromium.
"""
from __future__ import annotations

import ast
import json
import time

import pytest

nbformat = pytest.importorskip("nbformat", reason="notebook extras not installed (pip install -e '.[notebooks]')")

from gdnlab import report

NB_DIR = report.REPO_ROOT / "notebooks"
#: Aim for the whole report on CI's 2-core CPU machine (s): reported by the test, not asserted.
BUILD_BUDGET_S = 60.0
#: A notebook cell is "a call or two and a display": at most this many statements.
MAX_STATEMENTS = 4
#: The parameters that point at data files (relative to the repository root); 03 reads the seed
#: tables that ship inside the package, plus the H100 sweep for its measured-kernel what-if.
DATA_PARAMS = {"01_kernel_sweep": ("sweep_path", "metrics_path"),
               "02_nsight_traces": ("flashinfer_trace", "triton_trace"),
               "03_acceptance_length": ("sweep_path",)}


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(str(NB_DIR / f"{name}.ipynb"), as_version=4)


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


_BUILT: dict[str, tuple] = {}


@pytest.fixture(scope="session")
def built_report(tmp_path_factory):
    """(index path, report.json as dict, wall seconds) of one full build on the bundled data.

    Built once per test session even though tests/test_report_browser.py imports this fixture
    (an imported fixture is a second definition with its own cache: hence the module-level one).
    """
    key = str(tmp_path_factory.getbasetemp())
    if key not in _BUILT:
        out = tmp_path_factory.mktemp("report")
        t0 = time.perf_counter()
        index = report.build_report(out, raise_on_error=False)
        seconds = time.perf_counter() - t0
        _BUILT[key] = (index, json.loads((out / "report.json").read_text()), seconds)
    return _BUILT[key]


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
        banned = [type(n).__name__ for n in ast.walk(tree)
                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.While, ast.Lambda))]
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
        assert all(s.get("status") in ("measured", "projected", "reported", "missing") for s in n["sources"]), n["sources"]
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
