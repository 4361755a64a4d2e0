"""Provenance on figures: the status a dataset's own metadata supports, and the footnote every figure carries.

Statuses (:data:`gdnlab.provenance.STATUSES`) come from the data, never from the caller's hopes:

* a table of rows (sweep, counters) is ``measured`` when every row says gdnlab made it (a ``gdnlab``
  version or an ``engine`` column) and names the device it ran on (``gpu``, with ``sm`` for a GPU);
  ``synthetic`` otherwise (a frame built by hand or by a test that merely names a GPU);
* a trace is ``measured`` when its capture metadata says gdnlab ran it (nsys recorded a ``gdnlab``
  command, or the trace carries a ``gdnlab`` entry) on a GPU it names with its compute capability;
  ``synthetic`` otherwise (e.g. a generated trace that claims an H100).
"""
from __future__ import annotations

from typing import Any

__all__ = ["add_provenance", "frame_status", "trace_status", "trace_provenance_text", "is_blank"]


def is_blank(v: Any) -> bool:
    """A missing provenance value: None, NaN/NA, or an empty, "None", "nan" or "<NA>" string."""
    try:
        import pandas as pd

        if pd.isna(v):
            return True
    except (TypeError, ValueError):
        pass
    return str(v).strip() in ("", "None", "nan", "<NA>")


def frame_status(df: Any) -> str | None:
    """``measured`` / ``synthetic`` (or a status the frame states itself) for a table of rows; ``None``
    when the frame carries no provenance at all (no ``gpu`` column, no status).

    Order: ``df.attrs["status"]``; a ``status`` column whose values are all provenance statuses
    (a counters table); then the rows' own provenance columns, as the module docstring says.
    """
    from ..provenance import STATUSES

    st = getattr(df, "attrs", {}).get("status")
    if st in STATUSES:
        return st
    cols = set(getattr(df, "columns", ()))
    if "status" in cols and len(df):
        vals = {str(v) for v in df["status"].dropna().unique()}
        if vals and vals <= set(STATUSES):
            return "measured" if vals == {"measured"} else ("synthetic" if "synthetic" in vals else sorted(vals)[0])
    if "gpu" not in cols:
        return None
    if not len(df):
        return "synthetic"
    made_by = [c for c in ("gdnlab", "engine") if c in cols]
    if not made_by or df[made_by].map(is_blank).all(axis=1).any():
        return "synthetic"
    gpu = df["gpu"]
    if gpu.map(is_blank).any():
        return "synthetic"
    on_gpu = gpu.astype(str).str.lower() != "cpu"
    if on_gpu.any() and ("sm" not in cols or df.loc[on_gpu, "sm"].map(is_blank).any()):
        return "synthetic"
    return "measured"


def _captured_by_gdnlab(md: dict) -> bool:
    if md.get("gdnlab"):
        return True
    capture = md.get("capture") or {}
    values = []
    for k, v in capture.items():
        if str(k).startswith("PROCESS_") and (":COMMAND" in str(k) or ":ARGUMENT" in str(k)):
            values += v if isinstance(v, list) else [v]
    return any("gdnlab" in str(v) for v in values)


def trace_status(trace: Any) -> str:
    """``measured`` when the trace's metadata says gdnlab captured it on a named GPU, else ``synthetic``.

    A trace object may state its own status (a ``status`` attribute among the statuses): that wins."""
    from ..provenance import STATUSES

    own = getattr(trace, "status", None)
    if isinstance(own, str) and own in STATUSES:
        return own
    md = getattr(trace, "metadata", None) or {}
    gpus = md.get("gpus") or []
    real_gpu = bool(gpus) and bool(gpus[0].get("name")) and bool(gpus[0].get("sm")) \
        and not gpus[0].get("sm_inferred")
    return "measured" if real_gpu and _captured_by_gdnlab(md) else "synthetic"


def trace_provenance_text(trace: Any) -> str:
    """A trace's footnote line (``Trace.provenance()``) with the status word from :func:`trace_status`:
    ``synthetic · NVIDIA H100 80GB HBM3 (sm90) · hm.sqlite · nsys 2025.3.2`` for a generated trace."""
    from ..provenance import STATUSES

    text = str(trace.provenance())
    head, sep, rest = text.partition(" · ")
    body = rest if head in STATUSES else text
    return f"{trace_status(trace)} · {body}" if body else trace_status(trace)


def add_provenance(fig, text: str, *, size: int = 10):
    """Write ``text`` (e.g. from :func:`gdnlab.provenance.label`) as a footnote under the plot area.

    Long texts wrap at `` · `` separators. The bottom margin grows to hold it, so it never overlaps
    tick labels, the x-axis title or a legend (legends sit right of the plot, see
    :func:`gdnlab.plots.layout.legend_right`). Returns the figure (modified in place) for chaining.
    """
    if not text or not str(text).strip():
        raise ValueError("add_provenance needs a non-empty provenance text (GPU, versions, shapes, status)")
    words, lines, cur = str(text).split(" · "), [], ""
    for w in words:
        cand = f"{cur} · {w}" if cur else w
        if len(cand) > 140 and cur:
            lines.append(cur)
            cur = w
        else:
            cur = cand
    lines.append(cur)
    # Anchored at the bottom of the plot area and pushed down in pixels, below tick labels and the
    # x-axis title (a paper-fraction offset would collide with them on short figures).
    fig.add_annotation(text="<br>".join(lines), xref="paper", yref="paper", x=0, y=0, yshift=-62, xanchor="left",
                       yanchor="top", showarrow=False, align="left", font={"size": size, "color": "#555"},
                       name="provenance")
    margin_b = 80 + 14 * len(lines)
    fig.update_layout(margin={"b": max(margin_b, (fig.layout.margin.b or 0))})
    fig.layout.meta = {**(fig.layout.meta or {}), "provenance": str(text)} if isinstance(fig.layout.meta, dict) \
        else {"provenance": str(text)}
    return fig
