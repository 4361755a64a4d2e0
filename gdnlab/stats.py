"""Summary statistics of timing samples: one rule everywhere.

Quantiles are numpy's default (``method="linear"``, the rule ``torch.utils.benchmark`` and
``triton.testing`` use), so a ``p10_us`` in a sweep row, a workload step and a benchmark JSON mean
the same thing.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["quantiles", "summarize"]


def quantiles(samples: Iterable[float], qs: Sequence[float] = (0.1, 0.5, 0.9)) -> tuple[float, ...]:
    """Quantiles ``qs`` (each in [0, 1]) of ``samples`` (numpy's linear interpolation).

    Raises ``ValueError`` on an empty sample or a quantile outside [0, 1]."""
    arr = np.asarray(list(samples), dtype=np.float64)
    if arr.size == 0:
        raise ValueError("quantiles of an empty sample")
    if any(not 0.0 <= q <= 1.0 for q in qs):
        raise ValueError(f"quantiles must lie in [0, 1], got {list(qs)}")
    return tuple(float(v) for v in np.quantile(arr, list(qs)))


def summarize(samples: Iterable[float], unit: str = "us") -> dict[str, float]:
    """``{median_<unit>, p10_<unit>, p90_<unit>, mean_<unit>, min_<unit>, max_<unit>, n}`` of ``samples``."""
    arr = np.asarray(list(samples), dtype=np.float64)
    p10, med, p90 = quantiles(arr, (0.1, 0.5, 0.9))
    return {f"median_{unit}": med, f"p10_{unit}": p10, f"p90_{unit}": p90, f"mean_{unit}": float(arr.mean()),
            f"min_{unit}": float(arr.min()), f"max_{unit}": float(arr.max()), "n": int(arr.size)}
