"""Sweep results: the one schema, an append-only crash-safe writer, and :func:`load_sweep`.

Every consumer of a kernel sweep (notebooks, figures, the counters comparison, the step model)
reads it with :func:`load_sweep`, which checks the file is a sweep and normalises files written by
earlier gdnlab versions to the current columns:

* ``concurrency`` (a copy of ``batch`` in earlier files) -> ``batch`` only (renamed when ``batch``
  is absent); ``verify_tokens`` -> ``draft_tokens``;
* ``measure`` added where absent: ``"call"`` (one backend kernel call; every row of earlier files),
  ``"step"`` for rows of ``mode == "step"``; ``accept_len`` added as missing for call rows;
* ``buffer_scope`` (the verify intermediate buffer a call row hands its backend: ``none`` for
  decode, ``batch`` or ``pool``) from an earlier file's ``intermediate`` column, else from its
  call rows' ``strategy`` (``decode`` / ``full_cache`` / ``full_cache_pool_scoped``,
  :data:`SCOPE_OF_CALL_STRATEGY`), else ``none`` for decode rows; ``strategy`` keeps verify
  strategies only: it is emptied on call rows (earlier files stored the call's buffer there) and
  ``buffer_scope`` on step rows;
* ``timing`` in the current vocabulary: earlier ``"graph"`` rows (one call per CUDA-graph
  sample) become ``"single"``, ``"graph"`` rows with ``rotate`` (several calls per sample) become
  ``"amortised"``; the ``rotate`` column is dropped;
* columns an earlier file lacks (``timing_method``, ``calls_per_sample``, ``git_commit``,
  ``git_dirty``, ...) are added as missing values (``<NA>``).

Writing (:class:`SweepWriter`): each finished point is one small parquet *part* in a staging
folder next to the output (``.NAME.parts/``; written to a temporary name and renamed, so a part is
complete or absent). When the run completes, the parts (plus, when resuming, the rows already in
the output) are compacted into one file written beside the output and moved over it with
``os.replace`` (atomic). So a killed run keeps every completed point (in the parts; ``--resume``
picks them up and skips those points), an ``--overwrite`` run that fails or is stopped leaves the
earlier file untouched, and the cost per point is constant (no rewrite of the whole file). The writer
holds the output's lock (:func:`gdnlab.outputs.output_lock`: a second run on it is refused) and follows
symbolic links. The resume key (:data:`KEY_COLUMNS`) is the measured point: the pool size is a
property of the run. :func:`load_sweep` checks what it reads (:mod:`gdnlab.results_io`).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError
from .outputs import output_lock, real_path
from .results_io import allow_mixed_default, check_same_commit, check_sweep, check_types, read_any, read_parts

__all__ = ["require_columns", "Column", "COLUMNS", "SCHEMA", "DTYPES", "KEY_COLUMNS", "REQUIRED_COLUMNS",
           "BUFFER_SCOPES", "SCOPE_OF_CALL_STRATEGY", "DEFAULT_MEASURE",
           "load_sweep", "normalize", "to_frame", "point_key", "SweepWriter", "resolve_output", "staging_dir"]


@dataclass(frozen=True)
class Column:
    """One column of a sweep row: name, arrow type, unit (``""`` when none) and meaning."""

    name: str
    type: pa.DataType
    unit: str
    doc: str


_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()

#: every column of a sweep row, in file order (grid key first)
COLUMNS: tuple[Column, ...] = (
    # grid: together these identify a point (the resume key, KEY_COLUMNS)
    Column("preset", _S, "", "model preset name (without @tpN)"),
    Column("tp", _I, "", "tensor-parallel degree the per-GPU shape is sharded for"),
    Column("backend", _S, "", "kernel backend (flashinfer, triton, reference)"),
    Column("mode", _S, "", "decode (T = 1, state updated in place), verify (T draft tokens, state kept) or "
                           "step (one speculative step of a verify strategy: verify + commit + amortised fold)"),
    Column("strategy", _S, "", "verify strategy of a step row: full_cache, token_slots, recompute, recompute_fused "
                               "or replay_ring (gdnlab.strategies); empty on call rows"),
    Column("buffer_scope", _S, "", "intermediate buffer a call row's verify writes: batch ([B, T, HV, V, K]) or pool "
                                   "(pool-sized, SGLang before PR #23273); none for decode; empty on step rows"),
    Column("draft_tokens", _I, "tokens", "T, tokens per row (1 for decode)"),
    Column("batch", _I, "rows", "B, requests in the call"),
    Column("state_dtype", _S, "", "dtype of the state pool (float32, bfloat16)"),
    Column("timing", _S, "", "timing asked for: amortised, single or eager"),
    Column("l2_flush", _B, "", "L2 flushed before each timed sample"),
    Column("act_dtype", _S, "", "dtype of q, k, v, a, b and the output"),
    Column("pool_slots", _I, "rows", "rows of the state pool (slot 0 reserved)"),
    Column("measure", _S, "", "what one row times: call (one backend kernel call) or step (a strategy's verify + "
                              "commit + amortised fold, per step)"),
    Column("accept_len", _F, "tokens", "mean accepted length per step the step's accepted vectors are drawn with "
                                       "(1..T; step rows only)"),
    # shape
    Column("shape", _S, "", "per-GPU shape name (NAME@tpN)"),
    Column("H", _I, "heads", "q/k heads per GPU"),
    Column("HV", _I, "heads", "value heads per GPU"),
    Column("K", _I, "", "key head dim"),
    Column("V", _I, "", "value head dim"),
    # outcome
    Column("status", _S, "", "ok, oom, unsupported: ..., rejected: ... or error: ..."),
    Column("kernel", _S, "", "kernel the backend ran"),
    Column("kernel_path", _S, "", "the backend's kernel path record (JSON)"),
    Column("backend_options", _S, "", "options the backend was made with (JSON)"),
    Column("intermediate_call", _S, "", "the call that was timed"),
    Column("intermediate_dtype", _S, "", "dtype of the verify intermediate buffer"),
    Column("intermediate_rows", _I, "rows", "rows of the intermediate buffer handed to the kernel"),
    # timing, per call
    Column("time_us", _F, "us", "median time per call (step rows: per step, = step_us)"),
    Column("time_p10_us", _F, "us", "10th percentile time per call"),
    Column("time_p90_us", _F, "us", "90th percentile time per call"),
    Column("time_mean_us", _F, "us", "mean time per call"),
    Column("time_min_us", _F, "us", "fastest sample, per call"),
    Column("repeats", _I, "samples", "timed samples"),
    Column("calls_per_sample", _I, "calls", "calls (step rows: consecutive steps) in one timed sample "
                                            "(time per call = sample / calls)"),
    Column("timing_method", _S, "", "how the samples were taken (the timing harness's method)"),
    Column("timing_note", _S, "", "why the harness fell back, or the OOM message"),
    Column("first_call_ms", _F, "ms", "wall time of the checked first call (JIT included)"),
    Column("point_s", _F, "s", "wall time of the whole point"),
    # per-step split of a strategy step (step rows)
    Column("step_us", _F, "us", "median time of one speculative step: verify + commit (+ the amortised fold), "
                                "from a CUDA graph of consecutive steps, per step"),
    Column("verify_us", _F, "us", "median time of one verify (split_method says whether measured alone or "
                                  "step_us - commit_us)"),
    Column("commit_us", _F, "us", "median time of one commit, measured alone"),
    Column("fold_us", _F, "us", "amortised fold per step (replay_ring: step_us - verify_us - commit_us); "
                                "empty where a strategy has no separate fold"),
    Column("split_method", _S, "", "how verify_us, commit_us and fold_us were obtained"),
    Column("row_sets", _I, "", "disjoint row sets the timed steps rotate over (1: every step on the same rows)"),
    # roofline
    Column("bytes", _I, "bytes", "minimum bytes one call moves (gdnlab.roofline.gdn_bytes; step rows: one step, "
                                 "the strategy class's step_bytes at accept_len)"),
    Column("bytes_state", _I, "bytes", "state bytes read and written"),
    Column("bytes_intermediate", _I, "bytes", "intermediate state bytes written (step rows: scratch bytes read and "
                                              "written)"),
    Column("bytes_verify", _F, "bytes", "bytes of the verify phase of one step (inputs and outputs included)"),
    Column("bytes_commit", _F, "bytes", "bytes of the commit phase of one step"),
    Column("bytes_fold", _F, "bytes", "bytes of the fold, amortised per step"),
    Column("scratch_bytes", _I, "bytes", "device memory a strategy keeps besides the pool (its scratch)"),
    Column("memory_bytes", _I, "bytes", "pool (pool_slots rows) + scratch_bytes: one layer's memory"),
    Column("flops", _I, "FLOP", "FLOPs of one call"),
    Column("bw_gbps", _F, "GB/s", "bytes / median time"),
    Column("peak_bw_gbps", _F, "GB/s", "datasheet HBM bandwidth of the GPU"),
    Column("pct_of_peak_bw", _F, "%", "bw_gbps / peak_bw_gbps"),
    Column("floor_us", _F, "us", "memory-roofline floor: bytes / peak"),
    Column("copy_bw_gbps", _F, "GB/s", "device-to-device copy bandwidth measured once per run (read + write bytes "
                                       "/ time of a large copy, the faster of cudaMemcpy and an SM copy kernel)"),
    Column("copy_floor_us", _F, "us", "bytes / copy_bw_gbps: the floor at the bandwidth a copy reaches"),
    Column("verify_bw_gbps", _F, "GB/s", "bytes_verify / verify_us"),
    Column("commit_bw_gbps", _F, "GB/s", "bytes_commit / commit_us"),
    Column("verify_pct_of_peak_bw", _F, "%", "verify_bw_gbps / peak_bw_gbps"),
    Column("commit_pct_of_peak_bw", _F, "%", "commit_bw_gbps / peak_bw_gbps"),
    Column("verify_floor_us", _F, "us", "bytes_verify / copy_bw_gbps"),
    Column("commit_floor_us", _F, "us", "bytes_commit / copy_bw_gbps"),
    Column("tflops", _F, "TFLOP/s", "flops / median time"),
    # correctness of the first call against the reference
    Column("max_abs_err", _F, "", "max |output - reference|"),
    Column("max_rel_err", _F, "", "max_abs_err / max |reference output|"),
    Column("state_max_abs_err", _F, "", "max |state - reference| (verify: intermediate states)"),
    Column("state_max_rel_err", _F, "", "state_max_abs_err / max |reference state|"),
    Column("tol_ratio", _F, "", "max error / tolerance (<= 1: within tolerance)"),
    Column("correct", _B, "", "tol_ratio <= 1"),
    Column("pool_rows_untouched", _B, "", "pool-scoped buffer rows >= B stayed untouched"),
    Column("state_drift", _F, "", "step rows: max |committed state - reference| over the check's steps "
                                  "(gdnlab.strategies.check.check_strategy)"),
    Column("check_batch", _I, "rows", "step rows: B of the strategy check (one check per backend, strategy, state "
                                      "dtype, T)"),
    Column("check_steps", _I, "steps", "step rows: consecutive steps the strategy check ran"),
    Column("check_summary", _S, "", "step rows: the strategy check's summary (drift per step, worst tolerance "
                                    "ratio)"),
    # provenance
    Column("gpu", _S, "", "GPU name (cpu without one)"),
    Column("sm", _S, "", "compute capability, e.g. sm90"),
    Column("driver", _S, "", "NVIDIA driver version"),
    Column("cuda", _S, "", "CUDA version torch was built with"),
    Column("torch", _S, "", "torch version"),
    Column("triton", _S, "", "triton version"),
    Column("flashinfer", _S, "", "flashinfer version"),
    Column("gdnlab", _S, "", "gdnlab version"),
    Column("git_commit", _S, "", "gdnlab source commit, when run from a git checkout"),
    Column("git_dirty", _B, "", "the checkout had uncommitted changes"),
    Column("timestamp", _S, "", "UTC time the point was measured (ISO 8601)"),
    Column("host", _S, "", "host name"),
    Column("sweep_id", _S, "", "id of the run that measured the point"),
)

#: the sweep schema as an arrow schema (column units and meanings in the field metadata)
SCHEMA: pa.Schema = pa.schema([pa.field(c.name, c.type, metadata={"unit": c.unit, "doc": c.doc}) for c in COLUMNS])
#: the grid columns that identify a measured point (resume key); ``pool_slots`` is not one of them: the
#: pool's size is a property of the run (it follows the grid's largest batch), not of the point
KEY_COLUMNS: tuple[str, ...] = ("preset", "tp", "backend", "mode", "strategy", "buffer_scope", "draft_tokens", "batch",
                                "state_dtype", "timing", "l2_flush", "act_dtype", "measure", "accept_len")
#: ``measure`` of a row that does not state one (every row of earlier files times one call)
DEFAULT_MEASURE = "call"
#: columns without which a file is not a sweep (after normalisation)
REQUIRED_COLUMNS: tuple[str, ...] = ("backend", "mode", "batch", "draft_tokens", "state_dtype", "status", "time_us")
#: ``buffer_scope`` values: decode (no buffer), a batch-scoped or a pool-sized verify buffer
BUFFER_SCOPES: tuple[str, ...] = ("none", "batch", "pool")
#: buffer scope of the ``strategy`` an earlier file (and the ``--call-strategies`` alias) gave a call row
SCOPE_OF_CALL_STRATEGY = {"decode": "none", "full_cache": "batch", "full_cache_pool_scoped": "pool"}

_PANDAS_DTYPE = {pa.string(): "string", pa.int64(): "Int64", pa.bool_(): "boolean", pa.float64(): "float64"}
#: pandas dtype of each column as :func:`load_sweep` returns it
DTYPES: dict[str, str] = {c.name: _PANDAS_DTYPE[c.type] for c in COLUMNS}


# ------------------------------------------------------------------------------------------- frames


def require_columns(df: Any, columns: Iterable[str], *, what: str = "sweep rows",
                    hint: str = "load a sweep with gdnlab.results.load_sweep") -> None:
    """``ValueError`` naming ``what`` unless ``df`` is a DataFrame holding every column in ``columns``
    (the one check of a frame's columns that plots, tables and the model share)."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame of {what}, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"the {what} lack the columns {missing} ({hint})")


def _cast(df: pd.DataFrame) -> pd.DataFrame:
    """Schema columns to their pandas dtypes (missing values -> ``<NA>`` / NaN)."""
    for c, dt in DTYPES.items():
        if c not in df.columns or str(df[c].dtype) == dt:
            continue
        col = df[c]
        if dt == "string":
            df[c] = col.astype("string")
        elif dt == "Int64":
            df[c] = (col if col.dtype.kind in "iuf" else pd.to_numeric(col, errors="coerce")).astype("Int64")
        elif dt == "boolean":
            df[c] = col.astype("object").where(col.notna(), None).astype("boolean")
        else:
            df[c] = pd.to_numeric(col, errors="coerce").astype("float64")
    return df


def to_frame(rows: Iterable[dict] | pd.DataFrame) -> pd.DataFrame:
    """Rows (dicts, or a frame) as a DataFrame with every schema column, in schema order, with the
    schema's pandas dtypes (extra columns kept after them; ``_private`` keys dropped)."""
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for c in DTYPES:
        if c not in df.columns:
            df[c] = None
    extra = [c for c in df.columns if c not in DTYPES and not str(c).startswith("_")]
    return _cast(df[list(DTYPES) + extra].reset_index(drop=True))


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    try:
        if v is None or (not isinstance(v, (str, bytes)) and pd.isna(v)):
            return None
    except (TypeError, ValueError):
        pass
    return v


def _key_scope_and_strategy(row: dict) -> tuple[Any, Any]:
    """``(buffer_scope, strategy)`` of a row as :func:`normalize` reads them (an earlier row's call
    strategy is its buffer scope)."""
    measure = _plain(row.get("measure")) or ("step" if _plain(row.get("mode")) == "step" else DEFAULT_MEASURE)
    strat = _plain(row.get("strategy"))
    if measure != "call":
        return None, strat
    scope = (_plain(row.get("buffer_scope")) or _plain(row.get("intermediate")) or
             SCOPE_OF_CALL_STRATEGY.get(str(strat)) or ("none" if _plain(row.get("mode")) == "decode" else None))
    return scope, None


def point_key(row: dict) -> tuple:
    """The resume key of a row: its :data:`KEY_COLUMNS` as plain Python values, read as
    :func:`normalize` reads them (a row without ``measure`` is a ``"call"`` row; a call row's verify
    strategy of an earlier file is its ``buffer_scope``; floats rounded to 9 digits)."""
    out: list[Any] = []
    scope, strat = _key_scope_and_strategy(row)
    for c in KEY_COLUMNS:
        v = {"buffer_scope": scope, "strategy": strat}[c] if c in ("buffer_scope", "strategy") else _plain(row.get(c))
        if c == "measure" and v is None:
            v = "step" if _plain(row.get("mode")) == "step" else DEFAULT_MEASURE
        if DTYPES[c] == "Int64":
            v = None if v is None else int(v)
        elif DTYPES[c] == "boolean":
            v = bool(v) if v is not None else False
        elif DTYPES[c] == "float64":
            v = None if v is None else round(float(v), 9)
        else:
            v = None if v is None else str(v)
        out.append(v)
    return tuple(out)


def _dedupe(df: pd.DataFrame) -> pd.DataFrame:
    """One row per point key (the last one stored: a retried point replaces its earlier row)."""
    if df.empty:
        return df
    keys = pd.Series([point_key(r) for r in df[list(KEY_COLUMNS)].to_dict("records")], index=df.index)
    return df[~keys.duplicated(keep="last")].reset_index(drop=True)


def _scope_and_strategy(df: pd.DataFrame) -> pd.DataFrame:
    """``buffer_scope`` on call rows and ``strategy`` (verify strategies) on step rows only, from the
    columns an earlier file has (see the module docstring); ``intermediate`` is dropped."""
    na = pd.Series(pd.NA, index=df.index, dtype="string")
    call = (df["measure"] == "call").fillna(False).astype(bool)
    strat = df["strategy"].astype("string") if "strategy" in df.columns else na
    scope = df["buffer_scope"].astype("string") if "buffer_scope" in df.columns else na
    if "intermediate" in df.columns:
        scope = scope.fillna(df["intermediate"].astype("string"))
    scope = scope.fillna(strat.map(SCOPE_OF_CALL_STRATEGY, na_action="ignore").astype("string"))
    scope = scope.mask(scope.isna() & (df["mode"].astype("string") == "decode").fillna(False), "none")
    df = df.drop(columns=["intermediate"], errors="ignore")
    return df.assign(buffer_scope=scope.where(call, na), strategy=strat.mask(call, na))


def normalize(df: pd.DataFrame, source: str = "frame", *, dedupe: bool = True) -> pd.DataFrame:
    """An earlier (or current) sweep frame in the current schema (see the module docstring); with
    ``dedupe`` one row per point (the last stored).

    Raises :class:`~gdnlab.errors.DataError` naming ``source`` when the frame is not a sweep."""
    df = df.copy()
    if "verify_tokens" in df.columns:
        if "draft_tokens" in df.columns:
            df = df.drop(columns="verify_tokens")
        else:
            df = df.rename(columns={"verify_tokens": "draft_tokens"})
    if "concurrency" in df.columns:
        if "batch" in df.columns:
            b, c = pd.to_numeric(df["batch"], errors="coerce"), pd.to_numeric(df["concurrency"], errors="coerce")
            differ = (b != c) & b.notna() & c.notna()
            if differ.any():
                raise DataError(f"{source}: columns batch and concurrency differ in {int(differ.sum())} rows; "
                                f"a sweep stores one value (batch)")
            df["batch"] = b.where(b.notna(), c)
            df = df.drop(columns="concurrency")
        else:
            df = df.rename(columns={"concurrency": "batch"})
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{source} is not a gdnlab sweep: it lacks the columns {missing} "
                        f"(it has {sorted(map(str, df.columns))[:12]}{' ...' if len(df.columns) > 12 else ''})")
    step = (df["mode"].astype("string") == "step").fillna(False).astype(bool)
    default = pd.Series(DEFAULT_MEASURE, index=df.index, dtype="string").mask(step, "step")
    df["measure"] = df["measure"].astype("string").fillna(default) if "measure" in df.columns else default
    df = _scope_and_strategy(df)
    if "timing" in df.columns:
        timing = df["timing"].astype("string")
        rotate = (df["rotate"].astype("boolean").fillna(False) if "rotate" in df.columns
                  else pd.Series(False, index=df.index, dtype="boolean"))
        df["timing"] = timing.mask(timing == "graph", rotate.map({True: "amortised", False: "single"}).astype("string"))
    if "rotate" in df.columns:
        df = df.drop(columns="rotate")
    out = to_frame(df)
    return _dedupe(out) if dedupe else out


def load_sweep(path: str | os.PathLike, *, allow_mixed: bool | None = None) -> pd.DataFrame:
    """A sweep file as a DataFrame in the current schema (:data:`COLUMNS`; pandas nullable dtypes).

    Args:
        path: a ``.parquet`` (or ``.csv`` / ``.jsonl``) file written by ``gdnlab sweep``; a directory
            means its ``sweep.parquet``, or, without one, the completed points of an unfinished run
            (its ``part-*.parquet`` files).
        allow_mixed: load rows of several GPUs or commits, or a point stored twice with times 10x
            apart, labelled in ``attrs["mixed"]`` (default: ``$GDNLAB_ALLOW_MIXED``, else refused).

    Returns:
        one row per point (a key stored twice keeps its last row), columns in schema order, then any
        columns the file has beyond the schema.

    Raises:
        FileNotFoundError: nothing at ``path``.
        DataError: the file is not parquet/CSV, not a sweep (names the file and what is missing), or
            fails a check of :mod:`gdnlab.results_io` (names the column and the first bad value).
    """
    p = Path(path)
    if p.is_dir():
        found = next((c for c in (p / "sweep.parquet", p / "sweep.csv") if c.is_file()), None)
        if found is None and not any(p.glob("part-*.parquet")):
            raise FileNotFoundError(f"no sweep in the folder {p} (no sweep.parquet, sweep.csv or part-*.parquet)")
        p = found or p
    elif not p.exists():
        raise FileNotFoundError(f"no sweep results at {p}")
    return _checked(read_any(p), str(p), allow_mixed)


def _checked(raw: pd.DataFrame, source: str, allow_mixed: bool | None) -> pd.DataFrame:
    """``raw`` (a file as read) checked (:mod:`gdnlab.results_io`), normalised, one row per point."""
    check_types(raw, source, DTYPES)
    df = normalize(raw, source=source, dedupe=False)
    mixed = check_sweep(df, source, allow_mixed=allow_mixed_default(allow_mixed), key=point_key)
    df = _dedupe(df)
    if mixed:
        df.attrs["mixed"] = mixed
    return df


# ------------------------------------------------------------------------------------------- writing


def resolve_output(path: str | os.PathLike) -> Path:
    """The sweep file for ``path``: a directory (or a new path without suffix) gets ``sweep.parquet``
    in it; otherwise ``path`` must end in ``.parquet``."""
    p = Path(path)
    if p.is_dir() or (not p.suffix and not p.exists()):
        p = p / "sweep.parquet"
    if p.suffix != ".parquet":
        raise ValueError(f"output must end in .parquet (or be a directory), got {str(path)!r}")
    return p


def staging_dir(path: str | os.PathLike) -> Path:
    """The folder holding the completed points of an unfinished run into ``path`` (``.NAME.parts``)."""
    p = Path(path)
    return p.with_name(f".{p.name}.parts")


def _table(rows: Sequence[dict] | pd.DataFrame) -> pa.Table:
    df = to_frame(rows)
    return pa.Table.from_pandas(df[[c.name for c in COLUMNS]], schema=SCHEMA, preserve_index=False)


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class SweepWriter:
    """Append-only, crash-safe store of sweep rows for one output file (see the module docstring).

    ``mode``: ``"new"`` (``path`` must not exist), ``"resume"`` (keep the rows in ``path`` and the
    completed points of an unfinished run; the run appends) or ``"overwrite"`` (the result replaces
    ``path`` only when :meth:`finish` is called with ``complete=True``). ``gpu`` / ``commit``: the GPU
    and git commit this run measures with; resuming into rows of another GPU (or, unless
    ``allow_mixed``, another commit) is a :class:`DataError`. The writer holds the output's lock
    (:func:`gdnlab.outputs.output_lock`) from construction until :meth:`finish` or :meth:`close`;
    a symbolic link at ``path`` is followed (the file it names is written, the link stays).
    """

    def __init__(self, path: str | os.PathLike, mode: str = "new", *, gpu: str | None = None,
                 commit: str | None = None, allow_mixed: bool | None = None) -> None:
        if mode not in ("new", "resume", "overwrite"):
            raise ValueError(f"mode must be new, resume or overwrite, got {mode!r}")
        self.path = resolve_output(path)
        self.target = real_path(self.path)      # where the rows go: the file a link names
        self.parts = staging_dir(self.target)
        self.gpu, self.commit, self.allow_mixed = gpu, commit, allow_mixed
        self.base = "overwrite" if mode == "overwrite" else "append"
        self.stored = to_frame([])       # rows already stored before this run (file and/or earlier parts)
        self._next = 0
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(output_lock(self.target, command="gdnlab sweep"))
        try:
            self._open(mode)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the output's lock (the writer is done; :meth:`finish` calls it)."""
        self._lock.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def _open(self, mode: str) -> None:
        manifest = self.parts / "run.json"
        if mode == "new":
            if self.target.exists():
                raise ValueError(f"{self.path} exists: pass --resume to continue it or --overwrite to replace it")
            if self.parts.exists():
                raise ValueError(f"{self.parts} holds the completed points of an unfinished run into {self.path}: "
                                 f"pass --resume to continue it or --overwrite to discard it")
        elif mode == "overwrite":
            if self.parts.exists():
                shutil.rmtree(self.parts)
        else:
            if self.parts.exists() and manifest.is_file():
                self.base = json.loads(manifest.read_text(encoding="utf-8")).get("base", "append")
            frames = []
            if self.base == "append" and self.target.exists():
                frames.append(load_sweep(self.target, allow_mixed=self.allow_mixed))
            if self.parts.exists():
                frames.append(normalize(read_parts(self.parts), source=str(self.parts)))
                self._next = 1 + max((int(p.stem.split("-")[1]) for p in self.parts.glob("part-*.parquet")),
                                     default=-1)
            frames = [f for f in frames if not f.empty]
            if frames:
                self.stored = _dedupe(to_frame(pd.concat(frames, ignore_index=True)))
            self._check_gpu()
            check_same_commit(self.stored, self.commit, str(self.path), self.allow_mixed)

    def _check_gpu(self) -> None:
        if self.gpu is None or self.stored.empty:
            return
        gpus = sorted({str(g) for g in self.stored["gpu"].dropna()})
        if gpus and gpus != [self.gpu]:
            raise DataError(f"{self.path} holds a sweep measured on {', '.join(gpus)}; this run is on {self.gpu}: "
                            f"write to another --out (rows of two GPUs in one file would mix)")

    def done_keys(self, retry_failed: bool = False) -> set[tuple]:
        """Keys of the stored points (with ``retry_failed``: only those that need no rerun, i.e. ok,
        unsupported or rejected; oom and error points run again)."""
        keep = set()
        for r in self.stored.to_dict("records"):
            st = str(_plain(r.get("status")) or "")
            if retry_failed and not (st == "ok" or st.startswith(("unsupported", "rejected"))):
                continue
            keep.add(point_key(r))
        return keep

    def append(self, row: dict) -> None:
        """Store one finished point (a part file, renamed into place: complete or absent)."""
        if not self.parts.exists():
            self.parts.mkdir(parents=True)
            (self.parts / "run.json").write_text(json.dumps({"base": self.base, "output": self.path.name}),
                                                 encoding="utf-8")
        _write_atomic(_table([row]), self.parts / f"part-{self._next:06d}.parquet")
        self._next += 1

    def rows(self) -> pd.DataFrame:
        """Every row the output will hold: stored ones, then this run's (a key stored twice keeps its last)."""
        frames = [self.stored]
        if self.parts.exists():
            new = read_parts(self.parts)
            if not new.empty:
                frames.append(to_frame(new))
        frames = [f for f in frames if not f.empty]
        return _dedupe(to_frame(pd.concat(frames, ignore_index=True))) if frames else to_frame([])

    def finish(self, complete: bool = True) -> Path | None:
        """Compact into :attr:`path` (atomic replace) and drop the parts; returns the path written.
        Releases the lock.

        An incomplete ``overwrite`` run writes nothing (the earlier file stays, the parts stay for
        ``--resume``); an incomplete appending run compacts what it has (``--resume`` continues)."""
        try:
            if not complete and self.base == "overwrite":
                return None
            if not self.parts.exists() and self.target.exists() and self.base == "append":
                return self.path
            self.target.parent.mkdir(parents=True, exist_ok=True)
            rows = self.rows()
            _write_atomic(_table(rows), self.target)
            if self.parts.exists():
                shutil.rmtree(self.parts)
            self.stored = rows
            return self.path
        finally:
            self.close()
