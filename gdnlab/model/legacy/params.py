"""Documented and fitted parameters of the roofline step model.

* :class:`RooflineParams` — efficiencies and latencies taken from documentation (not fitted);
  :data:`NVLINK_GBPS` / :data:`PEAK_DENSE_TFLOPS` — datasheet numbers per GPU.
* :class:`FittedParams` — the per-event costs the roofline does not see (fitted on the seed by
  :func:`gdnlab.model.legacy.fit_to_seed`, or set by hand); :data:`FEATURES` is their vector order.

The speculative setup (:class:`~gdnlab.model.mtp.MTPConfig`) is shared with the component model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .._args import nonneg

__all__ = ["NVLINK_GBPS", "PEAK_DENSE_TFLOPS", "RooflineParams", "FEATURES", "FittedParams"]

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
            object.__setattr__(self, f, nonneg(f"FittedParams.{f}", getattr(self, f)))

    def vector(self) -> np.ndarray:
        """float64 ``[len(FEATURES)]`` in :data:`FEATURES` order (µs)."""
        return np.array([getattr(self, f) for f in FEATURES], dtype=float)

    @classmethod
    def from_vector(cls, v, **kw) -> FittedParams:
        return cls(**{f: float(x) for f, x in zip(FEATURES, v)}, **kw)

    def as_dict(self) -> dict:
        return asdict(self)

    def short(self) -> str:
        """Compact text for figure footnotes."""
        return ", ".join(f"{f}={getattr(self, f):.4g}" for f in FEATURES)
