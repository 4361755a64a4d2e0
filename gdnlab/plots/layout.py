"""Figure layout shared by gdnlab's plots: where legends go, so they never cover axes or footnotes."""
from __future__ import annotations

__all__ = ["legend_right", "message_figure"]


def legend_right(fig, *, title: str | None = None):
    """Put the legend in a column right of the plot area (plotly grows the right margin to fit it), so it
    cannot overprint the x-axis title, tick labels or the provenance footnote below the plot.
    Returns the figure (modified in place)."""
    legend = {"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1.0, "yanchor": "top",
              "tracegroupgap": 4, "font": {"size": 11}}
    if title:
        legend["title"] = {"text": title}
    fig.update_layout(legend=legend)
    return fig


def message_figure(title: str, message: str):
    """An empty figure titled ``title``, axes hidden, that says ``message`` in its plot area (a figure
    with nothing to draw says why)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(title=title, template="plotly_white", xaxis={"visible": False}, yaxis={"visible": False})
    fig.add_annotation(text=message, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font={"size": 14, "color": "#8a5a00"})
    return fig
