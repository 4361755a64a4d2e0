"""Reading sweep files, and checking their content, for :func:`gdnlab.results.load_sweep` (nothing
here knows the schema: :mod:`gdnlab.results` passes it in).

:func:`read_any` reads a ``.parquet``, ``.csv`` or ``.jsonl`` file, or the ``part-*.parquet`` files
of an unfinished run's folder (:func:`read_parts`), refusing what is not one with a
:class:`~gdnlab.errors.DataError` that names the file.

The checks run before any number is used.

:func:`check_types` looks at the file as read (before columns are cast, which would turn text into
missing values in silence): numeric columns hold numbers, integer columns integers, boolean columns
true/false. :func:`check_sweep` looks at the normalised rows, before a point stored twice is reduced
to its last row:

* every ``ok`` row has a positive, finite ``time_us``;
* units: ``bytes / time_us`` agrees with the stored ``bw_gbps`` (within 2x); the timed samples of a
  point (``time_us x repeats x calls_per_sample``) fit in the wall time of the whole point
  (``point_s``, seconds; at most :data:`WALL_TOLERANCE` times it, for timer rounding); the median
  bandwidth the times imply is below 20 times the GPU's datasheet peak. Times written in ns under a
  ``_us`` column fail the first or the second, times in ms the first or the third;
* one GPU and one git commit (rows of two would mix), and no point stored twice with times 10x apart.

A failed check is a :class:`~gdnlab.errors.DataError`, one line naming the file, the column and the
first offending value. The mixing checks (GPUs, commits, far-apart duplicates) can be waived with
``allow_mixed``; :func:`check_sweep` then returns the label the caller puts on the frame. Wrong
types and wrong units are never waived.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError

__all__ = ["read_any", "read_parts", "ALLOW_MIXED_ENV", "allow_mixed_default", "check_types", "check_sweep",
           "check_same_commit", "UNIT_TOLERANCE", "WALL_TOLERANCE", "MAX_PEAK_MULTIPLE", "DUPLICATE_SPREAD"]

#: ``GDNLAB_ALLOW_MIXED=1`` makes ``allow_mixed`` the default (the command line and notebook kernels)
ALLOW_MIXED_ENV = "GDNLAB_ALLOW_MIXED"
#: most a row's ``bw_gbps * time_us / bytes`` may differ from 1 (either way)
UNIT_TOLERANCE = 2.0
#: most the timed samples of a point may add up to, as a multiple of its wall time ``point_s``
WALL_TOLERANCE = 1.5
#: highest median bandwidth the times may imply, as a multiple of the GPU's peak (L2 hits included)
MAX_PEAK_MULTIPLE = 20.0
#: a point stored twice with times this far apart (max / min) is two different measurements
DUPLICATE_SPREAD = 10.0

#: earlier column names, read before :func:`gdnlab.results.normalize` renames them
_OLD_NAMES = {"concurrency": "Int64", "verify_tokens": "Int64"}
_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}


# ------------------------------------------------------------------------------------------- reading


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line of a killed writer
    return pd.DataFrame(rows)


def read_parts(folder: Path) -> pd.DataFrame:
    """The rows of every ``part-*.parquet`` in ``folder`` (an unfinished run), in part order."""
    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        return pd.DataFrame()
    return pd.concat([_read_parquet(p) for p in parts], ignore_index=True)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise DataError(f"{path} is not a readable parquet file ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None


def read_any(path: Path) -> pd.DataFrame:
    """A sweep file (``.parquet``, ``.csv``, ``.jsonl``) or an unfinished run's folder, as read."""
    if path.is_dir():
        return read_parts(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".jsonl":
            return _read_jsonl(path)
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text {suffix[1:].upper()} file (it is not UTF-8; a sweep is "
                        f"parquet or CSV)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path} is not a readable {suffix[1:].upper()} file ({exc})") from None
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PAR1":
        raise DataError(f"{path} is not a parquet file (it does not start with the parquet magic bytes); a sweep "
                        f"is a .parquet (or .csv) file written by gdnlab sweep")
    return _read_parquet(path)


# ------------------------------------------------------------------------------------------- checks


def allow_mixed_default(allow_mixed: bool | None) -> bool:
    """``allow_mixed``, or when ``None`` whether ``$GDNLAB_ALLOW_MIXED`` is set to a true value."""
    if allow_mixed is not None:
        return bool(allow_mixed)
    return os.environ.get(ALLOW_MIXED_ENV, "").strip().lower() in ("1", "true", "yes")


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _bad_numbers(col: pd.Series, kind: str) -> tuple[str, pd.Series] | None:
    """(what is wrong, mask of the offending rows) of one column, or ``None``."""
    present = col.notna()
    if kind == "boolean":
        if col.dtype == bool or str(col.dtype) == "boolean":
            return None
        ok = col.map(lambda v: isinstance(v, (bool, np.bool_)) or str(v).strip().lower() in _BOOL_WORDS)
        return ("values that are not true/false", present & ~ok.astype(bool))
    if col.dtype.kind in "iub" or str(col.dtype) in ("Int64", "boolean"):
        return None
    num = pd.to_numeric(col.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
    text = present & num.isna() & ~col.map(lambda v: isinstance(v, str) and v.strip().lower() in ("", "nan"))
    if text.any():
        return "text", text
    if kind == "Int64":
        frac = num.notna() & np.isfinite(num) & (num != np.round(num))
        if frac.any():
            return "non-integers", frac
    return None


def check_types(raw: pd.DataFrame, source: str, dtypes: Mapping[str, str]) -> None:
    """Refuse text in numeric columns, fractions in integer columns and anything but true/false in
    boolean columns of ``raw`` (a file as read). ``dtypes``: the pandas dtype of each schema column
    (:data:`gdnlab.results.DTYPES`)."""
    for name in raw.columns:
        kind = dtypes.get(name) or _OLD_NAMES.get(name)
        if kind not in ("Int64", "float64", "boolean"):
            continue
        found = _bad_numbers(raw[name], kind)
        if found is None or not found[1].any():
            continue
        what, mask = found
        first = raw[name][mask].iloc[0]
        first = first.item() if hasattr(first, "item") else first
        expect = {"boolean": "true or false", "Int64": "integers"}.get(kind, "numbers")
        raise DataError(f"{source}: column {name} holds {what} ({first!r}) in {_rows(int(mask.sum()))}; a sweep "
                        f"stores {expect} there")


def _label(r: Mapping) -> str:
    parts = [str(r.get(c)) for c in ("backend", "mode", "strategy") if pd.notna(r.get(c))]
    return " ".join(parts) + f" B={r.get('batch')}"


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype="float64")
    return pd.to_numeric(df[col], errors="coerce").astype("float64")


def _check_times(df: pd.DataFrame, source: str) -> None:
    ok = df[(df["status"].astype("string") == "ok").fillna(False).astype(bool)]
    t = _num(ok, "time_us")
    bad = ~(np.isfinite(t) & (t > 0))
    if bad.any():
        n = int(bad.sum())
        first = ok[bad].iloc[0]
        raise DataError(f"{source}: {n} ok {'row has' if n == 1 else 'rows have'} no positive time_us (first: "
                        f"{_label(first)}: {first['time_us']}); a measured point has a time")
    nbytes, bw, peak = _num(ok, "bytes"), _num(ok, "bw_gbps"), _num(ok, "peak_bw_gbps")
    has = (nbytes > 0) & (bw > 0)
    ratio = (bw * t * 1e3 / nbytes)[has]
    off = (ratio > UNIT_TOLERANCE) | (ratio < 1 / UNIT_TOLERANCE)
    if off.any():
        f = float(ratio[off].median())
        size = f"{f:.0f}x" if f >= 10 else f"{f:.2g}x"
        hint = "times in ns under a _us column?" if f > 1 else "times in ms under a _us column?"
        raise DataError(f"{source}: column time_us is {size} what bytes / bw_gbps give in {int(off.sum())} of "
                        f"{int(has.sum())} ok rows (first: {_label(ok[has][off].iloc[0])}); {hint}")
    timed = (t * _num(ok, "repeats") * _num(ok, "calls_per_sample") / 1e6) / _num(ok, "point_s")
    over = (timed > WALL_TOLERANCE).fillna(False)
    if over.any():
        x = float(timed[over].median())
        raise DataError(f"{source}: column time_us x repeats x calls_per_sample adds up to {x:.0f}x the wall time "
                        f"of the whole point (point_s) in {int(over.sum())} ok rows (first: "
                        f"{_label(ok[over].iloc[0])}); times in ns under a _us column?")
    known = (nbytes > 0) & (peak > 0)
    if known.sum():
        frac = float((nbytes / (t * 1e3) / peak)[known].median())
        if frac > MAX_PEAK_MULTIPLE:
            raise DataError(f"{source}: column time_us puts the median bandwidth at {frac:.0f}x the GPU's peak "
                            f"({float(peak[known].median()):.0f} GB/s, over {int(known.sum())} ok rows); times in ms "
                            f"under a _us column?")


def _far_duplicates(df: pd.DataFrame, key: Callable[[dict], tuple]) -> list[tuple[dict, float, float]]:
    ok = df[(df["status"].astype("string") == "ok").fillna(False).astype(bool)]
    if ok.empty:
        return []
    recs = ok.to_dict("records")
    groups: dict[tuple, list[dict]] = {}
    for r in recs:
        groups.setdefault(key(r), []).append(r)
    out = []
    for rows in groups.values():
        if len(rows) > 1:
            times = [float(r["time_us"]) for r in rows]
            if max(times) >= DUPLICATE_SPREAD * min(times):
                out.append((rows[0], min(times), max(times)))
    return out


def check_sweep(df: pd.DataFrame, source: str, *, allow_mixed: bool = False,
                key: Callable[[dict], tuple] | None = None) -> str:
    """Check normalised sweep rows (a point may still be stored twice; see the module docstring).

    ``key``: the point key of a row (:func:`gdnlab.results.point_key`). Returns ``""``, or with
    ``allow_mixed`` the label of what is mixed (``"2 GPUs (A, B); ..."``). Raises
    :class:`~gdnlab.errors.DataError` otherwise."""
    _check_times(df, source)
    mixed = []
    gpus = sorted({str(g) for g in df["gpu"].dropna()}) if "gpu" in df.columns else []
    if len(gpus) > 1:
        names = f"{len(gpus)} GPUs ({', '.join(gpus)})"
        mixed.append((f"rows measured on {names}", names))
    commits = sorted({str(c) for c in df["git_commit"].dropna()}) if "git_commit" in df.columns else []
    if len(commits) > 1:
        names = f"{len(commits)} git commits ({', '.join(c[:12] for c in commits[:4])})"
        mixed.append((f"rows measured at {names}", names))
    far = _far_duplicates(df, key) if key is not None else []
    if far:
        r, lo, hi = far[0]
        n = len(far)
        mixed.append((f"{n} point{' is' if n == 1 else 's are'} stored twice with times {hi / lo:.1f}x apart "
                      f"(first: {_label(r)}: {lo:.4g} and {hi:.4g} µs)",
                      f"{n} point(s) stored twice with times {hi / lo:.0f}x apart (the last row kept)"))
    if not mixed:
        return ""
    if not allow_mixed:
        raise DataError(f"{source}: {mixed[0][0]}; a sweep holds one run's measurements (load them apart, or "
                        f"pass allow_mixed=True / set {ALLOW_MIXED_ENV}=1 to load them together, labelled)")
    return "; ".join(m[1] for m in mixed)


def check_same_commit(stored: pd.DataFrame, commit: str | None, where: str, allow_mixed: bool | None = None) -> None:
    """Refuse to add rows measured at ``commit`` to ``stored`` rows of another git commit (a resumed
    sweep), unless ``allow_mixed`` (:func:`allow_mixed_default`)."""
    if not commit or stored.empty or "git_commit" not in stored.columns or allow_mixed_default(allow_mixed):
        return
    commits = sorted({str(c) for c in stored["git_commit"].dropna()})
    if commits and commits != [commit]:
        raise DataError(f"{where} holds rows measured at commit {', '.join(c[:12] for c in commits)}; this checkout "
                        f"is at {commit[:12]}: write to another --out (rows of two commits in one file would mix), "
                        f"or allow it with allow_mixed / {ALLOW_MIXED_ENV}=1")
