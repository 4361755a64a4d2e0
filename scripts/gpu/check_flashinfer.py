#!/usr/bin/env python3
"""Quick check of gdnlab's FlashInfer backend on this GPU: correctness vs the reference, JIT time,
steady-state time.

Shape H=4, HV=16, K=V=128 (Qwen3.5-397B-A17B at TP=4, the seed's per-GPU shape).

1. Correctness, B = 1, 16, 256 (B > 1 with padding rows: 2 at B=16, 8 at B=256), decode and
   T=4 verify, float32 and bfloat16 state, against :class:`~gdnlab.kernels.reference.ReferenceBackend`
   on the same GPU: relative error (max|diff| / max|ref|) of the output and of the new state /
   intermediate states; padding outputs zero; pool slots outside the batch unchanged (slot 0 exempt
   on bf16 decode: FlashInfer's null slot, ``FlashInferBackend.scratch_slots``); the kernel path
   that ran. The first call of each case is timed on its own (``first_call_ms``: JIT compile of a
   new CuTe-DSL specialisation, or a load from ~/.cache/flashinfer) next to a warm call.
2. Probe of FlashInfer itself: does a buffer with more token slots than T (``cache_steps > T``,
   which both MTP wrappers accept) receive token t of row i at ``[i, t]``? (The kernels index it
   with stride T; gdnlab stages such buffers.)
3. Steady-state µs per call by :func:`gdnlab.instrument.time_calls` (its defaults: a CUDA graph of
   n calls on disjoint rows, L2 flushed before each replay; median over 60 samples)
   for decode and T=4 verify at B = 1, 64, 256, both state dtypes, twice: ``fi-contract`` (the
   default backend: bf16 calls add gdnlab's padding fixup, a compare + ``masked_fill_``) and
   ``fi-sglang`` (``zero_padding_output=False``: exactly the kernels SGLang launches).

Writes ``$GDNLAB_OUT/check_flashinfer.json`` and prints a summary table last. Exit code 0 when every
check passed, 1 when one failed, 2 when the backend cannot run here (the reason is printed).
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))   # backend_timing, next to this script

from backend_timing import first_call_ms, table, time_case

from gdnlab.inputs import make_inputs
from gdnlab.kernels.flashinfer import FlashInferBackend
from gdnlab.kernels.reference import ReferenceBackend
from gdnlab.provenance import collect
from gdnlab.shapes import dtype_name, preset
from gdnlab.state import StatePool

SHAPE = preset("qwen3.5-397b-a17b", tp=4)
DTYPES = (torch.float32, torch.bfloat16)
TOL_OUT = 2e-2                                   # bf16 outputs
TOL_STATE = {torch.float32: 1e-4, torch.bfloat16: 2e-2}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    if b.numel() == 0:
        return 0.0
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def correctness(be: FlashInferBackend, device, op: str, dtype, B: int, T: int) -> dict:
    n_pad = 0 if B == 1 else max(2, B // 32)
    inp = make_inputs(SHAPE, B, T, device=device, seed=B)
    sp = StatePool(SHAPE, B + 3, dtype=dtype, device=device).randomize_(B)
    idx = sp.batch_indices(sp.alloc(B - n_pad), pad_to=B)
    pool, before, ref_pool = sp.tensor, sp.tensor.clone(), sp.tensor.clone()
    live = idx[idx >= 0].long()
    n = B - n_pad
    ref = ReferenceBackend()
    row = {"op": op, "T": T, "state_dtype": dtype_name(dtype), "batch": B, "padding_rows": n_pad}
    if op == "decode":
        holder = {}
        row["first_call_ms"] = round(first_call_ms(
            lambda: holder.setdefault("o", be.decode(*inp.args(), pool, idx))), 2)
        o = holder["o"]
        path = be.last_path.as_dict()
        o_ref = ref.decode(*inp.args(), ref_pool, idx)
        row["rel_err_out"] = rel(o[:n], o_ref[:n])
        row["rel_err_state"] = rel(pool[live], ref_pool[live])
        exempt = set(live.tolist()) | set(be.scratch_slots_for("decode", dtype))
        others = [s for s in range(pool.shape[0]) if s not in exempt]
        row["others_untouched"] = bool(torch.equal(pool[others], before[others]))
        row["slot0_changed"] = not bool(torch.equal(pool[0], before[0]))
        pool.copy_(before)
        row["second_call_ms"] = round(first_call_ms(lambda: be.decode(*inp.args(), pool, idx)), 3)
    else:
        inter = be.new_intermediate(_dims(B, T, sp), pool)
        holder = {}
        row["first_call_ms"] = round(first_call_ms(lambda: holder.setdefault(
            "o", be.verify(*inp.args(), pool, idx, intermediate=inter)[0])), 2)
        o = holder["o"]
        path = be.last_path.as_dict()
        o_ref, inter_ref = ref.verify(*inp.args(), ref_pool, idx)
        row["rel_err_out"] = rel(o[:n], o_ref[:n])
        row["rel_err_state"] = rel(inter[:n], inter_ref[:n])
        row["others_untouched"] = bool(torch.equal(pool, before))  # verify never writes the pool
        row["second_call_ms"] = round(first_call_ms(lambda: be.verify(*inp.args(), pool, idx, intermediate=inter)), 3)
    row["padding_out_zero"] = bool(torch.all(o[n:] == 0))
    row["kernel"], row["path"] = path["kernel"], path
    row["ok"] = bool(row["rel_err_out"] < TOL_OUT and row["rel_err_state"] < TOL_STATE[dtype]
                     and row["others_untouched"] and row["padding_out_zero"])
    return row


def _dims(B, T, sp):
    from gdnlab.kernels.validation import GDNCallDims
    return GDNCallDims(B, T, SHAPE.H, SHAPE.HV, SHAPE.K, SHAPE.V, sp.num_slots)


def probe_cache_steps(be: FlashInferBackend, device, dtype, B: int = 4, T: int = 3) -> dict:
    """Call FlashInfer directly with a [B, T+1] buffer: is row i, token t at [i, t]?"""
    inp = make_inputs(SHAPE, B, T, device=device, seed=42)
    sp = StatePool(SHAPE, B, dtype=dtype, device=device).randomize_(42)
    idx = sp.alloc(B)
    _, inter_ref = ReferenceBackend().verify(*inp.args(), sp.tensor.clone(), idx)
    buf = torch.zeros((B, T + 1, SHAPE.HV, SHAPE.V, SHAPE.K), dtype=dtype, device=device)
    A = inp.A_log.float()
    try:
        if dtype == torch.bfloat16:
            be.kernels.mtp_bf16(A_log=A, a=inp.a, dt_bias=inp.dt_bias, q=inp.q, k=inp.k, v=inp.v, b=inp.b,
                                initial_state_source=sp.tensor, initial_state_indices=idx,
                                intermediate_states_buffer=buf, disable_state_update=True)
        else:
            be.kernels.mtp_fp32(q=inp.q, k=inp.k, v=inp.v, initial_state=sp.tensor, initial_state_indices=idx,
                                A_log=A, a=inp.a, dt_bias=inp.dt_bias, b=inp.b, intermediate_states_buffer=buf,
                                disable_state_update=True)
        torch.cuda.synchronize()
    except Exception as exc:  # noqa: BLE001 - the probe's failure is its recorded result
        return {"state_dtype": dtype_name(dtype), "error": f"{type(exc).__name__}: {exc}"}
    err = rel(buf[:, :T], inter_ref)
    flat = buf.reshape(-1, SHAPE.HV, SHAPE.V, SHAPE.K)[: B * T].reshape(B, T, SHAPE.HV, SHAPE.V, SHAPE.K)
    return {"state_dtype": dtype_name(dtype), "B": B, "T": T, "cache_steps": T + 1,
            "rel_err_at_[i,t]": err, "rel_err_if_strided_by_T": rel(flat, inter_ref),
            "indexed_by_cache_steps": bool(err < TOL_STATE[dtype])}


def main() -> int:
    out = Path(os.environ.get("GDNLAB_OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    ok, reason = FlashInferBackend.availability()
    print(f"flashinfer backend: {'available' if ok else 'unavailable'} — {reason}")
    doc: dict = {"provenance": collect(), "status": "measured", "available": ok, "reason": reason,
                 "shape": SHAPE.describe()}
    if not ok:
        (out / "check_flashinfer.json").write_text(json.dumps(doc, indent=1, default=str))
        return 2
    device = torch.device("cuda", torch.cuda.current_device())
    be = FlashInferBackend()
    checks, probes, timings = [], [], []
    print("\n1. correctness vs reference (first call of each case includes JIT compile)")
    for op, T in (("decode", 1), ("verify", 4)):
        for dtype in DTYPES:
            for B in (1, 16, 256):
                try:
                    r = correctness(be, device, op, dtype, B, T)
                except Exception as exc:  # noqa: BLE001 - a failed case is stored with its traceback
                    r = {"op": op, "T": T, "state_dtype": dtype_name(dtype), "batch": B, "ok": False,
                         "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
                checks.append(r)
                print("  " + ("ok  " if r.get("ok") else "FAIL") + f" {op:<6} {dtype_name(dtype):<8} B={B:<4}"
                      + (f" out {r['rel_err_out']:.1e} state {r['rel_err_state']:.1e} {r['kernel']:<22} "
                         f"first {r['first_call_ms']:8.1f} ms, warm {r['second_call_ms']:.2f} ms"
                         if "error" not in r else f" {r['error']}"))
    print("\n2. FlashInfer probe: intermediate buffer with cache_steps = T+1")
    for dtype in DTYPES:
        p = probe_cache_steps(be, device, dtype)
        probes.append(p)
        print(f"  {p}")
    print("\n3. steady state (CUDA-graph replay)")
    variants = {"fi-contract": be, "fi-sglang": FlashInferBackend(zero_padding_output=False)}
    for op, T in (("decode", 1), ("verify", 4)):
        for dtype in DTYPES:
            for B in (1, 64, 256):
                for label, vb in variants.items():
                    if label == "fi-sglang" and dtype == torch.float32:
                        continue  # no fixup on fp32 paths: the two variants are the same calls
                    try:
                        r = time_case(vb, SHAPE, op, dtype, B, T, device, repeats=60)
                    except Exception as exc:  # noqa: BLE001 - stored as this case's error; next runs
                        r = {"op": op, "T": T, "state_dtype": dtype_name(dtype), "batch": B,
                             "error": f"{type(exc).__name__}: {exc}"}
                    r["backend"] = label
                    timings.append(r)
                    torch.cuda.empty_cache()
    doc.update(correctness=checks, probe_cache_steps=probes, timing=timings)
    (out / "check_flashinfer.json").write_text(json.dumps(doc, indent=1, default=str))
    prov = doc["provenance"]
    n_ok = sum(bool(r.get("ok")) for r in checks)
    print(f"\nwrote {out / 'check_flashinfer.json'}")
    print(f"\nSUMMARY {prov['gpu']} ({prov['sm']}), flashinfer {prov['flashinfer']}, {SHAPE.describe()}")
    print(f"correctness: {n_ok}/{len(checks)} cases ok; cache_steps>T probe: "
          + ", ".join(f"{p['state_dtype']}={p.get('indexed_by_cache_steps', p.get('error'))}" for p in probes))
    print("first call ms (JIT) by case: " + ", ".join(
        f"{r['op']}/{r['state_dtype'][:4]}/B{r['batch']}={r['first_call_ms']:.0f}"
        for r in checks if "first_call_ms" in r))
    print("steady-state µs per call (gdnlab.instrument.time_calls, median of 60; * = not amortised; "
          "fp32 rows have no "
          "fixup, so fi-sglang = fi-contract there):")
    print(table(timings))
    errors = [r for r in timings if "error" in r]
    for r in errors:
        print(f"timing error: {r['op']} {r['state_dtype']} B={r['batch']}: {r['error']}")
    return 0 if n_ok == len(checks) and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
