"""Engine-grade component timings: every op of a Qwen3.5-397B-A17B decode step the way SGLang runs it on
one GPU (:mod:`gdnlab.components.engine_ops`), each checked against torch at the batch it is timed at,
written as they come.

:func:`run_engine_grid` measures, per TP degree (per-GPU shapes, :func:`gdnlab.components.dims.component_shapes`):

========================  ======================================================================
component                 what (tokens = rows in the forward)
========================  ======================================================================
``eng.moe_block``         router GEMM, top-k, token alignment (torch), FP8 fused-MoE gate/up and
                          down (SGLang's kernel), SiLU-and-mul, top-k sum, shared expert
``eng.moe_experts``       the routed experts alone (quant, two fused-MoE GEMMs, act, sum)
``eng.moe_align_torch``   the token sort / block alignment done in torch (SGLang: a CUDA helper)
``eng.gdn_in_proj``       block-FP8 GEMM hidden -> q, k, v, z (per GPU)
``eng.gdn_ba_proj``       bf16 GEMM hidden -> b, a (too narrow for 128-wide FP8 blocks)
``eng.gdn_out_proj``      block-FP8 GEMM values -> hidden
``eng.attn_qkv_proj``     block-FP8 GEMM hidden -> q (+ gate), k, v
``eng.attn_o_proj``       block-FP8 GEMM heads -> hidden
``eng.lm_head``           bf16 GEMM hidden -> vocab / TP
``eng.sampling``          greedy argmax over the logits (torch)
``eng.rmsnorm``           SGLang's Triton ``fused_rmsnorm``
``eng.attention``         paged decode attention, ``requests`` rows at ``kv_len`` cached tokens, bf16
                          and fp8 KV: FlashInfer's kernels when its self-test passes within the JIT
                          budget, and SGLang's Triton decode attention (both labelled ``impl``)
========================  ======================================================================

Each timing is :func:`gdnlab.components.bench.time_ops` (one CUDA graph of the op, L2 flushed before
each replay: the weights of one layer are not in L2 when an engine reaches it); ``net_us`` removes the
graph replay's fixed cost (``launch.graph``). Each row carries ``check`` (the op's relative errors
against torch from the run at this row's own batch, JSON; the MoE block recomputes its first 64 token
rows), ``check_ok`` and ``check_tokens`` (the batch checked = the batch timed). A failing op is recorded
(``outcome = error: ...``) and the grid goes on; no new timing starts after ``budget_s``; the rows
are written to ``components.parquet`` (atomically replaced) after every op, with ``run.json``.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..provenance import collect
from .attention import FlashInferPaged
from .bench import launch_overhead, time_ops
from .dims import component_shapes
from .engine_ops import (
    BF16Linear,
    BlockFP8Linear,
    FusedMoEFP8,
    KernelSet,
    TritonDecodeAttention,
    load_kernels,
    rel_err,
)

__all__ = ["EngineGridConfig", "run_engine_grid", "CHECK_TOL", "ENGINE_COMPONENTS"]

#: largest relative error a check may show: exact checks (the kernel's own quantised inputs) / FP8
#: rounding checks (activations quantised in torch instead) / attention against float32 SDPA
CHECK_TOL = {"gemm": 0.02, "gemm1": 0.02, "gemm2": 0.02, "quant": 0.08, "end_to_end": 0.08, "attention": 0.03,
             "attention_fp8": 0.08, "lm_head": 0.02, "rmsnorm": 0.02}
ENGINE_COMPONENTS = ("eng.moe_block", "eng.moe_experts", "eng.moe_align_torch", "eng.gdn_in_proj", "eng.gdn_ba_proj",
                     "eng.gdn_out_proj", "eng.attn_qkv_proj", "eng.attn_o_proj", "eng.lm_head", "eng.sampling",
                     "eng.rmsnorm", "eng.attention")


@dataclass
class EngineGridConfig:
    """What :func:`run_engine_grid` measures and within which budget."""

    preset: str = "qwen3.5-397b-a17b"
    tps: tuple[int, ...] = (4, 8)
    tokens: tuple[int, ...] = (1, 4, 16, 64, 128, 256, 512, 1024)
    requests: tuple[int, ...] = (1, 4, 16, 64, 128, 256)
    kv_lens: tuple[int, ...] = (1024, 4096, 16384)
    kv_dtypes: tuple[str, ...] = ("bf16", "fp8")
    attention: tuple[str, ...] = (FlashInferPaged.impl, TritonDecodeAttention.impl)
    budget_s: float = 200.0
    repeats: int = 15
    warmup: int = 3
    device: str = "cuda"
    tiny: bool = False
    extra: dict = field(default_factory=dict)


class _Writer:
    """Rows kept in memory and written atomically after every op (``components.parquet``, ``run.json``)."""

    def __init__(self, out: Path, meta: dict) -> None:
        self.out, self.meta, self.rows = out, meta, []
        out.mkdir(parents=True, exist_ok=True)

    def add(self, rows: Sequence[dict]) -> None:
        self.rows += list(rows)
        self.flush()

    def flush(self) -> None:
        df = pd.DataFrame(self.rows)
        for name, write in (("components.parquet", lambda p: df.to_parquet(p, index=False)),
                            ("run.json", lambda p: Path(p).write_text(json.dumps(self.meta, indent=1, default=str)))):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=self.out)
            os.close(fd)
            try:
                write(tmp)
                os.replace(tmp, self.out / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise


def _checks_ok(checks: dict[str, float]) -> bool:
    return all(v <= CHECK_TOL.get(k, 0.02) for k, v in checks.items())


def _time(ops: Sequence[Callable], cfg: EngineGridConfig, dev: torch.device, overhead: float) -> dict:
    t = time_ops(list(ops), device=dev, repeats=cfg.repeats, warmup=cfg.warmup, l2_flush=dev.type == "cuda")
    return {"median_us": t.median_us, "p10_us": t.p10_us, "p90_us": t.p90_us, "mean_us": t.mean_us,
            "method": t.method, "l2_flush": t.l2_flush, "net_us": max(t.median_us - overhead, 0.0)}


class _Grid:
    """One run: the budget, the base provenance, the writer."""

    def __init__(self, cfg: EngineGridConfig, out: Path, log: Callable[[str], None]) -> None:
        self.cfg, self.log, self.t0 = cfg, log, time.perf_counter()
        self.dev = torch.device(cfg.device)
        if self.dev.type == "cuda" and self.dev.index is None:
            self.dev = torch.device("cuda", torch.cuda.current_device())
        prov = collect(self.dev.index if self.dev.type == "cuda" else None)
        status = "measured" if self.dev.type == "cuda" and not cfg.tiny else "synthetic"
        self.base = {"preset": cfg.preset, "status": status, "grade": "engine", **prov}
        self.meta: dict = {"config": {k: v for k, v in cfg.__dict__.items()}, "kernels": {}, "attention": {},
                           "errors": []}
        self.w = _Writer(out, self.meta)
        self.overhead = 0.0

    def over(self) -> bool:
        return time.perf_counter() - self.t0 > self.cfg.budget_s

    def record(self, component: str, ops_fn: Callable[[], Sequence[Callable]], checks_fn: Callable[[], dict],
               **keys) -> None:
        """Time one op at one point (``keys``: tp, tokens, ...) and check it at the same point."""
        row = {**self.base, "component": component, **keys}
        if self.over():
            self.w.add([{**row, "outcome": "skipped: time budget"}])
            return
        try:
            ops = ops_fn()
            for op in ops:              # eager run: creates outputs, compiles kernels, feeds the check
                op()
            if self.dev.type == "cuda":
                torch.cuda.synchronize(self.dev)
            checks = checks_fn()
            row.update(check=json.dumps({k: round(v, 5) for k, v in checks.items()}), check_ok=_checks_ok(checks),
                       check_tokens=keys.get("tokens"))
            row.update(_time(ops, self.cfg, self.dev, self.overhead), outcome="ok")
        except Exception as exc:  # noqa: BLE001 - one failing op must not end the grid
            row["outcome"] = f"error: {type(exc).__name__}: {str(exc)[:300]}"
            self.meta["errors"].append(f"{component} {keys}: {row['outcome']}")
            if self.dev.type == "cuda":
                torch.cuda.synchronize(self.dev)
        self.w.add([row])


def _linear_jobs(g: _Grid, ks: KernelSet, sh, tp: int) -> None:
    h = sh.hidden
    gd = sh.gdn
    shapes = {"eng.gdn_in_proj": (h, 2 * gd.H * gd.K + 2 * gd.HV * gd.V),
              "eng.gdn_out_proj": (gd.HV * gd.V, h), "eng.attn_qkv_proj": (h, sh.attn_qkv_out),
              "eng.attn_o_proj": (sh.q_heads_per_gpu * sh.attn_head_dim, h)}
    for name, (fin, fout) in shapes.items():
        lin = BlockFP8Linear(ks, fin, fout, g.dev, seed=zlib.crc32(name.encode()) % 1000)
        for n in g.cfg.tokens:
            x = (torch.randn((n, fin), device=g.dev) * 0.5).to(torch.bfloat16)
            lin.bind(x)
            g.record(name, lambda lin=lin: lin.ops, lin.checks, tp=tp, tokens=n, batch=n, in_features=fin,
                     out_features=fout, weights_dtype="fp8_block", impl=f"{ks.how['quant']} + {ks.how['gemm']}",
                     config=json.dumps(lin.cfg), config_how=lin.cfg_how)
    for name, (fin, fout) in {"eng.gdn_ba_proj": (h, 2 * gd.HV), "eng.lm_head": (h, sh.vocab_per_gpu)}.items():
        lin = BF16Linear(fin, fout, g.dev)
        for n in g.cfg.tokens:
            lin.bind((torch.randn((n, fin), device=g.dev) * 0.5).to(torch.bfloat16))
            g.record(name, lambda lin=lin: lin.ops, lambda lin=lin: {"lm_head": rel_err(lin.out, lin.reference())},
                     tp=tp, tokens=n, batch=n, in_features=fin, out_features=fout, weights_dtype="bf16",
                     impl="torch.nn.functional.linear (cuBLAS), bf16")
            if name == "eng.lm_head":
                g.record("eng.sampling", lambda lin=lin: [lambda: torch.argmax(lin.out, dim=-1)],
                         lambda lin=lin: {}, tp=tp, tokens=n, batch=n, impl="torch.argmax (greedy)")


def _moe_jobs(g: _Grid, ks: KernelSet, sh, tp: int) -> None:
    moe = FusedMoEFP8(ks, sh.hidden, sh.moe_intermediate_per_gpu, sh.num_experts, sh.experts_per_token,
                      sh.shared_intermediate_per_gpu, g.dev, seed=tp)
    impl = f"{ks.how['moe']}; {ks.how['quant']}; align in torch; shared expert {ks.how['gemm']}"
    for n in g.cfg.tokens:
        moe.bind((torch.randn((n, sh.hidden), device=g.dev) * 0.5).to(torch.bfloat16))
        keys = dict(tp=tp, tokens=n, batch=n, weights_dtype="fp8_block", num_experts=sh.num_experts,
                    experts_per_token=sh.experts_per_token, moe_intermediate=sh.moe_intermediate_per_gpu)
        g.record("eng.moe_block", lambda: moe.ops, moe.checks, impl=impl, config=json.dumps(moe.cfg),
                 config_how=moe.cfg_how, **keys)
        g.record("eng.moe_experts", lambda: moe.ops[2:7] + [lambda: moe.c3.sum(dim=1)], lambda: {}, impl=impl, **keys)
        g.record("eng.moe_align_torch", lambda: [moe.align_op()], lambda: {}, impl="gdnlab moe_align_torch (torch)",
                 **keys)


def _norm_jobs(g: _Grid, sh, tp: int) -> None:
    from .sglang_kernels import import_sglang

    mod = import_sglang("sglang.kernels.ops.layernorm.fused_rmsnorm")
    w = torch.ones(sh.hidden, device=g.dev, dtype=torch.bfloat16)
    for n in g.cfg.tokens:
        x = torch.randn((n, sh.hidden), device=g.dev).to(torch.bfloat16)
        box = {}

        def op(x=x, box=box):
            box["y"] = mod.fused_rmsnorm(x, w, 1e-6)

        def chk(x=x, box=box):
            ref = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
            return {"rmsnorm": rel_err(box["y"], ref)}
        g.record("eng.rmsnorm", lambda op=op: [op], chk, tp=tp, tokens=n, batch=n,
                 impl="sglang.kernels.ops.layernorm.fused_rmsnorm (Triton)")


def _attention_jobs(g: _Grid, sh, tp: int, impls: dict[str, str]) -> None:
    B, L = max(g.cfg.requests), max(g.cfg.kv_lens)
    for kvd in g.cfg.kv_dtypes:
        tdt = torch.bfloat16 if kvd == "bf16" else torch.float8_e4m3fn
        for impl in g.cfg.attention:
            if impl == FlashInferPaged.impl and not impls.get(kvd, "").startswith("ok"):
                continue
            try:
                if impl == FlashInferPaged.impl:
                    k = FlashInferPaged(sh.q_heads_per_gpu, sh.kv_heads_per_gpu, sh.attn_head_dim, B, L,
                                        torch.bfloat16, g.dev, 16, kv_dtype=tdt)
                else:
                    k = TritonDecodeAttention(sh.q_heads_per_gpu, sh.kv_heads_per_gpu, sh.attn_head_dim, B, L,
                                              tdt, g.dev)
            except Exception as exc:  # noqa: BLE001 - the other implementation may still run
                g.meta["errors"].append(f"attention {impl} {kvd}: {type(exc).__name__}: {exc}")
                continue
            for b in g.cfg.requests:
                for kv in g.cfg.kv_lens:
                    _one_attention(g, k, impl, kvd, b, kv, tp, sh)
            if g.dev.type == "cuda":
                torch.cuda.empty_cache()


def _one_attention(g: _Grid, k, impl: str, kvd: str, b: int, kv: int, tp: int, sh) -> None:
    box = {}
    tol_key = "attention" if kvd == "bf16" else "attention_fp8"
    if impl == FlashInferPaged.impl:
        k.prepare(b, 1, kv)
        q = torch.randn((b, sh.q_heads_per_gpu, sh.attn_head_dim), device=g.dev).to(torch.bfloat16)
        ops = [lambda: box.__setitem__("o", k.attend(q))]
        chk = lambda: {tol_key: rel_err(box["o"], k.reference(q))}
        how = f"flashinfer BatchDecodeWithPagedKVCacheWrapper (tensor cores, page 16), {kvd} KV"
    else:
        k.prepare(b, kv)
        ops = [lambda: box.__setitem__("o", k.attend())]
        chk = lambda: {tol_key: rel_err(box["o"], k.reference())}
        how = f"{k.how}, page 1, 8 KV splits, {kvd} KV"
    g.record("eng.attention", lambda: ops, chk, tp=tp, tokens=b, batch=b, kv_len=kv, kv_dtype=kvd, impl=how,
             attn_impl=impl)


def run_engine_grid(cfg: EngineGridConfig, out: str | Path, log: Callable[[str], None] = print,
                    flashinfer_status: dict[str, str] | None = None) -> pd.DataFrame:
    """Measure the engine-grade components of ``cfg`` into ``out`` (module docstring); returns the
    rows. ``flashinfer_status``: ``{kv dtype: "ok ..." or why not}`` from the caller's FlashInfer
    self-test (FlashInfer attention runs only for the dtypes marked ``ok``)."""
    g = _Grid(cfg, Path(out), log)
    g.meta["attention"] = dict(flashinfer_status or {})
    ov = launch_overhead(g.dev, repeats=30, warmup=3, l2_flush=g.dev.type == "cuda")
    g.overhead = ov["overhead_us"]
    g.meta["launch"] = ov
    g.w.add([{**g.base, "component": "launch.graph", "median_us": g.overhead, "net_us": g.overhead, "outcome": "ok",
              "impl": "graph of one tiny kernel"}])
    try:
        ks = load_kernels()
        g.meta["kernels"] = ks.how
        log(f"[engine] kernels: {ks.how}")
    except Exception as exc:  # noqa: BLE001 - attention and the bf16 GEMMs can still be measured
        ks = None
        g.meta["errors"].append(f"kernels: {type(exc).__name__}: {exc}")
        log(f"[engine] SGLang kernels unavailable: {exc}")
    for tp in cfg.tps:
        sh = component_shapes(cfg.preset, tp) if not cfg.tiny else _tiny_shapes(tp)
        jobs = [("moe", lambda sh=sh, tp=tp: ks and _moe_jobs(g, ks, sh, tp)),
                ("attention", lambda sh=sh, tp=tp: _attention_jobs(g, sh, tp, g.meta["attention"])),
                ("linear", lambda sh=sh, tp=tp: ks and _linear_jobs(g, ks, sh, tp)),
                ("norm", lambda sh=sh, tp=tp: _norm_jobs(g, sh, tp))]
        for name, job in jobs:
            t = time.perf_counter()
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - the next job still runs
                g.meta["errors"].append(f"tp{tp} {name}: {type(exc).__name__}: {str(exc)[:300]}")
            log(f"[engine] tp{tp} {name}: {time.perf_counter() - t:.1f} s (elapsed {time.perf_counter() - g.t0:.0f} s)")
            g.w.flush()
    g.meta["wall_s"] = time.perf_counter() - g.t0
    g.w.flush()
    return pd.DataFrame(g.w.rows)


def _tiny_shapes(tp: int):
    """CPU test shapes (every width a multiple of the 128-wide FP8 blocks): hidden 256, GDN 1 q/k and 2
    value heads of 128, 2 q heads and 1 KV head of 64, 8 experts of 128, top-2, vocab 384."""
    from ..shapes import GDNShape
    from .dims import ComponentShapes

    gdn = GDNShape("tiny", 1, 2, 128, 128, 3, 1, torch.float32, 1, 256, "tests")
    return ComponentShapes(name="tiny", gdn=gdn, attn_q_heads=2, attn_kv_heads=1, attn_head_dim=64,
                           rotary_fraction=0.25, num_experts=8, experts_per_token=2, moe_intermediate=128,
                           shared_expert_intermediate=128, vocab_size=384, conv_kernel=4, tp=1, source="tests")
