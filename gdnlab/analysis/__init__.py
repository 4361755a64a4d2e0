"""Analyses of measured rows and traces (pandas only; nothing here measures or plots; files are read
only by :func:`~gdnlab.analysis.engine_gap.load_engine_sweeps`, through :func:`gdnlab.results.load_sweep`,
and folders listed only by the trace finders of :mod:`~gdnlab.analysis.strategy_traces`).

* :mod:`~gdnlab.analysis.ledger` — the verify-strategy ledger of a sweep's step rows: derived
  columns, winners per batch, scratch memory of a served model, the strategy targets;
* :mod:`~gdnlab.analysis.phases` — a step's kernels split into fold / verify / commit (marker
  kernels, :mod:`gdnlab.markers`) and each step's GPU busy share;
* :mod:`~gdnlab.analysis.strategy_traces` — per-strategy decode-loop traces: their file names, phase
  breakdown and busy share per trace;
* :mod:`~gdnlab.analysis.engine_gap` — the engines' own code paths beside gdnlab's twin backends: step
  and call rows paired per point (ratio, gap, both checks), summaries over B, traces side by side.

Plots (:mod:`gdnlab.plots`) receive these results; they never compute them.
"""
