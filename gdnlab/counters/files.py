"""Counters files on disk: :func:`save_frame` (atomic: a temporary file, then a rename, so an existing
file is never lost to a failed write), :func:`write_text_atomic`, and :func:`load_counters`, which names
the file and what was expected when it is not a counters table.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from gdnlab.errors import DataError

__all__ = ["save_frame", "load_counters", "write_text_atomic", "COUNTER_COLUMNS"]

#: columns every counters table has (kernel rows of ``profile_kernels`` or their ``summarize_calls`` summary)
COUNTER_COLUMNS = ("backend", "mode", "batch", "state_dtype", "duration_us", "dram_bytes")
#: columns only a sweep table has: a sweep given where counters are expected is named as such
_SWEEP_MARKERS = ("time_us", "timing_method", "sweep_id", "calls_per_sample")


def _replace_atomically(path: Path, write) -> None:
    """Call ``write(tmp_path)`` for a temporary file beside ``path``, then rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename; returns the path."""
    path = Path(path)
    _replace_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def save_frame(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as parquet (``.parquet``; falls back to ``.csv`` without pyarrow) or CSV, atomically;
    returns the path written."""
    path = Path(path)
    clean = df.copy()
    clean.attrs = {}
    for c in clean.columns:
        if clean[c].dtype == object:
            clean[c] = clean[c].map(lambda v: v if v is None or isinstance(v, (str, bool, int, float)) else str(v))
    if path.suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401 - only whether it is installed
        except ImportError:
            path = path.with_suffix(".csv")
        else:
            _replace_atomically(path, lambda tmp: clean.to_parquet(tmp, index=False))
            return path
    _replace_atomically(path, lambda tmp: clean.to_csv(tmp, index=False))
    return path


def load_counters(path: str | os.PathLike) -> pd.DataFrame:
    """A stored counters table (``ncu_metrics.parquet`` / ``.csv`` written by ``gdnlab counters``).

    Raises ``FileNotFoundError`` for a missing file and :class:`~gdnlab.errors.DataError` (one line naming
    the file and what was expected) for one that is not a counters table: a sweep file, another table,
    random bytes.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such counters file")
    if p.is_dir():
        raise DataError(f"{p} is a folder; expected a counters table (ncu_metrics.parquet or .csv)")
    try:
        df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        kind = "parquet" if p.suffix == ".parquet" else "CSV"
        raise DataError(f"{p}: not a readable {kind} counters table (expected ncu_metrics.parquet/.csv written "
                        f"by 'gdnlab counters'): {first}") from None
    missing = [c for c in COUNTER_COLUMNS if c not in df.columns]
    if missing:
        if any(c in df.columns for c in _SWEEP_MARKERS):
            raise DataError(f"{p} is a sweep file, not a counters file: give it with --sweep, and a counters "
                            "table (ncu_metrics.parquet) with --input")
        raise DataError(f"{p} is not a counters table: it lacks {missing} (has {list(df.columns)[:12]})")
    return df
