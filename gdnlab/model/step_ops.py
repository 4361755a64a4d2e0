"""Op times of one engine configuration (GPU, TP, EP, weights dtype, KV dtype) as a fast lookup, from
AIConfigurator's per-op step tables (:mod:`gdnlab.model.aic_steps`, status ``reported``) with gdnlab's
own engine-grade component measurements taking their place where a run has them
(:meth:`StepOps.with_measured`, status ``measured``).

:class:`StepOps` answers, in µs per step on one GPU:

* :meth:`StepOps.decode` — one part (:data:`gdnlab.model.aic_steps.PARTS`) of the layers of one kind
  (``gdn`` 45 layers, ``full`` 15 layers, ``model``) for a forward of ``tokens`` tokens, interpolated
  log-log in ``tokens`` between the grid points (:data:`~gdnlab.model.aic_steps.GRID_TOKENS`),
  extrapolated along the end segment beyond them;
* :meth:`StepOps.attention` — decode attention of the 15 full-attention layers, ``requests`` rows each
  reading ``kv_len`` cached tokens: log-log in ``requests``, linear in ``kv_len``;
* :meth:`StepOps.prefill` — one part of a prefill pass of ``tokens`` prompt tokens (one sequence).

Nothing here adds or scales: composition is :mod:`gdnlab.model.engine_step`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from ..errors import InputError
from .aic_steps import LAYERS, PARTS, load_step_ops

__all__ = ["StepOps", "step_ops_for", "MEASURED_PARTS", "FP8_COMPONENTS"]

#: (layer kind, part) -> the engine-grade components (:mod:`gdnlab.components.engine`) whose sum
#: replaces AIConfigurator's part, per layer; a part is replaced only when every one is measured
MEASURED_PARTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("gdn", "moe"): ("eng.moe_block",),
    ("full", "moe"): ("eng.moe_block",),
    ("gdn", "proj"): ("eng.gdn_in_proj", "eng.gdn_ba_proj", "eng.gdn_out_proj"),
    ("full", "proj"): ("eng.attn_qkv_proj", "eng.attn_o_proj"),
    ("model", "lm_head"): ("eng.lm_head",),
}
#: components measured with FP8 block-scaled weights (replace a part only for ``fp8_block`` weights)
FP8_COMPONENTS = frozenset({"eng.moe_block", "eng.gdn_in_proj", "eng.gdn_out_proj", "eng.attn_qkv_proj",
                            "eng.attn_o_proj"})


def _loglog(xs: np.ndarray, ys: np.ndarray, x: float) -> float:
    lx, lxs, lys = np.log(x), np.log(xs), np.log(np.maximum(ys, 1e-3))
    if xs.size == 1:
        return float(ys[0] * x / xs[0])
    if lx < lxs[0]:
        j = 0
    elif lx > lxs[-1]:
        j = xs.size - 2
    else:
        return float(np.exp(np.interp(lx, lxs, lys)))
    slope = (lys[j + 1] - lys[j]) / (lxs[j + 1] - lxs[j])
    return float(np.exp(lys[j] + slope * (lx - lxs[j])))


@dataclass
class StepOps:
    """Op times of one configuration. ``series[(phase, layer, part)] = (tokens [n], µs [n])``;
    ``attn = (requests [n], kv_lens [m], µs [n, m])``; ``sources[(layer, part)]`` the provenance
    label of what a part's numbers are (``reported (AIConfigurator ...)`` or ``measured ...``)."""

    gpu: str
    tp: int
    ep: int
    weights: str
    kv_dtype: str
    series: dict
    attn: tuple
    status: str
    sources: dict = field(default_factory=dict)

    def _series(self, phase: str, layer: str, part: str):
        return self.series.get((phase, layer, part))

    def decode(self, layer: str, part: str, tokens: float) -> float:
        """µs of ``part`` over all layers of kind ``layer`` in a decode forward of ``tokens`` tokens
        (0 when the configuration has no such op)."""
        s = self._series("decode", layer, part)
        return 0.0 if s is None else _loglog(s[0], s[1], max(float(tokens), 1e-3))

    def attention(self, requests: float, kv_len: float) -> float:
        """µs of decode attention over the 15 full-attention layers: ``requests`` rows, ``kv_len``
        cached tokens each."""
        reqs, kvs, table = self.attn
        col = np.array([_loglog(reqs, table[:, j], max(float(requests), 1e-3)) for j in range(kvs.size)])
        x = float(kv_len)
        if x <= kvs[0]:
            return float(max(col[0] + (col[1] - col[0]) / (kvs[1] - kvs[0]) * (x - kvs[0]), col[0] * x / kvs[0]))
        if x >= kvs[-1]:
            return float(col[-1] + (col[-1] - col[-2]) / (kvs[-1] - kvs[-2]) * (x - kvs[-1]))
        return float(np.interp(x, kvs, col))

    def prefill(self, layer: str, part: str, tokens: float) -> float:
        """µs of ``part`` over the layers of kind ``layer`` in a prefill pass of ``tokens`` prompt tokens."""
        s = self._series("prefill", layer, part)
        return 0.0 if s is None else _loglog(s[0], s[1], max(float(tokens), 1.0))

    def per_layer(self, layer: str, part: str, tokens: float, n_layers: int) -> float:
        """One layer's ``part`` (µs) at ``tokens`` tokens: the layer kind's total over ``n_layers``."""
        return self.decode(layer, part, tokens) / max(n_layers, 1)

    def with_measured(self, rows: pd.DataFrame, label: str) -> StepOps:
        """A copy whose parts in :data:`MEASURED_PARTS` come from gdnlab's engine-grade rows (columns
        ``component, tokens, net_us``; attention also ``kv_len, kv_dtype, attn_impl``) where ``rows``
        measured every component of the part at >= 2 token counts: per-layer times summed and
        multiplied by the layer count. The MoE block loses its torch token alignment
        (``eng.moe_align_torch``), which SGLang does in a CUDA helper. FP8 components replace parts only
        for ``fp8_block`` weights; attention only for this KV dtype (FlashInfer rows before SGLang's
        Triton ones). ``label`` becomes those parts' source."""
        from .served import ServedModel

        m = ServedModel()
        counts = {"gdn": m.gdn.num_gdn_layers, "full": m.num_full_attn_layers, "model": 1}
        new = StepOps(self.gpu, self.tp, self.ep, self.weights, self.kv_dtype, dict(self.series), self.attn,
                      self.status, dict(self.sources))
        med = rows.groupby(["component", "tokens"])["net_us"].median()
        for (layer, part), comps in MEASURED_PARTS.items():
            if self.weights != "fp8_block" and any(c in FP8_COMPONENTS for c in comps):
                continue
            series = [med[c] for c in comps if c in med.index.get_level_values(0)]
            if len(series) != len(comps):
                continue
            tot = pd.concat(series, axis=1).dropna().sum(axis=1)
            if part == "moe" and "eng.moe_align_torch" in med.index.get_level_values(0):
                tot = (tot - med["eng.moe_align_torch"].reindex(tot.index).fillna(0.0)).clip(lower=0.0)
            if len(tot) < 2:
                continue
            new.series[("decode", layer, part)] = (tot.index.to_numpy(float), tot.to_numpy(float) * counts[layer])
            new.sources[(layer, part)] = label
        att = _attention_table(rows, self.kv_dtype, counts["full"])
        if att is not None:
            new.attn, new.sources[("full", "attention")] = att[:3], f"{label} ({att[3]})"
        return new


def _attention_table(rows: pd.DataFrame, kv_dtype: str, n_layers: int):
    """``(requests, kv_lens, µs [n, m] over the layers, impl)`` of the engine-grade attention rows of
    ``kv_dtype`` (FlashInfer's when present, else SGLang's Triton), or None."""
    r = rows[(rows["component"] == "eng.attention")] if "kv_dtype" in rows else rows.iloc[:0]
    r = r[r["kv_dtype"] == kv_dtype].dropna(subset=["kv_len"])
    for impl in ("flashinfer", "sglang-triton"):
        sel = r[r.get("attn_impl", pd.Series(impl, index=r.index)) == impl]
        t = sel.pivot_table(index="tokens", columns="kv_len", values="net_us", aggfunc="median").dropna()
        if t.shape[0] >= 2 and t.shape[1] >= 2:
            return t.index.to_numpy(float), t.columns.to_numpy(float), t.to_numpy(float) * n_layers, impl
    return None


@lru_cache(maxsize=64)
def _build(gpu: str, tp: int, ep: int, weights: str, kv_dtype: str) -> StepOps:
    df = load_step_ops()
    if gpu not in set(df["gpu"]):
        raise InputError(f"no AIConfigurator step table for GPU {gpu!r}; have {sorted(set(df['gpu']))}")
    sel = df[(df["gpu"] == gpu) & (df["tp"] == tp)]
    if sel.empty:
        raise InputError(f"no AIConfigurator step table for {gpu} at TP {tp}; have TP {sorted(set(df['tp']))}")
    other = sel[(sel["ep"] == ep) & (sel["weights"] == weights)]
    if other.empty:
        have = sorted({(int(e), w) for e, w in zip(sel["ep"], sel["weights"]) if w != "any"})
        raise InputError(f"no AIConfigurator step table for {gpu} TP {tp} with EP {ep} and {weights} weights; "
                         f"have (EP, weights) {have}")
    series: dict = {}
    dec = other[(other["phase"] == "decode") & (other["part"] != "attention")]
    pre = other[(other["phase"] == "prefill") & (other["kv_dtype"] == kv_dtype)]
    for phase, frame in (("decode", dec), ("prefill", pre)):
        for (layer, part), g in frame.groupby(["layer", "part"]):
            g = g.groupby("tokens")["latency_us"].sum().sort_index()
            series[(phase, layer, part)] = (g.index.to_numpy(float), g.to_numpy(float))
    att = sel[(sel["phase"] == "decode") & (sel["part"] == "attention") & (sel["kv_dtype"] == kv_dtype)]
    if att.empty:
        raise InputError(f"no AIConfigurator attention rows for {gpu} TP {tp} with {kv_dtype} KV")
    t = att.pivot_table(index="tokens", columns="kv_len", values="latency_us", aggfunc="sum").sort_index()
    status = str(other["status"].iloc[0])
    sources = {(lk, p): status for lk in LAYERS for p in PARTS}
    return StepOps(gpu, tp, ep, weights, kv_dtype, series,
                   (t.index.to_numpy(float), t.columns.to_numpy(float), t.to_numpy(float)), status, sources)


def step_ops_for(gpu: str, tp: int, ep: int = 1, weights: str = "fp8_block", kv_dtype: str = "bf16") -> StepOps:
    """The reported op tables of one configuration (``gpu`` in ``h100, h200, b200, gb200``; raises
    :class:`~gdnlab.errors.InputError` naming what the shipped extract has when it lacks one)."""
    return _build(str(gpu).lower(), int(tp), int(ep), str(weights), str(kv_dtype))
