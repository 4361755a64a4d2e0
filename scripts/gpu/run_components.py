#!/usr/bin/env python3
"""Component benchmarks: engine-grade ops (``--engine``) or the synthetic bf16 slice and its
composition check, in one bounded run.

    python3 scripts/gpu/run_components.py --engine --out $OUT/engine_components --tps 4,8 --budget-s 200
    python3 scripts/gpu/run_components.py --out $OUT --preset qwen3.5-397b-a17b --tp 4 [--quick]
    python3 scripts/gpu/run_components.py --out c --device cpu --tiny        # CPU smoke run (slice)

``--engine`` (:mod:`gdnlab.components.engine`): every op of a Qwen3.5-397B decode step the way SGLang
0.5.23 runs it -- FP8 block-scaled fused MoE and GEMMs through SGLang's own Triton kernels, paged
decode attention through FlashInfer (bf16 and fp8 KV, after a self-test that JIT-compiles them within
``--attn-probe-timeout`` s in a subprocess) and SGLang's Triton decode attention, bf16 lm_head, greedy
sampling, SGLang's Triton RMSNorm -- each checked against torch at its timed batch, rows written to
``components.parquet`` after every op with ``run.json`` (kernels used, FlashInfer status, errors).
Every op is independent: a failing one is recorded and skipped; no timing starts after ``--budget-s``.

Slice mode (default):

1. Resolves what runs here, each with its reason stored in ``run.json``: the GDN backend
   (``--gdn-backend auto``: triton, flashinfer, reference), the attention kernels (``--attn auto``:
   FlashInfer's paged kernels if a self-test in a subprocess compiles and passes within
   ``--attn-probe-timeout`` s, else SDPA), the MoE grouped GEMM (``torch._grouped_mm``, else bmm).
2. Prints the memory and wall-time estimate, then times the components and the slice per preset
   (:func:`gdnlab.components.bench.run_grid`), stopping new timings after ``--budget-s``.
3. Composes the slice step from its components (:func:`gdnlab.components.compose.check_frame`) and
   projects the TP all-reduce (:mod:`gdnlab.components.allreduce`, status ``projected``).
4. Writes under ``--out``: ``components.parquet``, ``slice.parquet``, ``slice_check.parquet``,
   ``recipes.parquet``, ``allreduce.parquet`` (CSV when pyarrow is missing) and ``run.json``;
   prints the check table last.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd
import torch

from gdnlab.components.allreduce import allreduce_frame
from gdnlab.components.bench import GridConfig, estimate, run_grid
from gdnlab.components.compose import DEFAULT_TOLERANCE, check_frame
from gdnlab.components.layers import STEP_MODES, grouped_mm_available

FULL = {"batches": (1, 4, 16, 64, 128, 256), "kv_lens": (1024, 4096, 16384)}
QUICK = {"batches": (1, 16, 64, 256), "kv_lens": (1024, 16384)}


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _names(text: str) -> tuple[str, ...]:
    vals = tuple(v.strip() for v in text.split(",") if v.strip())
    if not vals:
        raise argparse.ArgumentTypeError("expected a comma list of names")
    return vals


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--preset", type=_names, default=("qwen3.5-397b-a17b",),
                   help="model preset(s), comma list, measured in order")
    p.add_argument("--tp", type=int, default=4, help="tensor-parallel degree the per-GPU shapes are sharded for")
    p.add_argument("--quick", action="store_true", help=f"smaller grid: B {QUICK['batches']}, KV {QUICK['kv_lens']}")
    p.add_argument("--batches", type=_ints, default=None, help="batch sizes B (comma list; default per --quick)")
    p.add_argument("--kv-lens", type=_ints, default=None, help="KV lengths in tokens (comma list)")
    p.add_argument("--modes", type=_names, default=STEP_MODES, help="step modes: decode, mtp")
    p.add_argument("--draft-tokens", type=int, default=4, help="draft tokens T verified per row in an MTP step")
    p.add_argument("--strategies", type=_names, default=("full_cache",),
                   help="verify strategies; the first runs in the slice, the others are timed as components")
    p.add_argument("--gdn-backend", default="auto", help="GDN kernel backend: auto, triton, flashinfer, reference")
    p.add_argument("--attn", default="auto", choices=("auto", "flashinfer", "sdpa"), help="attention kernels")
    p.add_argument("--attn-probe-timeout", type=float, default=90.0,
                   help="seconds the FlashInfer attention self-test (JIT compile included) may take")
    p.add_argument("--moe", default="auto", choices=("auto", "grouped_mm", "bmm"), help="routed-expert GEMMs")
    p.add_argument("--page-size", type=int, default=16, help="paged KV cache page size (tokens)")
    p.add_argument("--state-dtype", default=None, help="GDN state dtype (default: the preset's)")
    p.add_argument("--repeats", type=int, default=20, help="timed graph replays per timing")
    p.add_argument("--warmup", type=int, default=3, help="untimed replays per timing")
    p.add_argument("--budget-s", type=float, default=210.0, help="no new timing starts after this many seconds")
    p.add_argument("--mem-limit-gb", type=float, default=60.0, help="skip points whose estimate exceeds this")
    p.add_argument("--tol", type=float, default=DEFAULT_TOLERANCE, help="relative tolerance of the slice check")
    p.add_argument("--allreduce-busbw-gbps", type=float, default=450.0, help="NCCL bus bandwidth for the projection")
    p.add_argument("--allreduce-latency-us", type=float, default=8.0, help="fixed cost of one all-reduce (µs)")
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny shapes (CPU tests), not a served model")
    p.add_argument("--estimate-only", action="store_true", help="print the estimates and exit")
    p.add_argument("--engine", action="store_true", help="engine-grade components (see the module docstring)")
    p.add_argument("--tps", type=_ints, default=(4, 8), help="--engine: TP degrees (per-GPU shapes)")
    p.add_argument("--tokens", type=_ints, default=(1, 4, 16, 64, 128, 256, 512, 1024),
                   help="--engine: tokens per forward for GEMMs and MoE")
    p.add_argument("--requests", type=_ints, default=(1, 4, 16, 64, 128, 256), help="--engine: attention rows")
    args = p.parse_args(argv)
    grid = QUICK if args.quick else FULL
    args.batches = args.batches or grid["batches"]
    args.kv_lens = args.kv_lens or grid["kv_lens"]
    if args.quick:
        args.repeats = min(args.repeats, 15)
    bad = [m for m in args.modes if m not in STEP_MODES]
    if bad:
        p.error(f"--modes: unknown {bad}; expected {STEP_MODES}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here (use --device cpu --tiny)")
    return args


# ----------------------------------------------------------------------------------- resolution
def resolve_gdn(name: str, strategies: tuple[str, ...], device: str) -> tuple[str, str, str]:
    """``(decode backend, strategy backend, reason)``: the first candidate whose backend and first
    strategy can be made here."""
    from gdnlab.kernels import make_backend
    from gdnlab.strategies import get_strategy

    cands = [name] if name != "auto" else (["triton", "flashinfer", "reference"] if device != "cpu"
                                           else ["reference"])
    why = []
    for c in cands:
        try:
            make_backend(c)
            get_strategy(strategies[0], backend=c)
            return c, c, "; ".join([*why, f"{c}: ok"])
        except Exception as exc:  # noqa: BLE001 - try the next candidate
            why.append(f"{c}: {type(exc).__name__}: {str(exc)[:160]}")
    raise SystemExit(f"run_components: no GDN backend runs here ({'; '.join(why)})")


def resolve_attention(choice: str, shapes, page_size: int, draft_tokens: int, device: str,
                      timeout_s: float) -> tuple[str, str]:
    """``(impl, reason)``: FlashInfer after a passing self-test in a subprocess, else SDPA."""
    if device == "cpu" or choice == "sdpa":
        return "sdpa", "requested" if choice == "sdpa" else "CPU run"
    root = str(Path(__file__).resolve().parents[2])
    dims = (shapes.q_heads_per_gpu, shapes.kv_heads_per_gpu, shapes.attn_head_dim, page_size, draft_tokens)
    code = (f"import sys; sys.path.insert(0, {root!r}); "
            f"from gdnlab.components.attention import flashinfer_selftest; print(flashinfer_selftest{dims})")
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        why = f"FlashInfer self-test exceeded {timeout_s:g} s (JIT compile?)"
    else:
        if r.returncode == 0:
            return "flashinfer", (f"FlashInfer self-test passed in {time.perf_counter() - t0:.0f} s "
                                  f"(max |diff| {r.stdout.strip()})")
        tail = (r.stderr or r.stdout).strip().splitlines()
        why = f"FlashInfer self-test failed: {tail[-1][:300] if tail else r.returncode}"
    if choice == "flashinfer":
        raise SystemExit(f"run_components: --attn flashinfer: {why}")
    return "sdpa", why


def write(frame: pd.DataFrame, path: Path) -> str:
    try:
        frame.to_parquet(path.with_suffix(".parquet"), index=False)
        return path.with_suffix(".parquet").name
    except Exception as exc:  # noqa: BLE001 - no parquet engine here: keep the data as CSV
        frame.to_csv(path.with_suffix(".csv"), index=False)
        return f"{path.with_suffix('.csv').name} (parquet failed: {type(exc).__name__})"


def flashinfer_status(shapes, timeout_s: float, device: str) -> dict[str, str]:
    """``{kv dtype: "ok ..." or why not}``: FlashInfer's paged kernels self-tested (JIT compile
    included) in a subprocess per KV dtype, ``timeout_s`` shared between them."""
    if device == "cpu":
        return {"bf16": "CPU run", "fp8": "CPU run"}
    root = str(Path(__file__).resolve().parents[2])
    out, left = {}, timeout_s
    for kvd, name in (("bf16", "bfloat16"), ("fp8", "float8_e4m3fn")):
        dims = (shapes.q_heads_per_gpu, shapes.kv_heads_per_gpu, shapes.attn_head_dim, 16, 4)
        code = (f"import sys; sys.path.insert(0, {root!r}); from gdnlab.components.attention import "
                f"flashinfer_selftest; print(flashinfer_selftest(*{dims}, kv_dtype={name!r}))")
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=max(left, 1.0))
            tail = (r.stderr or r.stdout).strip().splitlines()
            out[kvd] = (f"ok: self-test passed in {time.perf_counter() - t0:.0f} s (max |diff| {r.stdout.strip()})"
                        if r.returncode == 0 else f"self-test failed: {tail[-1][:300] if tail else r.returncode}")
        except subprocess.TimeoutExpired:
            out[kvd] = f"self-test exceeded the remaining JIT budget ({left:.0f} s)"
        left -= time.perf_counter() - t0
        print(f"[run_components] FlashInfer {kvd} KV: {out[kvd]}", flush=True)
    return out


def engine_main(args) -> int:
    from gdnlab.components.dims import component_shapes
    from gdnlab.components.engine import EngineGridConfig, run_engine_grid

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shapes = component_shapes(args.preset[0], args.tps[0])
    fi = flashinfer_status(shapes, args.attn_probe_timeout, args.device) if args.attn in ("auto", "flashinfer") \
        else {"bf16": "not requested", "fp8": "not requested"}
    cfg = EngineGridConfig(preset=args.preset[0], tps=args.tps, tokens=args.tokens, requests=args.requests,
                           kv_lens=args.kv_lens, budget_s=max(1.0, args.budget_s - (time.perf_counter() - t0)),
                           repeats=args.repeats, warmup=args.warmup, device=args.device, tiny=args.tiny,
                           attention=("flashinfer", "sglang-triton") if args.attn != "sdpa" else ("sglang-triton",))
    df = run_engine_grid(cfg, out, log=lambda m: print(m, flush=True), flashinfer_status=fi)
    ok = df[df["outcome"] == "ok"]
    with pd.option_context("display.width", 220, "display.max_rows", 400):
        t = ok[ok["component"] != "launch.graph"].pivot_table(index=["component", "tp", "kv_dtype", "kv_len"],
                                                              columns="tokens", values="net_us", aggfunc="median",
                                                              dropna=False) if "kv_dtype" in ok else ok
        print(t.dropna(how="all").round(1).to_string())
    bad = df[(df["outcome"] != "ok") | (df.get("check_ok", True) == False)]  # noqa: E712 - NaN-safe False test
    print(f"[run_components] engine: {len(ok)} ok rows, {len(bad)} not ok or failing their check, "
          f"{time.perf_counter() - t0:.0f} s; wrote {out}/components.parquet and run.json", flush=True)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.engine:
        return engine_main(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dtype = torch.bfloat16 if args.device != "cpu" else torch.float32
    run_meta: dict = {"argv": sys.argv[1:], "presets": {}}
    frames: dict[str, list[pd.DataFrame]] = {k: [] for k in ("components", "slice", "slice_check", "recipes",
                                                                "allreduce")}
    gdn_be, strat_be, gdn_why = resolve_gdn(args.gdn_backend, args.strategies, args.device)
    moe_impl, moe_why = (args.moe, "requested") if args.moe != "auto" else (
        ("grouped_mm", "torch._grouped_mm passed a test case") if grouped_mm_available(args.device, dtype)[0]
        else ("bmm", grouped_mm_available(args.device, dtype)[1]))
    print(f"[run_components] GDN backend {gdn_be} ({gdn_why}); MoE {moe_impl} ({moe_why})", flush=True)
    for name in args.preset:
        cfg = GridConfig(preset=name, tp=args.tp, batches=args.batches, kv_lens=args.kv_lens, modes=args.modes,
                         draft_tokens=args.draft_tokens, strategies=args.strategies, gdn_backend=gdn_be,
                         strategy_backend=strat_be, moe_impl=moe_impl, page_size=args.page_size, dtype=dtype,
                         state_dtype=args.state_dtype, device=args.device, tiny=args.tiny, repeats=args.repeats,
                         warmup=args.warmup, l2_flush=args.device != "cpu",
                         budget_s=max(1.0, args.budget_s - (time.perf_counter() - t0)),
                         mem_limit_gb=args.mem_limit_gb)
        shapes = cfg.shapes()
        est = estimate(cfg)
        print(f"[run_components] {shapes.name}: estimate {est['n_timings']} timings, ~{est['wall_s']:.0f} s, "
              f"{est['total_bytes'] / 1e9:.1f} GB", flush=True)
        if args.estimate_only:
            continue
        attn_impl, attn_why = resolve_attention(args.attn, shapes, args.page_size, args.draft_tokens, args.device,
                                                args.attn_probe_timeout)
        cfg.attn_impl = attn_impl
        cfg.budget_s = max(1.0, args.budget_s - (time.perf_counter() - t0))
        print(f"[run_components] attention {attn_impl} ({attn_why})", flush=True)
        meta = {"gdn_backend": gdn_be, "gdn_reason": gdn_why, "attn_impl": attn_impl, "attn_reason": attn_why,
                "moe_impl": moe_impl, "moe_reason": moe_why}
        try:
            res = run_grid(cfg, log=lambda m: print(m, flush=True))
        except Exception as exc:  # noqa: BLE001 - keep what the other presets measured
            traceback.print_exc()
            meta["error"] = f"{type(exc).__name__}: {exc}"
            run_meta["presets"][name] = meta
            continue
        meta.update(res["meta"])
        overhead = float(res["meta"]["launch"]["overhead_us"])
        chk = check_frame(res["components"], res["slice"], res["recipes"], overhead, tol=args.tol)
        ar = allreduce_frame(shapes.name, shapes.hidden, args.tp, args.batches, args.draft_tokens,
                             num_layers=len(("gdn", "gdn", "gdn", "attn")), busbw_gbps=args.allreduce_busbw_gbps,
                             latency_us=args.allreduce_latency_us)
        for k, f in (("components", res["components"]), ("slice", res["slice"]), ("slice_check", chk),
                     ("recipes", res["recipes"]), ("allreduce", ar)):
            frames[k].append(f)
        run_meta["presets"][name] = meta
    files = {}
    for k, fs in frames.items():
        if fs:
            files[k] = write(pd.concat(fs, ignore_index=True), out / k)
    run_meta["files"] = files
    run_meta["wall_s"] = time.perf_counter() - t0
    (out / "run.json").write_text(json.dumps(run_meta, indent=1, default=str))
    print(f"[run_components] wrote {', '.join(files.values()) or 'nothing'} and run.json to {out} "
          f"in {run_meta['wall_s']:.0f} s", flush=True)
    if frames["slice_check"]:
        chk = pd.concat(frames["slice_check"], ignore_index=True)
        ar = pd.concat(frames["allreduce"], ignore_index=True)[["preset", "mode", "batch", "step_us"]]
        chk = chk.merge(ar.rename(columns={"step_us": "allreduce_projected_us"}), on=["preset", "mode", "batch"],
                        how="left")
        ok = chk[chk["outcome"] == "ok"]
        n_in = int(ok["within_tol"].sum())
        with pd.option_context("display.width", 200, "display.max_rows", 200):
            print(chk[["preset", "mode", "batch", "kv_len", "predicted_us", "measured_us", "rel_err", "within_tol",
                       "allreduce_projected_us", "outcome"]].round(3).to_string(index=False))
        print(f"[run_components] slice check: {n_in}/{len(ok)} measured points within {args.tol:.0%} "
              f"({len(chk) - len(ok)} not measured); all-reduce column is projected, not in the check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
