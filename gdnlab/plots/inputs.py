"""Checks on the tables a figure builder receives: one clear error naming what to pass instead."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

__all__ = ["require_table"]


def require_table(name: str, df, columns: Sequence[str], source: str) -> pd.DataFrame:
    """``df`` itself when it is a non-empty DataFrame with ``columns``; otherwise a ``ValueError``
    naming the argument (``name``) and where such a table comes from (``source``)."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a DataFrame from {source}, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; pass {source}")
    if df.empty:
        raise ValueError(f"{name} has no rows; pass {source}")
    return df
