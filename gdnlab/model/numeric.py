"""Numeric helpers both step models use (:mod:`gdnlab.model` and :mod:`gdnlab.model.legacy`).

* :func:`loglog_interp` / :func:`linear_interp` — one value of a measured series at ``x``, with the
  end segments extrapolated (op times vs batch; times vs KV length);
* :func:`nnls` — non-negative least squares for the few fitted numbers of a step model.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["loglog_interp", "linear_interp", "nnls"]


def loglog_interp(xs: np.ndarray, ys: np.ndarray, x: float) -> float:
    """``y(x)`` interpolated in log-log; beyond the ends the end segment is extrapolated (one point:
    ``y ∝ x``). ``xs`` ``[n]`` > 0 in any order, ``ys`` ``[n]`` (clamped at >= 1e-3 before the log),
    ``x`` > 0; units are the caller's (µs vs batch here)."""
    order = np.argsort(xs)
    xs, ys = np.log(xs[order]), np.log(np.maximum(ys[order], 1e-3))
    lx = math.log(x)
    if xs.size == 1:
        return float(math.exp(ys[0]) * x / math.exp(xs[0]))
    if lx < xs[0]:
        return float(math.exp(ys[0] + (ys[1] - ys[0]) / (xs[1] - xs[0]) * (lx - xs[0])))
    if lx > xs[-1]:
        return float(math.exp(ys[-1] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (lx - xs[-1])))
    return float(math.exp(np.interp(lx, xs, ys)))


def linear_interp(xs: np.ndarray, ys: np.ndarray, x: float) -> float:
    """``y(x)`` interpolated linearly, the end segments extrapolated, clamped at >= 0. ``xs``, ``ys``
    ``[n]`` in any order (``n >= 1``; one point: constant)."""
    order = np.argsort(xs)
    xs, ys = xs[order], ys[order]
    if xs.size == 1:
        return float(ys[0])
    if x < xs[0]:
        v = ys[0] + (ys[1] - ys[0]) / (xs[1] - xs[0]) * (x - xs[0])
    elif x > xs[-1]:
        v = ys[-1] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (x - xs[-1])
    else:
        v = np.interp(x, xs, ys)
    return float(max(v, 0.0))


def nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``argmin |A x - b|²`` subject to ``x >= 0``, by enumerating active sets: exact, and cheap for
    the handful of columns a step model fits (``A`` ``[m, k]`` with ``k`` <= ~6, ``b`` ``[m]``; returns
    ``x`` ``[k]``; all zeros when no non-negative subset improves on ``x = 0``)."""
    k = A.shape[1]
    best, best_x = float(np.sum(b**2)), np.zeros(k)
    for mask in range(1, 2**k):
        cols = [j for j in range(k) if mask >> j & 1]
        x, *_ = np.linalg.lstsq(A[:, cols], b, rcond=None)
        if (x < 0).any():
            continue
        full = np.zeros(k)
        full[cols] = x
        r = float(np.sum((A @ full - b) ** 2))
        if r < best - 1e-12 * max(best, 1.0):
            best, best_x = r, full
    return best_x
