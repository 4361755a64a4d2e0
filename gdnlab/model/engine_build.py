"""Assemble an :class:`~gdnlab.model.engine_step.EngineStep` for a GPU and configuration from shipped
data (no GPU needed).

Sources, in order of preference, each named in the step's ``notes``:

* op times: gdnlab's engine-grade component run of that GPU (``traces/<gpu>/engine_components/``,
  :mod:`gdnlab.components.engine`, status ``measured``) for the parts it measured; every other part
  from AIConfigurator's measured tables (:mod:`gdnlab.model.aic_steps`, ``reported``);
* GDN recurrence: the GPU's own strategy sweep (``traces/<gpu>/sweep.parquet`` with strategy step
  rows: the H200's), else the H200 sweep projected by the HBM-bandwidth ratio (``projected``; the
  H100's shipped sweep has call rows only, no verify + commit steps).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..errors import DataError, InputError
from ..hardware import spec_for
from ..results import load_sweep
from ..shapes import preset
from ..strategies.registry import BASELINE
from .engine_step import EngineParams, EngineStep
from .gdn_sweep import SweepGDN
from .served import ServedModel
from .step_ops import step_ops_for

__all__ = ["GPU_NAMES", "CHUNKED_PREFILL", "STRATEGY_SWEEP", "engine_step_for", "gdn_sweep_for", "engine_rows",
           "ENGINE_COMPONENTS"]

#: gdnlab GPU keys -> canonical names (:mod:`gdnlab.hardware`)
GPU_NAMES = {"h100": "H100-SXM", "h200": "H200", "b200": "B200", "gb200": "GB200"}
#: SGLang's default ``--chunked-prefill-size`` by GPU memory (server_args: 8192 up to 160 GB, 16384 above)
CHUNKED_PREFILL = {"h100": 8192, "h200": 8192, "b200": 16384, "gb200": 16384}
#: the sweep with verify-strategy step rows (verify + commit) every GPU's GDN times come from
STRATEGY_SWEEP = "traces/h200/sweep.parquet"
#: where an engine-grade component run of a GPU lives
ENGINE_COMPONENTS = "traces/{gpu}/engine_components"


def _root_path(p: str) -> Path:
    q = Path(p)
    if q.is_absolute() or q.exists():
        return q
    return Path(__file__).resolve().parents[2] / q


def gpu_key(gpu: str) -> str:
    """``h100`` / ``h200`` / ``b200`` / ``gb200`` for any spelling (``H100-SXM``, ``NVIDIA H200``)."""
    g = str(gpu).strip().lower().replace("nvidia", "").strip()
    for k in ("gb200", "b200", "h200", "h100"):
        if g.startswith(k) or k in g.split():
            return k
    raise InputError(f"gpu {gpu!r}: expected one of {', '.join(GPU_NAMES)}")


@lru_cache(maxsize=4)
def _sweep(path: str) -> pd.DataFrame:
    return load_sweep(_root_path(path))


def gdn_sweep_for(gpu: str, sweep_path: str | None = None) -> tuple[SweepGDN, int, str]:
    """``(sweep, HV per GPU of its rows, note)``: GDN kernel times for ``gpu`` -- the strategy sweep
    itself when it was measured on that GPU, else projected to it by the bandwidth ratio."""
    key = gpu_key(gpu)
    path = sweep_path or STRATEGY_SWEEP
    rows = _sweep(str(path))
    hv = int(pd.to_numeric(rows["HV"], errors="coerce").dropna().mode().iloc[0]) if "HV" in rows else 16
    shape = preset("qwen3.5-397b-a17b", tp=4)
    if hv != shape.HV:
        raise DataError(f"the strategy sweep {path} has HV={hv} rows; expected the TP4 shape (HV={shape.HV})")
    g = SweepGDN.from_sweep(rows, shape=shape)
    target = spec_for(GPU_NAMES[key])
    if g.gpu.name == target.name:
        return g, hv, f"GDN: {g.source}"
    p = g.projected(target)
    return p, hv, f"GDN: {p.source}"


def engine_rows(gpu: str, tp: int, folder: str | Path | None = None) -> pd.DataFrame | None:
    """The engine-grade component rows of ``gpu`` at ``tp`` that ran (``outcome == ok``) and passed
    their numerics check at their own batch (``check_ok``); ``None`` when there is no run or none left."""
    p = _root_path(str(folder or ENGINE_COMPONENTS.format(gpu=gpu_key(gpu))))
    f = p / "components.parquet"
    if not f.is_file():
        return None
    df = pd.read_parquet(f)
    need = {"component", "tokens", "kv_len", "net_us", "outcome", "tp"}
    if not need <= set(df.columns):
        raise DataError(f"{f}: engine component rows need columns {sorted(need)}")
    df = df[(df["outcome"] == "ok") & (pd.to_numeric(df["tp"], errors="coerce") == tp)]
    if "check_ok" in df:
        df = df[df["check_ok"].astype("boolean").fillna(True)]
    return df if not df.empty else None


def engine_step_for(gpu: str, tp: int = 4, ep: int = 1, weights: str = "fp8_block", kv_dtype: str = "bf16", *,
                    state_dtype: str = "bfloat16", strategy: str = BASELINE, params: EngineParams | None = None,
                    chunked_prefill_tokens: int | None = None, sweep_path: str | None = None,
                    components_dir: str | Path | None = None, measured_components: bool = True) -> EngineStep:
    """The engine step of Qwen3.5-397B-A17B on ``gpu`` (see the module docstring); ``step.notes`` lists
    every source chosen."""
    key = gpu_key(gpu)
    if tp not in (4, 8):
        raise InputError(f"tp={tp}: the op tables hold TP 4 and 8")
    if ep not in (1, tp):
        raise InputError(f"ep={ep}: the op tables hold EP 1 and EP = TP ({tp})")
    ops = step_ops_for(key, tp, ep, weights, kv_dtype)
    notes = [f"ops: {ops.status} ({key} TP{tp} EP{ep} {weights} weights, {kv_dtype} KV)"]
    if measured_components:
        rows = engine_rows(key, tp, components_dir)
        if rows is not None:
            lab = f"measured ({GPU_NAMES[key]}, gdnlab engine-grade components, {len(rows)} rows)"
            ops = ops.with_measured(rows, lab)
            notes.append(f"ops measured by gdnlab replace the tables for: "
                         f"{sorted({f'{k}.{p}' for (k, p), s in ops.sources.items() if s.startswith(lab)})}")
    gdn, hv, note = gdn_sweep_for(key, sweep_path)
    notes.append(note)
    rows = _sweep(str(sweep_path or STRATEGY_SWEEP))
    if "check_batch" in rows:
        cb = sorted({int(b) for b in pd.to_numeric(rows["check_batch"], errors="coerce").dropna()})
        notes.append(f"GDN rows' correctness: checked once per group at B={cb} (check_batch), not at every "
                     f"timed batch")
    model = ServedModel(name=f"Qwen3.5-397B-A17B-{weights}", tp=tp, gdn=preset("qwen3.5-397b-a17b", tp=tp))
    step = EngineStep(ops, gdn, model, spec_for(GPU_NAMES[key]), params, state_dtype=state_dtype, strategy=strategy,
                      chunked_prefill_tokens=chunked_prefill_tokens or CHUNKED_PREFILL[key], gdn_hv=hv)
    step.notes = notes
    return step
