"""Kernel sweep: backend x concurrency x mode (decode / verify T) x state dtype x preset x intermediate
buffer scope, one tidy row per point, appended to a parquet (or JSON-lines) file as points finish.

``gdnlab sweep`` (mounted by :mod:`gdnlab.cli`) or :func:`run_sweep`; read results with :func:`load_results`.

Grid (the *key* of a point, :data:`KEY_COLUMNS`): ``preset, tp, backend, mode, draft_tokens,
concurrency, state_dtype, intermediate, timing, rotate, l2_flush, act_dtype, pool_slots``.

* ``mode="decode"`` (T = 1, pool updated in place) or ``"verify"`` (T in ``draft_tokens``; pool
  unchanged, T intermediate states written).
* ``intermediate`` (verify only; ``"none"`` for decode):
  ``"batch"`` — a ``[B, T, HV, V, K]`` buffer (SGLang after PR #23273's ``[:batch_size]`` slice);
  ``"pool"`` — the pool-sized ``[pool_slots, T, HV, V, K]`` buffer handed over unsliced, as SGLang did
  before the fix. The contract's :meth:`verify` accepts a larger buffer, and the FlashInfer backend
  slices it to ``[:B]`` itself (it *is* the fixed path), so for FlashInfer the pool variant calls
  FlashInfer's MTP entry points directly with the whole buffer (:func:`pool_scoped_verify`):
  the fp32 wrapper accepts ``dim0 >= B`` and the kernel writes rows by batch index (the point is
  measured, and ``pool_rows_untouched`` records whether rows ``>= B`` stayed untouched); the bf16
  wrapper asserts ``dim0 == B`` and the point is stored as ``"rejected: <message>"``. Other backends
  get the whole buffer through :meth:`verify` (their kernels index it by batch row, as SGLang's
  Triton path does with ``intermediate_state_indices = arange(B)``).
* The pool has ``pool_slots = pool_capacity + 1`` rows (slot 0 reserved; default capacity = the
  largest concurrency, as a server sizes its pool for ``max_running_requests``), the batch's B rows
  are scattered over it (seeded permutation), no padding rows.

* ``timing``: ``"graph"`` (CUDA-graph replay, default) or ``"eager"``; ``rotate``: ``False`` (default)
  times one call per sample; ``True`` times ``k = min(16, capacity // B)`` calls per sample on ``k``
  disjoint row sets of the pool (verify: each with its own buffer, within ``rotate_budget_gb``), like
  consecutive layers, and divides by ``k`` (``calls_per_sample``): the per-sample event overhead is
  amortised, the on-GPU gap between consecutive kernels is included.

Each point: one checked call (``validate=True``) against :class:`~gdnlab.kernels.reference.ReferenceBackend`
on the same device and starting state (errors in ``max_abs_err`` etc.; its wall time, JIT included,
in ``first_call_ms``), then :func:`gdnlab.instrument.time_fn` (CUDA-graph replay by default, L2
flushed before each repeat). Bytes from :func:`gdnlab.roofline.gdn_bytes` (one formula), peak from
:mod:`gdnlab.hardware`, provenance from :func:`gdnlab.provenance.collect`.

Status: ``"ok"``, ``"oom"`` (``torch.cuda.OutOfMemoryError``; the sweep goes on), ``"unsupported: ..."``
(the backend declines the state dtype or the shape), ``"rejected: ..."`` (the backend refused the
pool-sized buffer), ``"error: ..."``.

Persistence: every finished point is written before the next starts — parquet is rewritten whole to a
temporary file and moved into place (``os.replace``, atomic); without pyarrow a JSON-lines file is
appended and fsynced (a torn last line is ignored when read). A killed sweep loses at most the point
in flight; ``resume=True`` skips points whose key is already stored.

Time budget: the default grid on an H100 is 2 backends x 98 points; after JIT warm-up a point costs
~0.1-0.4 s (checked call + reference, graph capture, 5 + 40 replays), so ~1-1.5 min in all
(target <= 3 min). ``first_call_ms`` shows where JIT compilation went.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import itertools
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .shapes import GDNShape, dtype_from_name, dtype_name
from .shapes import preset as get_preset

__all__ = ["SweepConfig", "KEY_COLUMNS", "SCHEMA", "grid_points", "run_sweep", "load_results", "measure_point",
           "pool_scoped_verify", "resolve_output", "make_backend", "SGLANG_LIKE_OPTIONS", "configure_parser", "run", "DEFAULT_CONCURRENCY",
           "DEFAULT_PRESET", "SweepInterrupted"]

DEFAULT_CONCURRENCY = (1, 4, 16, 32, 64, 128, 256)
DEFAULT_PRESET = "qwen3.5-397b-a17b@tp4"

#: the grid columns: together they identify a point (resume key)
KEY_COLUMNS = ("preset", "tp", "backend", "mode", "draft_tokens", "concurrency", "state_dtype", "intermediate",
               "timing", "rotate", "l2_flush", "act_dtype", "pool_slots")

#: every column of a result row and its pandas dtype (units in the names: _us, _ms, _gbps, bytes)
SCHEMA: dict[str, str] = {
    # grid / key
    "preset": "string", "tp": "Int64", "backend": "string", "mode": "string", "draft_tokens": "Int64",
    "concurrency": "Int64", "state_dtype": "string", "intermediate": "string", "timing": "string",
    "rotate": "boolean", "l2_flush": "boolean", "act_dtype": "string", "pool_slots": "Int64",
    # shape
    "shape": "string", "batch": "Int64", "H": "Int64", "HV": "Int64", "K": "Int64", "V": "Int64",
    # outcome
    "status": "string", "kernel": "string", "kernel_path": "string", "backend_options": "string",
    "intermediate_call": "string",
    "intermediate_dtype": "string", "intermediate_rows": "Int64",
    # timing (µs per call)
    "time_us": "float64", "time_p10_us": "float64", "time_p90_us": "float64", "time_mean_us": "float64",
    "time_min_us": "float64", "repeats": "Int64", "calls_per_sample": "Int64", "timing_method": "string",
    "timing_note": "string",
    "first_call_ms": "float64", "point_s": "float64",
    # roofline
    "bytes": "Int64", "bytes_state": "Int64", "bytes_intermediate": "Int64", "flops": "Int64",
    "bw_gbps": "float64", "peak_bw_gbps": "float64", "pct_of_peak_bw": "float64", "floor_us": "float64",
    "tflops": "float64",
    # correctness vs reference (first call)
    "max_abs_err": "float64", "max_rel_err": "float64", "state_max_abs_err": "float64",
    "state_max_rel_err": "float64", "tol_ratio": "float64", "correct": "boolean", "pool_rows_untouched": "boolean",
    # provenance
    "gpu": "string", "sm": "string", "driver": "string", "cuda": "string", "torch": "string", "triton": "string",
    "flashinfer": "string", "timestamp": "string", "host": "string", "gdnlab": "string", "sweep_id": "string",
}

#: constructor options that make a backend run what SGLang runs. FlashInfer's backend zeroes padding
#: rows' outputs after a bf16 call (an extra masked_fill_ that SGLang does not launch); the sweep has
#: no padding rows, so that launch would only add time, and the workload's padding rows' outputs are
#: never read. Options a backend's constructor does not take are dropped.
SGLANG_LIKE_OPTIONS: dict[str, dict] = {"flashinfer": {"zero_padding_output": False}}


def make_backend(name: str, options: dict | None = None):
    """``get_backend(name, **options)``; if the constructor rejects the options (``TypeError``), the
    backend is made without them."""
    from .kernels import get_backend

    be = None
    if options:
        try:
            be = get_backend(name, **options)
            be.gdnlab_options = dict(options)
        except TypeError:
            be = None
    if be is None:
        be = get_backend(name)
        be.gdnlab_options = {}
    return be


_MODES = ("decode", "verify")
_INTERMEDIATES = ("batch", "pool")
_TIMINGS = ("graph", "eager")


class SweepInterrupted(RuntimeError):
    """The sweep stopped early (sticky CUDA error); rows so far are stored, ``--resume`` continues."""


# ------------------------------------------------------------------------------------------- config


@dataclass
class SweepConfig:
    """What to sweep and how to time it.

    ``presets`` holds ``"name@tpN"`` strings (or :class:`GDNShape` objects, e.g. a tiny test shape);
    ``backends=None`` means every available backend except ``reference`` (``reference`` alone when
    nothing else runs here, e.g. on CPU). ``pool_capacity=None``: the largest concurrency.
    ``rotations``: ``(False,)`` one call per timed sample, ``(True,)`` up to ``rotate_max`` calls on
    disjoint pool rows per sample (verify buffers within ``rotate_budget_gb`` GB), or both.
    Times are per call, in µs; ``repeats`` timed samples after ``warmup`` untimed calls.
    """

    backends: Sequence[str] | None = None
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY
    modes: Sequence[str] = _MODES
    draft_tokens: Sequence[int] = (2, 4, 8)
    state_dtypes: Sequence[str] = ("float32", "bfloat16")
    presets: Sequence[str | GDNShape] = (DEFAULT_PRESET,)
    intermediates: Sequence[str] = _INTERMEDIATES
    timings: Sequence[str] = ("graph",)
    rotations: Sequence[bool] = (False,)
    rotate_max: int = 16
    rotate_budget_gb: float = 8.0
    l2_flush: bool = True
    warmup: int = 5
    repeats: int = 40
    act_dtype: str = "bfloat16"
    pool_capacity: int | None = None
    device: str | None = None
    check: bool = True
    seed: int = 0
    spin_us: float = 20.0
    backend_options: dict = field(default_factory=lambda: {k: dict(v) for k, v in SGLANG_LIKE_OPTIONS.items()})

    def validate(self) -> None:
        if not self.concurrency or any((not isinstance(c, int)) or c < 1 for c in self.concurrency):
            raise ValueError(f"concurrency must be integers >= 1, got {list(self.concurrency)}")
        bad = [m for m in self.modes if m not in _MODES]
        if bad or not self.modes:
            raise ValueError(f"modes must be among {_MODES}, got {list(self.modes)}")
        if "verify" in self.modes and (not self.draft_tokens or any(
                (not isinstance(t, int)) or t < 2 for t in self.draft_tokens)):
            raise ValueError(f"draft_tokens must be integers >= 2 for verify, got {list(self.draft_tokens)}")
        for d in self.state_dtypes:
            if dtype_from_name(d) not in (torch.float32, torch.bfloat16):
                raise ValueError(f"state_dtypes must be float32/bfloat16, got {d!r}")
        bad = [i for i in self.intermediates if i not in _INTERMEDIATES]
        if bad or not self.intermediates:
            raise ValueError(f"intermediates must be among {_INTERMEDIATES}, got {list(self.intermediates)}")
        bad = [t for t in self.timings if t not in _TIMINGS]
        if bad or not self.timings:
            raise ValueError(f"timings must be among {_TIMINGS}, got {list(self.timings)}")
        if not self.rotations or any(not isinstance(r, bool) for r in self.rotations):
            raise ValueError(f"rotations must be booleans, got {list(self.rotations)}")
        if self.rotate_max < 1 or self.rotate_budget_gb <= 0:
            raise ValueError(f"rotate_max must be >= 1 and rotate_budget_gb > 0, got {self.rotate_max}, "
                             f"{self.rotate_budget_gb}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={self.repeats}, warmup={self.warmup}")
        if self.pool_capacity is not None and self.pool_capacity < max(self.concurrency):
            raise ValueError(f"pool_capacity={self.pool_capacity} is smaller than the largest concurrency "
                             f"{max(self.concurrency)}")
        for p in self.presets:
            parse_preset(p)

    @property
    def capacity(self) -> int:
        return self.pool_capacity or max(self.concurrency)


def parse_preset(spec: str | GDNShape) -> tuple[str, int, GDNShape]:
    """``"qwen3.5-397b-a17b@tp4"`` -> ``("qwen3.5-397b-a17b", 4, shape)``; a :class:`GDNShape` passes through."""
    if isinstance(spec, GDNShape):
        return spec.name, spec.tp, spec
    text = str(spec).strip()
    name, _, tp_s = text.partition("@")
    tp = 1
    if tp_s:
        if not tp_s.lower().startswith("tp") or not tp_s[2:].isdigit():
            raise ValueError(f"preset {spec!r}: expected NAME or NAME@tpN (e.g. qwen3.5-397b-a17b@tp4)")
        tp = int(tp_s[2:])
    return name, tp, get_preset(name, tp=tp)


def default_backends() -> list[str]:
    from .kernels import available_backends

    avail = [n for n, st in available_backends().items() if st.available and n != "reference"]
    return avail or ["reference"]


def grid_points(cfg: SweepConfig) -> list[dict]:
    """Every point of the grid as a dict of :data:`KEY_COLUMNS` (plus ``_shape``, the GDNShape)."""
    cfg.validate()
    backends = list(cfg.backends) if cfg.backends else default_backends()
    modes: list[tuple[str, int, str]] = []
    for m in cfg.modes:
        if m == "decode":
            modes.append(("decode", 1, "none"))
        else:
            modes += [("verify", t, i) for t in cfg.draft_tokens for i in cfg.intermediates]
    pts = []
    for p, sd, be, (mode, t, inter), timing, rot, c in itertools.product(
            cfg.presets, cfg.state_dtypes, backends, modes, cfg.timings, cfg.rotations, cfg.concurrency):
        name, tp, shape = parse_preset(p)
        pts.append({"preset": name, "tp": tp, "backend": str(be), "mode": mode, "draft_tokens": t,
                    "concurrency": int(c), "state_dtype": dtype_name(sd), "intermediate": inter, "timing": timing,
                    "rotate": bool(rot), "l2_flush": bool(cfg.l2_flush), "act_dtype": dtype_name(cfg.act_dtype),
                    "pool_slots": cfg.capacity + 1, "_shape": shape})
    return pts


def point_key(row: dict) -> tuple:
    """The resume key of a row (grid columns, normalised to plain Python values)."""
    out = []
    for c in KEY_COLUMNS:
        v = row.get(c)
        if hasattr(v, "item"):
            v = v.item()
        if c in ("tp", "draft_tokens", "concurrency", "pool_slots"):
            v = int(v)
        elif c in ("l2_flush", "rotate"):
            v = bool(v) if v is not None else False
        else:
            v = str(v)
        out.append(v)
    return tuple(out)


# ------------------------------------------------------------------------------------------- storage


def _has_pyarrow() -> bool:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
        return True
    except ImportError:
        return False


def resolve_output(path: str | os.PathLike) -> tuple[Path, str]:
    """``(path, "parquet" | "jsonl")``: a directory gets ``sweep.parquet``; a ``.parquet`` path
    becomes the sibling ``.jsonl`` when pyarrow is missing."""
    p = Path(path)
    if p.is_dir() or (not p.suffix and not p.exists()):
        p = p / "sweep.parquet"
    if p.suffix == ".jsonl":
        return p, "jsonl"
    if p.suffix != ".parquet":
        raise ValueError(f"output must end in .parquet or .jsonl (or be a directory), got {str(path)!r}")
    if _has_pyarrow():
        return p, "parquet"
    return p.with_suffix(".jsonl"), "jsonl"


def _frame(rows: list[dict]):
    import pandas as pd

    df = pd.DataFrame(rows)
    for c in SCHEMA:
        if c not in df.columns:
            df[c] = None
    extra = [c for c in df.columns if c not in SCHEMA and not c.startswith("_")]
    df = df[list(SCHEMA) + extra]
    return _cast(df)


def _cast(df):
    """Columns of :data:`SCHEMA` to their dtypes (missing values -> ``<NA>`` / NaN)."""
    import pandas as pd

    for c, dt in SCHEMA.items():
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


def _json_default(v: Any):
    if hasattr(v, "item"):
        return v.item()
    return str(v)


class _Sink:
    """Persist rows as they come (see module docstring)."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self.rows: list[dict] = []

    def load_existing(self) -> None:
        if self.path.exists():
            df = load_results(self.path)
            self.rows = [{k: (None if _isna(v) else v) for k, v in r.items()} for r in df.to_dict("records")]

    def replace_or_append(self, row: dict) -> None:
        clean = {k: v for k, v in row.items() if not k.startswith("_")}
        key = point_key(clean)
        self.rows = [r for r in self.rows if point_key(r) != key] + [clean]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "parquet":
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            _frame(self.rows).to_parquet(tmp, index=False)
            os.replace(tmp, self.path)
        else:
            line = json.dumps(clean, default=_json_default, allow_nan=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())

    def done_keys(self, retry_failed: bool) -> set[tuple]:
        keep = set()
        for r in self.rows:
            st = str(r.get("status") or "")
            if retry_failed and not (st == "ok" or st.startswith(("unsupported", "rejected"))):
                continue
            keep.add(point_key(r))
        return keep


def _isna(v: Any) -> bool:
    try:
        import pandas as pd
        return v is None or (not isinstance(v, (list, dict, tuple)) and bool(pd.isna(v)))
    except (TypeError, ValueError):
        return False


def load_results(path: str | os.PathLike):
    """Sweep rows (parquet or JSON lines) as a DataFrame with :data:`SCHEMA` dtypes.

    A ``.parquet`` path that does not exist falls back to its ``.jsonl`` sibling and vice versa; a
    directory means ``sweep.parquet`` / ``sweep.jsonl`` in it. In JSON lines an unreadable line (a
    write torn by a kill) is skipped, and a key stored twice (a retried point) keeps its last row.
    """
    import pandas as pd

    p = Path(path)
    cands = [p / "sweep.parquet", p / "sweep.jsonl"] if p.is_dir() else [p]
    if not p.is_dir() and p.suffix in (".parquet", ".jsonl"):
        cands.append(p.with_suffix(".jsonl" if p.suffix == ".parquet" else ".parquet"))
    found = next((c for c in cands if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(f"no sweep results at {path} (looked for {', '.join(map(str, cands))})")
    if found.suffix == ".parquet":
        if not _has_pyarrow():
            raise ValueError(f"{found} is parquet but pyarrow is not installed here (pip install pyarrow)")
        df = pd.read_parquet(found)
    else:
        rows = []
        with open(found, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # torn write of the point in flight
        df = pd.DataFrame(rows)
    if df.empty:
        return _frame([])
    df = _frame(df.to_dict("records"))
    keys = df[list(KEY_COLUMNS)].astype("object").apply(tuple, axis=1)
    return df[~keys.duplicated(keep="last")].reset_index(drop=True)


# ------------------------------------------------------------------------------------------- measuring


def _err_stats(x: torch.Tensor, r: torch.Tensor, tol, chunk_rows: int = 8) -> tuple[float, float, float]:
    """``(max |x - r|, max |r|, max tolerance ratio)`` computed in row chunks (bounded memory)."""
    if tuple(x.shape) != tuple(r.shape):
        raise ValueError(f"shape mismatch {tuple(x.shape)} vs {tuple(r.shape)}")
    max_err = max_ref = max_ratio = 0.0
    for i in range(0, x.shape[0], chunk_rows):
        xs, rs = x[i:i + chunk_rows].double(), r[i:i + chunk_rows].double()
        err = (xs - rs).abs()
        if torch.isnan(err).any():
            return float("nan"), float(rs.abs().max()), float("inf")
        max_err = max(max_err, float(err.max()) if err.numel() else 0.0)
        max_ref = max(max_ref, float(rs.abs().max()) if rs.numel() else 0.0)
        if err.numel():
            max_ratio = max(max_ratio, float((err / (tol.atol + tol.rtol * rs.abs())).max()))
    return max_err, max_ref, max_ratio


def pool_scoped_verify(backend, x, pool: torch.Tensor, idx: torch.Tensor, buf: torch.Tensor,
                       validate: bool = False) -> tuple[Callable[[], Any], str]:
    """A callable that runs verify with the *unsliced* pool-sized ``buf`` as SGLang did before
    PR #23273, and a description of the call.

    FlashInfer: its backend slices ``buf[:B]`` (the fix), so this calls FlashInfer's MTP entry
    points directly with the whole buffer, arguments as :class:`gdnlab.kernels.flashinfer.FlashInferBackend`
    passes them (A_log as float32, ``disable_state_update=True``, qk L2 norm in the kernel). A backend
    may provide its own ``verify_pool_scoped(q, k, v, a, b, A_log, dt_bias, pool, indices,
    intermediate=...)``. Any other backend gets ``verify(..., intermediate=buf)`` (the contract
    accepts a buffer with more rows; the kernels index it by batch row).
    """
    hook = getattr(backend, "verify_pool_scoped", None)
    args = x.args()
    if callable(hook):
        return (lambda: hook(*args, pool, idx, intermediate=buf)), f"{backend.name}.verify_pool_scoped(buffer)"
    if getattr(backend, "name", "") == "flashinfer" and hasattr(backend, "kernels"):
        fi = backend.kernels
        q, k, v, a, b, A_log, dt_bias = (t.contiguous() for t in args)
        A, dt = backend._gates(A_log, dt_bias)        # float32 A_log, bf16/fp32 dt_bias, as the backend passes
        scale = float(q.shape[-1]) ** -0.5
        idx32 = idx.to(torch.int32)
        if pool.dtype == torch.bfloat16:
            def call():
                return fi.mtp_bf16(A_log=A, a=a, dt_bias=dt, softplus_beta=1.0, softplus_threshold=20.0, q=q, k=k,
                                   v=v, b=b, initial_state_source=pool, initial_state_indices=idx32,
                                   intermediate_states_buffer=buf, disable_state_update=True,
                                   use_qk_l2norm_in_kernel=True, scale=scale, output=None)
            return call, "flashinfer gdn_decode_bf16_state.gated_delta_rule_mtp(intermediate_states_buffer=pool-sized)"

        def call():
            return fi.mtp_fp32(q=q, k=k, v=v, initial_state=pool, initial_state_indices=idx32, A_log=A, a=a,
                               dt_bias=dt, b=b, scale=scale, output=None, intermediate_states_buffer=buf,
                               disable_state_update=True, use_qk_l2norm=True)
        return call, "flashinfer gdn_decode.gated_delta_rule_mtp(intermediate_states_buffer=pool-sized)"
    return (lambda: backend.verify(*args, pool, idx, intermediate=buf, validate=validate)), \
        f"{getattr(backend, 'name', '?')}.verify(intermediate=pool-sized)"


def _first_output(res: Any) -> torch.Tensor:
    return res[0] if isinstance(res, (tuple, list)) else res


@dataclass
class _Context:
    cfg: SweepConfig
    device: torch.device
    prov: dict
    peak_gbps: float
    sweep_id: str
    backends: dict = field(default_factory=dict)
    pools: dict = field(default_factory=dict)
    reference: Any = None

    def backend(self, name: str):
        if name not in self.backends:
            self.backends[name] = make_backend(name, self.cfg.backend_options.get(name))
        return self.backends[name]

    def pool(self, shape: GDNShape, dtype: torch.dtype) -> torch.Tensor:
        """One randomised pool per (state shape, dtype), reused by every point (decode points keep
        updating it; the GDN recurrence keeps it bounded)."""
        key = (shape.state_shape, dtype)
        if key not in self.pools:
            for k in list(self.pools):  # keep one pool per dtype at most: memory
                if k[1] == dtype:
                    del self.pools[k]
            gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
            t = torch.empty((self.cfg.capacity + 1, *shape.state_shape), dtype=dtype, device=self.device)
            t.normal_(0.0, 0.1, generator=gen)
            self.pools[key] = t
        return self.pools[key]


def _base_row(pt: dict, ctx: _Context) -> dict:
    shape: GDNShape = pt["_shape"]
    row = {k: pt[k] for k in KEY_COLUMNS}
    row.update(shape=shape.name, batch=pt["concurrency"], H=shape.H, HV=shape.HV, K=shape.K, V=shape.V)
    row.update({k: ctx.prov.get(k) for k in ("gpu", "sm", "driver", "cuda", "torch", "triton", "flashinfer", "host")})
    from . import __version__
    row.update(gdnlab=__version__, sweep_id=ctx.sweep_id,
               timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return row


def _roofline(row: dict, shape: GDNShape, inter_dtype: torch.dtype | None, ctx: _Context) -> None:
    from .roofline import gdn_bytes, gdn_flops
    B, T = row["concurrency"], row["draft_tokens"]
    by = gdn_bytes(shape, B, T, mode=row["mode"], state_dtype=row["state_dtype"], act_dtype=row["act_dtype"],
                   intermediate_dtype=inter_dtype or torch.float32)
    row.update(bytes=by.total, bytes_state=by.state_read + by.state_write, bytes_intermediate=by.intermediate_write,
               flops=gdn_flops(shape, B, T), peak_bw_gbps=ctx.peak_gbps)
    if ctx.peak_gbps == ctx.peak_gbps and ctx.peak_gbps > 0:
        row["floor_us"] = by.total / (ctx.peak_gbps * 1e9) * 1e6


def measure_point(pt: dict, ctx: _Context) -> dict:
    """Run one grid point and return its row (never raises for a failing backend call, except
    ``KeyboardInterrupt``; OOM -> ``status="oom"``)."""
    from .inputs import make_inputs
    from .instrument import time_fn
    from .kernels.tolerances import intermediate_tol, output_tol, state_tol
    from .kernels.validation import GDNCallDims

    t_point = time.perf_counter()
    shape: GDNShape = pt["_shape"]
    row = _base_row(pt, ctx)
    sd = dtype_from_name(pt["state_dtype"])
    act = dtype_from_name(pt["act_dtype"])
    B, T, mode = pt["concurrency"], pt["draft_tokens"], pt["mode"]
    inter_dtype: torch.dtype | None = None
    try:
        be = ctx.backend(pt["backend"])
        row["backend_options"] = json.dumps(getattr(be, "gdnlab_options", {}), sort_keys=True, default=str)
        allowed = be.decode_state_dtypes if mode == "decode" else be.verify_state_dtypes
        if sd not in allowed:
            row["status"] = (f"unsupported: {be.name} {mode} does not support a {pt['state_dtype']} state pool "
                             f"(supports {[dtype_name(d) for d in allowed]})")
            return row
        pool = ctx.pool(shape, sd)
        P = pool.shape[0]
        gen = torch.Generator().manual_seed(ctx.cfg.seed * 7919 + B)
        k = max(1, min(ctx.cfg.rotate_max, (P - 1) // max(B, 1))) if pt["rotate"] else 1
        perm = torch.randperm(P - 1, generator=gen) + 1                 # scattered live slots, never slot 0
        idx = perm[:B].to(torch.int32).to(ctx.device)
        x = make_inputs(shape, B, T, act_dtype=act, device=ctx.device, seed=ctx.cfg.seed + 31 * B + T)
        dims = GDNCallDims(B, T, shape.H, shape.HV, shape.K, shape.V, P)
        buf = None
        call_desc = ""
        if mode == "verify":
            batch_buf = be.new_intermediate(dims, pool)
            inter_dtype = batch_buf.dtype
            if pt["intermediate"] == "pool":
                del batch_buf
                buf = torch.full((P, T, shape.HV, shape.V, shape.K), float("nan"), dtype=inter_dtype,
                                 device=ctx.device)
            else:
                buf = batch_buf
            row["intermediate_dtype"] = dtype_name(inter_dtype)
            row["intermediate_rows"] = int(buf.shape[0])
        _roofline(row, shape, inter_dtype, ctx)

        # ---- checked first call (JIT happens here) + reference on the same device and state
        check_pool = pool.clone() if mode == "decode" else pool
        t0 = time.perf_counter()
        try:
            if mode == "decode":
                out = be.decode(*x.args(), check_pool, idx, validate=True)
                call_desc = f"{be.name}.decode"
            elif pt["intermediate"] == "pool":
                fn_pool, call_desc = pool_scoped_verify(be, x, pool, idx, buf, validate=True)
                try:
                    out = _first_output(fn_pool())
                except (torch.cuda.OutOfMemoryError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # noqa: BLE001 - the backend refused the pool-sized buffer
                    row["status"] = f"rejected: {_describe(exc)}"
                    row["intermediate_call"] = call_desc
                    return row
            else:
                out, _ = be.verify(*x.args(), pool, idx, intermediate=buf, validate=True)
                call_desc = f"{be.name}.verify(intermediate=batch)"
            if ctx.device.type == "cuda":
                torch.cuda.synchronize()
        except (NotImplementedError, ValueError) as exc:
            row["status"] = f"unsupported: {_describe(exc)}"
            return row
        row["first_call_ms"] = (time.perf_counter() - t0) * 1e3
        row["intermediate_call"] = call_desc
        row["kernel"] = be.last_path.kernel
        row["kernel_path"] = json.dumps(be.last_path.as_dict(), default=str, sort_keys=True)
        if ctx.cfg.check:
            ref = ctx.reference
            if mode == "decode":
                ref_pool = pool.clone()
                o_ref = ref.decode(*x.args(), ref_pool, idx, validate=False)
                st_x, st_r = check_pool[idx.long()], ref_pool[idx.long()]
                st_tol = state_tol(sd)
                del ref_pool
            else:
                o_ref, inter_ref = ref.verify(*x.args(), pool, idx, validate=False)
                st_x, st_r = buf[:B, :T], inter_ref.to(buf.dtype)
                st_tol = intermediate_tol(buf.dtype, sd)
            e_o, m_o, r_o = _err_stats(out, o_ref, output_tol(act, sd))
            e_s, m_s, r_s = _err_stats(st_x, st_r, st_tol)
            row.update(max_abs_err=e_o, max_rel_err=e_o / m_o if m_o > 0 else float("nan"),
                       state_max_abs_err=e_s, state_max_rel_err=e_s / m_s if m_s > 0 else float("nan"),
                       tol_ratio=max(r_o, r_s))
            row["correct"] = bool(row["tol_ratio"] <= 1.0)
            del o_ref, st_x, st_r
        if mode == "verify" and pt["intermediate"] == "pool":
            rest = buf[B:]
            row["pool_rows_untouched"] = bool(torch.isnan(rest).all()) if rest.numel() else None
        del out
        if mode == "decode":
            del check_pool

        # ---- timing: one call per sample, or (rotate) k calls on k disjoint row sets of the pool,
        # each verify with its own buffer, like k consecutive layers (amortises the event overhead)
        if buf is not None and k > 1:
            k = max(1, min(k, int(ctx.cfg.rotate_budget_gb * 1e9 // (buf.numel() * buf.element_size()))))
        fns = [_timed_call(be, x, pool, perm[j * B:(j + 1) * B].to(torch.int32).to(ctx.device) if j else idx,
                           (buf if j == 0 else torch.empty_like(buf)) if buf is not None else None, mode,
                           pt["intermediate"]) for j in range(k)]
        tm = time_fn(fns if k > 1 else fns[0], warmup=ctx.cfg.warmup, repeats=ctx.cfg.repeats,
                     flush_l2=pt["l2_flush"], graph=pt["timing"] == "graph", device=ctx.device,
                     spin_us=ctx.cfg.spin_us)
        del fns
        row.update(time_us=tm.median_us, time_p10_us=tm.p10_us, time_p90_us=tm.p90_us, time_mean_us=tm.mean_us,
                   time_min_us=tm.min_us, repeats=tm.repeats, calls_per_sample=tm.inner, timing_method=tm.method,
                   timing_note=tm.note or None)
        if tm.median_us > 0:
            row["bw_gbps"] = row["bytes"] / (tm.median_us * 1e-6) / 1e9
            row["tflops"] = row["flops"] / (tm.median_us * 1e-6) / 1e12
            if ctx.peak_gbps == ctx.peak_gbps and ctx.peak_gbps > 0:
                row["pct_of_peak_bw"] = 100.0 * row["bw_gbps"] / ctx.peak_gbps
        row["status"] = "ok"
    except torch.cuda.OutOfMemoryError as exc:
        row["status"] = "oom"
        row["timing_note"] = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
        row["status"] = f"error: {_describe(exc)}"
    finally:
        row["point_s"] = time.perf_counter() - t_point
    return row


def _describe(exc: BaseException, limit: int = 300) -> str:
    """``"Type: message"``; a bare ``assert`` (no message) is described by its source line and file."""
    msg = str(exc).strip()
    if not msg:
        import traceback
        tb = traceback.extract_tb(exc.__traceback__)
        if tb:
            msg = f"{(tb[-1].line or '').strip()} ({Path(tb[-1].filename).name}:{tb[-1].lineno})"
    return f"{type(exc).__name__}: {msg}"[:limit]


def _timed_call(be, x, pool: torch.Tensor, idx: torch.Tensor, buf: torch.Tensor | None, mode: str,
                intermediate: str) -> Callable[[], Any]:
    """The unchecked (``validate=False``, capturable) call a point times."""
    args = x.args()
    if mode == "decode":
        return lambda: be.decode(*args, pool, idx, validate=False)
    if intermediate == "pool":
        return pool_scoped_verify(be, x, pool, idx, buf)[0]
    return lambda: be.verify(*args, pool, idx, intermediate=buf, validate=False)


def _sticky_cuda_error(status: str) -> bool:
    s = status.lower()
    return any(m in s for m in ("illegal memory access", "illegal address", "unspecified launch failure",
                                "device-side assert", "misaligned address"))


def run_sweep(cfg: SweepConfig, out: str | os.PathLike | None = None, *, resume: bool = False,
              overwrite: bool = False, retry_failed: bool = False, on_row: Callable[[dict], None] | None = None,
              progress: bool = True):
    """Run the grid; return all rows (stored ones included when resuming) as a DataFrame.

    Args:
        cfg: the grid and timing settings.
        out: ``.parquet`` / ``.jsonl`` path or a directory (``None``: keep rows in memory only).
        resume: skip points whose key is already stored in ``out``.
        overwrite: start ``out`` afresh. Without ``resume`` or ``overwrite`` an existing ``out`` is an error.
        retry_failed: with ``resume``, run again points stored with ``oom``/``error`` (their rows are replaced).
        on_row: called with each row after it was stored (tests use it to simulate a kill).
        progress: show a tqdm progress bar (stderr).
    """
    from .hardware import detect
    from .kernels.reference import ReferenceBackend
    from .provenance import collect

    cfg.validate()
    if cfg.device and torch.device(cfg.device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={cfg.device!r} asks for CUDA, but no CUDA device is available here")
    device = torch.device(cfg.device) if cfg.device else (
        torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    sink = None
    if out is not None:
        path, fmt = resolve_output(out)
        sink = _Sink(path, fmt)
        if path.exists():
            if overwrite:
                path.unlink()
            elif resume:
                sink.load_existing()
            else:
                raise ValueError(f"{path} exists: pass resume=True (--resume) to continue it or "
                                 f"overwrite=True (--overwrite) to start again")
    points = grid_points(cfg)
    done = sink.done_keys(retry_failed) if (sink is not None and resume) else set()
    todo = [p for p in points if point_key(p) not in done]
    spec = detect(device.index) if device.type == "cuda" else None
    ctx = _Context(cfg=cfg, device=device, prov=collect(), sweep_id=_dt.datetime.now(_dt.timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ") + f"-{uuid.uuid4().hex[:8]}", peak_gbps=float(spec.peak_hbm_gbps) if spec else float("nan"))
    ctx.reference = ReferenceBackend()
    from .kernels import BackendUnavailable
    for name in dict.fromkeys(p["backend"] for p in todo):   # fail fast on a backend that cannot run here
        try:
            ctx.backend(name)
        except BackendUnavailable as exc:
            raise ValueError(f"{exc} (available here: {', '.join(default_backends())})") from None
    rows_mem: list[dict] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), desc="gdnlab sweep", unit="pt", file=sys.stderr, dynamic_ncols=True,
                   mininterval=0.1 if sys.stderr.isatty() else 10.0)   # a log file gets a line every 10 s
    try:
        for pt in todo:
            if bar is not None:
                bar.set_postfix_str(f"{pt['backend']} {pt['mode']}{'' if pt['mode'] == 'decode' else pt['draft_tokens']}"
                                    f" {pt['state_dtype']} {pt['intermediate']} C={pt['concurrency']}")
            row = measure_point(pt, ctx)
            if row.get("status") == "oom" or str(row.get("status", "")).startswith("error"):
                gc.collect()                      # the point's tensors are gone now: give memory back
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            if sink is not None:
                sink.replace_or_append(row)
            else:
                rows_mem.append({k: v for k, v in row.items() if not k.startswith("_")})
            if bar is not None:
                bar.update(1)
            if on_row is not None:
                on_row(row)
            if _sticky_cuda_error(str(row.get("status", ""))):
                raise SweepInterrupted(f"sticky CUDA error at {point_key(row)}: {row['status']}; the rows so far are "
                                       f"stored — rerun with --resume in a fresh process")
    finally:
        if bar is not None:
            bar.close()
    df = load_results(sink.path) if sink is not None else _frame(rows_mem)
    df.attrs["sweep_id"] = ctx.sweep_id
    df.attrs["points_run"] = len(todo)
    return df


# ------------------------------------------------------------------------------------------- CLI


def _list(values: Iterable[str] | None, conv=str) -> list:
    out = []
    for v in values or []:
        out += [conv(s.strip()) for s in str(v).split(",") if s.strip()]
    return out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """``gdnlab sweep`` arguments (lists accept commas or spaces: ``--concurrency 1,4,16`` or ``1 4 16``)."""
    parser.add_argument("--backends", nargs="+", default=None,
                        help="backends (default: every available one except reference)")
    parser.add_argument("--concurrency", nargs="+", default=None, help="batch sizes (default 1,4,16,32,64,128,256)")
    parser.add_argument("--modes", nargs="+", default=None, help="decode,verify (default both)")
    parser.add_argument("--draft-tokens", nargs="+", default=None, help="verify T values (default 2,4,8)")
    parser.add_argument("--state-dtypes", nargs="+", default=None, help="fp32,bf16 (default both)")
    parser.add_argument("--presets", nargs="+", default=None, help=f"NAME@tpN (default {DEFAULT_PRESET})")
    parser.add_argument("--intermediate", nargs="+", default=None,
                        help="verify buffer scope: batch,pool (default both; pool = SGLang before PR #23273)")
    parser.add_argument("--timing", nargs="+", default=None,
                        help="graph (CUDA-graph replay, default), eager, or both")
    parser.add_argument("--rotate", choices=("off", "on", "both"), default="off",
                        help="on: each sample = up to 16 calls on disjoint pool rows (like consecutive layers), "
                             "time per call = sample / calls (amortises event overhead); default off: 1 call per sample")
    parser.add_argument("--no-l2-flush", action="store_true", help="do not flush L2 between repeats")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before timing")
    parser.add_argument("--repeats", type=int, default=40, help="timed samples per point")
    parser.add_argument("--pool-capacity", type=int, default=None, help="pool slots for requests (default: max concurrency)")
    parser.add_argument("--act-dtype", default="bf16")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--no-check", action="store_true", help="skip the correctness check against the reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="result file .parquet/.jsonl or a directory (default: $GDNLAB_OUT/sweep.parquet, ./out)")
    parser.add_argument("--resume", action="store_true", help="skip points already stored in --out")
    parser.add_argument("--retry-failed", action="store_true", help="with --resume: rerun oom/error points")
    parser.add_argument("--overwrite", action="store_true", help="start --out afresh")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    def ints(name, vals):
        try:
            return _list(vals, int)
        except ValueError:
            raise ValueError(f"--{name} takes integers, got {vals}") from None

    cfg = SweepConfig(device=args.device, warmup=args.warmup, repeats=args.repeats, pool_capacity=args.pool_capacity,
                      l2_flush=not args.no_l2_flush, act_dtype=dtype_name(args.act_dtype), check=not args.no_check,
                      seed=args.seed)
    if args.backends:
        cfg.backends = _list(args.backends)
    if args.concurrency:
        cfg.concurrency = ints("concurrency", args.concurrency)
    if args.modes:
        cfg.modes = _list(args.modes)
    if args.draft_tokens:
        cfg.draft_tokens = ints("draft-tokens", args.draft_tokens)
    if args.state_dtypes:
        cfg.state_dtypes = [dtype_name(d) for d in _list(args.state_dtypes)]
    if args.presets:
        cfg.presets = _list(args.presets)
    if args.intermediate:
        cfg.intermediates = _list(args.intermediate)
    if args.timing:
        cfg.timings = _list(args.timing)
    cfg.rotations = {"off": (False,), "on": (True,), "both": (False, True)}[args.rotate]
    return cfg


def summary_table(df) -> str:
    """A compact text table: median µs per (backend, mode, T, dtype, intermediate, timing) x concurrency."""
    import pandas as pd

    if df.empty:
        return "(no rows)"
    ok = df[df["status"] == "ok"]
    lines = [f"{len(df)} points: " + ", ".join(f"{k} {v}" for k, v in
                                              df["status"].str.split(":").str[0].value_counts().items())]
    if not ok.empty:
        piv = ok.pivot_table(index=["backend", "mode", "draft_tokens", "state_dtype", "intermediate", "timing", "rotate"],
                             columns="concurrency", values="time_us", aggfunc="median")
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.1f}".format):
            lines.append("median µs per call:\n" + piv.to_string())
        pct = ok.groupby(["backend", "mode", "state_dtype"])["pct_of_peak_bw"].max()
        if pct.notna().any():
            with pd.option_context("display.float_format", "{:.0f}".format):
                lines.append("best % of peak HBM bandwidth:\n" + pct.to_string())
    bad = df[~df["status"].isin(["ok"])]
    for _, r in bad.head(12).iterrows():
        lines.append(f"  {r['backend']} {r['mode']} T={r['draft_tokens']} {r['state_dtype']} {r['intermediate']} "
                     f"C={r['concurrency']}: {r['status']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    out = args.out or os.path.join(os.environ.get("GDNLAB_OUT", "out"), "sweep.parquet")
    t0 = time.perf_counter()
    df = run_sweep(cfg, out, resume=args.resume, overwrite=args.overwrite, retry_failed=args.retry_failed,
                   progress=not args.no_progress)
    wall = time.perf_counter() - t0
    path, fmt = resolve_output(out)
    this = df[df["sweep_id"] == df.attrs.get("sweep_id")]
    jit_s = float(this["first_call_ms"].fillna(0).sum()) / 1e3 if len(this) else 0.0
    print(summary_table(df))
    print(f"sweep: {len(this)} points run now in {wall:.1f} s wall (first calls incl. JIT {jit_s:.1f} s); "
          f"{len(df)} rows in {path} ({fmt})")
    return 0
