"""Time the decoder components and the synthetic slice over a grid of (mode, B, KV length).

:func:`run_grid` builds one :class:`gdnlab.components.slice.SyntheticSlice` (random weights, per-GPU
shapes) and, for every B and mode (``decode``: B tokens; ``mtp``: B x T verify + commit), binds it,
runs it once eagerly, then times

* every component op of the step once (GDN ops on the first GDN layer, MoE ops on its MoE block,
  attention ops on the attention layer; ``attn.attention`` again at every KV length), the lm_head
  and, for MTP, the draft layer (one graph of its ops) and extra verify strategies' ``gdn.recurrent``
  / ``gdn.commit``;
* the slice step (:meth:`BoundSlice.step_ops`) as one CUDA graph at every KV length.

Every timing is :func:`gdnlab.instrument.time_calls` with ``timing="single"``: one CUDA graph of
the op(s), L2 flushed before each replay, so each component starts from a cold cache as in an
engine step where the other layers run in between. ``launch.graph`` is the fixed cost of one graph
replay, from graphs of 1 and 8 tiny kernels (``t(n) = overhead + n * per_kernel``); the composition
subtracts it from every component and adds it once per step (:mod:`gdnlab.components.compose`).

Nothing here raises for one bad point: each timing records ``outcome`` (``ok``, ``error: ...``,
``skipped: memory ...``, ``skipped: time budget``). ``status`` is provenance's (``measured`` on a
GPU; ``synthetic`` for CPU runs of tiny shapes).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from ..backends import DEFAULT_BACKEND, needs_contiguous_inputs
from ..provenance import collect
from ..strategies.registry import BASELINE
from .dims import ComponentShapes, component_shapes, tiny_shapes
from .layers import STEP_MODES, Op, StepPoint, expert_capacity_note
from .slice import SyntheticSlice

__all__ = ["GridConfig", "run_grid", "time_ops", "launch_overhead", "estimate", "KV_COMPONENTS",
           "STRATEGY_COMPONENTS", "TIMING_COLUMNS"]

#: components whose time depends on the KV length (timed at every KV length)
KV_COMPONENTS: frozenset[str] = frozenset({"attn.attention", "mtp_draft"})
#: components timed per verify strategy in MTP steps
STRATEGY_COMPONENTS: frozenset[str] = frozenset({"gdn.recurrent", "gdn.commit"})
TIMING_COLUMNS = ("median_us", "p10_us", "p90_us", "mean_us", "method", "calls_per_sample", "l2_flush", "repeats",
                  "timing_note")


@dataclass
class GridConfig:
    """What :func:`run_grid` measures; ``attn_impl``/``moe_impl``/``gdn_backend`` are what the caller
    resolved as runnable here (see ``scripts/gpu/run_components.py``)."""

    preset: str = "qwen3.5-397b-a17b"
    tp: int = 4
    batches: tuple[int, ...] = (1, 4, 16, 64, 128, 256)
    kv_lens: tuple[int, ...] = (1024, 4096, 16384)
    modes: tuple[str, ...] = STEP_MODES
    draft_tokens: int = 4
    strategies: tuple[str, ...] = (BASELINE,)
    gdn_backend: str = DEFAULT_BACKEND
    strategy_backend: str = DEFAULT_BACKEND
    attn_impl: str = "flashinfer"
    moe_impl: str = "grouped_mm"
    page_size: int = 16
    dtype: torch.dtype = torch.bfloat16
    state_dtype: str | None = None
    device: str = "cuda"
    tiny: bool = False
    repeats: int = 20
    warmup: int = 3
    l2_flush: bool = True
    budget_s: float = 240.0
    mem_limit_gb: float = 60.0
    extra: dict = field(default_factory=dict)

    def shapes(self) -> ComponentShapes:
        if self.tiny:
            return tiny_shapes(self.state_dtype or torch.float32)
        return component_shapes(self.preset, self.tp, self.state_dtype)


# ============================================================================================ timing
def time_ops(ops: Sequence[Callable[[], object]], *, device: torch.device, repeats: int, warmup: int,
             l2_flush: bool):
    """Time one pass over ``ops`` as one CUDA graph (``time_calls(timing="single")``; on CPU, wall
    clock). Returns a :class:`gdnlab.instrument.Timing`."""
    from .. import instrument

    ops = list(ops)

    def body() -> None:
        for op in ops:
            op()
    if hasattr(instrument, "time_calls"):
        return instrument.time_calls(lambda n: [body] * n, timing="single", warmup=warmup, repeats=repeats,
                                     l2_flush=l2_flush, device=device)
    return instrument.time_fn(body, warmup=warmup, repeats=repeats, flush_l2=l2_flush, graph=True, device=device)


def _timing_cols(t) -> dict:
    return {"median_us": t.median_us, "p10_us": t.p10_us, "p90_us": t.p90_us, "mean_us": t.mean_us,
            "method": t.method, "calls_per_sample": t.calls_per_sample, "l2_flush": t.l2_flush,
            "repeats": t.repeats, "timing_note": t.note}


def launch_overhead(device: torch.device, *, repeats: int = 30, warmup: int = 3, l2_flush: bool = True
                    ) -> dict[str, float]:
    """Fixed cost of one graph replay and cost per tiny kernel, from graphs of 1 and 8 one-element
    adds: ``overhead_us = (8 t1 - t8) / 7``, ``per_kernel_us = (t8 - t1) / 7`` (clamped at 0)."""
    x = torch.zeros(1, device=device)
    one = [lambda: x.add_(1)]
    t1 = time_ops(one, device=device, repeats=repeats, warmup=warmup, l2_flush=l2_flush)
    t8 = time_ops(one * 8, device=device, repeats=repeats, warmup=warmup, l2_flush=l2_flush)
    per = max(0.0, (t8.median_us - t1.median_us) / 7)
    return {"overhead_us": max(0.0, t1.median_us - per), "per_kernel_us": per, "t1_us": t1.median_us,
            "t8_us": t8.median_us, "method": t1.method}


# ============================================================================================ budget
def _point_bytes(sh: ComponentShapes, point: StepPoint, n_gdn: int, moe_impl: str, act_el: int) -> int:
    g = sh.gdn
    P = point.batch + 1
    state = g.state_bytes()
    pools = n_gdn * P * (state + sh.conv_channels * (sh.conv_kernel - 1) * act_el)
    scratch = n_gdn * point.batch * point.tokens_per_row * state if point.mode == "mtp" else 0
    N = point.tokens
    moe_act = N * sh.experts_per_token * (2 * sh.hidden + 3 * sh.moe_intermediate_per_gpu) * act_el
    if moe_impl == "bmm":
        moe_act += sh.num_experts * N * (2 * sh.hidden + 3 * sh.moe_intermediate_per_gpu) * act_el
    other = N * (sh.vocab_per_gpu + 8 * sh.gdn_in_proj_out + 8 * sh.hidden) * act_el
    return int(pools + scratch + 2 * moe_act + other)


def estimate(cfg: GridConfig) -> dict:
    """Memory (bytes) and wall-time (s) estimates of :func:`run_grid`, before anything is allocated."""
    sh = cfg.shapes()
    el = torch.empty((), dtype=cfg.dtype).element_size()
    n_layers = 4
    h = sh.hidden
    weights = (n_layers + 1) * sh.moe_weight_bytes(cfg.dtype) + sh.vocab_per_gpu * h * el
    weights += 3 * (sh.gdn_in_proj_out * h + sh.gdn.HV * sh.gdn.V * h) * el
    weights += 2 * (sh.attn_qkv_out * h + sh.q_heads_per_gpu * sh.attn_head_dim * h + 2 * h * h) * el
    kv_max = max(cfg.kv_lens)
    cache = 2 * sh.kv_cache_bytes(max(cfg.batches), kv_max, cfg.page_size, cfg.dtype)
    points = {}
    for mode in cfg.modes:
        for B in cfg.batches:
            p = StepPoint(mode, B, cfg.draft_tokens, min(cfg.kv_lens))
            points[(mode, B)] = _point_bytes(sh, p, 3, cfg.moe_impl, el)
    n_ops = {"decode": 17 + 2, "mtp": 18 + 2 + 2 * (len(cfg.strategies) - 1)}
    n_timings = 2 + sum(len(cfg.batches) * (n_ops[m] + len(cfg.kv_lens) * (2 + (m == "mtp"))) for m in cfg.modes)
    per_timing = 0.02 if cfg.device == "cpu" else 0.05 + cfg.repeats * 0.002
    per_bind = 0.05 if cfg.device == "cpu" else 0.6
    wall = 25.0 + n_timings * per_timing + len(cfg.batches) * len(cfg.modes) * per_bind
    return {"weights_bytes": int(weights), "kv_cache_bytes": int(cache),
            "largest_point_bytes": int(max(points.values())),
            "total_bytes": int(weights + cache + max(points.values())),
            "n_timings": n_timings, "wall_s": wall}


# ============================================================================================ grid
def _backend_and_strategy(cfg: GridConfig, device: torch.device):
    from ..kernels import make_backend
    from ..strategies import get_strategy

    be = make_backend(cfg.gdn_backend)
    stg = {s: get_strategy(s, backend=cfg.strategy_backend) for s in cfg.strategies}
    return be, stg


def run_grid(cfg: GridConfig, log: Callable[[str], None] = print) -> dict[str, pd.DataFrame | dict]:
    """Measure components and slice steps over ``cfg``'s grid.

    Returns ``{"components": DataFrame, "slice": DataFrame, "recipes": DataFrame, "meta": dict}``:
    component rows (``component``, ``mode``, ``batch``, ``draft_tokens``, ``tokens``, ``kv_len``
    (NaN unless KV-dependent), ``strategy``, ``impl``, timing columns, ``net_us`` = median minus the
    graph overhead, ``outcome``), slice-step rows (same columns, ``component = "slice"``), the
    slice's op counts per mode (``recipes``) and run metadata (overhead, estimates, wall time).
    """
    run = _GridRun(cfg, log)
    run.time_launch_overhead()
    run.build_slice()
    for B in cfg.batches:
        for mode in cfg.modes:
            run.time_point(mode, B)
    return run.frames()


class _GridRun:
    """One :func:`run_grid`: its device, shapes and estimates, the rows so far, and the steps that add
    them (launch overhead, then per (B, mode) the bound slice's components and its step per KV length)."""

    def __init__(self, cfg: GridConfig, log: Callable[[str], None]) -> None:
        self.cfg, self.log = cfg, log
        self.t_start = time.perf_counter()
        dev = torch.device(cfg.device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self.dev = dev
        self.sh = sh = cfg.shapes()
        self.est = est = estimate(cfg)
        self.limit = cfg.mem_limit_gb * 1e9
        log(f"[components] {sh.name}: {json.dumps(sh.describe())}")
        log(f"[components] memory estimate: weights {est['weights_bytes'] / 1e9:.1f} GB, KV caches "
            f"{est['kv_cache_bytes'] / 1e9:.1f} GB, largest point {est['largest_point_bytes'] / 1e9:.2f} GB "
            f"(limit {cfg.mem_limit_gb:g} GB); {est['n_timings']} timings, ~{est['wall_s']:.0f} s")
        self.kv_lens = self._kv_lens_that_fit()
        prov = collect(dev.index if dev.type == "cuda" else None)
        status = "measured" if dev.type == "cuda" and not cfg.tiny else "synthetic"
        self.base = {"preset": sh.name, "tp": sh.tp, "dtype": str(cfg.dtype).removeprefix("torch."),
                     "state_dtype": str(sh.gdn.state_dtype).removeprefix("torch."), "draft_tokens": cfg.draft_tokens,
                     "shape": json.dumps(sh.describe()), "status": status, **prov}
        self.comp_rows: list[dict] = []
        self.slice_rows: list[dict] = []
        self.recipes: dict[str, dict[str, int]] = {}
        self.meta: dict = {"estimate": est, "config": {k: (str(v) if isinstance(v, torch.dtype) else v)
                                                       for k, v in cfg.__dict__.items()}, "skipped_kv_lens":
                           sorted(set(cfg.kv_lens) - set(self.kv_lens))}
        self.tkw = {"device": dev, "repeats": cfg.repeats, "warmup": cfg.warmup, "l2_flush": cfg.l2_flush}
        self.overhead = 0.0

    def _kv_lens_that_fit(self) -> list[int]:
        """The KV lengths whose caches (at the largest batch) fit the memory limit with the weights."""
        cfg, sh = self.cfg, self.sh
        kv_lens = sorted(cfg.kv_lens)
        while kv_lens and self.est["weights_bytes"] + 2 * sh.kv_cache_bytes(max(cfg.batches), kv_lens[-1],
                                                                            cfg.page_size, cfg.dtype) > self.limit:
            self.log(f"[components] KV length {kv_lens[-1]} skipped: memory")
            kv_lens.pop()
        return kv_lens

    def over_budget(self) -> bool:
        return time.perf_counter() - self.t_start > self.cfg.budget_s

    def time_launch_overhead(self) -> None:
        """The ``launch.graph`` row: the fixed cost of one graph replay, subtracted from every timing."""
        ov = launch_overhead(**self.tkw)
        self.meta["launch"] = ov
        self.overhead = overhead = ov["overhead_us"]
        self.comp_rows.append({**self.base, "component": "launch.graph", "mode": None, "batch": None, "tokens": None,
                               "kv_len": None, "strategy": None, "impl": "graph of one tiny kernel",
                               "median_us": overhead, "net_us": overhead, "outcome": "ok", "method": ov["method"],
                               "timing_note": f"t1={ov['t1_us']:.2f} us, t8={ov['t8_us']:.2f} us"})
        self.log(f"[components] graph overhead {overhead:.2f} us, per tiny kernel {ov['per_kernel_us']:.2f} us")

    def build_slice(self) -> None:
        """The synthetic slice, the GDN backend and verify strategies, and each component's impl label."""
        cfg, kv_lens = self.cfg, self.kv_lens
        self.slc = SyntheticSlice(self.sh, dtype=cfg.dtype, device=self.dev, attn_impl=cfg.attn_impl,
                                  moe_impl=cfg.moe_impl, max_batch=max(cfg.batches),
                                  max_kv_len=max(kv_lens) if kv_lens else max(cfg.kv_lens), page_size=cfg.page_size)
        self.backend, self.strategies = _backend_and_strategy(cfg, self.dev)
        self.main_strategy = cfg.strategies[0]
        self.contiguous = needs_contiguous_inputs(cfg.gdn_backend) or needs_contiguous_inputs(cfg.strategy_backend)
        self.impl_of = {"gdn.recurrent": None, "attn.attention": cfg.attn_impl,
                        "moe.experts": expert_capacity_note(cfg.moe_impl)}

    def record(self, rows: list, what: str, ops: Sequence[Op] | Sequence[Callable], point: StepPoint,
               kv: int | None, strategy: str | None, impl: str | None) -> dict:
        """Time ``ops`` as one graph and append its row to ``rows`` (``outcome`` says when it did not run)."""
        row = {**self.base, "component": what, "mode": point.mode, "batch": point.batch, "tokens": point.tokens,
               "kv_len": kv, "strategy": strategy, "impl": impl}
        if self.over_budget():
            rows.append({**row, "outcome": "skipped: time budget"})
            return rows[-1]
        try:
            t = time_ops(ops, **self.tkw)
            row.update(_timing_cols(t), net_us=t.median_us - self.overhead, outcome="ok")
        except Exception as exc:  # noqa: BLE001 - one failing timing must not end the run
            row.update(outcome=f"error: {type(exc).__name__}: {str(exc)[:300]}")
            if self.dev.type == "cuda":
                torch.cuda.synchronize()
        rows.append(row)
        return row

    def _slice_rows(self, mode: str, B: int, point: StepPoint, outcome: str, **extra) -> None:
        """One slice row per configured KV length for a point that did not run (``outcome`` says why)."""
        self.slice_rows += [{**self.base, "component": "slice", "mode": mode, "batch": B, "tokens": point.tokens,
                             "kv_len": kv, **extra, "outcome": outcome} for kv in self.cfg.kv_lens]

    def _skipped(self, mode: str, B: int, point: StepPoint) -> bool:
        """Record a point that the time budget or the memory limit rules out; ``True`` when it is."""
        cfg, sh, kv_lens = self.cfg, self.sh, self.kv_lens
        if not kv_lens or self.over_budget():
            why = "skipped: memory" if not kv_lens else "skipped: time budget"
            self._slice_rows(mode, B, point, why, strategy=self.main_strategy if mode == "mtp" else None)
            return True
        pb = _point_bytes(sh, point, 3, cfg.moe_impl, torch.empty((), dtype=cfg.dtype).element_size())
        if self.est["weights_bytes"] + 2 * sh.kv_cache_bytes(max(cfg.batches), max(kv_lens), cfg.page_size,
                                                             cfg.dtype) + pb > self.limit:
            self._slice_rows(mode, B, point, f"skipped: memory ({pb / 1e9:.1f} GB)")
            return True
        return False

    def _bind(self, mode: str, B: int, point: StepPoint):
        """The slice bound to ``point`` and run once eagerly (with its draft layer and lm_head), and
        whether its output is finite; ``(None, False)`` after recording why it could not."""
        try:
            bs = self.slc.bind(point, backend=self.backend, strategy=self.strategies[self.main_strategy],
                               contiguous_inputs=self.contiguous)
            bs.run()
            if bs.draft is not None:
                bs.draft.run()
            bs.lm_head.run()
            return bs, bool(torch.isfinite(bs.output()).all())
        except Exception as exc:  # noqa: BLE001 - any failure is the point's error rows; the next point runs
            msg = f"error: bind/run: {type(exc).__name__}: {str(exc)[:300]}"
            self.log(f"[components] {mode} B={B}: {msg}")
            self._slice_rows(mode, B, point, msg)
            return None, False

    def time_point(self, mode: str, B: int) -> None:
        """Every row of one (B, mode): the step's components once, extra strategies' GDN ops (MTP),
        then attention, the draft layer and the slice step at every KV length."""
        cfg = self.cfg
        point = StepPoint(mode, B, cfg.draft_tokens, self.kv_lens[0] if self.kv_lens else min(cfg.kv_lens))
        if self._skipped(mode, B, point):
            return
        t0 = time.perf_counter()
        bs, finite = self._bind(mode, B, point)
        if bs is None:
            return
        strat = self.main_strategy if mode == "mtp" else None
        self.recipes[mode] = bs.recipe()
        attn = self._time_components(bs, point, strat)
        if mode == "mtp":
            self._time_extra_strategies(bs, point)
        self._time_kv_lens(bs, point, strat, attn, finite)
        self.log(f"[components] {mode} B={B}: done in {time.perf_counter() - t0:.1f} s "
                 f"(elapsed {time.perf_counter() - self.t_start:.0f} s)")
        del bs
        if self.dev.type == "cuda":
            torch.cuda.empty_cache()

    def _time_components(self, bs, point: StepPoint, strat: str | None):
        """Each component op of the first GDN and attention layers once (KV-dependent ones later), and
        the lm_head's ops; returns the attention layer's bound ops."""
        cfg = self.cfg
        self.impl_of["gdn.recurrent"] = (f"{cfg.gdn_backend} decode" if point.mode == "decode"
                                         else f"{self.main_strategy}/{cfg.strategy_backend}")
        self.impl_of["gdn.commit"] = f"{self.main_strategy}/{cfg.strategy_backend}"
        gdn, attn = bs.first_of("gdn"), bs.first_of("attn")
        timed: set[str] = set()
        for b in (gdn, attn):
            for op in [*b.ops, *b.post]:
                if op.component in timed or op.component in KV_COMPONENTS:
                    continue
                timed.add(op.component)
                self.record(self.comp_rows, op.component, [op], point, None,
                            strat if op.component in STRATEGY_COMPONENTS else None, self.impl_of.get(op.component))
        for op in bs.lm_head.ops:
            self.record(self.comp_rows, op.component, [op], point, None, None, None)
        return attn

    def _time_extra_strategies(self, bs, point: StepPoint) -> None:
        """``gdn.recurrent`` / ``gdn.commit`` of every strategy after the first, on the first GDN layer."""
        cfg = self.cfg
        for name in cfg.strategies[1:]:
            try:
                extra = self.slc.layers[0].mixer.bind(lambda x=bs.x: x, point, strategy=self.strategies[name],
                                                      contiguous_inputs=self.contiguous)
                extra.run()
                ops = {op.component: op for op in [*extra.ops, *extra.post]}
                for c in ("gdn.recurrent", "gdn.commit"):
                    self.record(self.comp_rows, c, [ops[c]], point, None, name, f"{name}/{cfg.strategy_backend}")
                del extra
            except Exception as exc:  # noqa: BLE001 - one strategy's failure is its error row
                self.comp_rows.append({**self.base, "component": "gdn.recurrent", "mode": point.mode,
                                       "batch": point.batch, "strategy": name,
                                       "outcome": f"error: {type(exc).__name__}: {exc}"[:300]})

    def _time_kv_lens(self, bs, point: StepPoint, strat: str | None, attn, finite: bool) -> None:
        """At every configured KV length: attention, the draft layer and the slice step as one graph."""
        cfg = self.cfg
        mode, B = point.mode, point.batch
        base_pt = {**self.base, **{k: v for k, v in bs.info.items() if k not in self.base}}
        attn_op = next(op for op in attn.ops if op.component == "attn.attention")
        for kv in cfg.kv_lens:
            if kv not in self.kv_lens:
                self.slice_rows.append({**base_pt, "component": "slice", "mode": mode, "batch": B,
                                        "tokens": point.tokens, "kv_len": kv, "strategy": strat,
                                        "outcome": "skipped: memory"})
                continue
            try:
                bs.set_kv_len(kv)
                bs.run()
                if bs.draft is not None:
                    bs.draft.run()
            except Exception as exc:  # noqa: BLE001 - a failure at one kv_len is its error row
                self.slice_rows.append({**base_pt, "component": "slice", "mode": mode, "batch": B,
                                        "tokens": point.tokens, "kv_len": kv, "strategy": strat,
                                        "outcome": f"error: set_kv_len: {type(exc).__name__}: {str(exc)[:300]}"})
                continue
            kpoint = bs.point
            self.record(self.comp_rows, "attn.attention", [attn_op], kpoint, kv, None, cfg.attn_impl)
            if bs.draft is not None:
                self.record(self.comp_rows, "mtp_draft", bs.draft.ops, kpoint, kv, None, "one graph of the draft layer")
            row = self.record(self.slice_rows, "slice", bs.step_ops(), kpoint, kv, strat,
                              f"{len(bs.layers)} layers ({'+'.join(bs.kinds)}) in one graph")
            row.update({k: v for k, v in bs.info.items() if k not in row}, finite=finite)
            if row.get("outcome") == "ok":
                self.log(f"[components] {mode:6s} B={B:4d} kv={kv:6d}: slice {row['median_us']:9.1f} us")

    def frames(self) -> dict[str, pd.DataFrame | dict]:
        """The run's components, slice and recipe frames and its metadata (wall time, peak memory)."""
        self.meta["wall_s"] = time.perf_counter() - self.t_start
        if self.dev.type == "cuda":
            self.meta["max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated(self.dev))
        comp = pd.DataFrame(self.comp_rows)
        comp["kind"] = "component"
        sl = pd.DataFrame(self.slice_rows)
        sl["kind"] = "slice"
        for df in (comp, sl):
            for col in ("mode", "batch", "kv_len", "strategy", "impl", "median_us", "net_us", "outcome"):
                if col not in df:
                    df[col] = None
        rec = pd.DataFrame([{"preset": self.sh.name, "mode": m, "component": c, "count": n}
                            for m, r in self.recipes.items() for c, n in r.items()])
        return {"components": comp, "slice": sl, "recipes": rec, "meta": self.meta}
