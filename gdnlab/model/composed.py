"""One engine step of the whole served model composed from measured components.

:class:`ComposedStep` builds the step of a hybrid GDN + full-attention + MoE model on one GPU from
:class:`~gdnlab.model.measured.ComponentTimes` (measured on this GPU, or projected to another):

* the slice recipe gives each layer kind's ops (3 GDN + 1 attention layers, each with its MoE
  block, in the measured slice); a full step runs ``num_gdn`` GDN layers, ``num_attn`` attention
  layers and ``num_layers`` MoE blocks of them, then the lm_head;
* an MTP/NEXTN step (topk 1, ``num_steps = T - 1`` draft steps) is the target verify over ``B x T``
  tokens, the GDN commit per GDN layer, ``num_steps - 1`` draft decodes of ``B`` tokens and one draft
  extend (``mtp_draft`` at ``B x T`` rows) with an lm_head over ``B`` tokens each;
* the TP all-reduce (two per layer) is **projected** (:func:`gdnlab.components.allreduce_us`);
* one CUDA-graph replay cost (``overhead_us``, measured) per forward;
* the **fitted** part (:class:`Overheads`, two named numbers): ``component_scale``, the engine's
  GPU time over the composed time (the engine's fused kernels vs gdnlab's unfused synthetic ops:
  < 1 when the engine is faster) and ``request_us``, host time per running request per engine
  iteration (scheduling, sampling, output processing). A prefill pass is the composed forward over
  its prompt tokens (decode-mode components at ``B`` = tokens) with the same two numbers.

So ``t_step = component_scale * sum(parts) + request_us * B``; every part keeps its share under the
scale, and doubling a part moves the step by that part's share.

GDN kernel times come from the components (``gdn.recurrent``, ``gdn.commit``), or from a kernel
sweep (:class:`~gdnlab.model.gdn_sweep.SweepGDN`) when one is given: that is how other backends,
strategies, ``T`` and state dtypes enter. ``gdn_scale`` multiplies every GDN kernel (a what-if:
doubling it moves the step by the GDN kernels' share).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from ..components.allreduce import DEFAULT_BUSBW_GBPS, DEFAULT_LATENCY_US, allreduce_us
from ..errors import InputError
from ..provenance import label
from ..strategies.registry import BASELINE
from .gdn_sweep import SweepGDN
from .measured import ComponentTimes
from .mtp import MTPConfig
from .served import ServedModel

__all__ = ["Overheads", "ComposedStep", "OVERHEAD_NAMES", "PARTS"]

#: names of the fitted numbers, in feature-vector order
OVERHEAD_NAMES = ("component_scale", "request_us")
#: step parts, in display order
PARTS = ("gdn_kernel", "gdn_other", "attention", "attn_other", "moe", "lm_head", "draft", "allreduce", "graph",
         "host")
#: NVLink per-direction bandwidth (GB/s) used for the projected all-reduce (NVIDIA datasheets)
_BUSBW = {"H100-SXM": 450.0, "H200": 450.0, "B200": 900.0, "GB200": 900.0}


@dataclass(frozen=True)
class Overheads:
    """The fitted part of a step (:data:`OVERHEAD_NAMES`).

    Attributes:
        component_scale: engine GPU time / composed component time (>= 0; 1 = as measured).
        request_us: host time per running request per iteration (µs >= 0).
        source: how the numbers were obtained.
    """

    component_scale: float = 1.0
    request_us: float = 0.0
    source: str = "not fitted (scale 1, 0 µs per request)"

    def __post_init__(self) -> None:
        for f in OVERHEAD_NAMES:
            v = getattr(self, f)
            if isinstance(v, bool) or not (isinstance(v, (int, float, np.floating)) and math.isfinite(v) and v >= 0):
                raise InputError(f"Overheads.{f} must be a finite number >= 0, got {v!r}")

    def vector(self) -> np.ndarray:
        return np.array([self.component_scale, self.request_us], dtype=float)

    def short(self) -> str:
        return f"component_scale={self.component_scale:.4g}, request_us={self.request_us:.4g}"


class ComposedStep:
    """Step time (µs) of the served model from measured components.

    Args:
        times: component op times (:func:`gdnlab.model.load_components`, maybe ``.projected(gpu)``).
        model: served model (layer counts, hidden size, TP degree); default the seed's.
        overheads: the fitted part (:class:`Overheads`).
        gdn: kernel sweep for the GDN kernels (other backends / strategies / T / state dtypes);
            without it the components' ``gdn.recurrent`` / ``gdn.commit`` are used for every backend.
        state_dtype: GDN state dtype when ``gdn`` is given (default: the model's).
        gdn_scale: multiplies every GDN kernel time (what-if).
        allreduce_latency_us, busbw_gbps: projected TP all-reduce (defaults:
            :mod:`gdnlab.components.allreduce`; NVLink 5 900 GB/s on Blackwell).

    A :class:`ComposedStep` is a :class:`gdnlab.model.serving.LinearStep` (:meth:`iteration_cost`,
    :meth:`prefill_cost`): :func:`gdnlab.model.serving.simulate_serving` replays it.
    """

    #: SGLang ``--chunked-prefill-size`` of the seed's server command
    chunked_prefill_tokens = 2048

    def __init__(self, times: ComponentTimes, model: ServedModel | None = None, overheads: Overheads | None = None,
                 *, gdn: SweepGDN | None = None, state_dtype=None, gdn_scale: float = 1.0,
                 allreduce_latency_us: float = DEFAULT_LATENCY_US, busbw_gbps: float | None = None) -> None:
        if not isinstance(times, ComponentTimes):
            raise InputError(f"times must be a ComponentTimes, got {type(times).__name__}")
        self.times = times
        self.model = model or ServedModel()
        self.params = overheads or Overheads()
        self.gdn = gdn
        self.state_dtype = state_dtype if state_dtype is not None else self.model.gdn.state_dtype
        if not gdn_scale >= 0:
            raise InputError(f"gdn_scale must be >= 0, got {gdn_scale!r}")
        self.gdn_scale = float(gdn_scale)
        self.allreduce_latency_us = float(allreduce_latency_us)
        self.busbw_gbps = float(busbw_gbps or _BUSBW.get(times.gpu.name, DEFAULT_BUSBW_GBPS))
        rec = times.recipe("decode")
        self._n_gdn_slice = rec.get("gdn.norm", 0)
        self._n_attn_slice = rec.get("attn.norm", 0)
        self._n_moe_slice = rec.get("moe.norm", 0)
        if not (self._n_gdn_slice and self._n_attn_slice and self._n_moe_slice):
            raise InputError("the decode recipe needs gdn.*, attn.* and moe.* ops (a slice with both layer kinds)")
        self.kv_knots = tuple(sorted({float(k) for k in times.rows["kv_len"].dropna().unique()})) or (1024.0,)
        self._iter = lru_cache(maxsize=65536)(self._iteration_parts)

    # ------------------------------------------------------------------ variants
    def with_params(self, params: Overheads) -> ComposedStep:
        new = object.__new__(ComposedStep)
        new.__dict__.update(self.__dict__)
        new.params = params
        return new

    def with_gdn_scale(self, scale: float) -> ComposedStep:
        """The same step with every GDN kernel time times ``scale``."""
        new = ComposedStep(self.times, self.model, self.params, gdn=self.gdn, state_dtype=self.state_dtype,
                           gdn_scale=scale, allreduce_latency_us=self.allreduce_latency_us,
                           busbw_gbps=self.busbw_gbps)
        return new

    @property
    def gpu(self):
        return self.times.gpu

    def check_backend(self, backend: str) -> None:
        if self.gdn is not None and backend not in self.gdn.backends():
            raise InputError(f"backend {backend!r} has no GDN sweep rows; have {self.gdn.backends()}")

    def provenance(self, **extra: object) -> str:
        gdn = self.gdn.source if self.gdn is not None else "gdn.recurrent / gdn.commit components"
        return label({"gpu": self.gpu.name}, self.times.status, components=self.times.source, gdn=gdn,
                     allreduce=f"projected ({self.allreduce_latency_us:g} µs + bytes / {self.busbw_gbps:g} GB/s bus)",
                     fitted=self.params.short(), params=self.params.source, **extra)

    # ------------------------------------------------------------------ layers
    def _per_layer(self, mode: str, prefix: str) -> dict[str, float]:
        rec = self.times.recipe(mode)
        n = {"gdn": self._n_gdn_slice, "attn": self._n_attn_slice, "moe": self._n_moe_slice}[prefix]
        return {c: k / n for c, k in rec.items() if c.startswith(prefix + ".")}

    def _ops(self, mode: str, prefix: str, batch: float, T: int | None, kv: float,
             skip: tuple[str, ...] = ()) -> float:
        tot = 0.0
        for c, k in self._per_layer(mode, prefix).items():
            if c in skip:
                continue
            tot += k * self.times.net_us(c, mode, batch, T=T, kv_len=kv)
        return tot

    def gdn_kernel_us(self, backend: str, batch: float, T: int = 1, strategy: str = BASELINE) -> float:
        """GDN kernel time per GDN layer (µs): decode call (``T == 1``) or verify + commit; a sweep's
        times lose the share of the graph replay cost they hold (:meth:`SweepGDN.decode_us`)."""
        if T == 1:
            if self.gdn is not None:
                return self.gdn_scale * self.gdn.decode_us(backend, batch, self.state_dtype,
                                                           overhead_us=self.times.overhead_us)
            return self.gdn_scale * self.times.net_us("gdn.recurrent", "decode", batch)
        commit = None
        if self.gdn is not None:
            v, with_commit = self.gdn.verify_us(backend, strategy, batch, T, self.state_dtype,
                                                overhead_us=self.times.overhead_us)
            if with_commit:
                return self.gdn_scale * v
        else:
            v = self.times.net_us("gdn.recurrent", "mtp", batch, T=T, strategy=self._strategy(strategy))
        commit = self.times.net_us("gdn.commit", "mtp", batch, T=T, strategy=self._strategy(strategy))
        return self.gdn_scale * (v + commit)

    def _strategy(self, strategy: str) -> str | None:
        have = self.times.strategies()
        return strategy if strategy in have else (have[0] if have else None)

    def _allreduce(self, tokens: float, layers: int) -> float:
        msg = tokens * self.model.hidden_size * 2.0
        return 2 * layers * allreduce_us(msg, self.model.tp, busbw_gbps=self.busbw_gbps,
                                         latency_us=self.allreduce_latency_us)

    def forward_parts(self, backend: str, batch: float, kv: float, T: int = 1, strategy: str = BASELINE
                      ) -> dict[str, float]:
        """Parts (µs) of one target forward: decode (``T == 1``) or MTP verify of ``T`` tokens per row."""
        m = self.model
        mode = "decode" if T == 1 else "mtp"
        Tm = None if T == 1 else T
        n_gdn, n_attn = m.gdn.num_gdn_layers, m.num_full_attn_layers
        return {
            "gdn_kernel": n_gdn * self.gdn_kernel_us(backend, batch, T, strategy),
            "gdn_other": n_gdn * self._ops(mode, "gdn", batch, Tm, kv, skip=("gdn.recurrent", "gdn.commit")),
            "attention": n_attn * self.times.net_us("attn.attention", mode, batch, T=Tm, kv_len=kv),
            "attn_other": n_attn * self._ops(mode, "attn", batch, Tm, kv, skip=("attn.attention",)),
            "moe": m.num_layers * self._ops(mode, "moe", batch, Tm, kv),
            "lm_head": sum(self.times.net_us(c, mode, batch, T=Tm) for c in ("lm_head.norm", "lm_head.gemm")),
            "allreduce": self._allreduce(batch * T, m.num_layers),
            "graph": self.times.overhead_us,
        }

    def draft_us(self, batch: float, kv: float, T: int) -> float:
        """MTP draft work of one step (µs): ``T - 2`` draft decodes of ``B`` tokens and one draft extend
        of ``B x T`` rows, each with an lm_head over ``B`` tokens, a graph replay and its all-reduces."""
        steps = max(T - 1, 1)
        lm = sum(self.times.net_us(c, "decode", batch) for c in ("lm_head.norm", "lm_head.gemm"))
        one = self.times.net_us("mtp_draft", "mtp", batch, kv_len=kv) + lm + self.times.overhead_us \
            + self._allreduce(batch, self.model.mtp_layers)
        ext = self.times.net_us("mtp_draft", "mtp", batch * T, kv_len=kv) + lm + self.times.overhead_us \
            + self._allreduce(batch * T, self.model.mtp_layers)
        return (steps - 1) * one + ext

    # ------------------------------------------------------------------ iterations
    def _iteration_parts(self, backend: str, batch: float, kv: float, T: int, strategy: str) -> tuple:
        parts = self.forward_parts(backend, batch, kv, T, strategy)
        parts["draft"] = self.draft_us(batch, kv, T) if T > 1 else 0.0
        return tuple(parts.items())

    def features(self, backend: str, batch: float, ctx_tokens: float, mtp: MTPConfig | None = None,
                 strategy: str = BASELINE) -> np.ndarray:
        """One engine iteration with ``batch`` running requests whose contexts sum to ``ctx_tokens``:
        features ``[composed µs, batch]`` (float64 ``[2]``); time = ``features @ params.vector()``
        (:meth:`parts` gives the composed parts)."""
        parts = self.parts(backend, batch, ctx_tokens, mtp, strategy)
        return np.array([sum(parts.values()), float(batch)])

    def parts(self, backend: str, batch: float, ctx_tokens: float, mtp: MTPConfig | None = None,
              strategy: str = BASELINE) -> dict[str, float]:
        """Composed parts (µs, before ``component_scale``) of one iteration."""
        T = 1 if mtp is None else int(mtp.draft_tokens)
        kv = ctx_tokens / batch + T if batch > 0 else 0.0
        return dict(self._iter(backend, float(batch), float(kv), T, strategy))

    def prefill_features(self, backend: str, requests: float, tokens: float, mtp: MTPConfig | None = None
                         ) -> np.ndarray:
        """One prefill pass of ``requests`` new requests with ``tokens`` prompt tokens: features
        ``[composed forward over the tokens (µs), requests]`` (no constant part)."""
        kv = max(tokens / max(requests, 1.0), 1.0)
        fwd = dict(self._iter(backend, float(tokens), float(kv), 1, BASELINE))
        fwd.pop("draft", None)
        total = sum(fwd.values())
        if mtp is not None:
            total += self.times.net_us("mtp_draft", "mtp", float(tokens), kv_len=kv)
        return np.array([total, float(requests)])

    # ------------------------------------------------------------------ serving simulation
    def iteration_cost(self, backend: str, batch: float, ctx_tokens: float,
                       mtp: MTPConfig | None = None) -> tuple[float, np.ndarray]:
        """``(0 µs, features)`` for :func:`gdnlab.model.serving.simulate_serving`: every part of the step
        is scaled or fitted (:class:`Overheads`), none is fixed."""
        return 0.0, self.features(backend, batch, ctx_tokens, mtp)

    def prefill_cost(self, backend: str, requests: float, tokens: float,
                     mtp: MTPConfig | None = None) -> tuple[float, np.ndarray]:
        """``(0 µs, features)`` of a prefill pass (:meth:`prefill_features`) for the serving simulation."""
        return 0.0, self.prefill_features(backend, requests, tokens, mtp)

    # ------------------------------------------------------------------ steady state
    def _check(self, batch, ctx_per_request) -> None:
        if isinstance(batch, bool) or not isinstance(batch, (int, float, np.integer, np.floating)) or not batch > 0:
            raise InputError(f"batch (running requests) must be > 0, got {batch!r}")
        if not ctx_per_request >= 0:
            raise InputError(f"ctx_per_request must be >= 0 tokens, got {ctx_per_request!r}")

    def step_us(self, backend: str, batch: float, ctx_per_request: float, mtp: MTPConfig | None = None,
                strategy: str = BASELINE) -> float:
        """Time (µs) of one iteration with ``batch`` requests of ``ctx_per_request`` context tokens each."""
        self._check(batch, ctx_per_request)
        f = self.features(backend, float(batch), float(batch) * ctx_per_request, mtp, strategy)
        return float(f @ self.params.vector())

    def breakdown(self, backend: str, batch: float, ctx_per_request: float, mtp: MTPConfig | None = None,
                  strategy: str = BASELINE) -> pd.DataFrame:
        """``part, time_us, share, provenance`` of one iteration (:data:`PARTS`; composed parts times
        ``component_scale``; ``host`` = ``request_us * batch``, fitted)."""
        self._check(batch, ctx_per_request)
        raw = self.parts(backend, float(batch), float(batch) * ctx_per_request, mtp, strategy)
        parts = {k: v * self.params.component_scale for k, v in raw.items()}
        parts["host"] = self.params.request_us * float(batch)
        df = pd.DataFrame({"part": list(parts), "time_us": list(parts.values())})
        df["share"] = df["time_us"] / df["time_us"].sum()
        df["provenance"] = df["part"].map(lambda p: "fitted" if p == "host" else
                                          "projected" if p == "allreduce" else self.times.status)
        df["backend"], df["batch"], df["ctx_per_request"] = backend, batch, ctx_per_request
        df["mtp"], df["gpu"] = mtp is not None, self.gpu.name
        return df

    def gdn_share(self, backend: str, batch: float, ctx_per_request: float, mtp: MTPConfig | None = None,
                  strategy: str = BASELINE) -> float:
        """Fraction of an iteration in GDN kernels (decode or verify + commit)."""
        b = self.breakdown(backend, batch, ctx_per_request, mtp, strategy)
        return float(b.loc[b["part"] == "gdn_kernel", "time_us"].sum() / b["time_us"].sum())

    def tpot_ms(self, backend: str, batch: float, ctx_per_request: float, mtp: MTPConfig | None = None,
                strategy: str = BASELINE) -> float:
        """Steady-state decode TPOT (ms/token): step time / accept length."""
        a = mtp.accept_len if mtp is not None else 1.0
        return self.step_us(backend, batch, ctx_per_request, mtp, strategy) / a / 1e3

    def throughput(self, backend: str, batch: float, ctx_per_request: float, mtp: MTPConfig | None = None,
                   strategy: str = BASELINE) -> float:
        """Steady-state output throughput (tok/s) of ``batch`` running requests."""
        a = mtp.accept_len if mtp is not None else 1.0
        return batch * a / self.step_us(backend, batch, ctx_per_request, mtp, strategy) * 1e6

    def speedup(self, backend: str, batch: float, ctx_per_request: float, accept_len: float, T: int,
                strategy: str = BASELINE) -> float:
        """``accept_len * t_decode / t_mtp_step`` (steady state)."""
        mtp = _mtp(T, accept_len)
        return float(accept_len) * self.step_us(backend, batch, ctx_per_request) \
            / self.step_us(backend, batch, ctx_per_request, mtp, strategy)

    def break_even_accept_len(self, backend: str, batch: float, ctx_per_request: float, T: int,
                              strategy: str = BASELINE) -> float:
        """Accept length below which speculation stops paying, ``t_mtp_step / t_decode`` (> T: never
        pays). ``T`` must be >= 2 (``T = 1`` verifies no draft)."""
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 2:
            raise InputError(f"T (draft tokens) must be an integer >= 2 for a break-even accept length, got {T!r}")
        mtp = _mtp(T, 1.0)
        return self.step_us(backend, batch, ctx_per_request, mtp, strategy) / self.step_us(backend, batch,
                                                                                            ctx_per_request)


def _mtp(T, accept_len) -> MTPConfig:
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise InputError(f"T (draft tokens) must be a positive integer, got {T!r}")
    try:
        a = float(accept_len)
    except (TypeError, ValueError):
        raise InputError(f"accept_len must be a number in [1, T={T}], got {accept_len!r}") from None
    if not 1.0 <= a <= T:
        raise InputError(f"accept_len must lie in [1, T={T}], got {accept_len!r}")
    return MTPConfig(draft_tokens=int(T), acceptance=a)
