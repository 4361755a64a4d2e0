#!/usr/bin/env python3
"""Steady-state time per call of every available GDN backend (reference excluded), by CUDA-graph replay.

For each backend, op (decode T=1, verify T=4), state dtype (float32, bfloat16) and batch (1, 64, 256):

1. first call, eager, synchronised: ``first_call_ms`` (includes JIT compilation: FlashInfer's CuTe
   DSL or Triton; FlashInfer also keeps a disk cache in ~/.cache/flashinfer for the machine's life)
   and the second call ``second_call_ms`` (the same call warm: host overhead + kernel);
2. ``max(--calls, layers)`` calls captured in one ``torch.cuda.CUDAGraph`` (``validate=False``,
   preallocated intermediate buffers), cycling over pool *layers* as a model's GDN layers do, with
   enough layers (at most 128) that the states touched per replay exceed ``--min-footprint-mb``
   (4x the H100's 50 MB L2) — so the state stream is not served from L2 (at B=1 the cap leaves
   ~67 MB fp32 / ~34 MB bf16, partly L2-resident: see ``footprint_mb``);
3. ``--replays`` replays timed one by one with CUDA events; µs per call = replay time / calls;
   median, p10, p90 reported. If capture fails, the same calls are timed eagerly (host overhead
   included) and the row says so in ``method`` / ``note``.

Writes ``$GDNLAB_OUT/backend_timing.json`` (default ``./out``) and prints a table (µs per call) last.
Self-contained on purpose (torch + gdnlab core only; pandas for the table if present).

    python scripts/gpu/backend_timing.py                      # all available backends
    python scripts/gpu/backend_timing.py --backends flashinfer --batches 1,64 --dtypes bf16
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, when run as a script

from gdnlab.inputs import make_inputs
from gdnlab.kernels import available_backends, get_backend
from gdnlab.kernels.validation import GDNCallDims
from gdnlab.provenance import collect
from gdnlab.shapes import dtype_name, preset
from gdnlab.state import StatePool

DEFAULT_SHAPE = ("qwen3.5-397b-a17b", 4)  # H=4, HV=16, K=V=128 per GPU (the seed's TP=4 shape)


# ------------------------------------------------------------------------------------------ timing
def _quantiles(xs: list[float]) -> dict:
    s = sorted(xs)

    def q(p: float) -> float:
        return s[min(len(s) - 1, max(0, round(p * (len(s) - 1))))]
    return {"median_us": statistics.median(s), "p10_us": q(0.1), "p90_us": q(0.9), "min_us": s[0]}


def graph_time_us(calls: list[Callable[[], object]], replays: int = 60, warmup: int = 2) -> dict:
    """µs per call of ``calls`` (run in order) by CUDA-graph replay; eager fallback if capture fails.

    Returns ``median_us``, ``p10_us``, ``p90_us``, ``min_us`` (per call), ``method``
    (``"cuda_graph"`` or ``"eager"``), ``calls_per_replay``, ``replays`` and ``note``.
    """
    if replays < 1 or not calls:
        raise ValueError("need at least one call and one replay")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as torch.cuda.graphs recommends
        for _ in range(warmup):
            for c in calls:
                c()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    method, note = "cuda_graph", ""
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            for c in calls:
                c()
        graph.replay()
        torch.cuda.synchronize()
        run = graph.replay
    except Exception as exc:  # noqa: BLE001 - any capture failure -> eager, with the reason
        method, note = "eager", f"CUDA-graph capture failed ({type(exc).__name__}: {str(exc)[:200]}); eager timing includes host overhead"
        torch.cuda.synchronize()

        def run() -> None:
            for c in calls:
                c()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
    for s, e in zip(starts, ends):
        s.record()
        run()
        e.record()
    torch.cuda.synchronize()
    per_call = [s.elapsed_time(e) * 1000.0 / len(calls) for s, e in zip(starts, ends)]
    del graph
    return {**_quantiles(per_call), "method": method, "calls_per_replay": len(calls), "replays": replays,
            "note": note}


def first_call_ms(fn: Callable[[], object]) -> float:
    """Wall time (ms) of one synchronised call."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3


# ------------------------------------------------------------------------------------------ cases
def build_calls(backend, shape, op: str, dtype: torch.dtype, batch: int, tokens: int, device: torch.device,
                calls: int = 16, min_footprint_mb: float = 200.0, max_layers: int = 128, seed: int = 0,
                intermediate: str = "pool"):
    """Callables for the steady-state calls of one case, each on its own pool layer.

    ``layers = ceil(min_footprint_mb / state MB per layer)`` (1..``max_layers``) and
    ``max(calls, layers)`` calls cycle over them. Returns ``(callables, info)``; ``info`` holds
    ``layers``, ``footprint_mb`` (state bytes touched per replay, MB = 1e6 bytes, intermediate
    writes excluded) and ``check``, one validated call (``validate=True``). ``intermediate``:
    ``"pool"`` allocates verify's intermediate buffers in the pool's dtype for every backend (as
    SGLang's ``intermediate_ssm``, which has the SSM dtype); ``"backend"`` uses each backend's
    ``new_intermediate`` (FlashInfer: the pool's dtype; gdnlab's Triton backend: float32 by default).
    """
    per_layer = batch * shape.state_bytes(dtype)
    layers = max(1, min(max_layers, math.ceil(min_footprint_mb * 1e6 / per_layer)))
    n_calls = max(calls, layers)
    pool = StatePool(shape, batch, dtype=dtype, device=device, layers=layers).randomize_(seed)
    idx = pool.alloc(batch)
    inp = make_inputs(shape, batch, tokens, device=device, seed=seed)
    args = inp.args()
    views = [pool.layer(i) for i in range(layers)]
    if op == "decode":
        fns = [lambda p=views[i % layers]: backend.decode(*args, p, idx, validate=False) for i in range(n_calls)]
        check = lambda: backend.decode(*args, views[0], idx)
    elif op == "verify":
        dims = GDNCallDims(batch, tokens, shape.H, shape.HV, shape.K, shape.V, pool.num_slots)
        if intermediate == "pool":
            inter = [torch.zeros((batch, tokens, *shape.state_shape), dtype=dtype, device=device)
                     for _ in range(layers)]
        elif intermediate == "backend":
            inter = [backend.new_intermediate(dims, views[i]) for i in range(layers)]
        else:
            raise ValueError(f"intermediate must be 'pool' or 'backend', got {intermediate!r}")
        fns = [lambda p=views[i % layers], b=inter[i % layers]: backend.verify(*args, p, idx, intermediate=b,
                                                                              validate=False)
               for i in range(n_calls)]
        check = lambda: backend.verify(*args, views[0], idx, intermediate=inter[0])
    else:
        raise ValueError(f"op must be 'decode' or 'verify', got {op!r}")
    return fns, {"layers": layers, "footprint_mb": round(layers * per_layer / 1e6, 1), "pool": pool,
                 "check": check, "intermediate_dtype": dtype_name(inter[0].dtype) if op == "verify" else None}


def time_case(backend, shape, op: str, dtype: torch.dtype, batch: int, tokens: int, device: torch.device,
              calls: int = 16, replays: int = 60, min_footprint_mb: float = 200.0, intermediate: str = "pool") -> dict:
    """One row: first/second-call ms, steady-state µs per call, the kernel path that ran."""
    fns, info = build_calls(backend, shape, op, dtype, batch, tokens, device, calls, min_footprint_mb,
                            intermediate=intermediate)
    # first call validated (arguments checked once); the timed calls run with validate=False
    first = first_call_ms(info.pop("check"))
    second = first_call_ms(fns[0])
    path = backend.last_path.as_dict()
    timing = graph_time_us(fns, replays=replays)
    del info["pool"]
    return {"backend": backend.name, "op": op, "T": tokens, "state_dtype": dtype_name(dtype), "batch": batch,
            "first_call_ms": round(first, 3), "second_call_ms": round(second, 3), **timing, **info,
            "kernel": path.get("kernel"), "path": path}


def run_grid(backend_names, shape, ops, dtypes, batches, tokens, device, calls, replays, min_footprint_mb,
             log=print, backend_kwargs: dict | None = None, intermediate: str = "pool") -> list[dict]:
    rows = []
    for name in backend_names:
        opts = (backend_kwargs or {}).get(name, {})
        be = get_backend(name, **opts)
        for op in ops:
            T = 1 if op == "decode" else tokens
            for dt in dtypes:
                allowed = be.decode_state_dtypes if op == "decode" else be.verify_state_dtypes
                if dt not in allowed:
                    rows.append({"backend": name, "op": op, "T": T, "state_dtype": dtype_name(dt), "batch": None,
                                 "error": f"{dtype_name(dt)} state not supported by {name} {op} here"})
                    continue
                for B in batches:
                    try:
                        row = time_case(be, shape, op, dt, B, T, device, calls, replays, min_footprint_mb,
                                        intermediate)
                        row["backend_options"] = opts
                    except Exception as exc:  # noqa: BLE001 - one failing case must not lose the others
                        row = {"backend": name, "op": op, "T": T, "state_dtype": dtype_name(dt), "batch": B,
                               "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
                    rows.append(row)
                    log(_row_line(row))
                    torch.cuda.empty_cache()
    return rows


def _row_line(r: dict) -> str:
    if "error" in r:
        return f"  {r['backend']:<10} {r['op']:<6} T={r['T']} {r['state_dtype']:<8} B={r['batch']}: ERROR {r['error']}"
    return (f"  {r['backend']:<10} {r['op']:<6} T={r['T']} {r['state_dtype']:<8} B={r['batch']:<4} "
            f"{r['median_us']:9.2f} µs/call ({r['method']}, {r['kernel']}, first call {r['first_call_ms']:.0f} ms)")


# ------------------------------------------------------------------------------------------ table
def table(rows: list[dict]) -> str:
    """Steady-state µs per call: one line per (op, T, state dtype, batch), one column per backend."""
    ok = [r for r in rows if "median_us" in r]
    if not ok:
        return "(no timings)"
    backends = sorted({r["backend"] for r in ok}, key=lambda n: (n != "flashinfer", n))
    keys = sorted({(r["op"], r["T"], r["state_dtype"], r["batch"]) for r in ok},
                  key=lambda k: (k[0] != "decode", k[2], k[3]))
    by = {(r["op"], r["T"], r["state_dtype"], r["batch"], r["backend"]): r for r in ok}
    head = f"{'op':<7}{'T':>2} {'state':<9}{'B':>5}" + "".join(f"{b:>12}" for b in backends)
    if len(backends) == 2:
        head += f"{backends[0][:5] + '/' + backends[1][:6]:>14}"
    lines = [head]
    for k in keys:
        cells, vals = [], []
        for b in backends:
            r = by.get((*k, b))
            vals.append(r["median_us"] if r else None)
            cells.append(f"{r['median_us']:12.2f}" + ("*" if r and r["method"] != "cuda_graph" else "")
                         if r else f"{'-':>12}")
        line = f"{k[0]:<7}{k[1]:>2} {k[2]:<9}{k[3]:>5}" + "".join(cells)
        if len(backends) == 2 and None not in vals:
            line += f"{vals[0] / vals[1]:14.2f}"
        lines.append(line)
    return "\n".join(lines)


def jit_table(rows: list[dict]) -> str:
    ok = [r for r in rows if "first_call_ms" in r]
    lines = [f"{'backend':<11}{'op':<7}{'state':<9}{'B':>5}{'first ms':>11}{'second ms':>11}  kernel"]
    for r in ok:
        lines.append(f"{r['backend']:<11}{r['op']:<7}{r['state_dtype']:<9}{r['batch']:>5}"
                     f"{r['first_call_ms']:11.1f}{r['second_call_ms']:11.2f}  {r['kernel']}")
    return "\n".join(lines)


def parse_list(s: str, conv=str) -> list:
    return [conv(x) for x in s.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="", help="comma list (default: every available backend but reference)")
    ap.add_argument("--batches", default="1,64,256")
    ap.add_argument("--ops", default="decode,verify")
    ap.add_argument("--tokens", type=int, default=4, help="T of verify (draft tokens)")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--preset", default=DEFAULT_SHAPE[0])
    ap.add_argument("--tp", type=int, default=DEFAULT_SHAPE[1])
    ap.add_argument("--calls", type=int, default=16, help="minimum calls captured per graph")
    ap.add_argument("--replays", type=int, default=60, help="timed replays (>= 50 recommended)")
    ap.add_argument("--min-footprint-mb", type=float, default=200.0)
    ap.add_argument("--intermediate", choices=("pool", "backend"), default="pool",
                    help="verify's intermediate dtype: the pool's for every backend (SGLang), or each "
                         "backend's new_intermediate() choice")
    ap.add_argument("--fi-padding-fixup", action="store_true",
                    help="time FlashInfer with gdnlab's padding fixup (zero_padding_output=True: one compare + "
                         "masked_fill per bf16 call); default off = the kernel sequence SGLang runs (these "
                         "batches have no padding rows)")
    ap.add_argument("--out", default=os.environ.get("GDNLAB_OUT", "out"))
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("backend_timing: no CUDA device; nothing to time", file=sys.stderr)
        return 2
    from gdnlab.shapes import dtype_from_name
    status = available_backends()
    names = parse_list(a.backends) or [n for n, st in status.items() if st.available and n != "reference"]
    for n in names:
        print(f"{status[n]}" if n in status else f"{n}: unknown backend")
    names = [n for n in names if n in status and status[n].available]
    shape = preset(a.preset, tp=a.tp)
    device = torch.device("cuda", torch.cuda.current_device())
    rows = run_grid(names, shape, parse_list(a.ops), [dtype_from_name(d) for d in parse_list(a.dtypes)],
                    parse_list(a.batches, int), a.tokens, device, a.calls, a.replays, a.min_footprint_mb,
                    backend_kwargs={"flashinfer": {"zero_padding_output": bool(a.fi_padding_fixup)}},
                    intermediate=a.intermediate)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"provenance": collect(), "status": "measured", "shape": shape.describe(),
           "config": {k: v for k, v in vars(a).items() if k != "out"},
           "availability": {n: {"available": s.available, "reason": s.reason} for n, s in status.items()},
           "units": {"median_us": "µs per call (CUDA-graph replay / calls_per_replay)", "first_call_ms": "ms wall"},
           "rows": rows}
    (out / "backend_timing.json").write_text(json.dumps(doc, indent=1, default=str))
    prov = doc["provenance"]
    print(f"\nwrote {out / 'backend_timing.json'}")
    print(f"\nfirst / second call (ms; first includes JIT compile unless cached on disk):\n{jit_table(rows)}")
    print(f"\nsteady-state µs per call, {shape.describe()}; {prov['gpu']} ({prov['sm']}), "
          f"median of {a.replays} CUDA-graph replays (* = eager fallback); flashinfer "
          f"{'with' if a.fi_padding_fixup else 'without'} the bf16 padding fixup; verify intermediates in "
          f"{'the pool dtype' if a.intermediate == 'pool' else 'each backend default dtype'}:")
    print(table(rows))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
