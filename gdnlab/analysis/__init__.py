"""Analyses of measured rows and traces (pandas only; nothing here measures, reads files or plots).

* :mod:`~gdnlab.analysis.ledger` — the verify-strategy ledger of a sweep's step rows: derived
  columns, winners per batch, scratch memory of a served model, the strategy targets;
* :mod:`~gdnlab.analysis.phases` — a step's kernels split into fold / verify / commit (marker
  kernels, :mod:`gdnlab.markers`) and each step's GPU busy share;
* :mod:`~gdnlab.analysis.strategy_traces` — per-strategy decode-loop traces: phase breakdown and
  busy share per trace.

Plots (:mod:`gdnlab.plots`) receive these results; they never compute them.
"""
