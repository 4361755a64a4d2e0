"""NVIDIA AIConfigurator 0.12.0 as an anchor: its measured per-op latencies and its own end-to-end
prediction for Qwen3.5-397B-A17B.

AIConfigurator (``aiconfigurator`` + ``aiconfigurator-core`` 0.12.0 on PyPI, Apache-2.0; the optional
extra ``pip install 'gdnlab[aiconfigurator]'``) ships per-op latency tables collected on real GPUs
(``aiconfigurator_core/systems/data/<system>/<family>/<engine>/<version>/*.parquet``, latency in
**ms**, one ``collection_meta.yaml`` per directory) and a compiled (Rust) engine that evaluates op
lists against them and composes whole serving steps. What this module relies on, checked against the
installed 0.12.0 (the tests assert each point):

* Per-op values come from ``aiconfigurator_core.sdk.engine.EngineHandle.for_database(db)
  .evaluate_ops_json(build_ops_json([op]), ...)`` with the SDK's op classes
  (``sdk/operations/{gemm,attention,moe,communication,mamba}.py``); ``PerfDatabase.query_*`` was
  removed in 0.12 (``sdk/operations/README.md``). On a table grid point the value equals the parquet
  row (GEMM, MoE, all-reduce, GDN exactly; generation attention within 1 %).
* All-reduce ``message_size`` is an element count: ``tokens * hidden`` (a 64-token, hidden-4096
  all-reduce reads the ``message_size = 262144`` row).
* GDN decode rows (``linear_attention/.../gdn_perf.parquet``, ``phase = generation``) are T=1 kernels
  (``causal_conv1d_update``, ``fused_recurrent_gated_delta_rule_packed_decode``) keyed by per-GPU head
  counts; Qwen3.5 models (0.8B..397B) have rows, Qwen3-Next has none (and no shipped model config).
* MTP (``nextn`` draft tokens, ``nextn_accepted`` mean accepted drafts): every generation op is scaled
  by ``(L + nextn) / L`` (``sdk/models/helpers.py::mtp_scale_factor``, L = 60), the decode batch by
  ``nextn + 1`` inside the engine (``sdk/rust_engine_step.py``), GDN priced as the T=1 decode kernel
  at that batch (no verify kernel), and TPOT divided by ``1 + nextn_accepted``
  (``sdk/speculative.py``). gdnlab's accept length (1..T, bonus included) is ``1 + nextn_accepted``.
* The end-to-end entry point is ``aiconfigurator.cli.api.cli_estimate`` (= ``aiconfigurator cli
  estimate``), aggregated (in-flight batching) mode, batch size = client concurrency.

Model configs: 0.12.0 ships ``Qwen/Qwen3.5-397B-A17B`` (BF16) and ``nvidia/Qwen3.5-397B-A17B-NVFP4``
but not ``Qwen/Qwen3.5-397B-A17B-FP8``; FP8 runs use the BF16 config with ``gemm_quant_mode =
moe_quant_mode = fp8_block`` (the FP8 checkpoint is 128x128 block-scaled). Both shipped configs
declare ``mamba_ssm_dtype = float32`` and the estimate API has no switch for it, so AIConfigurator
prices fp32 SSM state even where a run used ``--mamba-ssm-dtype bfloat16``.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError, InputError, UnavailableError
from ..provenance import package_version

__all__ = ["AIC_VERSION", "AIC_DISTS", "GPU_SYSTEMS", "ENGINES", "QWEN35_397B", "WEIGHT_DTYPES",
           "KV_DTYPES", "availability", "status_label", "check_reported_rows", "read_extract",
           "resolve_version", "op_latencies",
           "predict_e2e", "OP_COLUMNS", "PREDICTION_KEYS"]

#: the AIConfigurator release every number here comes from (both distributions are pinned to it)
AIC_VERSION = "0.12.0"
AIC_DISTS = ("aiconfigurator", "aiconfigurator-core")
#: gdnlab GPU name -> AIConfigurator system name
GPU_SYSTEMS: dict[str, str] = {"h100": "h100_sxm", "h200": "h200_sxm", "b200": "b200_sxm", "gb200": "gb200",
                               "b300": "b300_sxm", "gb300": "gb300"}
ENGINES = ("sglang", "vllm", "trtllm")
#: Qwen3.5-397B-A17B text model (the shipped ``Qwen--Qwen3.5-397B-A17B_config.json``, text_config)
QWEN35_397B: dict[str, int] = {"hidden": 4096, "layers": 60, "gdn_layers": 45, "attn_layers": 15,
                               "heads": 32, "kv_heads": 2, "head_dim": 256, "gdn_k_heads": 16,
                               "gdn_k_dim": 128, "gdn_v_heads": 64, "gdn_v_dim": 128, "conv_kernel": 4,
                               "experts": 512, "topk": 10, "moe_inter": 1024, "vocab": 248320}
#: weights dtype -> (model path, gemm quant mode, moe quant mode); None = read from the checkpoint
WEIGHT_DTYPES: dict[str, tuple[str, str | None, str | None]] = {
    "bf16": ("Qwen/Qwen3.5-397B-A17B", "bfloat16", "bfloat16"),
    "fp8_block": ("Qwen/Qwen3.5-397B-A17B", "fp8_block", "fp8_block"),
    "nvfp4": ("nvidia/Qwen3.5-397B-A17B-NVFP4", None, None),
}
#: KV-cache dtype -> AIConfigurator KV quant mode
KV_DTYPES: dict[str, str] = {"bf16": "bfloat16", "fp8": "fp8"}
#: columns of :func:`op_latencies` (units in the names; ``latency_ms`` is AIConfigurator's unit)
OP_COLUMNS = ("op", "kernel", "gpu", "system", "engine", "engine_version", "dtype", "tp", "ep", "batch",
              "tokens", "m", "n", "k", "kv_len", "message_elems", "latency_ms", "aic_source", "data_file",
              "aiconfigurator_version", "status")
#: keys of :func:`predict_e2e`
PREDICTION_KEYS = ("tpot_ms", "ttft_ms", "output_tok_s_per_gpu", "output_tok_s_total", "tok_s_per_user",
                   "num_gpus", "memory_gb", "kv_cache_warning", "gpu", "system", "engine", "engine_version",
                   "model_path", "weights", "kv_dtype", "fmha_dtype", "tp", "ep", "dp", "isl", "osl", "concurrency",
                   "nextn", "accept_len", "nextn_accepted", "aiconfigurator_version", "status")


def availability() -> str | None:
    """``None`` when both AIConfigurator distributions are installed at :data:`AIC_VERSION`, else a
    one-line reason (what is missing or which version is there, and how to install it)."""
    found = {d: package_version(d) for d in AIC_DISTS}
    missing = [d for d, v in found.items() if v is None]
    if missing:
        return (f"AIConfigurator not installed ({', '.join(missing)} missing): "
                f"pip install 'gdnlab[aiconfigurator]' (aiconfigurator=={AIC_VERSION})")
    wrong = {d: v for d, v in found.items() if v != AIC_VERSION}
    if wrong:
        return (f"AIConfigurator {AIC_VERSION} required, found "
                + ", ".join(f"{d} {v}" for d, v in wrong.items()))
    return None


def _require() -> None:
    reason = availability()
    if reason:
        raise UnavailableError(reason)


def status_label(engine: str, engine_version: str) -> str:
    """The provenance status of an AIConfigurator number: ``reported (AIConfigurator 0.12.0, sglang
    0.5.14)`` (reported = someone else's figure, here AIConfigurator's data or prediction)."""
    return f"reported (AIConfigurator {AIC_VERSION}, {engine} {engine_version})"


def read_extract(path: Path, columns: Sequence[str], dtype: dict[str, Any] | None = None) -> pd.DataFrame:
    """A shipped extract (CSV) with every one of ``columns``; ``FileNotFoundError`` when it is absent,
    :class:`~gdnlab.errors.DataError` naming the missing columns."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found")
    df = pd.read_csv(p, dtype=dtype)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{p.name}: missing column(s) {missing}")
    return df


def check_reported_rows(df: pd.DataFrame, name: str) -> None:
    """A shipped extract's rows come from :data:`AIC_VERSION` and each reads its :func:`status_label`;
    otherwise a :class:`~gdnlab.errors.DataError` naming the file (``name``)."""
    if set(df["aiconfigurator_version"].astype(str)) != {AIC_VERSION}:
        raise DataError(f"{name}: rows from AIConfigurator {sorted(set(df['aiconfigurator_version']))}, "
                        f"expected {AIC_VERSION}")
    expect = [status_label(e, v) for e, v in zip(df["engine"], df["engine_version"])]
    if list(df["status"]) != expect:
        raise DataError(f"{name}: status must read 'reported (AIConfigurator {AIC_VERSION}, <engine> <version>)'")


def _system(gpu: str) -> str:
    key = str(gpu).lower()
    if key not in GPU_SYSTEMS:
        raise InputError(f"gpu {gpu!r} is not an AIConfigurator system here; expected one of {sorted(GPU_SYSTEMS)}")
    return GPU_SYSTEMS[key]


def _engine(engine: str) -> str:
    if engine not in ENGINES:
        raise InputError(f"engine {engine!r} unknown; expected one of {ENGINES}")
    return engine


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """AIConfigurator logs every load at INFO/WARNING; keep its loggers at ERROR while we call it."""
    loggers = [logging.getLogger(n) for n in ("aiconfigurator", "aiconfigurator_core")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def resolve_version(gpu: str, engine: str, version: str | None = None) -> str:
    """The AIConfigurator database version used for ``gpu``/``engine``: ``version`` if given, else the
    release's current slot (0.12.0: SGLang 0.5.14, vLLM 0.24.0, TRT-LLM 1.3.0rc20 on these GPUs)."""
    _require()
    system, engine = _system(gpu), _engine(engine)
    if version is not None:
        return str(version)
    from aiconfigurator_core.sdk import perf_database

    with _quiet():
        v = perf_database.get_latest_database_version(system=system, backend=engine)
    if v is None:
        raise UnavailableError(f"AIConfigurator {AIC_VERSION} has no {engine} data for {system}")
    return str(v)


@lru_cache(maxsize=8)
def _handle(system: str, engine: str, version: str) -> tuple[Any, Any]:
    """``(PerfDatabase, EngineHandle)`` bound to one system/engine/version (model-less probe engine)."""
    from aiconfigurator_core.sdk import perf_database
    from aiconfigurator_core.sdk.engine import EngineHandle

    with _quiet():
        db = perf_database.get_database(system, engine, version)
        if db is None:
            raise UnavailableError(f"AIConfigurator {AIC_VERSION}: no database for {system}/{engine}/{version}")
        return db, EngineHandle.for_database(db)


def _data_root() -> Path:
    return Path(str(resources.files("aiconfigurator_core"))) / "systems" / "data"


def _data_file(system: str, family: str, engine: str, version: str, fname: str) -> str:
    """Relative path (inside ``aiconfigurator_core``) of the table a value comes from: the requested
    version's file if it exists, else the newest other version of that engine that has it (the
    backward fill AIConfigurator applies), else ``""``."""
    base = _data_root() / system / family / engine
    candidates = [version] + sorted((p.name for p in base.glob("*") if p.name != version), reverse=True)
    for v in candidates:
        if (base / v / fname).is_file():
            return f"systems/data/{system}/{family}/{engine}/{v}/{fname}"
    return ""


@dataclass
class _Spec:
    """One op evaluation: the row it becomes (shape columns) and how to build/evaluate the SDK op."""
    row: dict[str, Any]
    make: Any                      # () -> SDK op object
    kwargs: dict[str, Any]         # evaluate_ops_json keyword arguments
    family: tuple[str, str]        # (table family directory, parquet file name)
    attention: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _gemm_specs(tp: int, batches: Sequence[int], dtypes: Sequence[str]) -> list[_Spec]:
    """GEMMs of one Qwen3.5-397B decode step at TP (x = tokens = batch): GDN in/out projections,
    attention QKV/output projections, router (bf16), LM head (bf16). Shapes ``[m, k] x [k, n]``."""
    from aiconfigurator_core.sdk import common
    from aiconfigurator_core.sdk.operations.gemm import GEMM

    q = QWEN35_397B
    h, hd = q["hidden"], q["head_dim"]
    n_kv = -(-q["kv_heads"] // tp)
    shapes = {"gdn_in_proj": (2 * (q["gdn_k_heads"] * q["gdn_k_dim"] + q["gdn_v_heads"] * q["gdn_v_dim"]) // tp, h),
              "gdn_out_proj": (h, q["gdn_v_heads"] * q["gdn_v_dim"] // tp),
              "attn_qkv": (2 * (q["heads"] // tp) * hd + 2 * n_kv * hd, h),
              "attn_out_proj": (h, (q["heads"] // tp) * hd)}
    specs = []
    for dtype in dtypes:
        for name, (n, k) in shapes.items():
            for m in batches:
                specs.append(_Spec(
                    row={"op": f"gemm_{name}", "kernel": "gemm", "dtype": dtype, "tp": tp, "batch": m,
                         "tokens": m, "m": m, "n": n, "k": k},
                    make=lambda n=n, k=k, d=dtype: GEMM("g", 1, n, k, common.GEMMQuantMode[d]),
                    kwargs={"is_context": True, "batch_size": 1, "s": 1, "x": m},
                    family=("gemm", "gemm_perf.parquet")))
    return specs


def _attention_specs(tp: int, batches: Sequence[int], kv_len: int, kv_dtype: str) -> list[_Spec]:
    """Decode attention of one full-attention layer at TP: ``heads/tp`` query heads, ``ceil(kv/tp)``
    KV heads, head dim 256, each of ``batch`` requests attending to ``kv_len`` cached tokens."""
    from aiconfigurator_core.sdk import common
    from aiconfigurator_core.sdk.operations.attention import GenerationAttention

    q = QWEN35_397B
    nq, nkv = q["heads"] // tp, -(-q["kv_heads"] // tp)
    mode = common.KVCacheQuantMode[KV_DTYPES[kv_dtype]]
    return [_Spec(row={"op": "generation_attention", "kernel": "generation_attention", "dtype": kv_dtype,
                       "tp": tp, "batch": b, "tokens": b, "kv_len": kv_len},
                  make=lambda: GenerationAttention("a", 1, nq, nkv, mode, head_size=q["head_dim"], use_qk_norm=True),
                  kwargs={"is_context": False, "batch_size": b, "s": kv_len},
                  family=("attention", "generation_attention_perf.parquet"), attention=True)
            for b in batches]


def _moe_specs(tp: int, ep: int, batches: Sequence[int], dtype: str) -> list[_Spec]:
    """Routed-expert MoE of one layer (512 experts, top-10, inter 1024) for ``tokens`` = batch, with
    ``moe_tp = tp / ep`` and ``moe_ep = ep`` (attention DP 1), power-law 1.2 routing (AIConfigurator's
    default workload distribution)."""
    from aiconfigurator_core.sdk import common
    from aiconfigurator_core.sdk.operations.moe import MoE

    q = QWEN35_397B
    if tp % ep:
        raise InputError(f"ep={ep} must divide tp={tp}")
    moe_tp = tp // ep
    mode = common.MoEQuantMode[dtype]
    return [_Spec(row={"op": "moe", "kernel": "moe", "dtype": dtype, "tp": moe_tp, "ep": ep, "batch": b,
                       "tokens": b},
                  make=lambda: MoE("moe", 1, q["hidden"], q["moe_inter"], q["topk"], q["experts"], moe_tp, ep,
                                   mode, "power_law_1.2", 1, is_context=False, moe_backend=None,
                                   enable_eplb=False),
                  kwargs={"is_context": False, "batch_size": b, "s": 1, "x": b},
                  family=("moe", "moe_perf.parquet"))
            for b in batches]


def _allreduce_specs(tps: Sequence[int], batches: Sequence[int]) -> list[_Spec]:
    """Custom all-reduce (bf16) of a ``[tokens, hidden]`` activation across TP GPUs; AIConfigurator's
    ``message_size`` is the element count ``tokens * hidden``."""
    from aiconfigurator_core.sdk.operations.communication import CustomAllReduce

    h = QWEN35_397B["hidden"]
    return [_Spec(row={"op": "allreduce", "kernel": "custom_allreduce", "dtype": "bf16", "tp": t, "batch": b,
                       "tokens": b, "message_elems": b * h},
                  make=lambda t=t: CustomAllReduce("ar", 1, h, t),
                  kwargs={"is_context": True, "batch_size": 1, "s": 1, "x": b},
                  family=("comm", "custom_allreduce_perf.parquet"))
            for t in tps for b in batches]


def _gdn_specs(tp: int, batches: Sequence[int]) -> list[_Spec]:
    """GDN T=1 decode of one linear-attention layer at TP: ``causal_conv1d_update`` and the recurrent
    update (``fused_sigmoid_gating_delta_rule_update`` in the SDK, the table's
    ``fused_recurrent_gated_delta_rule_packed_decode``) with ``16/tp`` key and ``64/tp`` value heads."""
    from aiconfigurator_core.sdk.operations.mamba import GDNKernel

    q = QWEN35_397B
    nk, nv = q["gdn_k_heads"] // tp, q["gdn_v_heads"] // tp
    kernels = {"gdn_conv1d_update": "causal_conv1d_update",
               "gdn_recurrent_update": "fused_sigmoid_gating_delta_rule_update"}
    return [_Spec(row={"op": op, "kernel": src, "dtype": "bf16", "tp": tp, "batch": b, "tokens": b},
                  make=lambda src=src: GDNKernel("gdn", 1, src, "generation", q["hidden"], nk, q["gdn_k_dim"], nv,
                                                 q["gdn_v_dim"], q["conv_kernel"], mamba_ssm_dtype="float32"),
                  kwargs={"is_context": False, "batch_size": b, "s": 1},
                  family=("linear_attention", "gdn_perf.parquet"))
            for op, src in kernels.items() for b in batches]


def _evaluate(specs: Sequence[_Spec], gpu: str, engine: str, version: str) -> pd.DataFrame:
    """Evaluate each spec with AIConfigurator's engine; one row per spec (:data:`OP_COLUMNS`)."""
    from aiconfigurator_core.sdk.engine import _resolve_attention_lane_orders, build_ops_json

    system = _system(gpu)
    db, handle = _handle(system, engine, version)
    rows = []
    with _quiet():
        for s in specs:
            op = s.make()
            if s.attention:   # the table-aware kernel lane order the SDK resolves for a model's ops
                _resolve_attention_lane_orders([op], db, None)
            (_, latency_ms, _energy, source), = handle.evaluate_ops_json(build_ops_json([op]), **s.kwargs)
            rows.append({**dict.fromkeys(OP_COLUMNS), **s.row, "gpu": gpu.lower(), "system": system,
                         "engine": engine, "engine_version": version, "latency_ms": float(latency_ms),
                         "aic_source": source, "data_file": _data_file(system, s.family[0], engine, version,
                                                                       s.family[1]),
                         "aiconfigurator_version": AIC_VERSION, "status": status_label(engine, version)})
    df = pd.DataFrame(rows, columns=list(OP_COLUMNS))
    for c in ("tp", "ep", "batch", "tokens", "m", "n", "k", "kv_len", "message_elems"):
        df[c] = pd.array(df[c], dtype="Int64")
    return df


def op_latencies(gpu: str, engine: str = "sglang", version: str | None = None, *, tp: int = 8, ep: int = 1,
                 batches: Sequence[int] = (1, 8, 32, 64, 128), kv_len: int = 4096, kv_dtype: str = "bf16",
                 gemm_dtypes: Sequence[str] = ("fp8_block", "bfloat16"), moe_dtype: str = "fp8_block",
                 allreduce_tps: Sequence[int] = (4, 8)) -> pd.DataFrame:
    """AIConfigurator's per-op latencies (ms) for one Qwen3.5-397B decode step's ops on ``gpu``
    (``h100``, ``h200``, ``b200``, ``gb200``, ``b300``, ``gb300``) under ``engine``'s tables.

    Ops (one row per op, dtype, TP and batch; ``batch`` = decode requests = tokens for T=1):
    ``gemm_{gdn_in_proj,gdn_out_proj,attn_qkv,attn_out_proj}`` in each of ``gemm_dtypes``,
    ``generation_attention`` at ``kv_len`` cached tokens (``kv_dtype`` bf16/fp8), ``moe`` in
    ``moe_dtype`` with EP ``ep``, ``allreduce`` at each TP in ``allreduce_tps``, and
    ``gdn_conv1d_update`` / ``gdn_recurrent_update`` (T=1 decode). Columns :data:`OP_COLUMNS`;
    ``aic_source`` is AIConfigurator's tag (``silicon`` = a table row, interpolated between grid
    points), ``data_file`` the table it reads, ``status`` :func:`status_label`.
    """
    _require()
    _system(gpu)
    _engine(engine)
    if kv_dtype not in KV_DTYPES:
        raise InputError(f"kv_dtype {kv_dtype!r} unknown; expected one of {sorted(KV_DTYPES)}")
    if not batches or any(int(b) < 1 for b in batches) or kv_len < 1 or tp < 1:
        raise InputError(f"batches, kv_len and tp must be >= 1 (got batches={list(batches)}, kv_len={kv_len}, tp={tp})")
    if QWEN35_397B["gdn_k_heads"] % tp or QWEN35_397B["heads"] % tp:
        raise InputError(f"tp={tp} must divide Qwen3.5-397B's 16 GDN key heads and 32 attention heads")
    version = resolve_version(gpu, engine, version)
    batches = [int(b) for b in batches]
    specs = (_gemm_specs(tp, batches, gemm_dtypes) + _attention_specs(tp, batches, kv_len, kv_dtype)
             + _moe_specs(tp, ep, batches, moe_dtype) + _allreduce_specs(allreduce_tps, batches)
             + _gdn_specs(tp, batches))
    return _evaluate(specs, gpu, engine, version)


def _estimate_kwargs(weights: str, kv_dtype: str, tp: int, ep: int, dp: int, nextn: int,
                     accept_len: float | None, fmha_dtype: str | None) -> dict[str, Any]:
    """Map gdnlab's configuration vocabulary onto ``cli_estimate`` keyword arguments (validated)."""
    if weights not in WEIGHT_DTYPES:
        raise InputError(f"weights {weights!r} unknown; expected one of {sorted(WEIGHT_DTYPES)}")
    if kv_dtype not in KV_DTYPES:
        raise InputError(f"kv_dtype {kv_dtype!r} unknown; expected one of {sorted(KV_DTYPES)}")
    if fmha_dtype is not None and fmha_dtype not in KV_DTYPES:
        raise InputError(f"fmha_dtype {fmha_dtype!r} unknown; expected None or one of {sorted(KV_DTYPES)}")
    if tp < 1 or ep < 1 or dp < 1 or (tp * dp) % ep:
        raise InputError(f"need tp, ep, dp >= 1 and ep dividing tp*dp (got tp={tp}, ep={ep}, dp={dp})")
    if nextn < 0:
        raise InputError(f"nextn must be >= 0, got {nextn}")
    kw: dict[str, Any] = {"model_path": WEIGHT_DTYPES[weights][0], "kvcache_quant_mode": KV_DTYPES[kv_dtype],
                          "tp_size": tp, "attention_dp_size": dp, "moe_tp_size": tp * dp // ep, "moe_ep_size": ep,
                          "nextn": nextn, "nextn_accepted": None}
    if fmha_dtype is not None:
        kw["fmha_quant_mode"] = KV_DTYPES[fmha_dtype]
    gemm_q, moe_q = WEIGHT_DTYPES[weights][1:]
    if gemm_q is not None:
        kw.update(gemm_quant_mode=gemm_q, moe_quant_mode=moe_q)
    if nextn > 0:
        if accept_len is None or not 1.0 <= float(accept_len) <= nextn + 1:
            raise InputError(f"accept_len must be in [1, nextn+1={nextn + 1}] with MTP on (tokens kept per "
                             f"verify step, bonus included), got {accept_len}")
        kw["nextn_accepted"] = float(accept_len) - 1.0
    return kw


def predict_e2e(gpu: str, *, tp: int, isl: int, osl: int, concurrency: int, engine: str = "sglang",
                version: str | None = None, ep: int = 1, dp: int = 1, weights: str = "fp8_block",
                kv_dtype: str = "fp8", nextn: int = 0, accept_len: float | None = None,
                fmha_dtype: str | None = None) -> dict[str, Any]:
    """AIConfigurator's own end-to-end prediction for serving Qwen3.5-397B-A17B (its SDK entry point
    ``aiconfigurator.cli.api.cli_estimate``, aggregated mode, not a re-implementation).

    ``isl``/``osl`` in tokens, ``concurrency`` = requests in flight (AIConfigurator's batch size),
    ``weights`` in :data:`WEIGHT_DTYPES`, ``kv_dtype`` in :data:`KV_DTYPES`, ``nextn`` MTP draft tokens
    per step (0 = off) and ``accept_len`` the mean tokens kept per verify step, bonus included (1..
    ``nextn+1``; AIConfigurator's ``nextn_accepted = accept_len - 1``). Returns :data:`PREDICTION_KEYS`:
    ``tpot_ms``, ``ttft_ms``, ``output_tok_s_per_gpu`` / ``_total`` (output tokens only),
    ``tok_s_per_user``, ``memory_gb`` per GPU, ``kv_cache_warning`` (AIConfigurator's note when the
    batch exceeds its KV estimate, else ``None``) and the provenance of the prediction. ``fmha_dtype``
    (``bf16``/``fp8``) sets the context-attention compute dtype; ``None`` lets AIConfigurator pick from
    its tables (on H100/H200 SGLang 0.5.14 that fails for an fp8 KV cache at head dim 256: pass ``fp8``).
    """
    _require()
    if min(isl, osl, concurrency) < 1:
        raise InputError(f"isl, osl and concurrency must be >= 1 (got {isl}, {osl}, {concurrency})")
    system = _system(gpu)
    version = resolve_version(gpu, engine, version)
    kw = _estimate_kwargs(weights, kv_dtype, tp, ep, dp, nextn, accept_len, fmha_dtype)
    from aiconfigurator.cli.api import cli_estimate

    with _quiet():
        r = cli_estimate(system_name=system, mode="agg", backend_name=engine, backend_version=version,
                         isl=int(isl), osl=int(osl), batch_size=int(concurrency), **kw)
    return {"tpot_ms": float(r.tpot), "ttft_ms": float(r.ttft),
            "output_tok_s_per_gpu": float(r.tokens_per_second_per_gpu),
            "output_tok_s_total": float(r.tokens_per_second), "tok_s_per_user": float(r.tokens_per_second_per_user),
            "num_gpus": int(r.num_total_gpus), "memory_gb": float(r.memory), "kv_cache_warning": r.kv_cache_warning,
            "gpu": gpu.lower(), "system": system, "engine": engine, "engine_version": r.backend_version,
            "model_path": kw["model_path"], "weights": weights, "kv_dtype": kv_dtype, "fmha_dtype": fmha_dtype,
            "tp": tp, "ep": ep, "dp": dp,
            "isl": int(isl), "osl": int(osl), "concurrency": int(concurrency), "nextn": nextn,
            "accept_len": None if nextn == 0 else float(accept_len), "nextn_accepted": kw["nextn_accepted"],
            "aiconfigurator_version": AIC_VERSION, "status": status_label(engine, r.backend_version)}
