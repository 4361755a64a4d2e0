"""AIConfigurator's per-op step tables for Qwen3.5-397B-A17B: every op of a decode (generation) step
and of a prefill (context) pass, grouped by layer kind and part, on the GPUs gdnlab cannot measure
(SM100, several GPUs) and as the reported reference on those it can.

The rows come from AIConfigurator 0.12.0's compiled engine evaluating *its own* Qwen3.5 op list
(``aiconfigurator_core/sdk/models/qwen35.py``: embedding, per-layer norms, GEMMs, GDN conv and
recurrence, attention, MoE with its shared expert, all-reduces, logits GEMM) against its measured
tables (``systems/data/<system>/.../sglang/0.5.14``), the same path ``cli_estimate`` takes
(``rust_engine_step.estimate_decode_step_breakdown_with_rust`` for a decode step of ``tokens``
tokens at ``kv_len`` cached tokens, ``evaluate_context_ops_with_rust`` for a prefill of ``tokens``
tokens). Nothing is re-implemented: gdnlab only groups AIConfigurator's op names:

=============  ================================================================================
part           AIConfigurator ops (``generation_`` / ``context_`` prefix dropped)
=============  ================================================================================
gdn_kernel     ``gdn_recurrence`` (T=1 decode kernel) / ``gdn_scan`` (prefill chunk kernel)
gdn_conv       ``gdn_conv1d``
proj           ``gdn_in_proj_gemm``, ``gdn_in_proj_ba_gemm``, ``gdn_out_proj_gemm``, ``qkv_gemm``,
               ``proj_gemm``
attention      ``attention``, ``context_attention``
moe            ``*_moe_overlap`` (routed experts with the shared expert overlapped), ``*_moe``,
               ``*_router_gemm``, ``*_shared_*`` GEMMs and activation
norm           ``*_norm``, ``*_shared_merge``, ``embedding``
allreduce      ``*_ar``, ``*_moe_post_dispatch`` (the all-reduce after the MoE block)
lm_head        ``logits_gemm``
=============  ================================================================================

``layer`` says which layers an op belongs to: ``gdn`` (the 45 GDN layers), ``full`` (the 15
full-attention layers), ``model`` (embedding, lm_head). A row's ``latency_us`` is the sum over
those layers (AIConfigurator's unit is ms; converted). ``attention`` rows are keyed by ``kv_len``;
every other decode row is evaluated at ``kv_len = 1024`` (they do not read the KV cache). Decode
rows have ``tokens`` = tokens in the step (requests x tokens per request), prefill rows ``tokens`` =
prompt tokens of one pass (one sequence).

Status of every row: ``reported (AIConfigurator 0.12.0, sglang 0.5.14)``. The shipped extract is
``gdnlab/data/aiconfigurator_step_ops.csv``; regenerate with :func:`write_step_ops` (needs the
``aiconfigurator`` extra; the tests compare the shipped file with a fresh extract when it is there).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from ..anchors import aiconfigurator as aic
from ..anchors.aic_tables import data_path, write_csv_atomic
from ..errors import DataError, InputError

__all__ = ["STEP_OPS_FILE", "STEP_COLUMNS", "PARTS", "LAYERS", "GRID_TOKENS", "GRID_KV", "GRID_PREFILL",
           "STEP_GPUS", "op_part", "extract_step_ops", "write_step_ops", "load_step_ops", "weights_for"]

STEP_OPS_FILE = "aiconfigurator_step_ops.csv"
STEP_COLUMNS = ("phase", "gpu", "system", "engine", "engine_version", "tp", "ep", "weights", "kv_dtype", "tokens",
                "kv_len", "layer", "part", "n_ops", "latency_us", "aic_source", "aiconfigurator_version", "status")
PARTS = ("gdn_kernel", "gdn_conv", "proj", "attention", "moe", "norm", "allreduce", "lm_head")
LAYERS = ("gdn", "full", "model")
STEP_GPUS = ("h100", "h200", "b200", "gb200")
GRID_TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
GRID_KV = (64, 256, 1024, 4096, 16384, 65536)
GRID_PREFILL = (64, 256, 1024, 2048, 8192, 16384)
_BLACKWELL = {"b200", "gb200"}
_TPS = (4, 8)


def weights_for(gpu: str) -> tuple[str, ...]:
    """Weight dtypes the extract holds for ``gpu`` (NVFP4 only on Blackwell)."""
    return ("nvfp4", "fp8_block", "bf16") if gpu in _BLACKWELL else ("fp8_block", "bf16")


def op_part(name: str) -> tuple[str, str] | None:
    """``(layer, part)`` of one AIConfigurator Qwen3.5 op name (None: an op that costs nothing here,
    ``p2p`` without pipeline parallelism)."""
    n = name.removeprefix("generation_").removeprefix("context_").replace(" (scaled)", "")
    if n in ("p2p",):
        return None
    layer = "gdn" if n.startswith("gdn_") else "full" if n.startswith("full_") else "model"
    if n in ("qkv_gemm", "proj_gemm", "attention", "context_attention"):
        layer = "full"
    if n in ("gdn_recurrence", "gdn_scan"):
        return layer, "gdn_kernel"
    if n == "gdn_conv1d":
        return layer, "gdn_conv"
    if n.endswith("_ar") or n.endswith("_post_dispatch") or n.endswith("pre_dispatch"):
        return layer, "allreduce"
    if n in ("gdn_in_proj_gemm", "gdn_in_proj_ba_gemm", "gdn_out_proj_gemm", "qkv_gemm", "proj_gemm"):
        return layer, "proj"
    if n in ("attention", "context_attention"):
        return layer, "attention"
    if n == "logits_gemm":
        return layer, "lm_head"
    if n.endswith("_norm") or n.endswith("_shared_merge") or n == "embedding":
        return layer, "norm"
    if "moe" in n or "router" in n or "shared" in n:
        return layer, "moe"
    raise DataError(f"AIConfigurator op {name!r} has no part in gdnlab's grouping (aic_steps.op_part)")


@lru_cache(maxsize=64)
def _model_and_db(gpu: str, tp: int, ep: int, weights: str, kv_dtype: str, version: str) -> tuple[Any, Any]:
    """AIConfigurator's Qwen3.5-397B model object and perf database, built the way ``cli_estimate``
    builds them for aggregated serving (attention DP 1, ``moe_tp = tp / ep``)."""
    import aiconfigurator.cli.api as api
    from aiconfigurator.sdk.models import get_model
    from aiconfigurator.sdk.perf_database import get_database_view

    path, gemm_q, moe_q = aic.WEIGHT_DTYPES[weights]
    kvq = aic.KV_DTYPES[kv_dtype]
    with aic._quiet():
        db = get_database_view(aic.GPU_SYSTEMS[gpu], "sglang", version, allow_missing_data=False,
                               database_mode="SILICON", transfer_policy=None)
        mc = api._build_model_config(tp, 1, 1, tp // ep, ep, gemm_q, kvq, "fp8" if kv_dtype == "fp8" else None,
                                     moe_q, None, forward_model=None, enable_encoder_dp=True, attention_backend=None)
        api._apply_nextn(mc, 0)
        api.resolve_context_fmha_by_data(mc, path, db, "sglang", is_context_role=True)
        api.resolve_nvfp4_for_system(mc, aic.GPU_SYSTEMS[gpu], path, backend_name="sglang")
        return get_model(path, mc, "sglang"), db


def _rows(per_op: dict[str, float], source: dict[str, str], base: dict[str, Any],
          keep: set[str] | None = None) -> list[dict[str, Any]]:
    """Group one evaluation's ``{op: ms}`` by (layer, part): one row per group (µs)."""
    groups: dict[tuple[str, str], list] = {}
    for name, ms in per_op.items():
        lp = op_part(name)
        if lp is None or (keep is not None and lp[1] not in keep):
            continue
        g = groups.setdefault(lp, [0.0, 0, set()])
        g[0] += float(ms) * 1e3
        g[1] += 1
        g[2].add(str(source.get(name, "")))
    return [{**base, "layer": k[0], "part": k[1], "n_ops": v[1], "latency_us": v[0],
             "aic_source": "+".join(sorted(v[2]))} for k, v in sorted(groups.items())]


def _decode(model, db, tokens: int, kv_len: int) -> tuple[dict, dict]:
    from aiconfigurator_core.sdk.rust_engine_step import estimate_decode_step_breakdown_with_rust

    with aic._quiet():
        _, _, per, src, _ = estimate_decode_step_breakdown_with_rust(model, db, gen_tokens=int(tokens),
                                                                     isl=max(1, int(kv_len) - 1), osl=1)
    return per, src


def _prefill(model, db, tokens: int) -> tuple[dict, dict]:
    from aiconfigurator_core.sdk.rust_engine_step import evaluate_context_ops_with_rust

    with aic._quiet():
        res = evaluate_context_ops_with_rust(model, db, indices=range(len(model.context_ops)), batch_size=1,
                                             s=int(tokens))
    per, src = {}, {}
    for entry in res:
        name, ms, _energy, source = entry[:4]
        per[name] = per.get(name, 0.0) + float(ms)
        src[name] = str(source)
    return per, src


def _one_config(gpu: str, tp: int, ep: int, weights: str, version: str) -> list[dict[str, Any]]:
    """Decode rows (every part but attention, at kv 1024) and prefill rows for one configuration, both
    KV dtypes; attention rows are added per KV dtype by :func:`extract_step_ops`."""
    rows: list[dict[str, Any]] = []
    base = {"gpu": gpu, "system": aic.GPU_SYSTEMS[gpu], "engine": "sglang", "engine_version": version, "tp": tp,
            "ep": ep, "weights": weights, "aiconfigurator_version": aic.AIC_VERSION,
            "status": aic.status_label("sglang", version)}
    non_attn = set(PARTS) - {"attention"}
    model, db = _model_and_db(gpu, tp, ep, weights, "bf16", version)
    for n in GRID_TOKENS:
        per, src = _decode(model, db, n, 1024)
        rows += _rows(per, src, {**base, "phase": "decode", "kv_dtype": "any", "tokens": n, "kv_len": 1024}, non_attn)
    for kv in aic.KV_DTYPES:
        model, db = _model_and_db(gpu, tp, ep, weights, kv, version)
        for n in GRID_PREFILL:
            per, src = _prefill(model, db, n)
            rows += _rows(per, src, {**base, "phase": "prefill", "kv_dtype": kv, "tokens": n, "kv_len": n})
    return rows


def _attention_rows(gpu: str, tp: int, version: str) -> list[dict[str, Any]]:
    rows = []
    base = {"gpu": gpu, "system": aic.GPU_SYSTEMS[gpu], "engine": "sglang", "engine_version": version, "tp": tp,
            "ep": 1, "weights": "any", "aiconfigurator_version": aic.AIC_VERSION,
            "status": aic.status_label("sglang", version)}
    for kv in aic.KV_DTYPES:
        model, db = _model_and_db(gpu, tp, 1, "fp8_block", kv, version)
        for n in GRID_TOKENS:
            for L in GRID_KV:
                per, src = _decode(model, db, n, L)
                rows += _rows(per, src, {**base, "phase": "decode", "kv_dtype": kv, "tokens": n, "kv_len": L},
                              {"attention"})
    return rows


def extract_step_ops(gpus: Sequence[str] = STEP_GPUS, tps: Sequence[int] = _TPS) -> pd.DataFrame:
    """The shipped extract computed now from the installed AIConfigurator (columns
    :data:`STEP_COLUMNS`), sorted deterministically: for each GPU, TP (4, 8), EP (1, TP) and weights
    dtype (:func:`weights_for`), decode rows at :data:`GRID_TOKENS` and prefill rows at
    :data:`GRID_PREFILL` (both KV dtypes); attention rows at every (tokens, :data:`GRID_KV`, KV dtype)."""
    reason = aic.availability()
    if reason:
        from ..errors import UnavailableError
        raise UnavailableError(reason)
    rows: list[dict[str, Any]] = []
    for gpu in gpus:
        version = aic.resolve_version(gpu, "sglang")
        for tp in tps:
            rows += _attention_rows(gpu, tp, version)
            for ep in (1, tp):
                for w in weights_for(gpu):
                    rows += _one_config(gpu, tp, ep, w, version)
    df = pd.DataFrame(rows, columns=list(STEP_COLUMNS))
    keys = ["phase", "gpu", "tp", "ep", "weights", "kv_dtype", "tokens", "kv_len", "layer", "part"]
    return df.sort_values(keys).reset_index(drop=True)


def write_step_ops(path: Path | None = None) -> Path:
    """Regenerate ``gdnlab/data/aiconfigurator_step_ops.csv`` (or ``path``) atomically."""
    return write_csv_atomic(extract_step_ops(), Path(path) if path is not None else data_path(STEP_OPS_FILE))


@lru_cache(maxsize=4)
def _load_cached(path: str) -> pd.DataFrame:
    p = Path(path)
    df = aic.read_extract(p, STEP_COLUMNS, {"engine_version": str})
    lat = df["latency_us"]
    if not (lat.map(lambda v: isinstance(v, float) and math.isfinite(v)).all() and (lat >= 0).all()):
        raise DataError(f"{p.name}: latency_us must be finite and >= 0 (µs)")
    aic.check_reported_rows(df, p.name)
    bad = sorted(set(df["part"]) - set(PARTS)) + sorted(set(df["layer"]) - set(LAYERS))
    if bad:
        raise DataError(f"{p.name}: unknown part/layer {bad}")
    if not set(df["phase"]) <= {"decode", "prefill"}:
        raise DataError(f"{p.name}: phase must be decode or prefill")
    return df


def load_step_ops(path: Path | str | None = None) -> pd.DataFrame:
    """The shipped per-op step extract, validated (columns :data:`STEP_COLUMNS`, latencies finite and
    >= 0 µs, AIConfigurator 0.12.0 status per row, known parts and layers). Raises
    :class:`~gdnlab.errors.DataError` (a wrong file) or ``FileNotFoundError``. Returns a copy."""
    p = Path(path) if path is not None else data_path(STEP_OPS_FILE)
    if not str(p):
        raise InputError("path must not be empty")
    return _load_cached(str(p.resolve())).copy()
