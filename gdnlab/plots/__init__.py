"""Plotly figures for notebooks and reports; each submodule covers one topic.

Every figure carries a provenance footnote (:func:`gdnlab.plots.provenance.add_provenance`).
"""
from .provenance import add_provenance

__all__ = ["add_provenance"]
