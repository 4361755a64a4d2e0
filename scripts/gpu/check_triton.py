#!/usr/bin/env python3
"""Quick GPU check of gdnlab's Triton backend: smoke + correctness, first-call (JIT) time, steady state.

Run on the GPU machine from the repo root::

    GDNLAB_OUT=out python3 scripts/gpu/check_triton.py            # full (about 2-3 min on an H100)
    GDNLAB_OUT=out python3 scripts/gpu/check_triton.py --quick    # B=64 only, three configs

1. **Correctness** — decode and verify (+ commit) against the float64 PyTorch reference for a few
   shapes, fp32 and bf16 pools, padding rows and permuted slots; tolerances from
   :mod:`gdnlab.kernels.tolerances`. Any failure makes the exit status 1.
2. **First call** — eager wall time (ms) of the first three calls of each (op, state dtype) with the
   default config at B=64, run first in a fresh Triton cache (``TRITON_CACHE_DIR`` points at an empty
   temp dir unless ``--keep-cache``): the first call is Triton's JIT compile + module load + run.
3. **Steady state** — decode (T=1) and verify (T=4, fp32 intermediate for an fp32 pool, pool dtype
   for a bf16 pool) at B = 1, 64, 256, H=4 HV=16 K=V=128 (Qwen3.5-397B at TP4), for several
   ``(BV, num_warps)`` launch configs, "auto" being the backend's default, timed by
   :func:`gdnlab.instrument.time_calls` with its defaults (n calls on disjoint pool rows in one CUDA
   graph, L2 flushed before each replay, per-call = replay / n) over ``--reps`` (>= 100) samples.
   Reported: median, p10, p90 in µs, effective GB/s (``gdnlab.roofline.gdn_bytes`` minimum bytes /
   median time) and % of the datasheet peak HBM bandwidth.

Writes ``$GDNLAB_OUT/triton_check.json`` (default ``./out``) and prints the tables last.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if "--keep-cache" not in sys.argv:  # before anything imports triton: first calls must compile
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="gdnlab_triton_cache_")
os.environ.pop("TRITON_INTERPRET", None)

import torch

from gdnlab.inputs import make_inputs
from gdnlab.kernels import tolerances as tol
from gdnlab.kernels.reference import ReferenceBackend
from gdnlab.kernels.triton import TritonBackend
from gdnlab.shapes import preset

SHAPE = preset("qwen3.5-397b-a17b", tp=4)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: label -> TritonBackend kwargs; "auto" = the backend's default, "32x1" = SGLang's launch (BV=32, 1 warp)
CONFIGS = {"auto": {}, "8x1": {"bv": 8, "num_warps": 1}, "16x1": {"bv": 16, "num_warps": 1},
           "32x1": {"bv": 32, "num_warps": 1}, "32x2": {"bv": 32, "num_warps": 2},
           "64x4": {"bv": 64, "num_warps": 4}}
QUICK_CONFIGS = ("auto", "8x1", "32x1")


def _pool(P: int, dtype: torch.dtype, device, seed: int) -> torch.Tensor:
    g = torch.Generator(device=device).manual_seed(seed)
    return (0.1 * torch.randn((P, *SHAPE.state_shape), generator=g, device=device)).to(dtype)


def _indices(B: int, P: int, seed: int, pad_every: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    idx = (torch.randperm(P - 1, generator=gen)[:B] + 1).to(torch.int32)
    if pad_every:
        idx[2::pad_every] = -1
    return idx


# ---------------------------------------------------------------------------------------- correctness
def check_correctness(device) -> list[dict]:
    ref = ReferenceBackend(compute_dtype=torch.float64)
    rows = []
    for (B, T) in [(3, 1), (16, 1), (16, 4), (64, 2), (256, 4)]:
        for dname, dt in DTYPES.items():
            for cname in ("auto", "8x1", "32x1"):
                be = TritonBackend(**CONFIGS[cname])
                P = 2 * B + 8
                pool0 = _pool(P, dt, device, seed=B + T)
                idx = _indices(B, P, seed=B + T).to(device)
                inp = make_inputs(SHAPE, B, T, act_dtype=torch.bfloat16, device=device, seed=B + T)
                live = idx >= 0
                slots = idx[live].long()
                res = {"B": B, "T": T, "state": dname, "config": cname}
                try:
                    if T == 1:
                        p, pr = pool0.clone(), pool0.clone()
                        o = be.decode(*inp.args(), p, idx)
                        res["path"] = be.last_path.as_dict()
                        o_r = ref.decode(*inp.args(), pr, idx)
                        checks = [("output", o[live], o_r[live], tol.output_tol(o.dtype, dt)),
                                  ("pool", p[slots], pr[slots], tol.state_tol(dt))]
                        untouched = torch.ones(P, dtype=torch.bool, device=device)
                        untouched[slots] = False
                        ok_other = bool(torch.equal(p[untouched], pool0[untouched]))
                        op = "decode"
                    else:
                        p = pool0.clone()
                        o, it = be.verify(*inp.args(), p, idx)
                        res["path"] = be.last_path.as_dict()
                        o_r, it_r = ref.verify(*inp.args(), pool0.clone(), idx)
                        acc = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(B),
                                            dtype=torch.int32).to(device)
                        pr = pool0.clone()
                        ok_other = bool(torch.equal(p, pool0))
                        be.commit(p, idx, it, acc)
                        ref.commit(pr, idx, it_r, acc)
                        checks = [("output", o[live], o_r[live], tol.output_tol(o.dtype, dt)),
                                  ("intermediate", it[live], it_r[live], tol.intermediate_tol(it.dtype, dt)),
                                  ("commit", p[slots], pr[slots], tol.commit_tol(dt, it.dtype))]
                        op = "verify"
                    torch.cuda.synchronize()
                    res["op"] = op
                    res["padding_zero"] = bool(torch.all(o[~live] == 0))
                    res["untouched_ok"] = ok_other
                    worst = 0.0
                    for what, x, r, t in checks:
                        err, ratio = tol.max_violation(x, r, t)
                        res[f"{what}_maxerr"] = err
                        worst = max(worst, ratio)
                    res["worst_ratio"] = worst
                    res["ok"] = worst <= 1.0 and res["padding_zero"] and ok_other
                except Exception as exc:  # noqa: BLE001 - report, keep going
                    res.update(ok=False, error=f"{type(exc).__name__}: {exc}")
                rows.append(res)
    return rows


# ---------------------------------------------------------------------------------------------- timing
def time_one(op: str, dname: str, B: int, cname: str, device, reps: int) -> dict:
    from gdnlab.harness_calls import kernel_calls
    from gdnlab.instrument import time_calls
    from gdnlab.roofline import gdn_bytes

    dt = DTYPES[dname]
    T = 1 if op == "decode" else 4
    be = TritonBackend(**CONFIGS[cname])
    inter_dt = torch.float32 if dt == torch.float32 else dt
    make = kernel_calls(be, SHAPE, batch=B, draft_tokens=T, state_dtype=dt, device=device, seed=1,
                          intermediate_dtype=inter_dt if op == "verify" else None)
    t = time_calls(make, repeats=reps, device=device)
    nbytes = gdn_bytes(SHAPE, B, T, mode=op, state_dtype=dt, act_dtype=torch.bfloat16,
                       intermediate_dtype=inter_dt).total
    return {"op": op, "state": dname, "B": B, "T": T, "config": cname,
            "BV": be.last_path.detail["BV"], "num_warps": be.last_path.detail["num_warps"],
            "num_stages": be.last_path.detail["num_stages"], "calls_per_sample": t.calls_per_sample,
            "timing_method": t.method, "repeats": t.repeats, "median_us": t.median_us, "p10_us": t.p10_us,
            "p90_us": t.p90_us, "bytes": nbytes, "gbps": nbytes / (t.median_us * 1e-6) / 1e9}


def first_calls(device, B: int = 64) -> list[dict]:
    """Wall time of the first and second call of each (op, state dtype) with the default launch
    config: the first includes Triton's JIT compile (fresh cache) and module load."""
    rows = []
    for op in ("decode", "verify"):
        for dname, dt in DTYPES.items():
            T = 1 if op == "decode" else 4
            be = TritonBackend()
            P = 2 * B + 8
            pool = _pool(P, dt, device, seed=0)
            idx = _indices(B, P, seed=0).to(device)
            inp = make_inputs(SHAPE, B, T, act_dtype=torch.bfloat16, device=device, seed=0)
            fn = (lambda be=be, inp=inp, pool=pool, idx=idx: be.decode(*inp.args(), pool, idx)) \
                if op == "decode" else (lambda be=be, inp=inp, pool=pool, idx=idx: be.verify(*inp.args(), pool, idx))
            times = []
            for _ in range(3):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn()
                torch.cuda.synchronize()
                times.append((time.perf_counter() - t0) * 1e3)
            rows.append({"op": op, "state": dname, "B": B, "T": T, "first_call_ms": times[0],
                         "second_call_ms": times[1], "third_call_ms": times[2], "path": be.last_path.as_dict()})
    return rows


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="B=64 only and three configs")
    ap.add_argument("--batches", default="1,64,256", help="comma-separated B values for timing")
    ap.add_argument("--configs", default=None, help=f"comma-separated launch configs from {list(CONFIGS)}")
    ap.add_argument("--reps", type=int, default=100, help="graph replays per measurement (>= 100)")
    ap.add_argument("--skip-correctness", action="store_true")
    ap.add_argument("--keep-cache", action="store_true", help="use the normal Triton cache (first calls may be warm)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("check_triton: no CUDA device; nothing to do (this script runs on the GPU machine)")
        return 2
    ok, why = TritonBackend.availability()
    if not ok:
        print(f"check_triton: triton backend unavailable: {why}")
        return 2
    if args.reps < 100:
        raise ValueError(f"--reps must be >= 100 (median of at least 100 replays), got {args.reps}")
    batches = [64] if args.quick else [int(x) for x in args.batches.split(",") if x.strip()]
    configs = list(QUICK_CONFIGS) if args.quick and args.configs is None else \
        [c.strip() for c in (args.configs or ",".join(CONFIGS)).split(",") if c.strip()]
    bad = [c for c in configs if c not in CONFIGS]
    if bad:
        raise ValueError(f"--configs: unknown {bad}; known: {list(CONFIGS)}")
    device = torch.device("cuda", torch.cuda.current_device())
    out_dir = Path(os.environ.get("GDNLAB_OUT", "out"))
    out_dir.mkdir(parents=True, exist_ok=True)

    from gdnlab.hardware import detect
    from gdnlab.provenance import collect
    spec = detect()
    peak = spec.peak_hbm_gbps if spec is not None else float("nan")
    result: dict = {"provenance": collect(), "gpu_spec": spec.as_dict() if spec else None, "availability": why,
                    "shape": {"H": SHAPE.H, "HV": SHAPE.HV, "K": SHAPE.K, "V": SHAPE.V},
                    "triton_cache_dir": os.environ.get("TRITON_CACHE_DIR"), "configs": {c: CONFIGS[c] for c in configs}}

    t_start = time.perf_counter()
    result["first_call"] = first_calls(device)
    timings = []
    for op in ("decode", "verify"):
        for dname in DTYPES:
            for cname in configs:
                for B in batches:
                    try:
                        timings.append(time_one(op, dname, B, cname, device, args.reps))
                    except Exception as exc:  # noqa: BLE001 - stored as this case's error; next runs
                        timings.append({"op": op, "state": dname, "B": B, "config": cname,
                                        "error": f"{type(exc).__name__}: {exc}"})
                    torch.cuda.empty_cache()
    result["timing"] = timings
    correctness = [] if args.skip_correctness else check_correctness(device)
    result["correctness"] = correctness
    result["wall_s"] = time.perf_counter() - t_start
    path = out_dir / "triton_check.json"
    path.write_text(json.dumps(result, indent=1, default=str))

    # --------------------------------------------------------------------------------- tables (last)
    print(f"\n# gdnlab Triton check — {result['provenance'].get('gpu')} · triton {result['provenance'].get('triton')} "
          f"· torch {torch.__version__} · H={SHAPE.H} HV={SHAPE.HV} K={SHAPE.K} V={SHAPE.V}")
    n_bad = sum(not r.get("ok") for r in correctness)
    print(f"\ncorrectness: {len(correctness) - n_bad}/{len(correctness)} cases pass")
    for r in correctness:
        if not r.get("ok"):
            why = r.get("error") or {k: v for k, v in r.items() if k.endswith(("maxerr", "ratio", "_ok", "_zero"))}
            print(f"  FAIL {r.get('op', '?')} B={r['B']} T={r['T']} state={r['state']} config={r['config']}: {why}")
    print("\nfirst call, default config, B=64 (fresh Triton cache: compile + load + run; eager wall time), ms:")
    print(f"  {'op':7s} {'state':5s} {'BV':>3s} {'first':>9s} {'second':>8s} {'third':>8s}")
    for r in result["first_call"]:
        print(f"  {r['op']:7s} {r['state']:5s} {r['path']['BV']:3d} {r['first_call_ms']:9.1f} "
              f"{r['second_call_ms']:8.2f} {r['third_call_ms']:8.2f}")
    print(f"\nsteady state (gdnlab.instrument.time_calls, L2-cold, median of {args.reps}; % of {peak:.0f} GB/s peak):")
    print(f"  {'op':7s} {'state':5s} {'B':>4s} {'config':6s} {'BV':>3s} {'w':>2s} {'med µs':>9s} {'p10':>8s} "
          f"{'p90':>8s} {'GB/s':>7s} {'%peak':>6s}")
    best: dict = {}
    for r in timings:
        if "error" in r:
            print(f"  {r['op']:7s} {r['state']:5s} {r['B']:4d} {r['config']:6s} ERROR {r['error'][:80]}")
            continue
        pct = 100 * r["gbps"] / peak if peak == peak else float("nan")
        print(f"  {r['op']:7s} {r['state']:5s} {r['B']:4d} {r['config']:6s} {r['BV']:3d} {r['num_warps']:2d} "
              f"{r['median_us']:9.2f} {r['p10_us']:8.2f} {r['p90_us']:8.2f} {r['gbps']:7.0f} {pct:6.1f}")
        k = (r["op"], r["state"], r["B"])
        if k not in best or r["median_us"] < best[k]["median_us"]:
            best[k] = r
    print("\nfastest config per (op, state, B):")
    for (op, st, B), r in sorted(best.items()):
        auto = next((x for x in timings if (x["op"], x["state"], x["B"], x.get("config")) == (op, st, B, "auto")
                     and "error" not in x), None)
        vs = f" (auto {auto['median_us']:.2f} µs, {auto['median_us'] / r['median_us']:.2f}x)" if auto else ""
        print(f"  {op:7s} {st:5s} B={B:<4d} {r['config']:6s} {r['median_us']:8.2f} µs{vs}")
    print(f"\nwrote {path} ({result['wall_s']:.0f} s)")
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
