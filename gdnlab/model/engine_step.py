"""One serving-engine step of Qwen3.5-397B-A17B on one GPU, composed from engine-grade op times, and
the engine's own cost beyond its kernels.

:class:`EngineStep` prices an engine iteration with ``B`` running requests:

* **kernels** (µs): every op of the step from :class:`~gdnlab.model.step_ops.StepOps` (AIConfigurator's
  measured tables, ``reported``; gdnlab's engine-grade component runs, ``measured``, where they exist)
  except the GDN recurrence, which comes from gdnlab's kernel sweep (:class:`~gdnlab.model.gdn_sweep.SweepGDN`:
  the decode kernel for ``T = 1``; for an MTP step the verify strategy's measured verify + commit at
  ``T`` -- what AIConfigurator cannot price: it prices a verify as ``B x T`` single-token decodes);
* an **MTP step** (topk 1, ``num_steps`` draft forwards) is the target verify over ``B x T`` tokens
  (attention: ``B`` rows over the cached context, read once per request as a verify kernel does; the
  logits of all ``B x T`` tokens), then ``num_steps - 1`` draft decodes of ``B`` tokens and one draft
  extend of ``B x T`` tokens through the MTP layer (one full-attention decoder layer: its ops are one
  fifteenth of the 15 full-attention layers' ops) with an lm_head over ``B`` tokens each;
* a **prefill pass** of ``tokens`` prompt tokens from ``requests`` new requests: every prefill op of
  AIConfigurator's table at ``tokens`` (attention per request, ``requests x attention(tokens /
  requests)``), plus, with MTP, the MTP layer's prefill.

The engine's cost beyond its kernels is two named host numbers (:class:`EngineParams`); the
kernels are not scaled:

* ``pass_us`` -- host time per forward pass the GPU waits for (scheduling the pass, preparing its
  inputs, replaying its CUDA graph, the synchronisations between a verify and the draft passes);
* ``request_us`` -- host time per running request per forward pass (per-request bookkeeping and
  output processing that is not overlapped with the GPU).

so ``t = kernels + pass_us * passes + request_us * requests * passes`` (``passes = 1 + num_steps``
for an MTP step, 1 for a decode step, 1 (+1 with MTP) for a prefill pass). Both are fitted on named
rows, bounded (:data:`PARAM_BOUNDS`) and never on the rows they are checked against
(:mod:`gdnlab.model.calibration`); an :class:`EngineStep` is a
:class:`gdnlab.model.serving.LinearStep` (fixed part: the kernels; features: ``[passes, requests x
passes]``), so :func:`gdnlab.model.serving.simulate_serving` replays it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from ..errors import DataError, InputError
from ..hardware import GPUSpec
from ..provenance import label
from ..shapes import dtype_name
from ..strategies.registry import BASELINE
from .gdn_sweep import SweepGDN
from .mtp import MTPConfig
from .served import ServedModel
from .step_ops import StepOps

__all__ = ["EngineParams", "EngineStep", "STEP_PARTS", "PARAM_NAMES", "PARAM_BOUNDS"]

#: parts of an engine iteration, in display order (``draft``: the MTP draft forwards)
STEP_PARTS = ("gdn_kernel", "gdn_conv", "proj", "attention", "moe", "norm", "allreduce", "lm_head", "draft")
#: names of the fitted numbers, in feature-vector order
PARAM_NAMES = ("pass_us", "request_us")
#: the range a fit must land in (outside it the fit is refused: :meth:`EngineParams.check`): a forward
#: pass's host work is 0..3 ms, a request's 0..300 µs per pass
PARAM_BOUNDS = {"pass_us": (0.0, 3000.0), "request_us": (0.0, 300.0)}


@dataclass(frozen=True)
class EngineParams:
    """The engine's host cost beyond its kernels (:data:`PARAM_NAMES`).

    Attributes:
        pass_us: host time per forward pass (µs).
        request_us: host time per running request per forward pass (µs).
        source: how the numbers were obtained (the rows a fit used, by name).
    """

    pass_us: float = 0.0
    request_us: float = 0.0
    source: str = "not fitted (kernels alone: 0 µs per pass and per request)"

    def __post_init__(self) -> None:
        for f in PARAM_NAMES:
            v = getattr(self, f)
            if isinstance(v, bool) or not (isinstance(v, (int, float, np.floating)) and math.isfinite(v) and v >= 0):
                raise InputError(f"EngineParams.{f} must be a finite number >= 0, got {v!r}")

    def vector(self) -> np.ndarray:
        """float64 ``[2]``: ``[pass_us, request_us]``."""
        return np.array([self.pass_us, self.request_us], dtype=float)

    def short(self) -> str:
        return f"pass_us={self.pass_us:.0f}, request_us={self.request_us:.1f}"

    def check(self) -> EngineParams:
        """``self`` when every number lies in :data:`PARAM_BOUNDS`, else a ``DataError`` naming it."""
        for f, (lo, hi) in PARAM_BOUNDS.items():
            v = getattr(self, f)
            if not lo - 1e-9 <= v <= hi + 1e-9:
                raise DataError(f"fitted {f} = {v:.4g} lies outside its bounds [{lo:g}, {hi:g}] ({self.source}): "
                                f"the fit is refused")
        return self


class EngineStep:
    """Engine iterations of the served model on one GPU (see the module docstring).

    Args:
        ops: op tables of the configuration (:func:`gdnlab.model.step_ops.step_ops_for`).
        gdn: GDN kernel sweep of this GPU (measured, or projected from another GPU); None: the GDN
            recurrence from ``ops`` (AIConfigurator's T=1 decode kernel at ``B x T`` tokens).
        model: the served model (layer counts, TP, MTP layers).
        gpu: the GPU the step stands for.
        params: the engine's cost beyond its kernels.
        state_dtype: GDN state dtype priced from the sweep.
        strategy: verify strategy priced from the sweep (MTP steps).
        chunked_prefill_tokens: the engine's ``--chunked-prefill-size``.
        gdn_hv: value heads per GPU of the sweep's rows (the sweep is read at ``batch x HV / gdn_hv``
            rows: another TP degree scales the GDN work per request); None: the model's own.
    """

    kv_knots = (64.0, 256.0, 1024.0, 4096.0, 16384.0)

    def __init__(self, ops: StepOps, gdn: SweepGDN | None, model: ServedModel, gpu: GPUSpec,
                 params: EngineParams | None = None, *, state_dtype="bfloat16", strategy: str = BASELINE,
                 chunked_prefill_tokens: int = 8192, gdn_hv: int | None = None) -> None:
        self.ops, self.gdn, self.model, self.gpu = ops, gdn, model, gpu
        self.params = params or EngineParams()
        self.state_dtype = dtype_name(state_dtype)
        self.strategy = strategy
        self.chunked_prefill_tokens = int(chunked_prefill_tokens)
        self._hv_scale = model.gdn.HV / gdn_hv if gdn_hv else 1.0
        self.notes: list[str] = []
        self._parts = lru_cache(maxsize=200000)(self._parts_uncached)

    # ------------------------------------------------------------------ variants
    def with_params(self, params: EngineParams) -> EngineStep:
        new = object.__new__(EngineStep)
        new.__dict__.update(self.__dict__)
        new.params = params
        return new

    def check_backend(self, backend: str) -> None:
        if self.gdn is not None and backend not in self.gdn.backends():
            raise InputError(f"backend {backend!r} has no GDN sweep rows; have {self.gdn.backends()}")

    # ------------------------------------------------------------------ GDN
    def gdn_layer_us(self, backend: str, batch: float, T: int) -> tuple[float, str]:
        """``(µs, how)``: one GDN layer's recurrence at ``batch`` requests -- decode (``T = 1``) or the
        strategy's verify + commit; from the sweep at ``batch x HV / HV_sweep`` rows (the per-GPU head
        count scales the work), interpolated in T when the sweep lacks this T."""
        if self.gdn is None:
            n = self.model.gdn.num_gdn_layers
            return self.ops.decode("gdn", "gdn_kernel", batch * T) / n, "AIConfigurator T=1 decode kernel"
        b = max(batch * self._hv_scale, 1e-3)
        sd = self.state_dtype
        if T == 1:
            return self.gdn.decode_us(backend, b, sd), f"{self.gdn.status} decode"
        if self.gdn.has(backend, "verify", self.strategy, T, sd):
            v, with_commit = self.gdn.verify_us(backend, self.strategy, b, T, sd)
            if not with_commit:
                raise InputError(f"the sweep has no {self.strategy} step rows (verify + commit) at T={T} for {backend}")
            return v, f"{self.gdn.status} {self.strategy} T={T}"
        have = [t for t in self.gdn.measured_T() if self.gdn.has(backend, "verify", self.strategy, t, sd)]
        if not have:
            raise InputError(f"no {self.strategy} rows for backend={backend} state_dtype={sd} in the sweep")
        xs = np.array([1.0] + [float(t) for t in have])
        ys = np.array([self.gdn.decode_us(backend, b, sd)] + [self.gdn.verify_us(backend, self.strategy, b, t, sd)[0]
                                                            for t in have])
        j = int(np.clip(np.searchsorted(xs, T) - 1, 0, xs.size - 2))
        v = ys[j] + (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j]) * (T - xs[j])
        return max(float(v), 0.0), f"interpolated in T from T={[int(x) for x in xs]} ({self.gdn.status})"

    # ------------------------------------------------------------------ parts
    def _layer_pass(self, tokens: float, requests: float, kv: float) -> float:
        """One MTP-layer forward (µs): a full-attention decoder layer over ``tokens`` tokens, its
        attention over ``requests`` rows, and the lm_head over ``requests`` tokens."""
        n = self.model.num_full_attn_layers
        o = self.ops
        layer = sum(o.decode("full", p, tokens) for p in ("proj", "moe", "norm", "allreduce")) / n
        return layer + o.attention(requests, kv) / n + o.decode("model", "lm_head", requests)

    def _parts_uncached(self, backend: str, batch: float, kv: float, T: int, num_steps: int) -> tuple:
        o, N = self.ops, batch * T
        g, _ = self.gdn_layer_us(backend, batch, T)
        parts = {
            "gdn_kernel": self.model.gdn.num_gdn_layers * g,
            "gdn_conv": o.decode("gdn", "gdn_conv", N),
            "proj": o.decode("gdn", "proj", N) + o.decode("full", "proj", N),
            "attention": o.attention(batch, kv),
            "moe": o.decode("gdn", "moe", N) + o.decode("full", "moe", N),
            "norm": sum(o.decode(lk, "norm", N) for lk in ("gdn", "full", "model")),
            "allreduce": sum(o.decode(lk, "allreduce", N) for lk in ("gdn", "full", "model")),
            "lm_head": o.decode("model", "lm_head", N),
            "draft": 0.0,
        }
        if T > 1:
            parts["draft"] = self.model.mtp_layers * ((num_steps - 1) * self._layer_pass(batch, batch, kv)
                                                      + self._layer_pass(N, batch, kv))
        return tuple(parts.items())

    def kernel_parts(self, backend: str, batch: float, kv: float, mtp: MTPConfig | None = None) -> dict[str, float]:
        """Kernel µs per part (:data:`STEP_PARTS`) of one iteration of ``batch`` requests with ``kv``
        cached tokens each."""
        T = 1 if mtp is None else int(mtp.draft_tokens)
        steps = 0 if mtp is None else int(mtp.num_steps)
        return dict(self._parts(backend, round(float(batch), 6), round(float(kv), 3), T, steps))

    @staticmethod
    def passes(mtp: MTPConfig | None) -> int:
        """Forward passes of one iteration: 1 (decode) or ``1 + num_steps`` (MTP)."""
        return 1 if mtp is None else 1 + int(mtp.num_steps)

    # ------------------------------------------------------------------ LinearStep
    def iteration_cost(self, backend: str, batch: float, ctx_tokens: float,
                       mtp: MTPConfig | None = None) -> tuple[float, np.ndarray]:
        """``(kernel µs, [passes, requests x passes])`` of one iteration (the simulation's fixed part
        and features)."""
        T = 1 if mtp is None else int(mtp.draft_tokens)
        kv = ctx_tokens / batch + T if batch > 0 else float(T)
        k = sum(self.kernel_parts(backend, batch, max(kv, 1.0), mtp).values())
        n = self.passes(mtp)
        return k, np.array([float(n), float(batch) * n])

    def prefill_cost(self, backend: str, requests: float, tokens: float,
                     mtp: MTPConfig | None = None) -> tuple[float, np.ndarray]:
        """``(kernel µs, [passes, requests x passes])`` of one prefill pass (attention per request)."""
        o = self.ops
        r = max(float(requests), 1.0)
        k = 0.0
        for lk in ("gdn", "full", "model"):
            for p in ("gdn_kernel", "gdn_conv", "proj", "moe", "norm", "allreduce", "lm_head"):
                k += o.prefill(lk, p, tokens)
        k += r * o.prefill("full", "attention", max(tokens / r, 1.0))
        passes = 1
        if mtp is not None:
            n = self.model.num_full_attn_layers
            layer = sum(o.prefill("full", p, tokens) for p in ("proj", "moe", "norm", "allreduce")) / n
            attn = r * o.prefill("full", "attention", max(tokens / r, 1.0)) / n
            k += self.model.mtp_layers * (layer + attn + o.decode("model", "lm_head", r))
            passes = 2
        return k, np.array([float(passes), r * passes])

    # ------------------------------------------------------------------ steady state
    def step_us(self, backend: str, batch: float, kv: float, mtp: MTPConfig | None = None) -> float:
        """One iteration (µs) of ``batch`` requests with ``kv`` cached tokens each:
        ``kernels + pass_us * passes + request_us * batch * passes``."""
        k = sum(self.kernel_parts(backend, batch, kv, mtp).values())
        n = self.passes(mtp)
        return float(k + self.params.pass_us * n + self.params.request_us * float(batch) * n)

    def breakdown(self, backend: str, batch: float, kv: float, mtp: MTPConfig | None = None) -> pd.DataFrame:
        """``part, time_us, share, source`` of one iteration (:data:`STEP_PARTS` and ``host`` =
        ``pass_us * passes + request_us * batch * passes``, fitted)."""
        raw = self.kernel_parts(backend, batch, kv, mtp)
        rows = [{"part": p, "time_us": v, "source": self.part_source(p)} for p, v in raw.items()]
        n = self.passes(mtp)
        rows.append({"part": "host", "time_us": self.params.pass_us * n + self.params.request_us * float(batch) * n,
                     "source": f"fitted ({self.params.source})"})
        df = pd.DataFrame(rows)
        tot = df["time_us"].sum()
        df["share"] = df["time_us"] / tot if tot > 0 else np.nan
        return df

    def part_source(self, part: str) -> str:
        """Provenance of one part's kernel times."""
        if part == "gdn_kernel" and self.gdn is not None:
            return f"{self.gdn.status}: {self.gdn.source}"
        if part == "draft":
            return "composed: MTP layer = one full-attention layer of the tables + lm_head"
        layer = "full" if part == "attention" else "gdn" if part.startswith("gdn") else "model"
        return self.ops.sources.get((layer, part), self.ops.status)

    def provenance(self, **extra: object) -> str:
        gdn = self.gdn.source if self.gdn is not None else "AIConfigurator T=1 GDN decode kernel"
        return label({"gpu": self.gpu.name}, "projected", ops=self.ops.status, gdn=gdn,
                     config=f"TP{self.ops.tp} EP{self.ops.ep} {self.ops.weights} weights, {self.ops.kv_dtype} KV, "
                            f"{self.state_dtype} state, {self.strategy}", fitted=self.params.short(),
                     params=self.params.source, **extra)
