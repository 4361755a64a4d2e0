"""Notebooks → self-contained HTML reports, and the small helpers the notebooks call.

Two halves:

* **Building** (:func:`build_report`, CLI ``gdnlab report``): execute ``notebooks/*.ipynb`` with
  papermill (parameters injected after the ``parameters``-tagged cell), export each executed
  notebook to one HTML file with nbconvert — plotly.js embedded once per page, no CDN script
  (require.js and MathJax are dropped from nbconvert's ``lab`` template), so the file opens
  offline — and write ``index.html`` with a provenance summary plus ``report.json`` (the same as
  data). A notebook that fails does not stop the others: its partial HTML is kept, the index
  marks it failed, and :class:`ReportError` is raised at the end (the CLI exits 1).
* **Notebook side** (:func:`setup`, :func:`load`, :func:`show`, :func:`missing`, :func:`resolve_path`):
  a notebook cell is a call or two; missing data becomes a clear message in the page
  (``"no traces in traces/h100 — run gdnlab capture …"``), never a traceback.

Importing this module is cheap: papermill, nbconvert, jupyter_client and plotly are imported
only inside the functions that use them (the CLI imports every command module to build --help).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import html
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "NOTEBOOKS", "REPO_ROOT", "ReportError", "NotebookResult", "build_report", "execute_notebook",
    "export_html", "ensure_kernel", "notebook_path", "resolve_notebooks", "notebook_parameters",
    "configure_parser", "run",
    # notebook side
    "Missing", "MissingData", "setup", "resolve_path", "missing", "load", "call", "show", "note", "sweep_data",
    "SOURCE_MIME", "RENDERER",
]

#: The notebooks of the report, in order (file stems under ``notebooks/``).
NOTEBOOKS: tuple[str, ...] = ("01_kernel_sweep", "02_nsight_traces", "03_acceptance_length")

#: The checkout this module lives in (``gdnlab/..``); data paths in notebooks are relative to it.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: MIME type of the data-source records a notebook displays (collected into the index page).
SOURCE_MIME = "application/vnd.gdnlab.source+json"

#: Plotly renderer used in notebooks: the plotly mimetype (JupyterLab) + offline HTML (nbconvert).
RENDERER = "plotly_mimetype+gdnlab_offline"

_FIG_HEIGHT_PX = 480


# ---------------------------------------------------------------------------------------------
# Notebook side
# ---------------------------------------------------------------------------------------------

class MissingData(LookupError):
    """Raised by :func:`load` (``strict=True``) when the data a notebook needs is not there."""


@dataclass(frozen=True)
class Missing:
    """Stand-in for data that is absent; displays as a clear message instead of a traceback.

    :func:`show` displays the message instead of calling a plot whose argument is ``Missing``,
    so a notebook runs to its end on a machine without the data.
    """

    what: str
    hint: str = ""

    @property
    def message(self) -> str:
        return f"{self.what} — {self.hint}" if self.hint else self.what

    def __bool__(self) -> bool:  # ``if data:`` reads naturally in a notebook
        return False

    def __str__(self) -> str:
        return f"⚠ {self.message}"

    def _repr_html_(self) -> str:
        return ('<div class="gdnlab-missing" style="border-left:4px solid #d9822b;background:#fff7ed;'
                'padding:8px 12px;margin:6px 0;font-family:sans-serif">'
                f'<b>⚠ {html.escape(self.what)}</b>'
                + (f'<br><span style="color:#444">{_inline_code(self.hint)}</span>' if self.hint else "")
                + "</div>")

    def _repr_markdown_(self) -> str:
        return f"**⚠ {self.what}**" + (f"  \n{self.hint}" if self.hint else "")


def _inline_code(text: str) -> str:
    """Escape ``text`` for HTML and turn `backticked` spans into <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


@dataclass(frozen=True)
class _Skipped:
    """What :func:`show` displays in place of a plot whose data is missing: one grey line (the
    full message with its hint was displayed where the data was loaded)."""

    missing: Missing

    def __str__(self) -> str:
        return f"(skipped: {self.missing.what})"

    def _repr_html_(self) -> str:
        return (f'<div class="gdnlab-missing gdnlab-skipped" style="color:#8a5a00;font:italic 13px sans-serif;'
                f'margin:4px 0">skipped — {html.escape(self.missing.what)}</div>')


def missing(what: str, hint: str = "") -> Missing:
    """A :class:`Missing` marker, e.g. ``missing("no traces in traces/h100", "run `gdnlab capture …`")``."""
    return Missing(what, hint)


def resolve_path(path: str | os.PathLike | None) -> Path | None:
    """Resolve a data path written relative to the repository root (``traces/h100``).

    Absolute paths are returned as they are. A relative path is looked up in the current
    directory, the repository root and the parent of the current directory (a notebook runs in
    ``notebooks/``); the first that exists wins, else the repository-root form is returned.
    ``None`` and ``""`` give ``None``.
    """
    if path is None or str(path).strip() == "":
        return None
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    cwd = Path.cwd()
    for cand in (cwd / p, REPO_ROOT / p, cwd.parent / p):
        if cand.exists():
            return cand.resolve()
    return (REPO_ROOT / p).resolve() if (REPO_ROOT / "gdnlab").is_dir() else (cwd / p).resolve()


def _short(path: Path) -> str:
    """``path`` relative to the repository root when under it (for messages), else as given."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _is_ipython_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def _display(obj: Any, **kw: Any) -> None:
    """IPython ``display`` when in a kernel, else print (scripts and tests)."""
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with ipykernel
        print(obj)
        return
    if _is_ipython_kernel() or kw.get("raw"):
        display(obj, **kw)
    else:
        print(obj if not isinstance(obj, dict) else obj.get("text/plain", obj))


def _register_renderer() -> None:
    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    if "gdnlab_offline" in pio.renderers:
        return

    class OfflineHtmlRenderer(MimetypeRenderer):
        """``text/html`` that needs no network: a div and a ``Plotly.newPlot`` call. plotly.js is
        inlined once per page by :func:`export_html` (or by ``setup(embed_plotlyjs=True)``), and
        MathJax is not loaded (plotly's ``notebook`` renderer would fetch it from a CDN)."""

        def to_mimebundle(self, fig_dict: dict) -> dict:
            from plotly.io import to_html

            return {"text/html": to_html(fig_dict, include_plotlyjs=False, include_mathjax=False,
                                         full_html=False, default_width="100%",
                                         default_height=_FIG_HEIGHT_PX, validate=False,
                                         config={"displaylogo": False, "responsive": True})}

    pio.renderers["gdnlab_offline"] = OfflineHtmlRenderer()


def setup(*, embed_plotlyjs: bool = False) -> None:
    """First call of every notebook: offline plotly rendering and readable pandas output.

    Registers the ``gdnlab_offline`` renderer and makes ``plotly_mimetype+gdnlab_offline`` the
    default: JupyterLab renders the plotly mimetype, nbconvert the HTML (which needs no network).
    plotly.js itself (≈4.6 MB) is put into each page's ``<head>`` by :func:`export_html`, so the
    executed notebooks stay small; ``embed_plotlyjs=True`` also displays it here, for a notebook
    you export with plain ``jupyter nbconvert`` (it then stays in the .ipynb: do not commit that).
    """
    import pandas as pd
    import plotly.io as pio

    _register_renderer()
    pio.renderers.default = RENDERER
    pd.set_option("display.max_rows", 60)
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.width", 160)
    pd.set_option("display.float_format", lambda v: f"{v:,.4g}")
    if embed_plotlyjs and _is_ipython_kernel():
        from IPython.display import HTML, display
        from plotly.offline import get_plotlyjs

        display(HTML('<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: "local"};'
                     "</script>\n<script type=\"text/javascript\">" + get_plotlyjs() + "</script>"))


def note(source: str, *, status: str | None = None, detail: str = "", rows: int | None = None,
         **fields: Any) -> None:
    """Display a one-line record of where a notebook's data came from.

    The record (MIME :data:`SOURCE_MIME`) is collected by :func:`build_report` into the index
    page's provenance summary. ``status`` is ``measured`` / ``projected`` / ``reported`` (or
    ``missing``); ``fields`` are free-form (``gpu="NVIDIA H100 80GB HBM3"``, ``flashinfer=…``).
    """
    rec = {"source": str(source), "status": status, "detail": detail, "rows": rows,
           **{k: (None if v is None else str(v)) for k, v in fields.items()}}
    parts = [p for p in (status, f"{rows:,} rows" if rows is not None else None, detail,
                         *(f"{k} {v}" for k, v in fields.items() if v is not None)) if p]
    text = f"{source}: " + " · ".join(parts) if parts else str(source)
    if _is_ipython_kernel():
        from IPython.display import display

        colour = {"measured": "#2b7a2b", "projected": "#8a5a00", "reported": "#1f5fa8",
                  "missing": "#b03a2e"}.get(status or "", "#555")
        body = (f'<div class="gdnlab-source" style="font:12px sans-serif;color:#333;margin:4px 0">'
                f'<span style="color:{colour};font-weight:bold">{html.escape(status or "source")}</span> '
                f'· <code>{html.escape(str(source))}</code>'
                + "".join(f" · {html.escape(p)}" for p in parts[1 if status else 0:]) + "</div>")
        display({SOURCE_MIME: rec, "text/html": body, "text/plain": text}, raw=True)
    else:
        print(text)


_PROV_KEYS = ("status", "gpu", "sm", "flashinfer", "triton", "torch", "cuda")


def _describe(obj: Any) -> dict[str, Any]:
    """Provenance fields of a loaded object: a DataFrame's unique values of the provenance
    columns (``status``, ``gpu``, ``sm``, versions), or an object's ``provenance``/``meta`` dict."""
    out: dict[str, Any] = {}
    cols = getattr(obj, "columns", None)
    if cols is not None and hasattr(obj, "__len__"):
        out["rows"] = len(obj)
        for key in _PROV_KEYS:
            if key in cols:
                vals = sorted({str(v) for v in obj[key].dropna().unique()})
                if key == "status" and not set(vals) <= {"measured", "projected", "reported"}:
                    continue   # a row-outcome column (sweep: ok / oom / rejected ...), not provenance
                if vals:
                    out[key] = ", ".join(vals[:4]) + (f" (+{len(vals) - 4})" if len(vals) > 4 else "")
        return out
    prov = getattr(obj, "provenance", None)
    if callable(prov):  # e.g. gdnlab.traces.Trace.provenance() -> "measured · GPU (sm90) · file · nsys …"
        try:
            text = prov()
        except Exception:  # noqa: BLE001 - a summary line is optional
            text = None
        if isinstance(text, str) and text:
            head, _, rest = text.partition(" · ")
            if head in ("measured", "projected", "reported"):
                out["status"], text = head, rest
            out["detail"] = text
            return out
    for attr in ("provenance", "meta", "info"):
        d = getattr(obj, attr, None)
        if isinstance(d, Mapping):
            for key in _PROV_KEYS + ("nsys_version",):
                if d.get(key) is not None:
                    out[key] = str(d[key])
            break
    return out


def load(loader: Callable[..., Any], path: str | os.PathLike | None, *, what: str, hint: str = "",
         pattern: str | None = None, status: str | None = None, strict: bool = False,
         quiet: bool = False, **kwargs: Any) -> Any:
    """Call ``loader(resolved_path, **kwargs)`` when the data is there, else return :class:`Missing`.

    Args:
        loader: e.g. ``gdnlab.sweep.load_results`` or ``gdnlab.traces.load``.
        path: file or directory, relative to the repository root or absolute.
        what: what the data is, for messages ("H100 sweep").
        hint: how to get it ("run `gdnlab sweep --out traces/h100/sweep.parquet` on a GPU machine").
        pattern: for a directory, a glob its files must match (``"*.sqlite"``); the loader then
            gets the directory. With no match, the data counts as missing.
        status: provenance status shown when the object carries none (``measured`` …).
        strict: raise :class:`MissingData` instead of returning :class:`Missing`.
        quiet: do not display the source record.

    Missing data is the only case turned into a message: an unreadable file still raises the
    loader's own error (a ``ValueError`` that names the file), because that is a bug to fix.
    """
    p = resolve_path(path)
    gone: Missing | None = None
    if p is None:
        gone = Missing(f"no {what}: no path given", hint)
    elif not p.exists():
        gone = Missing(f"no {what}: {_short(p)} does not exist", hint)
    elif p.is_dir() and pattern and not any(p.glob(pattern)):
        gone = Missing(f"no {what} in {_short(p)} (nothing matches {pattern})", hint)
    if gone is not None:
        if strict:
            raise MissingData(gone.message)
        if not quiet:
            if _is_ipython_kernel():
                from IPython.display import display

                display({SOURCE_MIME: {"source": str(path), "status": "missing", "detail": gone.what,
                                       "hint": hint or None},
                         "text/html": gone._repr_html_(), "text/plain": str(gone)}, raw=True)
            else:
                print(gone)
        return gone
    obj = loader(p, **kwargs)
    if not quiet:
        desc = _describe(obj)
        rows = desc.pop("rows", None)
        st = desc.pop("status", None) or status
        note(_short(p), status=st, rows=rows, **desc)
    return obj


def sweep_data(path: str | os.PathLike | None, *, live: bool = False,
               live_out: str | os.PathLike = "out/sweep_live.parquet", **grid: Any) -> Any:
    """Sweep rows for notebook 01: the shipped file (``live=False``) or a fresh sweep (``live=True``).

    ``live=True`` runs :func:`gdnlab.sweep.run_sweep` with ``SweepConfig(**grid)`` (e.g.
    ``backends=["flashinfer", "triton"], concurrency=[1, 64, 256]``) into ``live_out`` — on a CUDA
    GPU only: without one the notebook says so and shows the shipped data instead. Returns a
    DataFrame or :class:`Missing`.
    """
    from .sweep import load_results

    hint = ("run `gdnlab sweep --out traces/h100/sweep.parquet` on a GPU machine "
            "(pip install -e '.[gpu]'), or this notebook with live=True there")
    if live:
        import torch

        if torch.cuda.is_available():
            from .sweep import SweepConfig, run_sweep

            cfg = SweepConfig(**{k: v for k, v in grid.items() if v is not None})
            out = resolve_path(live_out)
            out.parent.mkdir(parents=True, exist_ok=True)
            df = run_sweep(cfg, out, overwrite=True, progress=True)
            desc = _describe(df)
            note(_short(out), status=desc.pop("status", None) or "measured", rows=desc.pop("rows", None),
                 detail="live sweep", **desc)
            return df
        _display(Missing("live=True needs a CUDA GPU and none is visible here",
                         "showing the shipped sweep instead; `gdnlab backends` lists what can run"))
    return load(load_results, path, what="sweep results", hint=hint, status="measured")


def concat_available(*frames: Any) -> Any:
    """``pandas.concat`` of the frames that loaded; the first :class:`Missing` when none did."""
    import pandas as pd

    got = [f for f in frames if not isinstance(f, Missing)]
    if not got:
        return next(f for f in frames if isinstance(f, Missing))
    return pd.concat(got, ignore_index=True) if len(got) > 1 else got[0]


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, or the first :class:`Missing` among the arguments (nothing is called).

    For a derived table in a notebook: ``rb = report.call(traces.range_breakdown, trace)`` stays
    ``Missing`` when the trace is, and :func:`show` then prints the reason instead of a plot.
    """
    for a in (*args, *kwargs.values()):
        if isinstance(a, Missing):
            return a
    return fn(*args, **kwargs)


def show(what: Any, *args: Any, heading: str | None = None, **kwargs: Any) -> Any:
    """Display ``what(*args, **kwargs)`` (or ``what`` itself when not callable).

    If ``what`` or any argument is :class:`Missing`, a one-line "skipped — <what is missing>" is
    displayed instead and nothing is called. A returned figure, DataFrame or tuple/list of them is
    displayed item by item. ``heading`` is shown above as a small title (a ``title=`` keyword goes
    to ``what``). Returns ``None`` (so a last-line call does not display the figure twice); call
    the plot function directly to keep the figure.
    """
    for a in (what, *args, *kwargs.values()):
        if isinstance(a, Missing):
            if heading:
                _display_heading(heading)
            _display(_Skipped(a))
            return None
    result = what(*args, **kwargs) if callable(what) else what
    if heading:
        _display_heading(heading)
    items = result if isinstance(result, (list, tuple)) else (result,)
    for item in items:
        if item is None:
            continue
        _display(item)
    return None  # not the figure: a notebook's last-line ``show(...)`` would display it twice


def _display_heading(title: str) -> None:
    if _is_ipython_kernel():
        from IPython.display import Markdown, display

        display(Markdown(f"#### {title}"))
    else:
        print(f"== {title} ==")


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------

class ReportError(RuntimeError):
    """Some notebooks failed. The report was still written: ``index`` is its index page and
    ``failed`` maps each failed notebook to its error line."""

    def __init__(self, index: Path, failed: Mapping[str, str]) -> None:
        self.index = Path(index)
        self.failed = dict(failed)
        lines = "; ".join(f"{k}: {v}" for k, v in self.failed.items())
        super().__init__(f"{len(self.failed)} notebook(s) failed ({lines}); partial report at {self.index}")


@dataclass
class NotebookResult:
    """Outcome of one notebook: paths are relative to the report folder; ``seconds`` is the
    wall time of execution + export (s)."""

    name: str
    source: str
    ok: bool
    seconds: float
    ipynb: str | None = None
    html: str | None = None
    error: str | None = None
    sources: list[dict] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)


def notebooks_dir() -> Path:
    """``notebooks/`` of the checkout (or of the current directory when gdnlab is installed)."""
    for cand in (REPO_ROOT / "notebooks", Path.cwd() / "notebooks"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"no notebooks/ folder under {REPO_ROOT} or {Path.cwd()}")


def notebook_path(name: str | os.PathLike) -> Path:
    """The ``.ipynb`` for a name: a path, a stem (``01_kernel_sweep``), a number (``01``/``1``) or
    a unique part of a stem (``traces``). Raises ``ValueError`` naming ``notebooks`` otherwise."""
    s = str(name)
    p = Path(s)
    if p.suffix == ".ipynb" and p.exists():
        return p.resolve()
    folder = notebooks_dir()
    known = sorted(q.stem for q in folder.glob("*.ipynb"))
    stem = p.stem if p.suffix == ".ipynb" else s
    if stem in known:
        return folder / f"{stem}.ipynb"
    if stem.isdigit():
        hits = [k for k in known if k.split("_", 1)[0].isdigit() and int(k.split("_", 1)[0]) == int(stem)]
    else:
        hits = [k for k in known if stem.lower() in k.lower()]
    if len(hits) == 1:
        return folder / f"{hits[0]}.ipynb"
    why = "matches several" if hits else "matches none"
    raise ValueError(f"notebooks: {s!r} {why} of {known}")


def resolve_notebooks(names: Iterable[str | os.PathLike] | str | None) -> list[Path]:
    """Paths of the notebooks to run: all of :data:`NOTEBOOKS` (that exist) when ``names`` is None."""
    if names is None:
        folder = notebooks_dir()
        found = [folder / f"{n}.ipynb" for n in NOTEBOOKS if (folder / f"{n}.ipynb").exists()]
        if not found:
            raise FileNotFoundError(f"none of {NOTEBOOKS} in {folder}")
        return found
    if isinstance(names, (str, os.PathLike)):
        names = [names]
    out: list[Path] = []
    for n in names:
        p = notebook_path(n)
        if p not in out:
            out.append(p)
    if not out:
        raise ValueError("notebooks: empty list")
    return out


def notebook_parameters(path: str | os.PathLike) -> dict[str, Any]:
    """Parameters a notebook declares in its ``parameters`` cell: ``{name: default (source text)}``."""
    import nbformat
    from papermill.translators import PythonTranslator

    nb = nbformat.read(str(path), as_version=4)
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return {}
    return {p.name: p.default for p in PythonTranslator.inspect(cell)}


def _same_python(exe: str) -> bool:
    aliases = {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
    if exe in aliases:  # jupyter_client substitutes sys.executable for these
        return True
    try:
        return Path(exe).resolve() == Path(sys.executable).resolve()
    except OSError:
        return False


def ensure_kernel(kernel_name: str | None = None) -> str:
    """A Jupyter kernel that runs *this* Python (where gdnlab is importable).

    With ``kernel_name`` it must exist (``ValueError`` otherwise). Without, ``python3`` is used
    when it runs this interpreter (ipykernel's native spec or a ``python`` alias); else a kernel
    spec ``gdnlab-<hash>`` for ``sys.executable`` is installed for the user (ipykernel).
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    ksm = KernelSpecManager()
    if kernel_name:
        try:
            ksm.get_kernel_spec(kernel_name)
        except NoSuchKernel:
            raise ValueError(f"kernel_name: no Jupyter kernel {kernel_name!r}; installed: "
                             f"{sorted(ksm.find_kernel_specs())}") from None
        return kernel_name
    try:
        spec = ksm.get_kernel_spec("python3")
        if spec.argv and _same_python(spec.argv[0]):
            return "python3"
    except NoSuchKernel:
        pass
    try:
        from ipykernel.kernelspec import install
    except ImportError as exc:
        raise RuntimeError("no Jupyter kernel for this Python and ipykernel is not installed: "
                           "pip install -e '.[notebooks]'") from exc
    name = "gdnlab-" + hashlib.sha1(sys.executable.encode()).hexdigest()[:8]
    try:
        ksm.get_kernel_spec(name)
    except NoSuchKernel:
        install(user=True, kernel_name=name, display_name=f"Python (gdnlab, {sys.executable})")
    return name


@contextmanager
def _kernel_env(extra_path: Path) -> Iterator[None]:
    """Kernels inherit os.environ: put the checkout on PYTHONPATH (gdnlab importable even when
    not installed) and silence tqdm (a live sweep's progress bar is noise in an HTML page)."""
    old = {k: os.environ.get(k) for k in ("PYTHONPATH", "TQDM_DISABLE")}
    pp = os.environ.get("PYTHONPATH", "")
    if str(extra_path) not in pp.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(extra_path), pp) if x)
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _split_parameters(parameters: Mapping[str, Any] | None, stems: Sequence[str]) -> tuple[dict, dict]:
    """``parameters`` may hold plain values (for every notebook that declares them) and, under a
    notebook stem, a dict for that notebook only."""
    common: dict[str, Any] = {}
    per: dict[str, dict[str, Any]] = {}
    for k, v in (parameters or {}).items():
        if k in stems:
            if not isinstance(v, Mapping):
                raise ValueError(f"parameters[{k!r}] must be a dict of that notebook's parameters")
            per[k] = dict(v)
        else:
            common[k] = v
    return common, per


def execute_notebook(src: Path, out_ipynb: Path, parameters: Mapping[str, Any], kernel_name: str,
                     *, timeout: float | None = 600, start_timeout: float = 120) -> None:
    """Run ``src`` with papermill into ``out_ipynb`` (cwd: the notebook's folder, as in Jupyter).

    ``timeout`` is the limit per cell (s). Raises papermill's errors; the output notebook is
    written even when a cell fails."""
    import papermill

    papermill.execute_notebook(str(src), str(out_ipynb), parameters=dict(parameters),
                               kernel_name=kernel_name, language="python", cwd=str(src.parent), progress_bar=False,
                               execution_timeout=timeout, start_timeout=start_timeout,
                               request_save_on_cell_execute=False)


_OFFLINE_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{#- nbconvert's lab page, minus the scripts it fetches from a CDN (require.js, MathJax), plus
    plotly.js inline when the page has a figure: a gdnlab report opens offline. Mermaid is only
    fetched when a page has a diagram (none do). -#}
{%- block html_head_js -%}
{%- if resources.gdnlab_plotlyjs %}
<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: 'local'};</script>
<script type="text/javascript">{{ resources.gdnlab_plotlyjs }}</script>
{%- endif %}
{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block body_header -%}
{{ super() }}
{%- if resources.gdnlab_banner %}
<nav class="gdnlab-banner" style="font:13px sans-serif;padding:6px 16px;background:#f3f5f8;border-bottom:1px solid #dde">
{{ resources.gdnlab_banner }}
</nav>
{%- endif %}
{%- endblock body_header -%}
"""


def _template_dirs() -> list[str]:
    """Folders holding nbconvert's own templates (``lab``, ``base``) that Jupyter's search path may
    miss: nbconvert installs them under its *installation* prefix (``share/jupyter/nbconvert/
    templates``), which is not on the path of a venv made with ``--system-site-packages`` or of a
    ``pip install --user``. Only folders that exist are returned."""
    import nbconvert

    pkg = Path(nbconvert.__file__).resolve().parent
    cands = [pkg.parents[2] / "share/jupyter/nbconvert/templates",   # <prefix>/lib/pythonX.Y/site-packages
             pkg.parents[3] / "share/jupyter/nbconvert/templates",
             Path(sys.prefix) / "share/jupyter/nbconvert/templates",
             Path(sys.base_prefix) / "share/jupyter/nbconvert/templates"]
    out: list[str] = []
    for c in cands:
        if (c / "lab").is_dir() and str(c) not in out:
            out.append(str(c))
    return out


def export_html(ipynb: Path, html_path: Path, *, hide_code: bool = False, banner: str = "") -> Path:
    """Export an (executed) notebook to one self-contained HTML file (images embedded, no CDN).

    ``hide_code`` drops code cells' inputs and prompts (nbconvert ``exclude_input``), keeping outputs.
    ``banner`` is trusted HTML shown above the notebook (the report's navigation line).
    plotly.js is inlined once in ``<head>`` when a figure is on the page.
    """
    import nbformat
    from jinja2 import DictLoader, FileSystemLoader
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(ipynb), as_version=4)
    # A failed papermill run leaves its error banner cell; keep it (it says where it stopped).
    title = next((ln.lstrip("# ").strip() for c in nb.cells if c.cell_type == "markdown"
                  for ln in c.source.splitlines() if ln.startswith("# ")), ipynb.stem)
    nb.metadata["title"] = title
    roots = _template_dirs()
    exporter = HTMLExporter(template_name="lab", extra_template_basedirs=roots,
                            extra_loaders=[DictLoader({"gdnlab_offline.html.j2": _OFFLINE_TEMPLATE}),
                                           FileSystemLoader(roots)],
                            template_file="gdnlab_offline.html.j2", embed_images=True,
                            exclude_input=hide_code, exclude_input_prompt=hide_code,
                            exclude_output_prompt=hide_code)
    has_plot = any("plotly-graph-div" in str(out.get("data", {}).get("text/html", ""))
                   for c in nb.cells for out in c.get("outputs", []))
    plotlyjs = ""
    if has_plot:
        from plotly.offline import get_plotlyjs

        plotlyjs = get_plotlyjs()
    body, _ = exporter.from_notebook_node(nb, resources={"gdnlab_banner": banner, "gdnlab_plotlyjs": plotlyjs})
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(body, encoding="utf-8")
    return html_path


def _collect_sources(ipynb: Path) -> list[dict]:
    """The :data:`SOURCE_MIME` records a notebook displayed (see :func:`note`)."""
    import nbformat

    try:
        nb = nbformat.read(str(ipynb), as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable output notebook just has no sources
        return []
    recs = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            rec = out.get("data", {}).get(SOURCE_MIME)
            if isinstance(rec, Mapping) and rec not in recs:
                recs.append(dict(rec))
    return recs


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _build_meta(kernel: str, hide_code: bool, parameters: Mapping[str, Any]) -> dict[str, Any]:
    from .provenance import package_version

    commit = _git("rev-parse", "--short=12", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "gdnlab": _gdnlab_version(),
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
        "python": platform.python_version(),
        "kernel": kernel,
        "hide_code": hide_code,
        "parameters": {k: v for k, v in parameters.items()},
        "packages": {d: package_version(d) for d in ("torch", "triton", "flashinfer-python", "pandas",
                                                     "plotly", "papermill", "nbconvert")},
    }


def _gdnlab_version() -> str:
    from . import __version__

    return __version__


def _banner(meta: Mapping[str, Any], res: NotebookResult | None = None) -> str:
    commit = meta.get("git_commit") or "no git"
    if meta.get("git_dirty"):
        commit += " (modified)"
    parts = ['<a href="index.html">gdnlab report</a>', f"built {html.escape(meta['built'])}",
             f"commit {html.escape(commit)}", f"gdnlab {html.escape(meta['gdnlab'])}"]
    if res is not None and not res.ok:
        parts.append(f'<b style="color:#b03a2e">FAILED: {html.escape(res.error or "")}</b>')
    return " · ".join(parts)


def _json_safe(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))


def _jobs(jobs: int | None, n: int) -> int:
    """Notebooks run at once: ``jobs`` or, by default, one per CPU core (at most ``n``)."""
    if jobs is None:
        env = os.environ.get("GDNLAB_REPORT_JOBS")
        jobs = int(env) if env and env.isdigit() else (os.cpu_count() or 1)
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    return max(1, min(jobs, n))


def _run_one(src: str, out: str, params: dict, kernel: str, timeout: float | None, hide_code: bool,
             meta: dict) -> NotebookResult:
    """Execute one notebook and export it (in this process or a worker). Never raises for the
    notebook's own failure: the result says what went wrong, and what was written is kept."""
    src_p, out_p = Path(src), Path(out)
    name = src_p.stem
    out_nb, out_html = out_p / f"{name}.ipynb", out_p / f"{name}.html"
    for stale in (out_nb, out_html):
        stale.unlink(missing_ok=True)
    t0 = time.perf_counter()
    error = None
    try:
        execute_notebook(src_p, out_nb, params, kernel, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure is reported, the others still run
        error = _error_line(exc)
    res = NotebookResult(name=name, source=_short(src_p), ok=error is None, seconds=0.0,
                         error=error, parameters=_json_safe(params))
    if out_nb.exists():
        res.ipynb = out_nb.name
        res.sources = _collect_sources(out_nb)
        try:
            export_html(out_nb, out_html, hide_code=hide_code, banner=_banner(meta, res))
            res.html = out_html.name
        except Exception as exc:  # noqa: BLE001
            res.ok = False
            res.error = (res.error + "; " if res.error else "") + "HTML export: " + _error_line(exc)
    res.seconds = round(time.perf_counter() - t0, 2)
    return res


def build_report(out_dir: str | os.PathLike = "reports", notebooks: Iterable[str] | str | None = None,
                 hide_code: bool = False, parameters: Mapping[str, Any] | None = None,
                 kernel_name: str | None = None, *, timeout: float | None = 600, jobs: int | None = None,
                 raise_on_error: bool = True, log: Callable[[str], None] | None = None) -> Path:
    """Execute the notebooks and write ``<out_dir>/index.html`` plus one HTML per notebook.

    Args:
        out_dir: report folder (created; git-ignored ``reports/`` by default). Per notebook it
            gets ``<name>.html`` and the executed ``<name>.ipynb``; plus ``index.html`` and
            ``report.json`` (the index as data: status, seconds, errors, sources, provenance).
        notebooks: names (``01_kernel_sweep``, ``01``, ``traces``) or paths; all by default.
        hide_code: drop code from the HTML (outputs only).
        parameters: papermill parameters. A plain key goes to every notebook that declares it;
            a key that is a notebook stem holds a dict for that notebook alone. A key that no
            selected notebook declares is a ``ValueError``.
        kernel_name: Jupyter kernel; default: one running this Python (:func:`ensure_kernel`).
        timeout: limit per cell (s); ``None`` for none.
        jobs: notebooks executed at once, each in its own worker process and kernel (default: one
            per CPU core, or ``$GDNLAB_REPORT_JOBS``); ``1`` runs them one after another here.
        raise_on_error: raise :class:`ReportError` (after writing everything) if any notebook failed.
        log: progress lines (default: stderr).

    Returns:
        Path of ``index.html``.
    """
    if parameters is not None and not isinstance(parameters, Mapping):
        raise ValueError(f"parameters must be a dict, got {type(parameters).__name__}")
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    paths = resolve_notebooks(notebooks)
    stems = [p.stem for p in paths]
    common, per = _split_parameters(parameters, stems)
    declared = {p.stem: notebook_parameters(p) for p in paths}
    unknown = [k for k in common if not any(k in d for d in declared.values())]
    unknown += [f"{s}.{k}" for s, d in per.items() for k in d if k not in declared[s]]
    if unknown:
        raise ValueError(f"parameters: {unknown} not declared by any selected notebook; declared: "
                         f"{ {s: sorted(d) for s, d in declared.items()} }")
    kernel = ensure_kernel(kernel_name)
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    meta = _build_meta(kernel, hide_code, _json_safe(dict(parameters or {})))

    jobs = _jobs(jobs, len(paths))
    meta["jobs"] = jobs
    tasks = []
    for src in paths:
        params = {k: v for k, v in common.items() if k in declared[src.stem]} | per.get(src.stem, {})
        tasks.append((str(src), str(out), params, kernel, timeout, hide_code, meta))
    results: list[NotebookResult] = []
    t_all = time.perf_counter()

    def done(res: NotebookResult) -> None:
        results.append(res)
        say(f"gdnlab report: {res.name:<24} {'ok' if res.ok else 'FAILED'} ({res.seconds:.1f} s)"
            + (f" — {res.error}" if res.error else ""))

    with _kernel_env(REPO_ROOT):
        if jobs == 1:
            for t in tasks:
                done(_run_one(*t))
        else:  # separate processes: one kernel each, nothing shared but the output folder
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
                futs = {pool.submit(_run_one, *t): t for t in tasks}
                for f in as_completed(futs):
                    try:
                        done(f.result())
                    except Exception as exc:  # noqa: BLE001 - a worker that died still gets a row
                        src = Path(futs[f][0])
                        done(NotebookResult(name=src.stem, source=_short(src), ok=False, seconds=0.0,
                                            error=f"worker died: {_error_line(exc)}"))
    order = {p.stem: i for i, p in enumerate(paths)}
    results.sort(key=lambda r: order.get(r.name, len(order)))
    meta["seconds"] = round(time.perf_counter() - t_all, 2)
    index = _write_index(out, results, meta)
    failed = {r.name: r.error or "failed" for r in results if not r.ok}
    say(f"gdnlab report: {len(results) - len(failed)}/{len(results)} notebooks ok in {meta['seconds']:.1f} s → {index}")
    if failed and raise_on_error:
        raise ReportError(index, failed)
    return index


def _error_line(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None)
    if evalue is None:
        evalue = str(exc)
    cell = getattr(exc, "exec_count", None)
    line = f"{ename}: {str(evalue).strip().splitlines()[0] if str(evalue).strip() else ''}".rstrip(": ")
    return f"{line} (cell [{cell}])" if cell is not None else line


_INDEX_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:60rem;color:#222;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1rem 0} th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e3e3e3;vertical-align:top}
th{background:#f5f6f8;font-weight:600} td:first-child{white-space:nowrap} .ok{color:#2b7a2b;font-weight:600} .failed{color:#b03a2e;font-weight:600}
.src{font-size:.85rem;color:#444;margin:.1rem 0} code{background:#f3f3f3;padding:0 .25rem;border-radius:3px}
.measured{color:#2b7a2b}.projected{color:#8a5a00}.reported{color:#1f5fa8}.missing{color:#b03a2e}
.hint{color:#777;font-size:.8rem} .hint code{font-size:.75rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;font-size:.9rem} dt{color:#666}
"""


def _source_html(rec: Mapping[str, Any]) -> str:
    """One data-source record (see :func:`note`) as a line of the index page."""
    e = html.escape
    status = str(rec.get("status") or "source")
    parts = [f'<span class="{e(status)}">{e(status)}</span> <code>{e(str(rec.get("source")))}</code>']
    if rec.get("rows") not in (None, ""):
        parts.append(f"{int(rec['rows']):,} rows" if str(rec["rows"]).isdigit() else e(str(rec["rows"])))
    if rec.get("detail"):
        parts.append(e(str(rec["detail"])))
    parts += [f"{e(str(k))} {e(str(v))}" for k, v in rec.items()
              if k not in ("source", "status", "rows", "detail", "hint") and v not in (None, "", [])]
    line = " · ".join(parts)
    if rec.get("hint"):
        line += f'<br><span class="hint">{_inline_code(str(rec["hint"]))}</span>'
    return f'<div class="src">{line}</div>'


def _write_index(out: Path, results: Sequence[NotebookResult], meta: Mapping[str, Any]) -> Path:
    e = html.escape
    rows = []
    for r in results:
        status = '<span class="ok">ok</span>' if r.ok else f'<span class="failed">FAILED</span><br><small>{e(r.error or "")}</small>'
        link = f'<a href="{e(r.html)}">{e(r.name)}</a>' if r.html else e(r.name)
        extra = f' · <a href="{e(r.ipynb)}">.ipynb</a>' if r.ipynb else ""
        srcs = "".join(_source_html(s) for s in r.sources) or '<div class="src">—</div>'
        rows.append(f"<tr><td>{link}{extra}</td><td>{status}</td><td>{r.seconds:.1f} s</td><td>{srcs}</td></tr>")
    commit = (meta.get("git_commit") or "not a git checkout") + (" (with uncommitted changes)" if meta.get("git_dirty") else "")
    pk = ", ".join(f"{k} {v}" for k, v in meta["packages"].items() if v)
    params = json.dumps(meta.get("parameters") or {}, sort_keys=True) if meta.get("parameters") else "defaults"
    n_ok = sum(r.ok for r in results)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>gdnlab report</title><style>{_INDEX_CSS}</style></head>
<body>
<h1>gdnlab report</h1>
<p class="sub">GDN decode / MTP-verify kernels: sweeps, Nsight traces, acceptance-length model · {n_ok}/{len(results)} notebooks ok</p>
<table><thead><tr><th>notebook</th><th>status</th><th>time</th><th>data sources (status · provenance)</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<h2 style="font-size:1.1rem">Provenance</h2>
<dl>
<dt>built</dt><dd>{e(meta['built'])} on {e(meta['host'])} in {meta.get('seconds', 0):.1f} s</dd>
<dt>gdnlab</dt><dd>{e(meta['gdnlab'])} · commit {e(commit)}</dd>
<dt>python</dt><dd>{e(meta['python'])} · kernel <code>{e(meta['kernel'])}</code></dd>
<dt>packages</dt><dd>{e(pk)}</dd>
<dt>parameters</dt><dd><code>{e(params)}</code></dd>
<dt>status words</dt><dd><span class="measured">measured</span>: timed on the GPU named ·
<span class="projected">projected</span>: from a model · <span class="reported">reported</span>: copied from the seed PR (sglang#23273) ·
<span class="missing">missing</span>: data not shipped/captured yet</dd>
</dl>
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    manifest = {"meta": dict(meta), "notebooks": [asdict(r) for r in results]}
    (out / "report.json").write_text(json.dumps(_json_safe(manifest), indent=2), encoding="utf-8")
    return index


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def _parse_param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"-p/--parameter wants NAME=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    k = k.strip()
    if not k.isidentifier():
        raise argparse.ArgumentTypeError(f"-p/--parameter: {k!r} is not a parameter name")
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        words = {"true": True, "false": False, "none": None, "null": None}
        return k, words.get(v.strip().lower(), v)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """``gdnlab report [--out DIR] [--hide-code] [--notebook NAME ...] [-p NAME=VALUE ...]``."""
    parser.add_argument("--out", default="reports", help="report folder (default: reports/, git-ignored)")
    parser.add_argument("--hide-code", action="store_true", help="HTML without code cells (outputs only)")
    parser.add_argument("--notebook", "-n", nargs="+", action="extend", metavar="NAME",
                        help=f"notebooks to run (stem, number or part of a name); default: all of {', '.join(NOTEBOOKS)}")
    parser.add_argument("-p", "--parameter", action="append", type=_parse_param, default=[], metavar="NAME=VALUE",
                        help="papermill parameter for every notebook that declares it; VALUE is JSON "
                             "(true, 3, [1,4], \"x\") or a plain string. e.g. -p live=true -p data_dir=/data/h100")
    parser.add_argument("--kernel", default=None, help="Jupyter kernel name (default: one running this Python)")
    parser.add_argument("--timeout", type=float, default=600, help="limit per cell, s (default 600)")
    parser.add_argument("--jobs", "-j", type=int, default=None,
                        help="notebooks run at once, each in its own kernel (default: one per CPU core)")
    parser.add_argument("--list", action="store_true", help="list the notebooks and their parameters, then exit")


def run(args: argparse.Namespace) -> int:
    """Build the report; 0 when every notebook ran, 1 when some failed (partial report kept)."""
    if getattr(args, "list", False):
        for p in resolve_notebooks(args.notebook):
            params = notebook_parameters(p)
            print(f"{p.stem}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
        return 0
    try:
        index = build_report(out_dir=args.out, notebooks=args.notebook, hide_code=args.hide_code,
                             parameters=dict(args.parameter) or None, kernel_name=args.kernel,
                             timeout=args.timeout, jobs=args.jobs)
    except ReportError as exc:
        print(f"gdnlab report: failed: {', '.join(exc.failed)}; partial report: {exc.index}", file=sys.stderr)
        for k, v in exc.failed.items():
            print(f"  {k}: {v}", file=sys.stderr)
        return 1
    print(index)
    return 0
