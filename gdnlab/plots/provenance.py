"""Provenance footnotes on figures: no figure is shown without GPU, versions, shapes and status."""
from __future__ import annotations

__all__ = ["add_provenance"]


def add_provenance(fig, text: str, *, size: int = 10):
    """Write ``text`` (e.g. from :func:`gdnlab.provenance.label`) as a footnote under the plot area.

    Long texts wrap at `` · `` separators. Returns the figure (modified in place) for chaining.
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
