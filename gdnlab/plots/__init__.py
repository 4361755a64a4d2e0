"""Plotly figures for notebooks and reports; each submodule covers one topic, each builder ends in ``_figure``.

* :mod:`.sweep` — kernel sweeps (time and bandwidth vs batch, pool-scoped buffer cost, seed overlay);
* :mod:`.traces` — Nsight / Kineto traces (timelines, side by side, range breakdowns, comparisons);
* :mod:`.counters` — Nsight Compute counters; :mod:`.model` — the step-time model;
* :mod:`.strategies` — the verify-strategy ledger and per-strategy traces; :mod:`.plan` — who wins per
  batch and by how much, speedup vs accept length;
* :mod:`.engines` — the engines' own code paths beside gdnlab's twin backends (time and ratio vs batch).

Figures receive data and draw it: they fit no model and run no sweep. They share one style
(:mod:`.style`: a colour per backend, strategy, phase and kernel class from the registries, log axes
labelled at the measured values, units in axis titles), keep legends
beside the plot (:mod:`.layout`), and carry a provenance footnote whose status comes from the data
(:mod:`.provenance`).
"""
from .layout import legend_right
from .provenance import add_provenance, frame_status, trace_provenance_text, trace_status

__all__ = ["add_provenance", "frame_status", "trace_status", "trace_provenance_text", "legend_right"]
