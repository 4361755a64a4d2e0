"""External anchors for gdnlab's end-to-end model: what others measured, and what another model predicts.

* :mod:`gdnlab.anchors.published` — published, measured end-to-end runs of Qwen3.5-397B-A17B (and
  Qwen3-Next-80B-A3B) with and without MTP, and reported MTP acceptance curves, shipped as
  ``gdnlab/data/published_runs.csv`` and ``gdnlab/data/acceptance_curves.csv`` (status ``reported``,
  source cited per row).
* :mod:`gdnlab.anchors.aiconfigurator` — NVIDIA AIConfigurator 0.12.0 (optional extra
  ``aiconfigurator``): its measured per-op latencies (GEMM, generation attention, MoE, all-reduce,
  GDN T=1 decode) and its own end-to-end prediction (TPOT, output tokens/s per GPU), called through
  its SDK. Status ``reported (AIConfigurator 0.12.0, <engine> <version>)``.
* :mod:`gdnlab.anchors.aic_tables` — the shipped extracts of both (``gdnlab/data/aiconfigurator_*.csv``),
  so a machine without AIConfigurator validates from data.
* :mod:`gdnlab.anchors.compare` — AIConfigurator's prediction beside each published run (error %),
  the baseline gdnlab's model has to beat.

Nothing here imports :mod:`gdnlab.model`; the model layer may import these anchors.
"""
from __future__ import annotations

__all__ = ["published", "aiconfigurator", "aic_tables", "compare"]
