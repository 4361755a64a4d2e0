#!/usr/bin/env python3
"""Nsight Compute counters of the GDN decode / T=4 verify kernels of both backends on the GPU machine.

Run from the repository root on the GPU machine::

    GDNLAB_OUT=$OUT NCU=/usr/local/cuda/bin/ncu python scripts/gpu/run_counters.py

Steps (whole script <= ~4 min; ``GDNLAB_METRICS_BUDGET_S`` overrides the 190 s profiling budget):

1. say whether nsight-python can drive the installed ncu, and why not (never imports ``nsight``);
2. run the engine ``auto`` picks (nsight-python if it can, else ``ncu`` CSV over gdnlab's driver) for
   backends triton then flashinfer x {decode, verify T=4} x B in {1, 16, 64, 256} x {float32, bfloat16}
   state (unsupported combinations are reported as skipped), H=4 HV=16 K=V=128 (qwen3.5-397b-a17b @ TP4),
   2 profiled calls per configuration, ``--clock-control none``, ``--cache-control all``; each backend
   built by ``gdnlab.kernels.make_backend`` (the options SGLang uses, as in the sweep);
3. write to ``$GDNLAB_OUT`` (default ./out): ``ncu_metrics.parquet`` (``.csv`` without pyarrow; one row per
   kernel launch), ``ncu_summary.csv`` (one row per configuration), ``ncu_raw.csv`` (raw ncu CSV of every
   run, for tests/data/ncu_raw_h100.csv), ``ncu_manifest.json`` (for tests/data/ncu_manifest_h100.json),
   ``ncu_logs.txt`` (ncu + driver output);
4. print the per-configuration table last.
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path

T0 = time.time()
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

BACKENDS = ("triton", "flashinfer")        # triton first: it finishes early and leaves its time to flashinfer
MODES = ("decode", "verify")
BATCHES = (256, 64, 16, 1)          # largest first: if the time budget runs out, the small batches go
STATE_DTYPES = ("float32", "bfloat16")
BUDGET_S = float(os.environ.get("GDNLAB_METRICS_BUDGET_S", "190"))


def section(title: str) -> None:
    print(f"\n=== {title} ({time.time() - T0:.0f} s) ===", flush=True)


def main() -> int:
    out = Path(os.environ.get("GDNLAB_OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    section("environment")
    import torch

    print(f"python {platform.python_version()}  torch {torch.__version__}  cuda {torch.version.cuda}  "
          f"device {torch.cuda.get_device_name() if torch.cuda.is_available() else 'NONE'}")
    from gdnlab.counters import (
        NcuNotFoundError,
        find_ncu,
        format_table,
        ncu_version,
        nsight_python_support,
        profile_kernels,
        save_frame,
        summarize_calls,
    )
    from gdnlab.kernels import available_backends

    for st in available_backends().values():
        print(f"  backend {st}")
    try:
        ncu = find_ncu()
    except NcuNotFoundError as exc:
        print(f"ERROR: {exc}")
        return 2
    print(f"ncu: {ncu}  {ncu_version(ncu)[1]}  (on PATH: {shutil.which('ncu') or 'no'}); running as uid {os.getuid()}")

    section("1. can nsight-python drive this ncu?")
    support = nsight_python_support(ncu)
    print(support.describe())
    engine = "nsight-python" if support.ok else "ncu-csv"
    print(f"-> engine: {engine}")

    section(f"2. profiling with {engine} (budget {BUDGET_S:.0f} s)")
    workdir = Path(os.environ.get("GDNLAB_METRICS_WORKDIR", "/tmp/gdnlab_ncu_work"))
    if workdir.exists():
        shutil.rmtree(workdir, ignore_errors=True)
    df = profile_kernels(backends=BACKENDS, modes=MODES, batches=BATCHES, state_dtypes=STATE_DTYPES,
                         preset="qwen3.5-397b-a17b", tp=4, draft_tokens=4, repeats=2, warmup=2, engine=engine,
                         ncu=ncu, time_budget_s=max(30.0, BUDGET_S - (time.time() - T0)), workdir=workdir,
                         raw_csv_out=out / "ncu_raw.csv", manifest_out=out / "ncu_manifest.json")

    section("3. writing results")
    path = save_frame(df, out / "ncu_metrics.parquet")
    summary = summarize_calls(df)
    save_frame(summary, out / "ncu_summary.csv")
    logs = sorted(workdir.glob("*.log"))
    with open(out / "ncu_logs.txt", "w", encoding="utf-8") as f:
        for lp in logs:
            text = lp.read_text(encoding="utf-8", errors="replace")
            f.write(f"##### {lp.name}\n{text[-400_000:]}\n")
    for p in (path, out / "ncu_summary.csv", out / "ncu_raw.csv", out / "ncu_manifest.json", out / "ncu_logs.txt"):
        print(f"  {p}: {f'{p.stat().st_size} bytes' if p.exists() else 'NOT WRITTEN'}")
    print(f"  reports and logs kept in {workdir}")

    section("4. results")
    print(f"engine {df.attrs.get('engine')}: {df.attrs.get('engine_reason')}")
    for n in df.attrs.get("notes", []):
        print(f"  note: {n}")
    bad = df[df["outcome"] != "ok"]
    for (outcome, reason), g in bad.groupby(["outcome", "reason"], sort=False):
        which = ", ".join(f"{r.backend} {r.mode} B={r.batch} {r.state_dtype}" for r in g.itertuples())
        print(f"  not profiled ({outcome}, {len(g)}): {reason}\n      {which}")
    gdn = df[(df["outcome"] == "ok")]
    if not gdn.empty:
        print("kernels seen per backend (name: launches):")
        for (be, name), n in gdn.groupby(["backend", "kernel_short"]).size().items():
            print(f"  {be}: {name}: {n}")
    reps = int(df["rep"].max() + 1) if df["rep"].notna().any() else 0
    print(f"\nGDN kernel counters, one row per configuration (median of {reps} "
          f"profiled calls; H=4 HV=16 K=V=128, bf16 activations; clocks not locked, caches flushed per pass); "
          f"total {time.time() - T0:.0f} s:")
    print(format_table(summary))
    return 0 if not summary.empty else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - one failing configuration must not hide the others' results
        traceback.print_exc()
        print(f"FAILED after {time.time() - T0:.0f} s")
        sys.exit(1)
