#!/usr/bin/env python3
"""Steady-state time per call of every available GDN backend (reference excluded).

For each backend, op (decode T=1, verify T=4), state dtype (float32, bfloat16) and batch (1, 64, 256):

1. first call, eager, synchronised: ``first_call_ms`` (includes JIT compilation: FlashInfer's CuTe
   DSL or Triton; FlashInfer also keeps a disk cache in ~/.cache/flashinfer for the machine's life)
   and the second call ``second_call_ms`` (the same call warm: host overhead + kernel);
2. steady state by :func:`gdnlab.instrument.time_calls` with its defaults: n calls on disjoint pool
   rows (:func:`gdnlab.harness_calls.kernel_calls`) in one CUDA graph, n chosen so a sample lasts
   >= 50 µs, L2 flushed before each replay, µs per call = replay / n; median, p10, p90 reported with
   ``timing_method`` and ``calls_per_sample``. If capture fails, the row says so in ``method`` /
   ``note``.

Writes ``$GDNLAB_OUT/backend_timing.json`` (default ``./out``) and prints a table (µs per call) last.

    python scripts/gpu/backend_timing.py                      # all available backends
    python scripts/gpu/backend_timing.py --backends flashinfer --batches 1,64 --dtypes bf16
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from gdnlab.harness_calls import kernel_calls
from gdnlab.instrument import time_calls
from gdnlab.kernels import available_backends, get_backend
from gdnlab.provenance import collect
from gdnlab.shapes import dtype_name, preset

DEFAULT_SHAPE = ("qwen3.5-397b-a17b", 4)  # H=4, HV=16, K=V=128 per GPU (the seed's TP=4 shape)


# ------------------------------------------------------------------------------------------ timing
def first_call_ms(fn: Callable[[], object]) -> float:
    """Wall time (ms) of one synchronised call."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3


# ------------------------------------------------------------------------------------------ cases
def time_case(backend, shape, op: str, dtype: torch.dtype, batch: int, tokens: int, device: torch.device,
              repeats: int = 60, intermediate: str = "pool") -> dict:
    """One row: first/second-call ms, steady-state µs per call (:func:`gdnlab.instrument.time_calls`
    defaults: CUDA graph of n calls on disjoint pool rows, L2 flushed before each replay), the kernel
    path that ran. ``intermediate``: ``"pool"`` gives verify a buffer in the pool's dtype for every
    backend (as SGLang's ``intermediate_ssm``); ``"backend"`` uses each backend's ``new_intermediate``."""
    if op not in ("decode", "verify"):
        raise ValueError(f"op must be 'decode' or 'verify', got {op!r}")
    if intermediate not in ("pool", "backend"):
        raise ValueError(f"intermediate must be 'pool' or 'backend', got {intermediate!r}")
    T = 1 if op == "decode" else tokens
    make = kernel_calls(backend, shape, batch=batch, draft_tokens=T, state_dtype=dtype, device=device,
                          intermediate_dtype=dtype if intermediate == "pool" else None, check=False)
    call = make(1)[0]
    first = first_call_ms(call)          # JIT compile (or cache load) + run
    second = first_call_ms(call)
    path = backend.last_path.as_dict()
    timing = time_calls(make, repeats=repeats, device=device)
    inter = None
    if op == "verify":
        inter = dtype_name(dtype) if intermediate == "pool" else dtype_name(backend.new_intermediate(
            shape.call_dims(1, T, 1), torch.empty((1, *shape.state_shape), dtype=dtype, device=device)).dtype)
    return {"backend": backend.name, "op": op, "T": T, "state_dtype": dtype_name(dtype), "batch": batch,
            "first_call_ms": round(first, 3), "second_call_ms": round(second, 3), **timing.as_dict(),
            "timing_method": timing.method, "intermediate_dtype": inter, "kernel": path.get("kernel"), "path": path}


def run_grid(backend_names, shape, ops, dtypes, batches, tokens, device, repeats, log=print,
             backend_kwargs: dict | None = None, intermediate: str = "pool") -> list[dict]:
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
                        row = time_case(be, shape, op, dt, B, T, device, repeats, intermediate)
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
            f"{r['median_us']:9.2f} µs/call ({r['method']}, {r['calls_per_sample']} per sample, {r['kernel']}, "
            f"first call {r['first_call_ms']:.0f} ms)")


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
            cells.append(f"{r['median_us']:12.2f}" + ("*" if r and r["method"] != "amortised" else "")
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
    ap.add_argument("--repeats", "--replays", dest="repeats", type=int, default=60,
                    help="timed samples per case (>= 50 recommended)")
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
                    parse_list(a.batches, int), a.tokens, device, a.repeats,
                    backend_kwargs={"flashinfer": {"zero_padding_output": bool(a.fi_padding_fixup)}},
                    intermediate=a.intermediate)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"provenance": collect(), "status": "measured", "shape": shape.describe(),
           "config": {k: v for k, v in vars(a).items() if k != "out"},
           "availability": {n: {"available": s.available, "reason": s.reason} for n, s in status.items()},
           "units": {"median_us": "µs per call (gdnlab.instrument.time_calls: CUDA-graph replay / calls_per_sample)",
                     "first_call_ms": "ms wall"},
           "rows": rows}
    (out / "backend_timing.json").write_text(json.dumps(doc, indent=1, default=str))
    prov = doc["provenance"]
    print(f"\nwrote {out / 'backend_timing.json'}")
    print(f"\nfirst / second call (ms; first includes JIT compile unless cached on disk):\n{jit_table(rows)}")
    print(f"\nsteady-state µs per call, {shape.describe()}; {prov['gpu']} ({prov['sm']}), "
          f"median of {a.repeats} samples of gdnlab.instrument.time_calls (* = not amortised); flashinfer "
          f"{'with' if a.fi_padding_fixup else 'without'} the bf16 padding fixup; verify intermediates in "
          f"{'the pool dtype' if a.intermediate == 'pool' else 'each backend default dtype'}:")
    print(table(rows))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
