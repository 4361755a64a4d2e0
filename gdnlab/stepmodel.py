"""Step-time model of a hybrid (GDN + full-attention + MoE) model's decode step on one GPU, and a
serving simulation that turns it into TPOT and output throughput: the bridge from GDN kernel
costs to the seed's end-to-end tables (SGLang PR #23273, :mod:`gdnlab.seed`).

Everything computed here is a **projection** (``status = "projected"``); the seed's numbers it is
checked against are ``"reported"``.

One engine iteration (per GPU; all TP ranks run in lock-step)
-------------------------------------------------------------
Plain decode with ``n`` running requests is one target forward of ``n`` tokens. An MTP/NEXTN step
(topk 1) is ``num_steps`` draft forwards of the one-layer MTP module (``num_steps - 1`` draft
decodes of ``n`` tokens and one draft extend of ``n*T`` tokens, as SGLang's EAGLE worker runs
them), one target *verify* forward of ``n*T`` tokens, and the commit (scatter) of the kept GDN
state. Its time is

``t = roofline(documented parameters) + theta . features``

* **roofline** (µs) from documented numbers (:class:`ServedModel`, :class:`RooflineParams`,
  :data:`GDN_KERNELS`, :mod:`gdnlab.hardware`):

  - GDN layers: per layer ``launch + gdn_bytes(...).total / (eff * HBM peak)`` with
    :func:`gdnlab.roofline.gdn_bytes` (decode: state read + write; verify: state read + T
    intermediate writes; commit: one read + one write of the kept state, one launch for all
    layers), or log-log interpolation of measured sweep rows (:class:`MeasuredGDN`);
  - full-attention layers: KV-cache bytes (context = ISL + tokens generated so far) / (eff * HBM),
    read once per forward (a T-token verify reads the cache once);
  - weights: dense + lm_head + the experts the forward's ``m`` tokens touch (uniform top-k routing:
    an expert is touched with probability ``1 - (1 - k/E)^m``) / (eff * HBM), or the GEMM compute
    time when longer;
  - TP all-reduce: two per layer, ``latency + 2 (tp-1)/tp * bytes / NVLink``.

* **theta** (fitted, all >= 0, :class:`FittedParams`): what the roofline does not see — per
  forward pass (kernel-chain and all-reduce latency, graph replay, sync; a draft pass counts
  ``draft_weight`` = 2/61 of a 60-layer target pass), per running request per iteration (host:
  scheduling, sampling, output processing), per token of a forward (MoE dispatch, activations,
  kernels far from their roofline; draft tokens count ``draft_weight``), per million KV-cache
  token-layer reads (attention slower than its roofline) and per prefill pass (the extend of new
  requests runs outside CUDA graphs).

Serving simulation
------------------
:func:`simulate_serving` replays a bench_serving run: requests arrive all at t=0
(``--request-rate inf``) or closed-loop (``--max-concurrency``); at most ``max_running``
(``--max-running-requests``, **128 in the seed**) run at once and the rest wait in the engine's
queue — so the seed's 256-prompt OSL sweep runs at an effective concurrency <= 128 (and falling in
the tail), and its concurrency-256 TPOT row runs at 128; new requests are prefilled in
chunked-prefill passes that interrupt decoding; output lengths follow bench_serving's random
dataset, ``randint(max(1, int(OSL * range_ratio)), OSL + 1)`` with SGLang's default
``range_ratio = 0.0`` (the seed does not give the flag). The schedule does not depend on the step
cost, so every benchmark metric is linear in theta (throughput through its inverse): the fit is a
non-negative least squares on relative errors, and a validation costs seconds.

What the fitted model says about the seed (GB200; numbers from :func:`seed_model`, context 288
tokens per request; :func:`validate_against_seed` has the comparison): the seed's steps take 5-10x
the roofline of weights + KV cache + GDN state, the rest being fitted per-pass, per-token and
per-request costs. GDN kernels (decode or verify, plus the commit) are 1.7-3.5 % of a plain decode
step and 1.7-5.6 % of an MTP step at 1-128 running requests before flashinfer#3147 (1.9-4.9 % and
1.8-9.1 % after), which is why a 1.1-1.35x kernel difference moves TPOT by <~1 % in the model.
Speculation at acceptance length 3.175 pays 2.6x at 1 running request and 1.5x (before) / 1.75x
(after) at 128; it stops paying below an acceptance length of ~1.2 at 1 request and ~2.2 (before) /
~1.8 (after) at 128 — the verify and draft passes cost more as the batch grows.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd

from .hardware import GPUSpec, spec_for
from .roofline import gdn_bytes
from .shapes import GDNShape, dtype_name, preset
from .spec import AcceptanceModel, as_model

__all__ = ["ServedModel", "GDNKernel", "GDN_KERNELS", "MeasuredGDN", "RooflineParams", "FEATURES",
           "FittedParams", "SpecConfig", "SEED_SPEC", "StepModel", "Workload", "ServingTrace", "LinearRun",
           "simulate_serving", "project", "SeedAssumptions", "SeedFit", "seed_roles", "fit_to_seed",
           "validate_against_seed", "sensitivity", "seed_model", "NVLINK_GBPS", "PEAK_DENSE_TFLOPS"]

# --------------------------------------------------------------------------------------- hardware
#: Per-GPU NVLink bandwidth, one direction, GB/s: H100/H200 SXM NVLink 4 = 900 GB/s bidirectional
#: (NVIDIA H100/H200 datasheets); B200/GB200 NVLink 5 = 1.8 TB/s bidirectional (NVIDIA GB200 NVL72
#: datasheet); H100 PCIe/NVL bridge 600 GB/s bidirectional.
NVLINK_GBPS = {"H100-SXM": 450.0, "H100-NVL": 300.0, "H100-PCIe": 300.0, "H200": 450.0,
               "B200": 900.0, "GB200": 900.0}
#: Dense tensor-core peak (TFLOPS) in the format the weights run in on that GPU: FP4 on Blackwell
#: (B200 9 PF, GB200 10 PF dense = half the datasheets' sparse 18 / 20 PF), FP8 on Hopper (H100/H200
#: SXM 1979 TFLOPS dense; Hopper has no FP4 tensor cores).
PEAK_DENSE_TFLOPS = {"H100-SXM": 1979.0, "H100-NVL": 1671.0, "H100-PCIe": 1513.0, "H200": 1979.0,
                     "B200": 9000.0, "GB200": 10000.0}


def _pos_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _nonneg(name: str, v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {v!r}") from None
    if not x >= 0 or math.isinf(x):
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return x


# ------------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class ServedModel:
    """Architecture of the served model as one GPU sees it (defaults: Qwen3.5-397B-A17B-NVFP4, TP 4).

    Sources: GDN shape from :func:`gdnlab.shapes.preset` (research note §3). Full attention: 32 q
    heads, 2 KV heads, head_dim 256 (THUDM/slime ``scripts/models/qwen3.5-397B-A17B.sh``:
    ``--num-attention-heads 32 --num-query-groups 2 --kv-channels 256``; the Megatron-bridge
    Qwen3.5-397B-A17B test fixture agrees on 32 / 2), 15 of 60 layers (full_attention_interval 4),
    output gate on q. MoE: 512 experts, top-10, expert intermediate 1024 (both sources); shared
    expert intermediate 1024 (slime; the Megatron-bridge fixture says 4096 — 1024 gives 396 B
    parameters in all, matching "397B", 4096 would give 399 B). Vocab 248320, hidden 4096, untied
    lm_head. NVFP4 = 4-bit values + one FP8 scale per 16 values = 0.5625 byte/param (NVIDIA ModelOpt
    NVFP4); lm_head in bf16 (assumption: ModelOpt leaves lm_head unquantised by default). MTP (NEXTN)
    module: one decoder layer (full attention + MoE) plus a 2*hidden -> hidden ``fc``
    (Megatron-bridge mapping ``mtp.fc``), sharing the lm_head; its weight format is an assumption
    (as the experts). KV cache bf16 (the seed sets no ``--kv-cache-dtype``). TP 4 > 2 KV heads:
    SGLang replicates KV heads, one per GPU.
    """

    name: str = "Qwen3.5-397B-A17B-NVFP4"
    tp: int = 4
    gdn: GDNShape = field(default_factory=lambda: preset("qwen3.5-397b-a17b", tp=4))
    num_layers: int = 60
    hidden_size: int = 4096
    num_full_attn_layers: int = 15
    attn_q_heads: int = 32
    attn_kv_heads: int = 2
    attn_head_dim: int = 256
    kv_bytes: float = 2.0
    num_experts: int = 512
    experts_per_token: int = 10
    moe_intermediate: int = 1024
    shared_expert_intermediate: int = 1024
    vocab_size: int = 248320
    weight_bytes_per_param: float = 0.5625
    lm_head_bytes_per_param: float = 2.0
    mtp_layers: int = 1

    def __post_init__(self) -> None:
        for f in ("tp", "num_layers", "hidden_size", "attn_q_heads", "attn_kv_heads", "attn_head_dim",
                  "num_experts", "experts_per_token", "moe_intermediate", "vocab_size"):
            _pos_int(f"ServedModel.{f}", getattr(self, f))
        for f in ("num_full_attn_layers", "shared_expert_intermediate", "mtp_layers"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"ServedModel.{f} must be an integer >= 0, got {v!r}")
        if self.experts_per_token > self.num_experts:
            raise ValueError("ServedModel.experts_per_token must not exceed num_experts")
        if self.num_full_attn_layers > self.num_layers:
            raise ValueError("ServedModel.num_full_attn_layers must not exceed num_layers")
        for f in ("kv_bytes", "weight_bytes_per_param", "lm_head_bytes_per_param"):
            if not float(getattr(self, f)) > 0:
                raise ValueError(f"ServedModel.{f} must be > 0 (bytes), got {getattr(self, f)!r}")
        if self.gdn.tp != self.tp:
            raise ValueError(f"ServedModel.gdn is sharded for tp={self.gdn.tp} but tp={self.tp}")

    @classmethod
    def qwen35_397b(cls, tp: int = 4, weights: Literal["nvfp4", "fp8"] = "nvfp4") -> ServedModel:
        """The seed's model at another TP degree or in FP8 (e.g. for Hopper, which has no FP4 tensor
        cores: FP8 = 1 byte/param + per-block scales, taken as 1.0 B/param)."""
        bpp = {"nvfp4": 0.5625, "fp8": 1.0}
        if weights not in bpp:
            raise ValueError(f"weights must be 'nvfp4' or 'fp8', got {weights!r}")
        return cls(name=f"Qwen3.5-397B-A17B-{weights.upper()}", tp=tp,
                   gdn=preset("qwen3.5-397b-a17b", tp=tp), weight_bytes_per_param=bpp[weights])

    # parameter counts (whole model)
    @property
    def expert_params(self) -> float:
        """Parameters of one routed expert in one layer (gate, up, down)."""
        return 3.0 * self.hidden_size * self.moe_intermediate

    @property
    def gdn_layer_params(self) -> float:
        """Projections of one GDN layer (in: q, k, v, z, b, a; out)."""
        H, HV, K, V = self.gdn.H * self.tp, self.gdn.HV * self.tp, self.gdn.K, self.gdn.V
        return float(self.hidden_size * (2 * H * K + 2 * HV * V + 2 * HV) + HV * V * self.hidden_size)

    @property
    def attn_layer_params(self) -> float:
        """Projections of one full-attention layer (q with output gate, k, v, o)."""
        q = self.hidden_size * self.attn_q_heads * self.attn_head_dim * 2
        kv = self.hidden_size * self.attn_kv_heads * self.attn_head_dim * 2
        return float(q + kv + self.attn_q_heads * self.attn_head_dim * self.hidden_size)

    @property
    def _shared_params(self) -> float:
        return 3.0 * self.hidden_size * self.shared_expert_intermediate + self.hidden_size * self.num_experts

    @property
    def dense_params(self) -> float:
        """Non-expert, non-embedding parameters: GDN and attention projections, shared experts, routers."""
        n_gdn = self.num_layers - self.num_full_attn_layers
        return n_gdn * self.gdn_layer_params + self.num_full_attn_layers * self.attn_layer_params \
            + self.num_layers * self._shared_params

    @property
    def total_params(self) -> float:
        return self.dense_params + self.num_layers * self.num_experts * self.expert_params \
            + 2.0 * self.vocab_size * self.hidden_size

    @property
    def active_params(self) -> float:
        """Parameters one token touches (lm_head included, embedding row excluded)."""
        return self.dense_params + self.num_layers * self.experts_per_token * self.expert_params \
            + self.vocab_size * self.hidden_size

    @property
    def kv_heads_per_gpu(self) -> int:
        return max(1, self.attn_kv_heads // self.tp)

    @property
    def kv_bytes_per_token_layer(self) -> float:
        """KV-cache bytes per context token per full-attention layer on one GPU (K and V)."""
        return 2.0 * self.kv_heads_per_gpu * self.attn_head_dim * self.kv_bytes

    def weight_bytes(self, tokens: float, *, draft: bool = False) -> float:
        """Weight bytes one GPU reads in a forward over ``tokens`` tokens (expected, uniform routing).

        Target: dense + lm_head + the touched experts of every layer. Draft (``draft=True``): the MTP
        layer(s) (attention, shared expert, router, touched experts), its ``fc`` and the lm_head.
        """
        m = max(float(tokens), 0.0)
        touched = self.num_experts * (1.0 - (1.0 - self.experts_per_token / self.num_experts) ** m)
        bpp = self.weight_bytes_per_param
        lm = self.vocab_size * self.hidden_size * self.lm_head_bytes_per_param
        if draft:
            layer = self.attn_layer_params + self._shared_params + 2.0 * self.hidden_size**2
            return (self.mtp_layers * (layer + touched * self.expert_params) * bpp + lm) / self.tp
        return (self.dense_params * bpp + self.num_layers * touched * self.expert_params * bpp + lm) / self.tp

    def weight_gb_per_gpu(self) -> float:
        """Resident weights per GPU (GB = 1e9 bytes): target + MTP module, embedding and lm_head."""
        bpp = self.weight_bytes_per_param
        emb = self.vocab_size * self.hidden_size
        mtp = self.mtp_layers * (self.attn_layer_params + self._shared_params
                                 + self.num_experts * self.expert_params + 2.0 * self.hidden_size**2) * bpp
        body = (self.total_params - 2 * emb) * bpp
        return (body + 2 * emb * self.lm_head_bytes_per_param + mtp) / self.tp / 1e9

    def describe(self) -> str:
        return (f"{self.name} TP{self.tp}: {self.total_params / 1e9:.0f}B params "
                f"({self.active_params / 1e9:.1f}B active), {self.weight_bytes_per_param:g} B/param, "
                f"{self.num_layers - self.num_full_attn_layers} GDN (HV={self.gdn.HV}/GPU, "
                f"{dtype_name(self.gdn.state_dtype)} state) + {self.num_full_attn_layers} full-attn layers "
                f"({self.kv_heads_per_gpu} KV head x {self.attn_head_dim}/GPU)")


# --------------------------------------------------------------------------------- GDN kernels
@dataclass(frozen=True)
class GDNKernel:
    """A GDN kernel's bandwidth model: ``time = launch_us + bytes / (eff * HBM peak)`` per call.

    Attributes:
        decode_eff, verify_eff: fraction of the datasheet HBM bandwidth reached at large batch.
        launch_us: small-batch floor per call (µs).
        source: where the numbers come from.
    """

    name: str
    decode_eff: float
    verify_eff: float
    launch_us: float
    source: str


#: * ``flashinfer`` (after flashinfer#3147, bf16 state, SM100): 6.57 TB/s at B=256 T=1 and
#:   6.17 TB/s at B=256 T=4 of a B200's 8 TB/s (#3147 PR text) -> 0.82 / 0.77; B=1 T=1 takes
#:   3.49 µs (#3127) -> ~3 µs floor.
#: * ``flashinfer_pre3147`` (the seed's OSL sweep and first TPOT table ran before #3147): #3147
#:   reports "4-6 % less time at T=1 for B>=16; 6-18 % less at T>=2 with caching" -> x0.95 / x0.88.
#: * ``triton`` (SGLang's fused_sigmoid_gating recurrent kernel): flashinfer#2405 (B200) measured
#:   FlashInfer 1.35x faster for decode and 1.13x on average for MTP against the Triton kernels ->
#:   0.82/1.35 and 0.77/1.13 (fp32-state measurements; carrying them to bf16 is an assumption).
GDN_KERNELS: dict[str, GDNKernel] = {
    "flashinfer": GDNKernel("flashinfer", 0.82, 0.77, 3.0, "flashinfer PR #3147 / #3127 (B200, bf16 state)"),
    "flashinfer_pre3147": GDNKernel("flashinfer_pre3147", 0.82 * 0.95, 0.77 * 0.88, 3.0,
                                    "flashinfer PR #3147's speed-up claims applied backwards"),
    "triton": GDNKernel("triton", 0.82 / 1.35, 0.77 / 1.13, 3.0,
                        "flashinfer PR #2405 FlashInfer-vs-Triton ratios applied to the FlashInfer numbers"),
}


class MeasuredGDN:
    """GDN kernel times from a measured sweep, interpolated in log(batch)-log(time).

    ``rows`` needs columns ``backend, mode, batch, draft_tokens, state_dtype, time_us`` (one call of
    one layer, µs; repeated points are reduced to their median). Between measured batch sizes the
    time is interpolated, beyond them extrapolated with the end segment's slope (a single point
    scales proportionally to batch). ``draft_tokens`` must have been measured (no interpolation in T).

    A :mod:`gdnlab.sweep` result (e.g. ``traces/h100/sweep.parquet``) can be passed whole: only rows
    comparable with a kernel inside a CUDA-graph decode step are kept, by the same rule as the
    counters-vs-formula join (:func:`gdnlab.metrics.compare.normalize_sweep`): ``status == "ok"``,
    ``timing == "graph"`` (when the frame has graph rows; eager adds host launch overhead),
    ``intermediate`` not ``"pool"`` (SGLang slices the buffer to the batch since PR #23273), no
    ``rotate``. With ``shape`` given and ``H, HV, K, V`` columns present, only rows of that per-GPU
    GDN shape are kept; with ``intermediate_dtype`` given and an ``intermediate_dtype`` column
    present, only verify rows whose intermediate buffer has that dtype (decode rows have none).

    Attributes:
        table: the medians used, ``backend, mode, draft_tokens, state_dtype, batch, time_us``.
        source: one line for footnotes (GPU, timing, rows kept, sweep ids when present).
    """

    REQUIRED = ("backend", "mode", "batch", "draft_tokens", "state_dtype", "time_us")

    def __init__(self, rows: pd.DataFrame, *, shape: GDNShape | None = None, intermediate_dtype=None) -> None:
        from .metrics.compare import normalize_sweep

        if not isinstance(rows, pd.DataFrame):
            raise ValueError(f"gdn_rows must be a pandas DataFrame, got {type(rows).__name__}")
        missing = [c for c in self.REQUIRED if c not in rows.columns]
        if missing:
            raise ValueError(f"gdn_rows is missing columns {missing}; needs {list(self.REQUIRED)}")
        try:
            rows, _ = normalize_sweep(rows, time_col="time_us")
        except ValueError as exc:
            raise ValueError(f"gdn_rows: {exc}".replace("sweep_df", "gdn_rows")) from None
        if shape is not None and {"H", "HV", "K", "V"} <= set(rows.columns):
            want = (shape.H, shape.HV, shape.K, shape.V)
            dims = rows[["H", "HV", "K", "V"]].apply(pd.to_numeric, errors="coerce")
            same = (dims == pd.Series(want, index=dims.columns)).all(axis=1)
            if not same.any():
                have = sorted({tuple(int(x) for x in r) for r in dims.dropna().itertuples(index=False)})
                raise ValueError(f"gdn_rows has no row of the model's GDN shape (H, HV, K, V) = {want}; "
                                 f"measured: {have}")
            rows = rows[same]
        if intermediate_dtype is not None and "intermediate_dtype" in rows.columns:
            inter = rows["intermediate_dtype"].map(lambda v: None if pd.isna(v) else dtype_name(v))
            rows = rows[inter.isna() | (inter == dtype_name(intermediate_dtype))]
        df = rows[list(self.REQUIRED)].dropna().copy()
        df["state_dtype"] = df["state_dtype"].map(dtype_name)
        df = df[(df["time_us"] > 0) & (df["batch"] > 0)]
        if df.empty:
            raise ValueError("gdn_rows has no row with time_us > 0 and batch > 0")
        self.table = df.groupby(["backend", "mode", "draft_tokens", "state_dtype", "batch"],
                                as_index=False)["time_us"].median()
        parts = []
        if "gpu" in rows.columns:
            parts.append(", ".join(sorted({str(g) for g in rows["gpu"].dropna().unique()})) or "GPU not recorded")
        if "timing" in rows.columns:
            parts.append(", ".join(sorted({str(t) for t in rows["timing"].dropna().unique()})) + " timing")
        parts.append(f"{len(df)} rows")
        if "sweep_id" in rows.columns:
            parts.append("sweep " + ", ".join(sorted({str(t) for t in rows["sweep_id"].dropna().unique()})))
        self.source = "measured GDN kernel times (" + " · ".join(parts) + ")"

    def backends(self) -> list[str]:
        return sorted(self.table["backend"].unique())

    def time_us(self, backend: str, mode: str, batch: float, T: int, state_dtype) -> float:
        """One call (µs) at ``batch`` rows and ``T`` tokens."""
        if batch <= 0:
            return 0.0
        sd = dtype_name(state_dtype)
        t = self.table
        sel = t[(t["backend"] == backend) & (t["mode"] == mode) & (t["draft_tokens"] == T) & (t["state_dtype"] == sd)]
        if sel.empty:
            have = t[["backend", "mode", "draft_tokens", "state_dtype"]].drop_duplicates().to_dict("records")
            raise ValueError(f"no measured GDN rows for backend={backend!r} mode={mode!r} draft_tokens={T} "
                             f"state_dtype={sd!r}; measured: {have}")
        sel = sel.sort_values("batch")
        x = np.log(sel["batch"].to_numpy(float))
        y = np.log(sel["time_us"].to_numpy(float))
        lx = math.log(batch)
        if x.size == 1:
            return float(math.exp(y[0]) * batch / math.exp(x[0]))
        if lx < x[0]:
            return float(math.exp(y[0] + (y[1] - y[0]) / (x[1] - x[0]) * (lx - x[0])))
        if lx > x[-1]:
            return float(math.exp(y[-1] + (y[-1] - y[-2]) / (x[-1] - x[-2]) * (lx - x[-1])))
        return float(math.exp(np.interp(lx, x, y)))


# ------------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class RooflineParams:
    """Documented (not fitted) efficiencies and latencies of the roofline terms.

    Attributes:
        weight_eff: fraction of HBM peak for weight streaming (assumption 0.75, between the 70-79 %
            SGLang RFC #28511 reports for memory-bound GDN decode and FlashInfer's 82 %).
        compute_eff: fraction of the dense tensor peak when the GEMMs are compute-bound (assumption 0.5).
        attn_eff: fraction of HBM peak for the KV-cache read (assumption 0.7).
        attn_launch_us: floor per attention-layer call (assumption 3 µs, like the GDN kernels).
        allreduce_latency_us: one TP all-reduce inside a CUDA graph (assumption 5 µs, one-shot custom
            all-reduce); two per layer.
        chunked_prefill_tokens: SGLang ``--chunked-prefill-size`` (the seed's accuracy command: 2048).
        intermediate_dtype: dtype of the verify intermediate buffer; None = the state dtype (SGLang
            allocates ``intermediate_ssm`` in the SSM dtype: bf16 in the seed).
    """

    weight_eff: float = 0.75
    compute_eff: float = 0.5
    attn_eff: float = 0.7
    attn_launch_us: float = 3.0
    allreduce_latency_us: float = 5.0
    chunked_prefill_tokens: int = 2048
    intermediate_dtype: str | None = None


#: names of the fitted coefficients, in feature-vector order
FEATURES = ("pass_us", "request_us", "token_us", "kv_mtoken_us", "prefill_pass_us")


@dataclass(frozen=True)
class FittedParams:
    """Per-event costs the roofline does not cover (µs, all >= 0), fitted or set by hand.

    Attributes:
        pass_us: per target forward pass; a draft pass counts ``draft_weight`` of it.
        request_us: per running request per engine iteration.
        token_us: per token of a target forward; a draft token counts ``draft_weight``.
        kv_mtoken_us: per million KV-cache token-layer reads (attention beyond its roofline).
        prefill_pass_us: per prefill (extend) pass (runs outside CUDA graphs).
        draft_weight: a draft (MTP-module) forward's share of a target forward's per-pass and
            per-token costs: (MTP layers + 1 for lm_head/sampling) / (layers + 1) = 2/61
            (assumption, not fitted).
        source: how the values were obtained.
    """

    pass_us: float = 0.0
    request_us: float = 0.0
    token_us: float = 0.0
    kv_mtoken_us: float = 0.0
    prefill_pass_us: float = 0.0
    draft_weight: float = 2.0 / 61.0
    source: str = "zero (roofline only)"

    def __post_init__(self) -> None:
        for f in FEATURES + ("draft_weight",):
            object.__setattr__(self, f, _nonneg(f"FittedParams.{f}", getattr(self, f)))

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, f) for f in FEATURES], dtype=float)

    @classmethod
    def from_vector(cls, v, **kw) -> FittedParams:
        return cls(**{f: float(x) for f, x in zip(FEATURES, v)}, **kw)

    def as_dict(self) -> dict:
        return asdict(self)

    def short(self) -> str:
        """Compact text for figure footnotes."""
        return ", ".join(f"{f}={getattr(self, f):.4g}" for f in FEATURES)


@dataclass(frozen=True)
class SpecConfig:
    """Speculative decoding setup (NEXTN / EAGLE, topk 1): ``num_steps`` draft forwards per step
    (``--speculative-num-steps``), ``T`` verify positions (``--speculative-num-draft-tokens``) and an
    acceptance model (:mod:`gdnlab.spec`; a float = fixed mean accept length, SGLang convention 1..T)."""

    num_steps: int = 3
    T: int = 4
    acceptance: AcceptanceModel | float = 3.175

    def __post_init__(self) -> None:
        _pos_int("SpecConfig.num_steps", self.num_steps)
        _pos_int("SpecConfig.T", self.T)
        object.__setattr__(self, "acceptance", as_model(self.acceptance))

    @property
    def accept_len(self) -> float:
        """Expected tokens per step (mean accepted length, 1..T)."""
        return self.acceptance.mean(self.T)


#: the seed's speculative setup: 3 steps, 4 draft tokens, acc len 3.13-3.22 (midpoint 3.175)
SEED_SPEC = SpecConfig(num_steps=3, T=4, acceptance=(3.13 + 3.22) / 2)


# -------------------------------------------------------------------------------- step model
class StepModel:
    """Time of one engine iteration (µs) on one GPU: roofline parts plus fitted parts.

    Args:
        gpu: a :class:`gdnlab.hardware.GPUSpec` or a name for :func:`gdnlab.hardware.spec_for`
            (default ``"GB200"``, the seed's GPU; ``"H100-SXM"`` etc. project SM90).
        model: the served model (:class:`ServedModel`).
        roofline: documented efficiencies (:class:`RooflineParams`).
        params: fitted per-event costs (:class:`FittedParams`); see :func:`seed_model`.
        gdn_rows: measured GDN sweep rows (:class:`MeasuredGDN`); without them GDN kernel time comes
            from the bandwidth model of ``kernels``.
        kernels: backend name -> :class:`GDNKernel` (default :data:`GDN_KERNELS`).
    """

    def __init__(self, gpu: GPUSpec | str = "GB200", model: ServedModel | None = None,
                 roofline: RooflineParams | None = None, params: FittedParams | None = None,
                 gdn_rows: pd.DataFrame | None = None, kernels: dict[str, GDNKernel] | None = None) -> None:
        self.gpu = spec_for(gpu) if isinstance(gpu, str) else gpu
        if not isinstance(self.gpu, GPUSpec):
            raise ValueError(f"gpu must be a GPUSpec or a GPU name, got {gpu!r}")
        if not self.gpu.peak_hbm_gbps > 0:
            raise ValueError(f"gpu {self.gpu.name!r} has no peak HBM bandwidth; pass a GPUSpec with one")
        self.model = model or ServedModel()
        if not isinstance(self.model, ServedModel):
            raise ValueError(f"model must be a ServedModel, got {type(self.model).__name__}")
        self.roofline = roofline or RooflineParams()
        self.params = params or FittedParams()
        self.kernels = dict(GDN_KERNELS if kernels is None else kernels)
        self.measured = None if gdn_rows is None else MeasuredGDN(
            gdn_rows, shape=self.model.gdn,
            intermediate_dtype=self.roofline.intermediate_dtype or self.model.gdn.state_dtype)

    def with_params(self, params: FittedParams) -> StepModel:
        """The same model with other fitted parameters."""
        new = object.__new__(StepModel)
        new.__dict__.update(self.__dict__)
        new.params = params
        return new

    @property
    def hbm_bps(self) -> float:
        return self.gpu.peak_hbm_gbps * 1e9

    def _kernel(self, backend: str) -> GDNKernel:
        if backend not in self.kernels:
            raise ValueError(f"unknown backend {backend!r}; known: {sorted(self.kernels)}")
        return self.kernels[backend]

    def check_backend(self, backend: str) -> None:
        """Raise ``ValueError`` unless ``backend`` has a kernel model or measured rows."""
        if self.measured is not None:
            if backend not in self.measured.backends():
                raise ValueError(f"backend {backend!r} has no measured GDN rows; measured: {self.measured.backends()}")
        else:
            self._kernel(backend)

    def describe(self) -> str:
        gdn = "measured GDN rows" if self.measured is not None else "GDN bandwidth model"
        return f"{self.gpu.name} ({self.gpu.sm}, {self.gpu.peak_hbm_gbps:g} GB/s) · {self.model.describe()} · {gdn}"

    # ---------------------------------------------------------------- GDN
    def gdn_call_us(self, backend: str, mode: Literal["decode", "verify"], batch: float, T: int = 1) -> float:
        """One GDN layer call (µs) for ``batch`` requests and ``T`` tokens each."""
        if batch <= 0:
            return 0.0
        shape = self.model.gdn
        if self.measured is not None:
            return self.measured.time_us(backend, mode, batch, T, shape.state_dtype)
        k = self._kernel(backend)
        inter = self.roofline.intermediate_dtype or shape.state_dtype
        b = gdn_bytes(shape, int(math.ceil(batch)), T, mode=mode, intermediate_dtype=inter).total
        b *= batch / math.ceil(batch)
        eff = k.decode_eff if mode == "decode" else k.verify_eff
        return k.launch_us + b / (eff * self.hbm_bps) * 1e6

    def gdn_commit_us(self, batch: float) -> float:
        """Scatter of the kept intermediate state into the pool, all GDN layers in one launch (µs):
        one read and one write of each request's state per layer, at FlashInfer's decode efficiency."""
        if batch <= 0:
            return 0.0
        shape = self.model.gdn
        bytes_ = 2.0 * batch * shape.state_bytes() * shape.num_gdn_layers
        return 3.0 + bytes_ / (GDN_KERNELS["flashinfer"].decode_eff * self.hbm_bps) * 1e6

    def gdn_prefill_us(self, requests: float, tokens: float) -> float:
        """GDN layers of a prefill pass (µs): q/k/v read plus one state write per new request per
        layer, at half of HBM peak (chunked kernels, assumption)."""
        if requests <= 0:
            return 0.0
        s = self.model.gdn
        bytes_ = requests * s.state_bytes() + tokens * (2 * s.H * s.K + 2 * s.HV * s.V) * 2
        return s.num_gdn_layers * (3.0 + bytes_ / (0.5 * self.hbm_bps) * 1e6)

    # ---------------------------------------------------------------- other parts
    def attention_us(self, ctx_tokens: float, layers: int, batch: float) -> float:
        """Full-attention layers of one forward (µs): KV read of ``ctx_tokens`` (summed over requests)."""
        if batch <= 0 or layers <= 0:
            return 0.0
        bytes_ = ctx_tokens * self.model.kv_bytes_per_token_layer
        return layers * (self.roofline.attn_launch_us + bytes_ / (self.roofline.attn_eff * self.hbm_bps) * 1e6)

    def weights_us(self, tokens: float, *, draft: bool = False) -> float:
        """Weight streaming or GEMM compute of one forward over ``tokens`` tokens (µs), whichever is longer."""
        if tokens <= 0:
            return 0.0
        m = self.model
        mem = m.weight_bytes(tokens, draft=draft) / (self.roofline.weight_eff * self.hbm_bps) * 1e6
        if draft:
            active = m.mtp_layers * (m.attn_layer_params + m.experts_per_token * m.expert_params) \
                + m.vocab_size * m.hidden_size
        else:
            active = m.active_params
        peak = PEAK_DENSE_TFLOPS.get(self.gpu.name, float("nan")) * 1e12
        comp = 2.0 * active * tokens / m.tp / (self.roofline.compute_eff * peak) * 1e6 if peak > 0 else 0.0
        return max(mem, comp)

    def allreduce_us(self, tokens: float, layers: int) -> float:
        """Two TP all-reduces per layer of ``tokens * hidden`` bf16 values (µs)."""
        tp = self.model.tp
        if tp == 1 or tokens <= 0:
            return 0.0
        bw = NVLINK_GBPS.get(self.gpu.name, 450.0) * 1e9
        one = self.roofline.allreduce_latency_us + 2.0 * (tp - 1) / tp * tokens * self.model.hidden_size * 2.0 / bw * 1e6
        return 2 * layers * one

    # ---------------------------------------------------------------- forwards
    def target_forward(self, backend: str, n: float, T: int, ctx_tokens: float, *, verify: bool) -> dict:
        """Roofline parts (µs) of one target forward over ``n`` requests x ``T`` tokens."""
        m = self.model
        gdn = m.gdn.num_gdn_layers * self.gdn_call_us(backend, "verify" if verify else "decode", n, T)
        return {"gdn": gdn, "gdn_commit": self.gdn_commit_us(n) if verify else 0.0,
                "attention": self.attention_us(ctx_tokens + n * T, m.num_full_attn_layers, n),
                "weights": self.weights_us(n * T), "allreduce": self.allreduce_us(n * T, m.num_layers)}

    def draft_forward_us(self, n: float, tokens: float, ctx_tokens: float) -> float:
        """Roofline time (µs) of one draft (MTP module) forward."""
        m = self.model
        return self.weights_us(tokens, draft=True) + self.attention_us(ctx_tokens + tokens, m.mtp_layers, n) \
            + self.allreduce_us(tokens, m.mtp_layers)

    def iteration(self, backend: str, n: float, ctx_tokens: float,
                  spec: SpecConfig | None = None) -> tuple[dict, np.ndarray]:
        """One engine iteration with ``n`` running requests whose contexts sum to ``ctx_tokens``.

        Returns ``(roofline parts in µs, feature vector)``; time = ``sum(parts) + params.vector() @ features``.
        """
        m, w = self.model, self.params.draft_weight
        if spec is None:
            parts = self.target_forward(backend, n, 1, ctx_tokens, verify=False)
            kv = (ctx_tokens + n) * m.num_full_attn_layers
            return parts, np.array([1.0, n, n, kv / 1e6, 0.0])
        T, s = spec.T, spec.num_steps
        parts = self.target_forward(backend, n, T, ctx_tokens, verify=True)
        parts["draft"] = (s - 1) * self.draft_forward_us(n, n, ctx_tokens) + self.draft_forward_us(n, n * T, ctx_tokens)
        kv = (ctx_tokens + n * T) * (m.num_full_attn_layers + s * m.mtp_layers)
        return parts, np.array([1.0 + w * s, n, n * T + w * n * (s - 1 + T), kv / 1e6, 0.0])

    def prefill(self, backend: str, requests: float, tokens: float,
                spec: SpecConfig | None = None) -> tuple[dict, np.ndarray]:
        """One prefill (extend) pass of ``requests`` new requests with ``tokens`` prompt tokens in all
        (with speculation, the draft module extends them too)."""
        m, w = self.model, self.params.draft_weight
        parts = {"weights": self.weights_us(tokens), "gdn": self.gdn_prefill_us(requests, tokens),
                 "attention": self.attention_us(tokens, m.num_full_attn_layers, requests),
                 "allreduce": self.allreduce_us(tokens, m.num_layers)}
        if spec is not None:
            parts["draft"] = self.draft_forward_us(requests, tokens, 0.0)
        return parts, np.array([0.0, 0.0, tokens * (1.0 + (w if spec is not None else 0.0)), 0.0, 1.0])

    # ---------------------------------------------------------------- steady state
    def _check_point(self, backend: str, n: float, ctx_per_request: float) -> None:
        self.check_backend(backend)
        if not float(n) > 0:
            raise ValueError(f"n (running requests) must be > 0, got {n!r}")
        _nonneg("ctx_per_request (tokens)", ctx_per_request)

    def step_us(self, backend: str, n: float, ctx_per_request: float, spec: SpecConfig | None = None) -> float:
        """Time (µs) of one iteration with ``n`` requests of ``ctx_per_request`` context tokens each."""
        self._check_point(backend, n, ctx_per_request)
        parts, feats = self.iteration(backend, float(n), float(n) * ctx_per_request, spec)
        return float(sum(parts.values()) + self.params.vector() @ feats)

    def steady_tpot_ms(self, backend: str, n: float, ctx_per_request: float, spec: SpecConfig | None = None) -> float:
        """Decode-only TPOT (ms/token) at a steady batch: step time / tokens per step (no prefill
        interruptions; :func:`simulate_serving` adds those)."""
        a = spec.accept_len if spec is not None else 1.0
        return self.step_us(backend, n, ctx_per_request, spec) / a / 1e3

    def steady_throughput(self, backend: str, n: float, ctx_per_request: float, spec: SpecConfig | None = None) -> float:
        """Decode-only output throughput (tok/s) at a steady batch of ``n``."""
        a = spec.accept_len if spec is not None else 1.0
        return n * a / self.step_us(backend, n, ctx_per_request, spec) * 1e6

    def breakdown(self, backend: str, n: float, ctx_per_request: float, spec: SpecConfig | None = None) -> pd.DataFrame:
        """Parts of one iteration: ``part, time_us, share`` (roofline parts, then ``fitted:<name>``)."""
        self._check_point(backend, n, ctx_per_request)
        parts, feats = self.iteration(backend, float(n), float(n) * ctx_per_request, spec)
        vals = {k: v for k, v in parts.items()}
        for name, th, f in zip(FEATURES, self.params.vector(), feats):
            if th * f:
                vals[f"fitted:{name}"] = th * f
        df = pd.DataFrame({"part": list(vals), "time_us": list(vals.values())})
        df["share"] = df["time_us"] / df["time_us"].sum()
        df["backend"], df["batch"], df["ctx_per_request"] = backend, n, ctx_per_request
        df["spec"], df["status"], df["gpu"] = spec is not None, "projected", self.gpu.name
        return df

    def gdn_share(self, backend: str, n: float, ctx_per_request: float, spec: SpecConfig | None = None) -> float:
        """Fraction of an iteration spent in GDN kernels (decode or verify, plus the commit)."""
        b = self.breakdown(backend, n, ctx_per_request, spec)
        return float(b.loc[b["part"].isin(["gdn", "gdn_commit"]), "time_us"].sum() / b["time_us"].sum())

    # ---------------------------------------------------------------- speculation economics
    def _spec(self, T: int, num_steps: int | None, accept_len: float) -> SpecConfig:
        _pos_int("T", T)
        try:
            a = float(accept_len)
        except (TypeError, ValueError):
            raise ValueError(f"accept_len must be a number in [1, T={T}], got {accept_len!r}") from None
        if not 1.0 <= a <= T:
            raise ValueError(f"accept_len must lie in [1, T={T}], got {accept_len!r}")
        return SpecConfig(num_steps=max(T - 1, 1) if num_steps is None else num_steps, T=T, acceptance=float(accept_len))

    def speedup(self, backend: str, n: float, ctx_per_request: float, accept_len: float, T: int,
                num_steps: int | None = None) -> float:
        """Steady-state speedup of speculation, ``accept_len * t_decode / t_spec_step``
        (``num_steps`` defaults to ``T - 1``, the topk-1 chain)."""
        spec = self._spec(T, num_steps, accept_len)
        return accept_len * self.step_us(backend, n, ctx_per_request) / self.step_us(backend, n, ctx_per_request, spec)

    def break_even_accept_len(self, backend: str, n: float, ctx_per_request: float, T: int,
                              num_steps: int | None = None) -> float:
        """Acceptance length below which speculation stops paying: ``t_spec_step / t_decode``. A
        value above ``T`` means it cannot pay at that point."""
        spec = self._spec(T, num_steps, 1.0)
        return self.step_us(backend, n, ctx_per_request, spec) / self.step_us(backend, n, ctx_per_request)


# ----------------------------------------------------------------------------- serving runs
@dataclass(frozen=True)
class Workload:
    """A bench_serving run (random dataset).

    Attributes:
        isl, osl: ``--random-input-len`` / ``--random-output-len`` (tokens).
        num_prompts: requests in the run.
        concurrency: ``--max-concurrency`` (None: every request is sent at t=0,
            ``--request-rate inf`` without a cap, as in the seed's OSL sweep).
        max_running: the engine's ``--max-running-requests`` (seed: 128). Requests beyond it wait
            in the engine's queue, so at most this many decode at once.
        range_ratio: ``--random-range-ratio``; lengths are drawn like bench_serving,
            ``randint(max(1, int(L * range_ratio)), L + 1)``. SGLang's default is 0.0 (uniform in
            ``[1, L]``, mean ~L/2); the seed does not give the flag, so 0.0 is an assumption.
        seed: RNG seed of the length draw.
    """

    isl: int = 32
    osl: int = 1024
    num_prompts: int = 256
    concurrency: int | None = None
    max_running: int = 128
    range_ratio: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for f in ("isl", "osl", "num_prompts", "max_running"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Workload.{f} must be a positive integer, got {v!r}")
        c = self.concurrency
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1):
            raise ValueError(f"Workload.concurrency must be a positive integer or None, got {c!r}")
        if not 0.0 <= float(self.range_ratio) <= 1.0:
            raise ValueError(f"Workload.range_ratio must lie in [0, 1], got {self.range_ratio!r}")

    @property
    def effective_concurrency(self) -> int:
        """Most requests decoding at once: ``min(concurrency or num_prompts, num_prompts, max_running)``."""
        return min(self.concurrency or self.num_prompts, self.num_prompts, self.max_running)

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """(input lengths, output lengths) per request, drawn like bench_serving's random dataset."""
        rng = np.random.default_rng(self.seed)
        lo_i = max(int(self.isl * self.range_ratio), 1)
        lo_o = max(int(self.osl * self.range_ratio), 1)
        isl = rng.integers(lo_i, self.isl + 1, size=self.num_prompts)
        osl = rng.integers(lo_o, self.osl + 1, size=self.num_prompts)
        return isl, osl


@dataclass(frozen=True)
class ServingTrace:
    """The schedule of a simulated run (independent of any cost): one entry per forward event.

    ``kind`` 0 = decode / MTP iteration, 1 = prefill pass; ``n`` requests in it; ``ctx`` context
    tokens summed over its requests before the step; ``tokens`` prompt tokens (prefill passes);
    ``emitted`` output tokens it produced. ``first`` / ``done``: per request, index of the event
    that produced its first / last token; ``osl``: its output length.
    """

    kind: np.ndarray
    n: np.ndarray
    ctx: np.ndarray
    tokens: np.ndarray
    emitted: np.ndarray
    first: np.ndarray
    done: np.ndarray
    osl: np.ndarray


@lru_cache(maxsize=128)
def _trace(wl: Workload, accept_len: float, chunk_tokens: int) -> ServingTrace:
    """Replay the scheduler: admit up to ``max_running`` requests (prefill passes of at most
    ``chunk_tokens`` prompt tokens, run before the next decode iteration, as SGLang's scheduler
    prioritises new requests), then one decode/MTP iteration of everything running, each request
    gaining ``accept_len`` tokens (capped at its length); finished requests free their slot and, with
    ``--max-concurrency``, let the client send the next request."""
    isl, osl = wl.lengths()
    P = wl.num_prompts
    cap = min(wl.concurrency or P, P)
    kind, nn, ctx, toks, emit = [], [], [], [], []
    first = np.full(P, -1, dtype=np.int64)
    done = np.full(P, -1, dtype=np.int64)
    produced = np.zeros(P)
    running = np.zeros(0, dtype=np.int64)
    waiting: list[int] = list(range(cap))
    next_req = cap
    while running.size or waiting:
        free = wl.max_running - running.size
        if waiting and free > 0:
            admit, waiting = waiting[:free], waiting[free:]
            chunk: list[int] = []
            tok = 0
            for r in admit + [-1]:
                if r >= 0 and (not chunk or tok + isl[r] <= chunk_tokens):
                    chunk.append(r)
                    tok += int(isl[r])
                    continue
                if chunk:
                    idx = len(kind)
                    for lst, val in ((kind, 1), (nn, len(chunk)), (ctx, 0.0), (toks, tok), (emit, len(chunk))):
                        lst.append(val)
                    c = np.asarray(chunk)
                    first[c] = idx
                    produced[c] = 1.0
                    one = c[osl[c] <= 1]
                    done[one] = idx
                    running = np.concatenate([running, c[osl[c] > 1]])
                    if one.size:
                        k = min(one.size, P - next_req)
                        waiting.extend(range(next_req, next_req + k))
                        next_req += k
                if r >= 0:
                    chunk, tok = [r], int(isl[r])
            continue
        idx = len(kind)
        cur = produced[running]
        new = np.minimum(cur + accept_len, osl[running])
        kind.append(0); nn.append(running.size); ctx.append(float(np.sum(isl[running] + cur)))  # noqa: E702
        toks.append(0); emit.append(float(np.sum(new - cur)))  # noqa: E702
        produced[running] = new
        fin = new >= osl[running] - 1e-9
        if fin.any():
            done[running[fin]] = idx
            running = running[~fin]
            k = min(int(fin.sum()), P - next_req)
            waiting.extend(range(next_req, next_req + k))
            next_req += k
    return ServingTrace(np.asarray(kind), np.asarray(nn), np.asarray(ctx), np.asarray(toks, dtype=float),
                        np.asarray(emit, dtype=float), first, done, osl)


@dataclass
class LinearRun:
    """A simulated benchmark whose times are linear in the fitted parameters.

    ``duration`` and ``mean_tpot`` are ``(const_us, features)``: the value is
    ``const_us + features @ params.vector()`` µs. ``parts_us`` sums the roofline parts over the run.
    """

    workload: Workload
    backend: str
    spec: SpecConfig | None
    output_tokens: float
    duration: tuple[float, np.ndarray]
    mean_tpot: tuple[float, np.ndarray]
    iterations: int
    prefill_passes: int
    mean_batch: float
    parts_us: dict

    def duration_s(self, params: FittedParams) -> float:
        c, f = self.duration
        return (c + float(f @ params.vector())) / 1e6

    def throughput(self, params: FittedParams) -> float:
        """Output throughput (tok/s): generated tokens / duration (bench_serving's definition)."""
        return self.output_tokens / self.duration_s(params)

    def tpot_ms(self, params: FittedParams) -> float:
        """Mean TPOT (ms): mean over requests with > 1 output token of (e2e - ttft) / (tokens - 1)."""
        c, f = self.mean_tpot
        return (c + float(f @ params.vector())) / 1e3


def _cost(sm: StepModel, backend: str, spec: SpecConfig | None, tr: ServingTrace) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per-event roofline constant (µs) and features for a trace (vectorised over unique batch sizes)."""
    E = tr.kind.size
    C = np.zeros(E)
    F = np.zeros((E, len(FEATURES)))
    parts_tot: dict[str, float] = {}
    ref = 1e6
    it = tr.kind == 0
    for n in np.unique(tr.n[it]):
        sel = it & (tr.n == n)
        p0, f0 = sm.iteration(backend, float(n), 0.0, spec)
        p1, f1 = sm.iteration(backend, float(n), ref, spec)
        c0, c1 = sum(p0.values()), sum(p1.values())
        x = tr.ctx[sel] / ref
        C[sel] = c0 + (c1 - c0) * x
        F[sel] = f0 + np.outer(x, f1 - f0)
        for k in p0:
            parts_tot[k] = parts_tot.get(k, 0.0) + float(np.sum(p0[k] + (p1[k] - p0[k]) * x))
    pf = np.flatnonzero(tr.kind == 1)
    cache: dict[tuple[int, float], tuple[dict, np.ndarray]] = {}
    for i in pf:
        key = (int(tr.n[i]), float(tr.tokens[i]))
        if key not in cache:
            cache[key] = sm.prefill(backend, *key, spec)
        p, f = cache[key]
        C[i] = sum(p.values())
        F[i] = f
        parts_tot["prefill"] = parts_tot.get("prefill", 0.0) + C[i]
    return C, F, parts_tot


def simulate_serving(sm: StepModel, backend: str, workload: Workload, spec: SpecConfig | None = None) -> LinearRun:
    """Replay a bench_serving run through the step model.

    The acceptance enters as its mean (``spec.accept_len`` tokens per request per step, capped at
    each request's length). Returns a :class:`LinearRun`; evaluate it with
    ``run.throughput(params)`` (tok/s) and ``run.tpot_ms(params)`` (ms).
    """
    if not isinstance(workload, Workload):
        raise ValueError(f"workload must be a Workload, got {type(workload).__name__}")
    if spec is not None and not isinstance(spec, SpecConfig):
        raise ValueError(f"spec must be a SpecConfig or None, got {type(spec).__name__}")
    sm.check_backend(backend)
    a = spec.accept_len if spec is not None else 1.0
    tr = _trace(workload, float(a), int(sm.roofline.chunked_prefill_tokens))
    C, F, parts = _cost(sm, backend, spec, tr)
    cumC, cumF = np.cumsum(C), np.cumsum(F, axis=0)
    multi = tr.osl > 1
    if multi.any():
        fi, di = tr.first[multi], tr.done[multi]
        denom = (tr.osl[multi] - 1).astype(float)
        tpot = (float(np.mean((cumC[di] - cumC[fi]) / denom)),
                np.mean((cumF[di] - cumF[fi]) / denom[:, None], axis=0))
    else:
        tpot = (float("nan"), np.full(len(FEATURES), np.nan))
    it = tr.kind == 0
    return LinearRun(workload, backend, spec, float(tr.osl.sum()), (float(cumC[-1]), cumF[-1].copy()), tpot,
                     int(it.sum()), int((~it).sum()), float(tr.n[it].mean()) if it.any() else 0.0, parts)


def project(sm: StepModel, *, backends=("flashinfer", "triton"), concurrencies=(1, 4, 16, 32, 64, 128),
            osls=(512,), isl: int = 32, specs: dict | None = None, num_prompts: int | None = None,
            max_running: int = 128, range_ratio: float = 0.0) -> pd.DataFrame:
    """TPOT and output throughput from the model over backends x concurrency x OSL x spec setups.

    ``specs`` maps a label to a :class:`SpecConfig` or None (default: ``{"no-MTP": None, "MTP": SEED_SPEC}``).
    ``concurrency=None`` in ``concurrencies`` means all requests at t=0 (the seed's OSL sweep).
    ``num_prompts`` defaults to ``max(256, concurrency)`` (256: the seed's count). Rows are ``status = "projected"``.
    """
    specs = {"no-MTP": None, "MTP": SEED_SPEC} if specs is None else specs
    rows = []
    for b in backends:
        for label_, sp in specs.items():
            for osl in osls:
                for c in concurrencies:
                    npr = num_prompts or max(256, c or 0)
                    wl = Workload(isl=isl, osl=int(osl), num_prompts=npr, concurrency=c, max_running=max_running,
                                  range_ratio=range_ratio)
                    run = simulate_serving(sm, b, wl, sp)
                    rows.append({"backend": b, "spec": label_, "mtp": sp is not None, "concurrency": c,
                                 "effective_concurrency": wl.effective_concurrency, "isl": isl, "osl": int(osl),
                                 "num_prompts": npr, "accept_len": sp.accept_len if sp else 1.0,
                                 "mean_tpot_ms": run.tpot_ms(sm.params),
                                 "output_throughput_tok_s": run.throughput(sm.params),
                                 "mean_batch": run.mean_batch, "status": "projected", "gpu": sm.gpu.name})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ fitting
def _nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares by enumerating active sets (a handful of columns)."""
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


@dataclass(frozen=True)
class SeedAssumptions:
    """What the seed does not state and the validation assumes (each can be varied, see
    :func:`sensitivity`).

    Attributes:
        gpu: the seed's GPU (GB200).
        accept_len: tokens per MTP step: the midpoint of the reported 3.13-3.22.
        range_ratio: bench_serving ``--random-range-ratio`` (SGLang default 0.0).
        tpot_num_prompts: prompts per TPOT-table run (not stated; 256, the only count the PR gives;
            None = ``max(4 * concurrency, 32)``).
        length_seed: RNG seed of the simulated length draw.
        before_kernel: FlashInfer kernel model for the runs before flashinfer#3147 (the OSL sweep and
            the first TPOT table): ``"flashinfer_pre3147"``.
        fixed_free: parameters re-fitted for the "fixed" TPOT table (a later software state whose
            TPOT is 2.4x lower at concurrency 128 — not explained by GDN kernels); the others are
            carried over from the first fit.
    """

    gpu: str = "GB200"
    accept_len: float = (3.13 + 3.22) / 2
    range_ratio: float = 0.0
    tpot_num_prompts: int | None = 256
    length_seed: int = 0
    before_kernel: str = "flashinfer_pre3147"
    fixed_free: tuple[str, ...] = ("pass_us", "request_us", "token_us", "prefill_pass_us")


@dataclass
class SeedFit:
    """Fitted parameters for the two software states of the seed and the runs behind them."""

    before: FittedParams
    fixed: FittedParams
    assumptions: SeedAssumptions
    model: StepModel
    runs: dict = field(repr=False, default_factory=dict)


_SEED_COLUMNS = ("table", "backend", "mtp", "isl", "osl", "concurrency", "num_prompts", "metric", "value",
                 "kernel_state")


def _check_seed_df(df) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"seed_df must be a DataFrame from gdnlab.seed.load_seed(), got {type(df).__name__}")
    missing = [c for c in _SEED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"seed_df is missing columns {missing}; pass gdnlab.seed.load_seed() (or a modified copy)")


def seed_roles(df: pd.DataFrame) -> pd.Series:
    """``"fit"`` / ``"heldout"`` / ``"unused"`` for each seed row.

    fit: the no-MTP OSL-sweep rows (FlashInfer) and the FlashInfer rows of both TPOT tables;
    heldout: every MTP OSL-sweep row (hence the MTP speedups) and every Triton TPOT row (hence the
    Triton/FlashInfer ratios); unused: accuracy rows.
    """
    t, b, mtp = df["table"], df["backend"], df["mtp"].fillna(False).astype(bool)
    role = pd.Series("unused", index=df.index, dtype=object)
    perf = t.isin(["osl_sweep", "tpot_concurrency", "tpot_concurrency_fixed"])
    fit = ((t == "osl_sweep") & ~mtp) | (t.isin(["tpot_concurrency", "tpot_concurrency_fixed"]) & (b == "flashinfer"))
    role[perf & fit] = "fit"
    role[perf & ~fit] = "heldout"
    return role


def _seed_run(sm: StepModel, row, a: SeedAssumptions, backend: str) -> LinearRun:
    spec = SpecConfig(3, 4, a.accept_len) if bool(row["mtp"]) else None
    if row["table"] == "osl_sweep":
        wl = Workload(isl=int(row["isl"]), osl=int(row["osl"]), num_prompts=int(row["num_prompts"]),
                      concurrency=None, max_running=128, range_ratio=a.range_ratio, seed=a.length_seed)
    else:
        wl = Workload(isl=int(row["isl"]), osl=int(row["osl"]), num_prompts=_tpot_prompts(a, int(row["concurrency"])),
                      concurrency=int(row["concurrency"]), max_running=128, range_ratio=a.range_ratio,
                      seed=a.length_seed)
    return simulate_serving(sm, backend, wl, spec)


def _tpot_prompts(a: SeedAssumptions, concurrency: int) -> int:
    if a.tpot_num_prompts is None:
        return max(4 * concurrency, 32)
    return max(int(a.tpot_num_prompts), concurrency)


def _kernel_for(row, a: SeedAssumptions) -> str:
    if row["backend"] == "flashinfer" and row["table"] != "tpot_concurrency_fixed":
        return a.before_kernel
    return str(row["backend"])


def _equation(run: LinearRun, row) -> tuple[np.ndarray, float]:
    """One relative-error equation ``A @ theta = b`` for a seed row (throughput via duration)."""
    if row["metric"] == "output_throughput":
        target = run.output_tokens / float(row["value"]) * 1e6  # duration µs
        c, f = run.duration
    else:
        target = float(row["value"]) * 1e3  # TPOT µs
        c, f = run.mean_tpot
    return f / target, 1.0 - c / target


def fit_to_seed(seed_df: pd.DataFrame | None = None, assumptions: SeedAssumptions | None = None,
                sm: StepModel | None = None) -> SeedFit:
    """Fit :class:`FittedParams` on the seed's **fit** rows only (:func:`seed_roles`).

    Stage 1 (software state before flashinfer#3147): all five parameters by non-negative least
    squares on relative errors over the 3 no-MTP OSL-sweep rows and the 7 FlashInfer rows of the
    first TPOT table. Stage 2 (the "fixed" TPOT table): ``assumptions.fixed_free`` re-fitted on its
    6 FlashInfer rows, the rest carried over.

    With the default assumptions the fit gives (µs): before the fix ``pass_us`` 6867 (a 60-layer
    target pass; a draft pass 2/61 of it), ``request_us`` 31, ``token_us`` 77, ``kv_mtoken_us`` 1311,
    ``prefill_pass_us`` 66752; with the fix ``pass_us`` 6393, ``request_us`` 0, ``token_us`` 30,
    ``prefill_pass_us`` 5759 (``kv_mtoken_us`` carried over). These are effective costs of the seed's
    setup (host, kernels far from roofline, eager prefill), not hardware constants.
    """
    from .seed import load_seed

    a = assumptions or SeedAssumptions()
    df = load_seed() if seed_df is None else seed_df
    _check_seed_df(df)
    roles = seed_roles(df)
    fit_rows = df[roles == "fit"]
    sm = sm or StepModel(a.gpu)
    runs = {}
    A1, b1, A2, b2 = [], [], [], []
    for i, row in fit_rows.iterrows():
        run = _seed_run(sm, row, a, _kernel_for(row, a))
        runs[i] = run
        Ai, bi = _equation(run, row)
        (A2 if row["table"] == "tpot_concurrency_fixed" else A1).append(Ai)
        (b2 if row["table"] == "tpot_concurrency_fixed" else b1).append(bi)
    if not A1:
        raise ValueError("seed_df has no fit rows for the first software state (no-MTP OSL sweep / TPOT table)")
    th1 = _nnls(np.vstack(A1), np.asarray(b1))
    before = FittedParams.from_vector(th1, source="fit: seed no-MTP OSL sweep + TPOT (before fix), FlashInfer rows")
    th2 = th1.copy()
    if A2:
        free = [FEATURES.index(n) for n in a.fixed_free]
        fixed_cols = [j for j in range(len(FEATURES)) if j not in free]
        A2m = np.vstack(A2)
        rhs = np.asarray(b2) - A2m[:, fixed_cols] @ th1[fixed_cols]
        th2[free] = _nnls(A2m[:, free], rhs)
    fixed = FittedParams.from_vector(th2, source="fit: seed TPOT table with flashinfer#3147 + slice fix, FlashInfer rows")
    return SeedFit(before, fixed, a, sm, runs)


def validate_against_seed(seed_df: pd.DataFrame | None = None, assumptions: SeedAssumptions | None = None,
                          sm: StepModel | None = None) -> pd.DataFrame:
    """Fit on part of the seed, predict the rest; one row per compared number.

    Columns: ``metric, predicted, reported, rel_error`` (``(predicted - reported) / reported``),
    ``role`` (``"fit"`` / ``"heldout"``), ``table, backend, mtp, x_name, x, kernel_state, unit,
    status`` (``"projected vs reported (seed, GB200)"``). ``df.attrs["params"]`` holds the fitted
    parameters of both software states and ``df.attrs["assumptions"]`` the assumptions.

    Fit rows (never the held-out ones; see :func:`seed_roles`): no-MTP output throughput at OSL
    1024/2048/4096, FlashInfer mean TPOT vs concurrency in both TPOT tables. Held out: MTP output
    throughput (both backends), the MTP speedup per OSL (FlashInfer MTP / no-MTP), FlashInfer/Triton
    throughput ratios, Triton TPOT and Triton/FlashInfer TPOT ratios per concurrency.

    Result with the default :class:`SeedAssumptions` (GB200): the 10 fit rows of the first software
    state within 3.1 %, the 6 of the fixed TPOT table within 3.4 %; held out: MTP speedup +9.1 % /
    +2.9 % / -5.6 % at OSL 1024 / 2048 / 4096 (1.47 / 1.52 / 1.56 vs 1.35 / 1.47 / 1.66), MTP
    throughput within 11 %, Triton TPOT within 7.5 %, Triton/FlashInfer TPOT ratios within 5.5 %.

    Where the model misses, and why:

    * **The MTP speedup's growth with OSL is too flat** (model 1.47 -> 1.56, seed 1.35 -> 1.66). In
      the model the speedup grows with OSL because per-request prefill passes are amortised and
      because an MTP step reads the growing KV cache once per ~3.2 tokens (the fitted attention cost
      is what flattens the no-MTP throughput from OSL 2048 to 4096). The seed's MTP rows gain more
      (+31 % from 1024 to 4096) than these mechanisms give. Candidates the seed cannot separate: an
      acceptance length that rises with output length (the PR gives one range, 3.13-3.22, for all
      runs), one-off costs in the first (shortest) run (JIT compilation of CuTe-DSL kernels,
      CUDA-graph capture), run-to-run noise (single runs).
    * **Triton vs FlashInfer**: the model's ratios are 1.000 before the fix (the pre-#3147 FlashInfer
      verify kernel and the Triton kernel are modelled at about the same efficiency, 0.68 of HBM peak)
      and 1.000-1.007 after it, because GDN is a few % of a step. The seed's 1.01-1.06 TPOT ratios
      (and 1.01-1.04 throughput ratios) before the fix are larger than GDN kernel time can produce,
      which points at costs outside the GDN kernels that differ between the two code paths, or at
      noise; after the fix the seed's ratios (0.997-1.005) agree with the model within 0.6 %.
    * **The fit is not unique.** The split between per-pass, per-request and per-token costs and the
      prefill cost are identified only through unstated benchmark settings: :func:`sensitivity`
      re-fits under alternatives. With ``max(4 * concurrency, 32)`` prompts per TPOT run instead of
      256 the predicted speedups rise to 1.96-2.30 (+39-46 %); with fixed output lengths
      (``range_ratio=1``) they fall to 1.25-1.26 (-7 to -24 %); acceptance 3.22 instead of 3.175 gives
      -13 % at OSL 4096. The 10 % agreement holds for the default assumptions, not for every
      reading of the PR.
    * The concurrency-256 TPOT rows run at 128 (the cap), and the model gives them the c=128 value;
      the seed's are 5 % (FlashInfer) and 8 % (Triton) lower than its c=128 rows.
    """
    from .seed import load_seed

    a = assumptions or SeedAssumptions()
    df = load_seed() if seed_df is None else seed_df
    _check_seed_df(df)
    fit = fit_to_seed(df, a, sm)
    sm = fit.model
    roles = seed_roles(df)
    rows = []
    pred_val: dict = {}
    for i, row in df[roles != "unused"].iterrows():
        params = fit.fixed if row["table"] == "tpot_concurrency_fixed" else fit.before
        run = fit.runs.get(i) or _seed_run(sm, row, a, _kernel_for(row, a))
        if row["metric"] == "output_throughput":
            pred, x_name, x, unit = run.throughput(params), "osl", int(row["osl"]), "tok/s"
        else:
            pred, x_name, x, unit = run.tpot_ms(params), "concurrency", int(row["concurrency"]), "ms"
        pred_val[(row["table"], row["backend"], bool(row["mtp"]), x)] = (pred, float(row["value"]))
        rows.append({"metric": str(row["metric"]), "predicted": pred, "reported": float(row["value"]),
                     "role": roles[i], "table": row["table"], "backend": row["backend"], "mtp": bool(row["mtp"]),
                     "x_name": x_name, "x": x, "kernel_state": row["kernel_state"], "unit": unit})
    # derived held-out metrics: MTP speedup, backend ratios
    for (tab, be, mtp, x), (p, r) in list(pred_val.items()):
        if tab == "osl_sweep" and be == "flashinfer" and mtp and (tab, be, False, x) in pred_val:
            p0, r0 = pred_val[(tab, be, False, x)]
            rows.append({"metric": "mtp_speedup", "predicted": p / p0, "reported": r / r0, "role": "heldout",
                         "table": tab, "backend": be, "mtp": True, "x_name": "osl", "x": x, "kernel_state": pd.NA,
                         "unit": "ratio (MTP / no-MTP throughput)"})
        if tab == "osl_sweep" and be == "flashinfer" and mtp and (tab, "triton", True, x) in pred_val:
            p1, r1 = pred_val[(tab, "triton", True, x)]
            rows.append({"metric": "throughput_ratio_flashinfer_over_triton", "predicted": p / p1, "reported": r / r1,
                         "role": "heldout", "table": tab, "backend": "flashinfer/triton", "mtp": True, "x_name": "osl",
                         "x": x, "kernel_state": pd.NA, "unit": "ratio"})
        if tab.startswith("tpot") and be == "triton" and (tab, "flashinfer", mtp, x) in pred_val:
            p1, r1 = pred_val[(tab, "flashinfer", mtp, x)]
            rows.append({"metric": "tpot_ratio_triton_over_flashinfer", "predicted": p / p1, "reported": r / r1,
                         "role": "heldout", "table": tab, "backend": "triton/flashinfer", "mtp": mtp,
                         "x_name": "concurrency", "x": x,
                         "kernel_state": "fixed" if tab.endswith("fixed") else "before_fix", "unit": "ratio"})
    out = pd.DataFrame(rows)
    out["rel_error"] = (out["predicted"] - out["reported"]) / out["reported"]
    out["status"] = "projected vs reported (seed, GB200)"
    out = out[["metric", "predicted", "reported", "rel_error", "role", "table", "backend", "mtp", "x_name", "x",
               "kernel_state", "unit", "status"]]
    out.attrs["params"] = {"before_fix": fit.before.as_dict(), "fixed": fit.fixed.as_dict()}
    out.attrs["assumptions"] = asdict(a)
    out.attrs["gpu"] = sm.gpu.as_dict()
    return out


def sensitivity(variants: dict[str, SeedAssumptions] | None = None) -> pd.DataFrame:
    """Held-out MTP-speedup errors under alternative assumptions (each variant re-fits the model).

    Returns one row per variant and OSL: ``variant, osl, predicted, reported, rel_error``.
    """
    base = SeedAssumptions()
    variants = variants or {
        "default": base,
        "accept_len 3.13": replace(base, accept_len=3.13),
        "accept_len 3.22": replace(base, accept_len=3.22),
        "length draw seed 1": replace(base, length_seed=1),
        "TPOT runs: max(4 x concurrency, 32) prompts": replace(base, tpot_num_prompts=None),
        "fixed output lengths (range_ratio 1)": replace(base, range_ratio=1.0),
    }
    rows = []
    for name, a in variants.items():
        v = validate_against_seed(assumptions=a)
        s = v[v["metric"] == "mtp_speedup"]
        for _, r in s.iterrows():
            rows.append({"variant": name, "osl": r["x"], "predicted": r["predicted"], "reported": r["reported"],
                         "rel_error": r["rel_error"]})
    return pd.DataFrame(rows)


def seed_model(kernel_state: Literal["before_fix", "fixed"] = "fixed", assumptions: SeedAssumptions | None = None,
               gpu: GPUSpec | str | None = None, model: ServedModel | None = None,
               gdn_rows: pd.DataFrame | None = None) -> StepModel:
    """A :class:`StepModel` with the parameters fitted on the seed (:func:`fit_to_seed`).

    ``kernel_state`` picks the software state: ``"before_fix"`` (the OSL sweep and first TPOT table)
    or ``"fixed"`` (the TPOT table with flashinfer#3147 and the slice fix). ``gpu`` / ``model``
    re-target the fitted model (e.g. ``gpu="H100-SXM"`` for an SM90 projection): the fitted per-event
    costs were fitted on GB200 and are carried over unchanged — a projection, labelled as such.
    ``gdn_rows`` (a sweep frame, e.g. ``traces/h100/sweep.parquet``; see :class:`MeasuredGDN`) replaces
    the GDN bandwidth model by measured kernel times: pass them with the ``gpu`` they were measured
    on. Only the backends in the rows can then be asked for (no ``flashinfer_pre3147``).
    """
    if kernel_state not in ("before_fix", "fixed"):
        raise ValueError(f"kernel_state must be 'before_fix' or 'fixed', got {kernel_state!r}")
    fit = _cached_fit(assumptions or SeedAssumptions())
    params = fit.before if kernel_state == "before_fix" else fit.fixed
    if gpu is None and model is None and gdn_rows is None:
        return fit.model.with_params(params)
    return StepModel(gpu or fit.model.gpu, model or fit.model.model, fit.model.roofline, params, gdn_rows=gdn_rows)


@lru_cache(maxsize=8)
def _cached_fit(a: SeedAssumptions) -> SeedFit:
    return fit_to_seed(None, a)
