"""Benchmark: load + NVTX-to-GPU projection of a large synthetic nsys SQLite export.

Generates (in a temporary directory) an nsys-2025.3-schema export of a decode loop with
``--kernels`` kernels (default 1,000,000: 10,000 steps x 25 layers x 4 kernels), one
``cudaLaunchKernel`` runtime row per kernel and 260,000 NVTX ranges (a "step" range holding 25
nested "layer" ranges), then times

* ``gdnlab``: ``gdnlab.traces.load`` + ``kernels``, ``runtime``, ``nvtx``, ``gpu_ranges``, ``metadata``;
* ``naive``: ``pandas.read_sql`` of the full tables, pandas merges for names and correlation ids,
  and a per-range-text ``merge_asof`` projection (count, first start, last end, summed durations);

checks that both give the same kernel count, GPU start and GPU end per range, prints a table and
writes ``benchmarks/results/trace_load.json`` (with machine info: CPUs, load average, versions).

    python3 benchmarks/bench_trace_load.py [--kernels 1000000] [--repeat 1] [--workers N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gdnlab import traces
from gdnlab.traces import synthetic

ROOT = Path(__file__).resolve().parents[1]


def run_gdnlab(path: Path, workers: int | None) -> tuple[float, float, pd.DataFrame]:
    """(wall s, CPU s of this process, gpu_ranges)."""
    c0, t0 = time.process_time(), time.perf_counter()
    t = traces.load(path, workers=workers)
    _ = t.kernels, t.runtime, t.nvtx, t.metadata
    g = t.gpu_ranges
    return time.perf_counter() - t0, time.process_time() - c0, g


def run_naive(path: Path) -> tuple[float, float, pd.DataFrame]:
    """(wall s, CPU s, projection per range)."""
    c0, t0 = time.process_time(), time.perf_counter()
    con = sqlite3.connect(path)
    k = pd.read_sql("SELECT * FROM CUPTI_ACTIVITY_KIND_KERNEL", con)
    r = pd.read_sql("SELECT * FROM CUPTI_ACTIVITY_KIND_RUNTIME", con)
    n = pd.read_sql("SELECT * FROM NVTX_EVENTS", con)
    s = pd.read_sql("SELECT * FROM StringIds", con)
    con.close()
    k = k.merge(s.rename(columns={"id": "demangledName", "value": "name"}), on="demangledName", how="left")
    k = k.merge(s.rename(columns={"id": "shortName", "value": "short_name"}), on="shortName", how="left")
    r = r.merge(s.rename(columns={"id": "nameId", "value": "api_name"}), on="nameId", how="left")
    n = n.merge(s.rename(columns={"id": "textId", "value": "registered"}), on="textId", how="left")
    n["text"] = n["text"].fillna(n["registered"])
    ranges = n[n["eventType"].isin([59, 60]) & n["end"].notna()].reset_index(drop=True)
    ranges["range_id"] = np.arange(len(ranges))
    kl = k.merge(r[["correlationId", "globalTid", "start"]].rename(columns={"start": "launch"}),
                 on="correlationId", how="inner").sort_values("launch")
    kl["dur"] = kl["end"] - kl["start"]
    out = []
    for _, grp in ranges.groupby("text"):
        grp = grp.sort_values("start")
        m = pd.merge_asof(kl, grp[["start", "end", "globalTid", "range_id"]].rename(
            columns={"start": "r_start", "end": "r_end"}), left_on="launch", right_on="r_start",
            by="globalTid", direction="backward")
        m = m[m["launch"] <= m["r_end"]]
        out.append(m.groupby("range_id").agg(kernel_count=("dur", "size"), gpu_start_ns=("start", "min"),
                                             gpu_end_ns=("end", "max"), kernel_sum_ns=("dur", "sum")))
    proj = pd.concat(out).reindex(ranges["range_id"]).fillna({"kernel_count": 0})
    proj["start_ns"] = ranges["start"].to_numpy()
    return time.perf_counter() - t0, time.process_time() - c0, proj


def machine_info() -> dict:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(), "python": platform.python_version(), "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": np.__version__, "pandas": pd.__version__, "sqlite": sqlite3.sqlite_version,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernels", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None, help="reader threads (default: up to 4)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "trace_load.json")
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args(argv)
    layers, per_layer = 25, 4
    steps = max(1, args.kernels // (layers * per_layer))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.sqlite"
        t0 = time.perf_counter()
        syn = synthetic.decode_loop(steps, layers=layers, kernels_per_layer=per_layer)
        synthetic.write_nsys_sqlite(path, syn, "2025.3")
        gen_s = time.perf_counter() - t0
        sizes = {"kernels": len(syn.kernels), "runtime_rows": len(syn.runtime), "nvtx_ranges": len(syn.ranges),
                 "file_mb": round(path.stat().st_size / 2**20, 1)}
        load_before = os.getloadavg()
        ours, naive, ours_cpu, naive_cpu = [], [], [], []
        g = proj = None
        for _ in range(args.repeat):
            s, c, g = run_gdnlab(path, args.workers)
            ours.append(s)
            ours_cpu.append(c)
            if not args.skip_naive:
                s, c, proj = run_naive(path)
                naive.append(s)
                naive_cpu.append(c)
        load_after = os.getloadavg()
    agree = None
    if proj is not None:
        gg = g.set_index("start_ns").sort_index()
        pp = proj.set_index("start_ns").sort_index()
        agree = bool((gg["kernel_count"].to_numpy() == pp["kernel_count"].to_numpy()).all()
                     and (gg["gpu_start_ns"].fillna(-1).to_numpy(np.int64)
                          == pp["gpu_start_ns"].fillna(-1).to_numpy(np.int64)).all()
                     and (gg["gpu_end_ns"].fillna(-1).to_numpy(np.int64)
                          == pp["gpu_end_ns"].fillna(-1).to_numpy(np.int64)).all())
    best = min(ours)
    result = {
        "benchmark": "trace_load", "sizes": sizes, "generate_s": round(gen_s, 2),
        "gdnlab_s": [round(x, 3) for x in ours], "naive_s": [round(x, 3) for x in naive],
        "gdnlab_cpu_s": [round(x, 3) for x in ours_cpu], "naive_cpu_s": [round(x, 3) for x in naive_cpu],
        "gdnlab_best_s": round(best, 3), "naive_best_s": round(min(naive), 3) if naive else None,
        "speedup": round(min(naive) / best, 2) if naive else None,
        "gdnlab_median_s": round(float(np.median(ours)), 3),
        "naive_median_s": round(float(np.median(naive)), 3) if naive else None,
        "speedup_median": round(float(np.median(naive)) / float(np.median(ours)), 2) if naive else None,
        "speedup_cpu": round(min(naive_cpu) / min(ours_cpu), 2) if naive else None,
        "results_agree": agree,
        "note": "wall times on a shared machine: other processes' load is in loadavg_*; CPU times "
                "(process_time, all threads) are less sensitive to it",
        "workers": args.workers or max(1, min(4, os.cpu_count() or 1)),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
        "machine": machine_info(), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(f"{'what':<34}{'value':>14}")
    print(f"{'kernels / runtime / nvtx ranges':<34}{sizes['kernels']:>8,} / {sizes['runtime_rows']:,} / "
          f"{sizes['nvtx_ranges']:,}")
    print(f"{'file size (MiB)':<34}{sizes['file_mb']:>14}")
    print(f"{'gdnlab load+project (s, best)':<34}{best:>14.2f}   (CPU {min(ours_cpu):.2f} s)")
    if naive:
        print(f"{'naive read_sql+merges (s, best)':<34}{min(naive):>14.2f}   (CPU {min(naive_cpu):.2f} s)")
        print(f"{'speedup (best / median / CPU)':<34}{result['speedup']:>13.1f}x / "
              f"{result['speedup_median']:.1f}x / {result['speedup_cpu']:.1f}x")
        print(f"{'projections agree':<34}{str(agree):>14}")
    print(f"{'cpus / loadavg before':<34}{os.cpu_count():>6} / {load_before[0]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
