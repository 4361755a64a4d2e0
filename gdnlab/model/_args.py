"""Argument parsing for the model modules (and :mod:`gdnlab.model.legacy`): each returns the value
converted, or raises a one-line ``ValueError`` naming the argument."""
from __future__ import annotations

import math

import numpy as np


def pos_int(name: str, v) -> int:
    """``v`` as an ``int`` >= 1, else ``ValueError`` naming ``name``."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def nonneg(name: str, v) -> float:
    """``v`` as a finite ``float`` >= 0, else ``ValueError`` naming ``name``."""
    if isinstance(v, bool):
        raise ValueError(f"{name} must be a number >= 0, got {v!r}")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {v!r}") from None
    if not x >= 0 or math.isinf(x):
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return x
