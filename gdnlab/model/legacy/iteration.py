"""The roofline step model: time of one engine iteration of a hybrid (GDN + full-attention + MoE)
model on one GPU, from documented numbers plus five per-event costs fitted on the seed.

One iteration (per GPU; all TP ranks run in lock-step): plain decode with ``batch`` running
requests is one target forward of ``batch`` tokens. An MTP/NEXTN step (topk 1) is ``num_steps``
draft forwards of the one-layer MTP module (``num_steps - 1`` draft decodes of ``batch`` tokens and
one draft extend of ``batch * T`` tokens, as SGLang's EAGLE worker runs them), one target *verify*
forward of ``batch * T`` tokens, and the commit (scatter) of the kept GDN state. Its time is

``t = roofline(documented parameters) + theta . features``

* **roofline** (µs) from documented numbers (:class:`~gdnlab.model.served.ServedModel`,
  :class:`~gdnlab.model.legacy.params.RooflineParams`, :mod:`gdnlab.model.legacy.gdn_costs`,
  :mod:`gdnlab.hardware`):

  - GDN layers: per layer ``launch + gdn_bytes(...).total / (eff * HBM peak)`` with
    :func:`gdnlab.roofline.gdn_bytes` (decode: state read + write; verify: state read + T
    intermediate writes; commit: one read + one write of the kept state, one launch for all
    layers), or log-log interpolation of measured sweep rows
    (:class:`~gdnlab.model.legacy.gdn_costs.MeasuredGDN`);
  - full-attention layers: KV-cache bytes (context = ISL + tokens generated so far) / (eff * HBM),
    read once per forward (a T-token verify reads the cache once);
  - weights: dense + lm_head + the experts the forward's ``m`` tokens touch (uniform top-k routing:
    an expert is touched with probability ``1 - (1 - k/E)^m``) / (eff * HBM), or the GEMM compute
    time when longer;
  - TP all-reduce: two per layer, ``latency + 2 (tp-1)/tp * bytes / NVLink``.

* **theta** (fitted, all >= 0, :class:`~gdnlab.model.legacy.params.FittedParams`): what the roofline does
  not see — per forward pass (kernel-chain and all-reduce latency, graph replay, sync; a draft pass
  counts ``draft_weight`` = 2/61 of a 60-layer target pass), per running request per iteration
  (host: scheduling, sampling, output processing), per token of a forward (MoE dispatch,
  activations, kernels far from their roofline; draft tokens count ``draft_weight``), per million
  KV-cache token-layer reads (attention slower than its roofline) and per prefill pass (the extend
  of new requests runs outside CUDA graphs).

Everything computed here is a **projection** (``status = "projected"``).
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd

from ...hardware import GPUSpec, spec_for
from ...provenance import label
from ...roofline import gdn_bytes
from ...seed import SEED_FLASHINFER
from .._args import nonneg, pos_int
from ..mtp import MTPConfig
from ..served import ServedModel
from .gdn_costs import GDN_KERNELS, GDNKernel, MeasuredGDN
from .params import FEATURES, NVLINK_GBPS, PEAK_DENSE_TFLOPS, FittedParams, RooflineParams

__all__ = ["StepModel"]


class StepModel:
    """Time of one engine iteration (µs) on one GPU: roofline parts plus fitted parts.

    Args:
        gpu: a :class:`gdnlab.hardware.GPUSpec` or a name for :func:`gdnlab.hardware.spec_for`
            (default ``"GB200"``, the seed's GPU; ``"H100-SXM"`` etc. project SM90).
        model: the served model (:class:`ServedModel`).
        roofline: documented efficiencies (:class:`RooflineParams`).
        params: fitted per-event costs (:class:`FittedParams`); see :func:`gdnlab.model.legacy.seed_model`.
        gdn_rows: measured GDN sweep rows (:class:`MeasuredGDN`); without them GDN kernel time comes
            from the bandwidth model of ``kernels``.
        kernels: backend name -> :class:`GDNKernel` (default :data:`~gdnlab.model.legacy.gdn_costs.GDN_KERNELS`).

    ``batch`` below is the number of running requests (B); ``T`` the draft tokens (verify
    positions); ``mtp`` an :class:`MTPConfig` or None for plain decode. A :class:`StepModel` is a
    :class:`gdnlab.model.serving.LinearStep`: :func:`gdnlab.model.simulate_serving` replays it.
    """

    #: iterations are linear in the context: the serving simulation evaluates them at two sizes
    kv_knots = None

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
    def chunked_prefill_tokens(self) -> int:
        """SGLang ``--chunked-prefill-size`` (:attr:`RooflineParams.chunked_prefill_tokens`)."""
        return self.roofline.chunked_prefill_tokens

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

    def provenance(self, **extra: object) -> str:
        """Footnote text: ``projected · <GPU> <HBM GB/s> (<sm>) · model ... · fitted ... · params <source> ·
        gdn <source>`` then ``extra`` as ``key value``; ``gdn`` names the measured sweep when the model
        uses one (:class:`MeasuredGDN`), else the bandwidth model."""
        prov = {"gpu": f"{self.gpu.name} {self.gpu.peak_hbm_gbps:g} GB/s", "sm": self.gpu.sm}
        gdn = self.measured.source if self.measured is not None else \
            "bandwidth model (gdnlab.model.legacy.GDN_KERNELS)"
        return label(prov, "projected", model=self.model.describe(), fitted=self.params.short(),
                     params=self.params.source, gdn=gdn, **extra)

    # ---------------------------------------------------------------- GDN
    def gdn_call_us(self, backend: str, mode: Literal["decode", "verify"], batch: float, T: int = 1) -> float:
        """One GDN layer call (µs) for ``batch`` requests (>= 0; 0 -> 0.0, no call) and ``T`` tokens each."""
        batch = nonneg("batch", batch)
        T = pos_int("T (draft tokens)", T)
        if mode not in ("decode", "verify"):
            raise ValueError(f"mode must be 'decode' or 'verify', got {mode!r}")
        if batch == 0:
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
        if nonneg("batch", batch) == 0:
            return 0.0
        shape = self.model.gdn
        bytes_ = 2.0 * batch * shape.state_bytes() * shape.num_gdn_layers
        return 3.0 + bytes_ / (GDN_KERNELS[SEED_FLASHINFER].decode_eff * self.hbm_bps) * 1e6

    def gdn_prefill_us(self, requests: float, tokens: float) -> float:
        """GDN layers of a prefill pass (µs): q/k/v read plus one state write per new request per
        layer, at half of HBM peak (chunked kernels, assumption)."""
        nonneg("tokens", tokens)
        if nonneg("requests", requests) == 0:
            return 0.0
        s = self.model.gdn
        bytes_ = requests * s.state_bytes() + tokens * (2 * s.H * s.K + 2 * s.HV * s.V) * 2
        return s.num_gdn_layers * (3.0 + bytes_ / (0.5 * self.hbm_bps) * 1e6)

    # ---------------------------------------------------------------- other parts
    def attention_us(self, ctx_tokens: float, layers: int, batch: float) -> float:
        """Full-attention layers of one forward (µs): KV read of ``ctx_tokens`` (summed over requests)."""
        nonneg("ctx_tokens", ctx_tokens)
        if nonneg("batch", batch) == 0 or layers <= 0:
            return 0.0
        bytes_ = ctx_tokens * self.model.kv_bytes_per_token_layer
        return layers * (self.roofline.attn_launch_us + bytes_ / (self.roofline.attn_eff * self.hbm_bps) * 1e6)

    def weights_us(self, tokens: float, *, draft: bool = False) -> float:
        """Weight streaming or GEMM compute of one forward over ``tokens`` tokens (µs), whichever is longer."""
        if nonneg("tokens", tokens) == 0:
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
        if tp == 1 or nonneg("tokens", tokens) == 0:
            return 0.0
        bw = NVLINK_GBPS.get(self.gpu.name, 450.0) * 1e9
        one = self.roofline.allreduce_latency_us \
            + 2.0 * (tp - 1) / tp * tokens * self.model.hidden_size * 2.0 / bw * 1e6
        return 2 * layers * one

    # ---------------------------------------------------------------- forwards
    def target_forward(self, backend: str, batch: float, T: int, ctx_tokens: float, *, verify: bool) -> dict:
        """Roofline parts (µs) of one target forward over ``batch`` requests x ``T`` tokens."""
        m = self.model
        gdn = m.gdn.num_gdn_layers * self.gdn_call_us(backend, "verify" if verify else "decode", batch, T)
        return {"gdn": gdn, "gdn_commit": self.gdn_commit_us(batch) if verify else 0.0,
                "attention": self.attention_us(ctx_tokens + batch * T, m.num_full_attn_layers, batch),
                "weights": self.weights_us(batch * T), "allreduce": self.allreduce_us(batch * T, m.num_layers)}

    def draft_forward_us(self, batch: float, tokens: float, ctx_tokens: float) -> float:
        """Roofline time (µs) of one draft (MTP module) forward."""
        m = self.model
        return self.weights_us(tokens, draft=True) + self.attention_us(ctx_tokens + tokens, m.mtp_layers, batch) \
            + self.allreduce_us(tokens, m.mtp_layers)

    def iteration(self, backend: str, batch: float, ctx_tokens: float,
                  mtp: MTPConfig | None = None) -> tuple[dict, np.ndarray]:
        """One engine iteration with ``batch`` running requests whose contexts sum to ``ctx_tokens``.

        Returns ``(roofline parts in µs, feature vector)``; time = ``sum(parts) + params.vector() @ features``.
        """
        m, w, n = self.model, self.params.draft_weight, batch
        if mtp is None:
            parts = self.target_forward(backend, n, 1, ctx_tokens, verify=False)
            kv = (ctx_tokens + n) * m.num_full_attn_layers
            return parts, np.array([1.0, n, n, kv / 1e6, 0.0])
        T, s = mtp.draft_tokens, mtp.num_steps
        parts = self.target_forward(backend, n, T, ctx_tokens, verify=True)
        parts["draft"] = (s - 1) * self.draft_forward_us(n, n, ctx_tokens) + self.draft_forward_us(n, n * T, ctx_tokens)
        kv = (ctx_tokens + n * T) * (m.num_full_attn_layers + s * m.mtp_layers)
        return parts, np.array([1.0 + w * s, n, n * T + w * n * (s - 1 + T), kv / 1e6, 0.0])

    def prefill(self, backend: str, requests: float, tokens: float,
                mtp: MTPConfig | None = None) -> tuple[dict, np.ndarray]:
        """One prefill (extend) pass of ``requests`` new requests with ``tokens`` prompt tokens in all
        (with speculation, the draft module extends them too)."""
        m, w = self.model, self.params.draft_weight
        parts = {"weights": self.weights_us(tokens), "gdn": self.gdn_prefill_us(requests, tokens),
                 "attention": self.attention_us(tokens, m.num_full_attn_layers, requests),
                 "allreduce": self.allreduce_us(tokens, m.num_layers)}
        if mtp is not None:
            parts["draft"] = self.draft_forward_us(requests, tokens, 0.0)
        return parts, np.array([0.0, 0.0, tokens * (1.0 + (w if mtp is not None else 0.0)), 0.0, 1.0])

    def iteration_cost(self, backend: str, batch: float, ctx_tokens: float,
                       mtp: MTPConfig | None = None) -> tuple[float, np.ndarray]:
        """:meth:`iteration` as ``(roofline µs, features)`` for the serving simulation."""
        parts, feats = self.iteration(backend, batch, ctx_tokens, mtp)
        return float(sum(parts.values())), feats

    def prefill_cost(self, backend: str, requests: float, tokens: float,
                     mtp: MTPConfig | None = None) -> tuple[float, np.ndarray]:
        """:meth:`prefill` as ``(roofline µs, features)`` for the serving simulation."""
        parts, feats = self.prefill(backend, requests, tokens, mtp)
        return float(sum(parts.values())), feats

    # ---------------------------------------------------------------- steady state
    def _check_point(self, backend: str, batch: float, ctx_per_request: float) -> None:
        self.check_backend(backend)
        try:
            ok = float(batch) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"batch (running requests) must be > 0, got {batch!r}")
        nonneg("ctx_per_request (tokens)", ctx_per_request)

    def step_us(self, backend: str, batch: float, ctx_per_request: float, mtp: MTPConfig | None = None) -> float:
        """Time (µs) of one iteration with ``batch`` requests of ``ctx_per_request`` context tokens each."""
        self._check_point(backend, batch, ctx_per_request)
        parts, feats = self.iteration(backend, float(batch), float(batch) * ctx_per_request, mtp)
        return float(sum(parts.values()) + self.params.vector() @ feats)

    def steady_tpot_ms(self, backend: str, batch: float, ctx_per_request: float,
                       mtp: MTPConfig | None = None) -> float:
        """Decode-only TPOT (ms/token) at a steady batch: step time / tokens per step (no prefill
        interruptions; :func:`gdnlab.model.serving.simulate_serving` adds those)."""
        a = mtp.accept_len if mtp is not None else 1.0
        return self.step_us(backend, batch, ctx_per_request, mtp) / a / 1e3

    def steady_throughput(self, backend: str, batch: float, ctx_per_request: float,
                          mtp: MTPConfig | None = None) -> float:
        """Decode-only output throughput (tok/s) at a steady batch of ``batch`` requests."""
        a = mtp.accept_len if mtp is not None else 1.0
        return batch * a / self.step_us(backend, batch, ctx_per_request, mtp) * 1e6

    def breakdown(self, backend: str, batch: float, ctx_per_request: float,
                  mtp: MTPConfig | None = None) -> pd.DataFrame:
        """Parts of one iteration: ``part, time_us, share`` (roofline parts, then ``fitted:<name>``),
        plus ``backend, batch, ctx_per_request, mtp`` (bool), ``status`` ("projected"), ``gpu``."""
        self._check_point(backend, batch, ctx_per_request)
        parts, feats = self.iteration(backend, float(batch), float(batch) * ctx_per_request, mtp)
        vals = dict(parts)
        for name, th, f in zip(FEATURES, self.params.vector(), feats):
            if th * f:
                vals[f"fitted:{name}"] = th * f
        df = pd.DataFrame({"part": list(vals), "time_us": list(vals.values())})
        df["share"] = df["time_us"] / df["time_us"].sum()
        df["backend"], df["batch"], df["ctx_per_request"] = backend, batch, ctx_per_request
        df["mtp"], df["status"], df["gpu"] = mtp is not None, "projected", self.gpu.name
        return df

    def gdn_share(self, backend: str, batch: float, ctx_per_request: float, mtp: MTPConfig | None = None) -> float:
        """Fraction of an iteration spent in GDN kernels (decode or verify, plus the commit)."""
        b = self.breakdown(backend, batch, ctx_per_request, mtp)
        return float(b.loc[b["part"].isin(["gdn", "gdn_commit"]), "time_us"].sum() / b["time_us"].sum())

    # ---------------------------------------------------------------- speculation economics
    @staticmethod
    def _mtp(T: int, num_steps: int | None, accept_len: float) -> MTPConfig:
        T = pos_int("T (draft tokens)", T)
        try:
            a = float(accept_len)
        except (TypeError, ValueError):
            raise ValueError(f"accept_len must be a number in [1, T={T}], got {accept_len!r}") from None
        if not 1.0 <= a <= T:
            raise ValueError(f"accept_len must lie in [1, T={T}], got {accept_len!r}")
        return MTPConfig(draft_tokens=T, acceptance=a, num_steps=num_steps)

    def speedup(self, backend: str, batch: float, ctx_per_request: float, accept_len: float, T: int,
                num_steps: int | None = None) -> float:
        """Steady-state speedup of speculation, ``accept_len * t_decode / t_mtp_step``
        (``num_steps`` defaults to ``T - 1``, the topk-1 chain)."""
        mtp = self._mtp(T, num_steps, accept_len)
        return float(accept_len) * self.step_us(backend, batch, ctx_per_request) \
            / self.step_us(backend, batch, ctx_per_request, mtp)

    def break_even_accept_len(self, backend: str, batch: float, ctx_per_request: float, T: int,
                              num_steps: int | None = None) -> float:
        """Accept length below which speculation stops paying: ``t_mtp_step / t_decode``.

        A value above ``T`` means speculation cannot pay at that point. ``T`` must be >= 2: with
        ``T = 1`` no draft is verified, the accept length is always 1 and there is no break-even
        (``ValueError``).
        """
        T = pos_int("T (draft tokens)", T)
        if T < 2:
            raise ValueError(f"T (draft tokens) must be >= 2 for a break-even accept length; T={T} verifies "
                             f"no draft (accept length is always 1)")
        mtp = self._mtp(T, num_steps, 1.0)
        return self.step_us(backend, batch, ctx_per_request, mtp) / self.step_us(backend, batch, ctx_per_request)
