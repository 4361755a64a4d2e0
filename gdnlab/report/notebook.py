"""What a notebook cell calls: :func:`setup`, :func:`load`, :func:`note`, :func:`show`, :func:`call`.

A notebook cell is a call or two; data that is not there becomes a clear message in the page
(``"no traces in traces/h100 — run gdnlab capture …"``), never a traceback. Each :func:`load` and
:func:`note` displays a data-source record (MIME :data:`SOURCE_MIME`) that the report build collects
into its index page; its status comes from the data's own metadata (:func:`data_status`).

Nothing here runs a sweep or a capture: a notebook that measures (``live=True``) calls the sweep API
itself, after :func:`cuda_ready` says a GPU is there. Importing this module is cheap (plotly, pandas
and IPython are imported inside the functions that use them).
"""
from __future__ import annotations

import html
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingData

__all__ = ["REPO_ROOT", "SOURCE_MIME", "RENDERER", "Missing", "MissingData", "missing", "resolve_path", "setup",
           "note", "load", "data_status", "describe", "concat_available", "call", "show", "table", "record",
           "cuda_ready"]

#: The checkout this package lives in (``gdnlab/report/../..``); data paths in notebooks are relative to it.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: MIME type of the data-source records a notebook displays (collected into the index page).
SOURCE_MIME = "application/vnd.gdnlab.source+json"

#: Plotly renderer of notebooks: the plotly mimetype only (one copy of each figure in the .ipynb);
#: the report build turns it into HTML that uses the report's one shared ``plotly.min.js``.
RENDERER = "plotly_mimetype"

#: Renderer of ``setup(embed_plotlyjs=True)``: the mimetype plus offline HTML, for plain ``jupyter nbconvert``.
STANDALONE_RENDERER = "plotly_mimetype+gdnlab_offline"

FIG_HEIGHT_PX = 480

_STATUS_COLOURS = {"measured": "#2b7a2b", "projected": "#8a5a00", "reported": "#1f5fa8", "synthetic": "#6b3fa0",
                   "missing": "#b03a2e"}


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
                + (f'<br><span style="color:#444">{inline_code(self.hint)}</span>' if self.hint else "")
                + "</div>")

    def _repr_markdown_(self) -> str:
        return f"**⚠ {html.escape(self.what)}**" + (f"  \n{inline_code(self.hint)}" if self.hint else "")


def inline_code(text: str) -> str:
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


def short_path(path: Path) -> str:
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
    if _is_ipython_kernel():
        from IPython.display import display

        display(obj, **kw)
    else:
        print(obj if not isinstance(obj, dict) else obj.get("text/plain", obj))


def _register_renderer() -> None:
    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    if "gdnlab_offline" in pio.renderers:
        return

    class OfflineHtmlRenderer(MimetypeRenderer):
        """``text/html`` that needs no network: a div and a ``Plotly.newPlot`` call (plotly.js is not
        inlined; MathJax is not loaded: plotly's ``notebook`` renderer would fetch it from a CDN)."""

        def to_mimebundle(self, fig_dict: dict) -> dict:
            return {"text/html": figure_html(fig_dict)}

    pio.renderers["gdnlab_offline"] = OfflineHtmlRenderer()


def figure_html(fig_dict: dict) -> str:
    """A figure (plotly's dict or JSON-ready dict) as an HTML div + ``Plotly.newPlot`` call; plotly.js
    must already be on the page. Used by the offline renderer and by the report export."""
    from plotly.io import to_html

    return to_html(fig_dict, include_plotlyjs=False, include_mathjax=False, full_html=False,
                   default_width="100%", default_height=FIG_HEIGHT_PX, validate=False,
                   config={"displaylogo": False, "responsive": True})


def setup(*, embed_plotlyjs: bool = False) -> None:
    """First call of every notebook: plotly rendering and readable pandas output.

    Figures are stored once, as the plotly mimetype (JupyterLab draws it; the report build turns it
    into HTML using the report's shared ``plotly.min.js``). ``embed_plotlyjs=True`` is for a notebook
    you export with plain ``jupyter nbconvert``: figures also get offline HTML and plotly.js (≈4.6 MB)
    is displayed once here, so the notebook grows: do not commit it that way.
    """
    import pandas as pd
    import plotly.io as pio

    _register_renderer()
    pio.renderers.default = STANDALONE_RENDERER if embed_plotlyjs else RENDERER
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

    The record (MIME :data:`SOURCE_MIME`) is collected by the report build into the index page's
    provenance summary. ``status`` is one of :data:`gdnlab.provenance.STATUSES` (``measured``,
    ``projected``, ``reported``, ``synthetic``) or ``missing``; ``fields`` are free-form
    (``gpu="NVIDIA H100 80GB HBM3"``, ``flashinfer=…``).
    """
    rec = {"source": str(source), "status": status, "detail": detail, "rows": rows,
           **{k: (None if v is None else str(v)) for k, v in fields.items()}}
    parts = [p for p in (status, f"{rows:,} rows" if rows is not None else None, detail,
                         *(f"{k} {v}" for k, v in fields.items() if v is not None)) if p]
    text = f"{source}: " + " · ".join(parts) if parts else str(source)
    if _is_ipython_kernel():
        from IPython.display import display

        colour = _STATUS_COLOURS.get(status or "", "#555")
        body = (f'<div class="gdnlab-source" style="font:12px sans-serif;color:#333;margin:4px 0">'
                f'<span style="color:{colour};font-weight:bold">{html.escape(status or "source")}</span> '
                f'· <code>{html.escape(str(source))}</code>'
                + "".join(f" · {html.escape(p)}" for p in parts[1 if status else 0:]) + "</div>")
        display({SOURCE_MIME: rec, "text/html": body, "text/plain": text}, raw=True)
    else:
        print(text)


def data_status(obj: Any) -> str | None:
    """The provenance status a loaded object's own metadata supports (``None`` when it says nothing).

    A sweep or counters table (rows with a ``gpu`` column) and a trace are ``measured`` only when
    their metadata says gdnlab captured them on a GPU, ``synthetic`` otherwise; see
    :func:`gdnlab.plots.provenance.frame_status` and :func:`~gdnlab.plots.provenance.trace_status`.
    """
    from ..plots.provenance import frame_status, trace_status

    if getattr(obj, "columns", None) is not None:
        return frame_status(obj)
    if callable(getattr(obj, "provenance", None)) and isinstance(getattr(obj, "metadata", None), dict):
        return trace_status(obj)
    return None


_PROV_KEYS = ("gpu", "sm", "flashinfer", "triton", "torch", "cuda", "git_commit")


def describe(obj: Any) -> dict[str, Any]:
    """Provenance fields of a loaded object: ``status`` (:func:`data_status`), and a DataFrame's
    ``rows`` and unique values of its provenance columns, or a trace's provenance line (``detail``)."""
    out: dict[str, Any] = {}
    status = data_status(obj)
    if status:
        out["status"] = status
    cols = getattr(obj, "columns", None)
    if cols is not None and hasattr(obj, "__len__"):
        out["rows"] = len(obj)
        if getattr(obj, "attrs", {}).get("mixed"):     # gdnlab.results.load_sweep(allow_mixed=True)
            out["mixed"] = str(obj.attrs["mixed"])
        for key in _PROV_KEYS:
            if key in cols:
                vals = sorted({str(v)[:10] if key == "git_commit" else str(v) for v in obj[key].dropna().unique()})
                if vals:
                    out[key] = ", ".join(vals[:4]) + (f" (+{len(vals) - 4})" if len(vals) > 4 else "")
        return out
    if status is not None:  # a trace: its footnote line, with the status word taken off the front
        from ..plots.provenance import trace_provenance_text

        out["detail"] = trace_provenance_text(obj).partition(" · ")[2]
        return out
    for attr in ("provenance", "meta", "info"):
        d = getattr(obj, attr, None)
        if isinstance(d, dict):
            for key in _PROV_KEYS + ("status", "nsys_version"):
                if d.get(key) is not None:
                    out[key] = str(d[key])
            break
    return out


def load(loader: Callable[..., Any], path: str | os.PathLike | None, *, what: str, hint: str = "",
         pattern: str | None = None, status: str | None = None, strict: bool = False,
         quiet: bool = False, **kwargs: Any) -> Any:
    """Call ``loader(resolved_path, **kwargs)`` when the data is there, else return :class:`Missing`.

    Args:
        loader: e.g. ``gdnlab.results.load_sweep`` or ``gdnlab.traces.load``.
        path: file or directory, relative to the repository root or absolute.
        what: what the data is, for messages ("H100 sweep").
        hint: how to get it ("run `gdnlab sweep --out traces/h100/sweep.parquet` on a GPU machine").
        pattern: for a directory, a glob its files must match (``"*.sqlite"``); the loader then
            gets the directory. With no match, the data counts as missing.
        status: provenance status shown when the data's own metadata says nothing (a table of
            someone else's numbers: ``reported``). The data's metadata always wins.
        strict: raise :class:`MissingData` instead of returning :class:`Missing`.
        quiet: do not display the source record.

    Missing data is the only case turned into a message: a path that is not there, or a loader that
    found none of what was asked and says so by returning an empty frame whose ``attrs["missing"]``
    holds the reason (:func:`gdnlab.analysis.engine_gap.load_engine_sweeps`). An unreadable file still
    raises the loader's own error (one that names the file), because that is a bug to fix.
    """
    p = resolve_path(path)
    gone: Missing | None = None
    if p is None:
        gone = Missing(f"no {what}: no path given", hint)
    elif not p.exists():
        gone = Missing(f"no {what}: {short_path(p)} does not exist", hint)
    elif p.is_dir() and pattern and not any(p.glob(pattern)):
        gone = Missing(f"no {what} in {short_path(p)} (nothing matches {pattern})", hint)
    if gone is None:
        obj = loader(p, **kwargs)
        why = getattr(obj, "attrs", {}).get("missing") if getattr(obj, "empty", False) else None
        if not why:
            if not quiet:
                desc = describe(obj)
                rows = desc.pop("rows", None)
                st = desc.pop("status", None) or status
                note(short_path(p), status=st, rows=rows, **desc)
            return obj
        gone = Missing(str(why).replace(str(p), short_path(p)), hint)
    if strict:
        raise MissingData(gone.message)
    if not quiet:
        _show_missing(gone, path, hint)
    return gone


def _show_missing(gone: Missing, path: Any, hint: str) -> None:
    """Display ``gone`` with its data-source record (status ``missing``), or print it outside a kernel."""
    if _is_ipython_kernel():
        from IPython.display import display

        display({SOURCE_MIME: {"source": str(path), "status": "missing", "detail": gone.what, "hint": hint or None},
                 "text/html": gone._repr_html_(), "text/plain": str(gone)}, raw=True)
    else:
        print(gone)


def record(obj: Any, source: str, *, detail: str = "", status: str | None = None, **fields: Any) -> Any:
    """Display the source record of data a notebook has in memory (not read by :func:`load`), e.g. the
    seed's reported rows (``gdnlab/data/seed_results.csv``), and return ``obj`` unchanged.

    Like :func:`load`'s record, its status is what the data's own metadata says (:func:`data_status`:
    the seed's rows carry ``status == "reported"``), ``status`` only where the data says nothing; the
    index page lists it with the notebook's other sources. A :class:`Missing` passes through."""
    if isinstance(obj, Missing):
        return obj
    desc = describe(obj)
    rows = desc.pop("rows", None)
    st = desc.pop("status", None) or status
    note(source, status=st, rows=rows, detail=detail, **{**desc, **fields})
    return obj


def cuda_ready(purpose: str = "live=True") -> bool:
    """Whether a CUDA GPU is visible; when not, displays why (``"live=True needs a CUDA GPU …"``).

    For a notebook's ``if live and report.cuda_ready(): ...`` around its own call of the sweep API.
    """
    import torch

    if torch.cuda.is_available():
        return True
    _display(Missing(f"{purpose} needs a CUDA GPU and none is visible here",
                     "showing the shipped data instead; `gdnlab backends` lists what can run"))
    return False


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


@dataclass(frozen=True)
class _Table:
    """A DataFrame shown through the report's table formatter (:func:`gdnlab.report.tables.format_table`:
    chosen columns, units in headers, 3-4 significant digits, ``—`` for empty cells, text wrapped), in
    a horizontally scrolling box so a wide table is never clipped."""

    df: Any
    columns: tuple[str, ...] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    max_columns: int = 14

    def view(self):
        from .tables import format_table

        return format_table(self.df, self.columns, max_columns=self.max_columns, headers=dict(self.headers))

    def __str__(self) -> str:
        return self.view().to_text()

    def _repr_html_(self) -> str:
        return '<div class="gdnlab-table" style="overflow-x:auto;max-width:100%">' + self.view().to_html() + "</div>"


def table(df: Any, columns: list[str] | tuple[str, ...] | None = None, *, headers: dict[str, str] | None = None,
          max_columns: int = 14) -> Any:
    """A DataFrame to :func:`show` with these ``columns`` (in order; names it lacks are skipped) and
    ``headers`` (text for some columns); :class:`Missing` passes through. Without ``columns`` the
    formatter chooses (:func:`gdnlab.report.tables.format_table`)."""
    if isinstance(df, Missing):
        return df
    return _Table(df, tuple(columns) if columns is not None else None, tuple((headers or {}).items()), max_columns)


def show(what: Any, *args: Any, heading: str | None = None, **kwargs: Any) -> None:
    """Display ``what(*args, **kwargs)`` (or ``what`` itself when not callable).

    If ``what`` or any argument is :class:`Missing`, a one-line "skipped — <what is missing>" is
    displayed instead and nothing is called. A returned figure, DataFrame or tuple/list of them is
    displayed item by item; a DataFrame goes through the table formatter (:func:`table`: units in
    headers, readable numbers, ``—`` for empty cells) and scrolls sideways rather than being cut off. ``heading`` is
    shown above as a small title (a ``title=`` keyword goes to ``what``). Returns ``None`` (so a
    last-line call does not display the figure twice); call the plot function directly to keep it.
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
        is_frame = hasattr(item, "to_string") and hasattr(item, "_repr_html_") and hasattr(item, "columns")
        _display(_Table(item) if is_frame else item)
    return None


def _display_heading(title: str) -> None:
    """A small title: HTML built from the escaped text (`backticks` become <code>), never Markdown or
    HTML taken from ``title`` itself (a notebook parameter may end up in it)."""
    if _is_ipython_kernel():
        from IPython.display import display

        display({"text/html": f'<h4 class="gdnlab-heading">{inline_code(str(title))}</h4>',
                 "text/plain": str(title)}, raw=True)
    else:
        print(f"== {title} ==")
