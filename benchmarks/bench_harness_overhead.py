"""How much does gdnlab's timing harness add? CUDA-event times vs the kernels' own durations (nsys).

Run on the GPU machine (after ``source .gpu/stage.sh``; ``$NSYS`` set, ``$GDNLAB_OUT`` the output dir)::

    python benchmarks/bench_harness_overhead.py [--backend flashinfer] [--batch 1 16 64 256]

1. Builds a few points (decode bf16 / fp32, verify T=4 fp32 and bf16, batch-scoped buffer) for each
   batch size, as the sweep does (pool of 257 slots, scattered rows, first call checked = JIT).
2. Times each in this process, with no profiler attached, the way ``gdnlab sweep`` does:
   :func:`gdnlab.instrument.time_fn` with CUDA-graph replay and with eager calls (L2 flushed), plus
   ``triton.testing.do_bench`` / ``do_bench_cudagraph`` as a cross-check.
3. Runs itself again (``--child``) under ``nsys profile --capture-range=cudaProfilerApi
   --cuda-graph-trace=node``: the child times the same points inside one capture range, each timed
   sample wrapped in an NVTX range ``harness:<point>`` (the flush and the spin kernel stay outside
   the ranges), exports SQLite, and sums the durations of the kernels launched inside each range
   (``gdnlab.traces.load(...).gpu_ranges`` when importable, else a direct SQL join of kernels ->
   launch API call -> NVTX range; the whole-trace ``nsys stats -r cuda_gpu_kern_sum`` table is kept too).
4. Reports per point: event median (graph, no profiler) / nsys kernel median - 1. Target: within 3 %
   at B >= 16. Also ``eager - graph`` (launch/host overhead) and the sweep's wall time: from
   ``$GDNLAB_OUT/sweep.parquet|jsonl`` when a sweep ran before (``point_s``, ``first_call_ms``),
   else a small sweep run here.

Writes ``$GDNLAB_OUT/harness_overhead.json`` (and ``harness_overhead.sqlite``, the trace); prints a
summary table last.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LABEL_PREFIX = "harness:"
TARGET_PCT = 3.0
TARGET_MIN_BATCH = 16


# ------------------------------------------------------------------------------------------- points

def plan(backend: str, batches: list[int], verify_T: int = 4) -> list[dict]:
    pts = []
    for B in batches:
        pts.append({"backend": backend, "mode": "decode", "T": 1, "state_dtype": "bfloat16", "B": B})
        pts.append({"backend": backend, "mode": "decode", "T": 1, "state_dtype": "float32", "B": B})
        pts.append({"backend": backend, "mode": "verify", "T": verify_T, "state_dtype": "float32", "B": B})
        pts.append({"backend": backend, "mode": "verify", "T": verify_T, "state_dtype": "bfloat16", "B": B})
    for p in pts:
        p["label"] = f"{LABEL_PREFIX}{p['backend']}:{p['mode']}{p['T'] if p['mode'] == 'verify' else ''}:" \
                     f"{p['state_dtype']}:B{p['B']}"
    return pts


def build(pt: dict, capacity: int, preset_name: str, tp: int, device: torch.device, cache: dict):
    """``(fn, rotated)`` for a point, after one checked call (JIT happens here): ``fn`` is the
    capturable (validate=False) call; ``rotated`` the same call on up to 16 disjoint row sets (each
    verify with its own buffer), as ``gdnlab sweep --rotate on`` times it."""
    from gdnlab.inputs import make_inputs
    from gdnlab.kernels.validation import GDNCallDims
    from gdnlab.shapes import dtype_from_name, preset
    from gdnlab.sweep import SGLANG_LIKE_OPTIONS, make_backend

    shape = preset(preset_name, tp=tp)
    name = pt["backend"]
    if name not in cache:
        cache[name] = make_backend(name, SGLANG_LIKE_OPTIONS.get(name))
    be = cache[name]
    sd = dtype_from_name(pt["state_dtype"])
    key = ("pool", sd)
    if key not in cache:
        gen = torch.Generator(device=device).manual_seed(0)
        cache[key] = torch.empty((capacity + 1, *shape.state_shape), dtype=sd, device=device).normal_(
            0, 0.1, generator=gen)
    pool = cache[key]
    B, T = pt["B"], pt["T"]
    g = torch.Generator().manual_seed(B)
    perm = torch.randperm(capacity, generator=g) + 1
    k = max(1, min(16, capacity // B))
    sets = [perm[j * B:(j + 1) * B].to(torch.int32).to(device) for j in range(k)]
    idx = sets[0]
    x = make_inputs(shape, B, T, device=device, seed=B + T)
    args = x.args()

    def call(ix, bf=None):
        if pt["mode"] == "decode":
            return lambda: be.decode(*args, pool, ix, validate=False)
        return lambda: be.verify(*args, pool, ix, intermediate=bf, validate=False)

    if pt["mode"] == "decode":
        be.decode(*args, pool, idx, validate=True)
        fn = call(idx)
        rotated = [call(ix) for ix in sets]
    else:
        dims = GDNCallDims(B, T, shape.H, shape.HV, shape.K, shape.V, pool.shape[0])
        buf = be.new_intermediate(dims, pool)
        be.verify(*args, pool, idx, intermediate=buf, validate=True)
        fn = call(idx, buf)
        k = max(1, min(k, int(8e9 // (buf.numel() * buf.element_size()))))
        rotated = [call(sets[j], buf if j == 0 else torch.empty_like(buf)) for j in range(k)]
    pt["rotate_calls"] = len(rotated)
    if device.type == "cuda":
        torch.cuda.synchronize()
    pt["kernel"] = be.last_path.kernel
    from gdnlab.roofline import gdn_bytes
    pt["bytes"] = gdn_bytes(shape, B, T, mode=pt["mode"], state_dtype=sd,
                            intermediate_dtype=(buf.dtype if pt["mode"] == "verify" else torch.float32)).total
    return fn, rotated


# ------------------------------------------------------------------------------------------- child

def child(args: argparse.Namespace) -> int:
    """Under nsys: build every point (JIT outside the capture range), then time them inside it."""
    from gdnlab.instrument import profiler_capture, time_fn

    pts = json.loads(Path(args.plan).read_text())
    dev = torch.device("cuda", torch.cuda.current_device())
    cache: dict = {}
    fns = []
    for p in pts:
        try:
            fns.append(build(p, args.capacity, args.preset, args.tp, dev, cache))
        except Exception as exc:  # noqa: BLE001
            p["error"] = f"{type(exc).__name__}: {exc}"[:300]
            fns.append(None)
    out = []
    with profiler_capture():
        for p, fr in zip(pts, fns):
            if fr is None:
                out.append(p)
                continue
            fn, rotated = fr
            t = time_fn(fn, warmup=args.warmup, repeats=args.repeats, flush_l2=True, graph=True,
                        nvtx_label=p["label"])
            r = time_fn(rotated, warmup=args.warmup, repeats=args.repeats, flush_l2=True, graph=True,
                        nvtx_label=p["label"] + ":rot")
            out.append({**p, "child_event_graph": t.as_dict(), "child_event_graph_rot": r.as_dict()})
    Path(args.events).write_text(json.dumps(out, indent=1))
    return 0


# ------------------------------------------------------------------------------------------- trace parsing

def _sql_kernel_sums(sqlite_path: Path, prefix: str) -> dict[str, list[int]]:
    """Per NVTX range text starting with ``prefix``: the summed duration (ns) of the kernels whose
    launch call (runtime or driver API, same thread) started inside each range instance."""
    db = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        ncols = {r[1] for r in db.execute("PRAGMA table_info(NVTX_EVENTS)")}
        text = "COALESCE(n.text, s.value)" if "textId" in ncols and "StringIds" in tables else "n.text"
        join = "LEFT JOIN StringIds s ON s.id = n.textId" if "textId" in ncols and "StringIds" in tables else ""
        ranges = db.execute(f"SELECT n.start, n.end, n.globalTid, {text} FROM NVTX_EVENTS n {join} "
                            f"WHERE n.end IS NOT NULL AND n.eventType IN (59, 60)").fetchall()
        ranges = [r for r in ranges if r[3] and str(r[3]).startswith(prefix)]
        launches = []
        for t in ("CUPTI_ACTIVITY_KIND_RUNTIME", "CUPTI_ACTIVITY_KIND_DRIVER"):
            if t in tables:
                launches += db.execute(f"SELECT start, globalTid, correlationId FROM {t}").fetchall()
        kernels = db.execute("SELECT start, end, correlationId FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchall()
    finally:
        db.close()
    by_corr: dict[int, list[int]] = {}
    for s, e, c in kernels:
        by_corr.setdefault(c, []).append(e - s)
    launch_by_tid: dict[int, list[tuple[int, int]]] = {}
    for s, tid, c in launches:
        if c in by_corr:
            launch_by_tid.setdefault(tid, []).append((s, c))
    for v in launch_by_tid.values():
        v.sort()
    import bisect
    out: dict[str, list[int]] = {}
    for s, e, tid, txt in sorted(ranges):
        lst = launch_by_tid.get(tid, [])
        i = bisect.bisect_left(lst, (s, -1))
        total = 0
        while i < len(lst) and lst[i][0] <= e:
            total += sum(by_corr[lst[i][1]])
            i += 1
        out.setdefault(str(txt), []).append(total)
    return out


def kernel_sums(sqlite_path: Path, prefix: str = LABEL_PREFIX) -> tuple[dict[str, list[int]], str]:
    """``({label: [kernel ns per range instance]}, method)`` via gdnlab.traces or, failing that, SQL."""
    try:
        from gdnlab.traces import load
        g = load(sqlite_path).gpu_ranges
        g = g[g["text"].astype(str).str.startswith(prefix)].sort_values("start_ns")
        if len(g):
            return ({str(k): [int(x) for x in v] for k, v in g.groupby("text", observed=True)["kernel_sum_ns"]},
                    "gdnlab.traces.load(...).gpu_ranges")
    except ImportError:
        pass
    except Exception as exc:  # noqa: BLE001 - fall back to the direct query, say why
        print(f"gdnlab.traces could not read {sqlite_path.name} ({type(exc).__name__}: {exc}); using SQL",
              file=sys.stderr)
    return _sql_kernel_sums(sqlite_path, prefix), "sqlite3 join (kernel -> launch -> NVTX range)"


def nsys_kern_sum(nsys: str, sqlite_path: Path) -> list[dict]:
    """``nsys stats --format csv -r cuda_gpu_kern_sum`` as rows (whole capture, by kernel name)."""
    try:
        res = subprocess.run([nsys, "stats", "--format", "csv", "-r", "cuda_gpu_kern_sum",
                              str(sqlite_path)], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return [{"error": str(exc)}]
    import csv
    import io
    lines = [ln for ln in res.stdout.splitlines() if ln.count(",") >= 3]
    if not lines:
        return [{"error": (res.stderr or res.stdout)[-300:]}]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


# ------------------------------------------------------------------------------------------- sweep wall

def sweep_wall(out_dir: Path, backend: str) -> dict:
    from gdnlab.sweep import SweepConfig, load_results, run_sweep

    for name in ("sweep.parquet", "sweep.jsonl"):
        p = out_dir / name
        if p.exists():
            try:
                df = load_results(p)
            except Exception as exc:  # noqa: BLE001
                return {"source": str(p), "error": f"{type(exc).__name__}: {exc}"}
            last = df[df["sweep_id"] == df["sweep_id"].iloc[-1]] if len(df) else df
            return _wall_stats(df, str(p), "all sweep_ids in file") | {"last_sweep_id_points": int(len(last))}
    cfg = SweepConfig(backends=[backend], concurrency=(1, 16, 256), draft_tokens=(4,), intermediates=("batch",))
    t0 = time.perf_counter()
    df = run_sweep(cfg, None, progress=False)
    wall = time.perf_counter() - t0
    return _wall_stats(df, "small sweep run here (decode + verify T=4, fp32/bf16, C=1,16,256)", "") | {"wall_s": wall}


def _wall_stats(df, source: str, note: str) -> dict:
    point_s = df["point_s"].fillna(0)
    first_s = df["first_call_ms"].fillna(0) / 1e3
    return {"source": source, "note": note, "points": int(len(df)),
            "status": {str(k): int(v) for k, v in df["status"].str.split(":").str[0].value_counts().items()},
            "sum_point_s": float(point_s.sum()), "sum_first_call_s": float(first_s.sum()),
            "timed_part_s": float((point_s - first_s).clip(lower=0).sum()),
            "median_point_s_excl_first_call": float((point_s - first_s).median()) if len(df) else None}


# ------------------------------------------------------------------------------------------- parent

def compare(pts: list[dict]) -> tuple[list[dict], str]:
    """One row per point: event medians (graph, rotated, eager), nsys kernel medians, % differences and
    whether |event / nsys - 1| <= TARGET_PCT at B >= TARGET_MIN_BATCH; plus the verdict line."""
    rows = []
    for p in pts:
        r = {"point": p["label"].removeprefix(LABEL_PREFIX), "B": p["B"], "kernel": p.get("kernel"),
             "error": p.get("error")}
        if "event_graph" in p:
            g, e = p["event_graph"]["median_us"], p["event_eager"]["median_us"]
            r.update(graph_us=g, graph_rot_us=p["event_graph_rot"]["median_us"], rot_calls=p.get("rotate_calls"),
                     eager_us=e, launch_overhead_us=e - g, gbps=p["bytes"] / (g * 1e-6) / 1e9)
            for k in ("triton_do_bench", "triton_do_bench_cudagraph"):
                if k in p:
                    r[f"{k}_us"] = p[k]["median_us"]
        if "nsys_kernel_us" in p and "graph_us" in r:
            k = p["nsys_kernel_us"]["median"]
            r["nsys_kernel_us"] = k
            r["graph_vs_nsys_pct"] = 100.0 * (r["graph_us"] / k - 1.0)
            r["graph_minus_nsys_us"] = r["graph_us"] - k
            if "child_event_graph" in p:
                r["child_graph_us"] = p["child_event_graph"]["median_us"]
                r["child_graph_vs_nsys_pct"] = 100.0 * (r["child_graph_us"] / k - 1.0)
            r["within_target"] = abs(r["graph_vs_nsys_pct"]) <= TARGET_PCT if p["B"] >= TARGET_MIN_BATCH else None
        if "nsys_kernel_us_rot" in p and "graph_rot_us" in r:
            kr = p["nsys_kernel_us_rot"]["median"]
            r["nsys_kernel_rot_us"] = kr
            r["graph_rot_vs_nsys_pct"] = 100.0 * (r["graph_rot_us"] / kr - 1.0)
            r["within_target_rot"] = abs(r["graph_rot_vs_nsys_pct"]) <= TARGET_PCT \
                if p["B"] >= TARGET_MIN_BATCH else None
        rows.append(r)
    verdicts = []
    for col, what in (("within_target", "one call per sample (sweep default)"),
                      ("within_target_rot", "rotated calls per sample (sweep --rotate on)")):
        judged = [r for r in rows if r.get(col) is not None]
        if judged:
            verdicts.append(f"{what}: {sum(r[col] for r in judged)}/{len(judged)} points at B >= {TARGET_MIN_BATCH} "
                            f"within {TARGET_PCT:g} % of the nsys kernel time")
    verdict = "; ".join(verdicts) or "no nsys comparison (no trace)"
    return rows, verdict


def _has_cuda() -> bool:
    return torch.cuda.is_available()


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device())


def _find_nsys() -> str | None:
    """gdnlab's own nsys lookup ($NSYS, PATH, usual folders); ``None`` when there is none."""
    from gdnlab.capture import NsysNotFoundError, find_nsys

    try:
        return find_nsys()
    except NsysNotFoundError:
        return None


def parent(args: argparse.Namespace) -> int:
    from gdnlab.capture import export_command, profile_command
    from gdnlab.instrument import time_fn, triton_do_bench
    from gdnlab.kernels import available_backends
    from gdnlab.provenance import collect

    if not _has_cuda():
        print("bench_harness_overhead: needs a CUDA GPU (nothing to measure here)", file=sys.stderr)
        return 2
    backend = args.backend
    if backend is None:
        avail = [n for n, s in available_backends().items() if s.available and n != "reference"]
        backend = "flashinfer" if "flashinfer" in avail else (avail[0] if avail else "reference")
    out_dir = Path(os.environ.get("GDNLAB_OUT", "out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    pts = plan(backend, args.batch, args.verify_tokens)
    dev = _device()
    cache: dict = {}
    t_all = time.perf_counter()

    # --- 1. in-process, no profiler: what the sweep measures
    for p in pts:
        try:
            fn, rotated = build(p, args.capacity, args.preset, args.tp, dev, cache)
        except Exception as exc:  # noqa: BLE001
            p["error"] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        g = time_fn(fn, warmup=args.warmup, repeats=args.repeats, flush_l2=True, graph=True)
        gr = time_fn(rotated, warmup=args.warmup, repeats=args.repeats, flush_l2=True, graph=True)
        e = time_fn(fn, warmup=args.warmup, repeats=args.repeats, flush_l2=True, graph=False)
        p["event_graph"], p["event_graph_rot"], p["event_eager"] = g.as_dict(), gr.as_dict(), e.as_dict()
        if not args.no_triton:
            try:
                p["triton_do_bench"] = triton_do_bench(fn, graph=False).as_dict()
                p["triton_do_bench_cudagraph"] = triton_do_bench(fn, graph=True).as_dict()
            except Exception as exc:  # noqa: BLE001
                p["triton_error"] = f"{type(exc).__name__}: {exc}"[:200]
        del fn, rotated
    del cache
    if dev.type == "cuda":
        torch.cuda.empty_cache()

    # --- 2. the same points under nsys (child process)
    nsys = _find_nsys()
    trace_info: dict = {"nsys": nsys}
    if nsys is None or args.no_nsys:
        trace_info["skipped"] = "nsys not found ($NSYS unset)" if nsys is None else "--no-nsys"
    else:
        tmp = Path(tempfile.mkdtemp(prefix="gdnlab_harness_"))
        plan_path, events_path = tmp / "plan.json", tmp / "events.json"
        plan_path.write_text(json.dumps([{k: p[k] for k in ("backend", "mode", "T", "state_dtype", "B", "label")}
                                         for p in pts if "error" not in p]))
        rep = tmp / "harness"
        cmd = profile_command(
            [sys.executable, str(Path(__file__).resolve()), "--child", "--plan", str(plan_path), "--events",
             str(events_path), "--capacity", str(args.capacity), "--preset", args.preset, "--tp", str(args.tp),
             "--warmup", str(args.warmup), "--repeats", str(args.repeats)], rep, nsys=nsys)
        t0 = time.perf_counter()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.nsys_timeout)
            trace_info.update(rc=res.returncode, tail=(res.stdout + res.stderr)[-1500:])
        except subprocess.TimeoutExpired as exc:
            trace_info.update(rc=None, tail=f"nsys run timed out after {args.nsys_timeout} s: {exc}"[-1500:])
        trace_info.update(cmd=" ".join(cmd), profile_s=time.perf_counter() - t0)
        rep_file = rep.with_suffix(".nsys-rep")
        sqlite_path = out_dir / "harness_overhead.sqlite"
        if rep_file.exists():
            sqlite_path.unlink(missing_ok=True)
            try:
                ex = subprocess.run(export_command(rep_file, sqlite_path, nsys=nsys),
                                    capture_output=True, text=True, timeout=300)
                trace_info["export_rc"] = ex.returncode
                if ex.returncode != 0:
                    trace_info["export_tail"] = (ex.stdout + ex.stderr)[-800:]
            except subprocess.TimeoutExpired:
                trace_info["export_tail"] = "nsys export timed out after 300 s"
        if sqlite_path.exists():
            sums, method = kernel_sums(sqlite_path)
            trace_info.update(sqlite=str(sqlite_path), attribution=method,
                              kern_sum=nsys_kern_sum(nsys, sqlite_path))
            child_ev = {c["label"]: c for c in json.loads(events_path.read_text())} if events_path.exists() else {}
            for p in pts:
                for key, lab, calls in (("nsys_kernel_us", p["label"], 1),
                                        ("nsys_kernel_us_rot", p["label"] + ":rot", p.get("rotate_calls", 1))):
                    ks = sums.get(lab)
                    if ks:   # kernel ns summed per sample -> µs per call
                        per = [v / calls / 1e3 for v in ks]
                        p[key] = {"median": statistics.median(per), "mean": statistics.fmean(per), "min": min(per),
                                  "n": len(per), "calls_per_sample": calls}
                c = child_ev.get(p["label"], {})
                for k in ("child_event_graph", "child_event_graph_rot"):
                    if k in c:
                        p[k] = c[k]
        else:
            trace_info["error"] = "no SQLite export (see tail)"

    # --- 3. sweep wall time
    try:
        sweep = sweep_wall(out_dir, backend)
    except Exception as exc:  # noqa: BLE001
        sweep = {"error": f"{type(exc).__name__}: {exc}"}

    # --- 4. compare and report
    rows, verdict = compare(pts)
    result = {"benchmark": "harness_overhead", "backend": backend, "preset": f"{args.preset}@tp{args.tp}",
              "repeats": args.repeats, "warmup": args.warmup, "target": f"|event/nsys - 1| <= {TARGET_PCT} % at B >= "
              f"{TARGET_MIN_BATCH}", "verdict": verdict, "rows": rows, "points": pts, "trace": trace_info,
              "sweep_wall": sweep, "wall_s": time.perf_counter() - t_all, "provenance": collect()}
    (out_dir / "harness_overhead.json").write_text(json.dumps(result, indent=1, default=str))

    import pandas as pd
    df = pd.DataFrame(rows)
    cols = [c for c in ("point", "kernel", "graph_us", "nsys_kernel_us", "graph_vs_nsys_pct", "graph_minus_nsys_us",
                        "child_graph_vs_nsys_pct", "graph_rot_us", "rot_calls", "nsys_kernel_rot_us",
                        "graph_rot_vs_nsys_pct", "eager_us", "launch_overhead_us", "triton_do_bench_cudagraph_us",
                        "triton_do_bench_us", "gbps", "within_target", "within_target_rot", "error")
            if c in df.columns]
    print(f"\nharness overhead · {backend} · {result['preset']} · {collect().get('gpu')} · "
          f"nsys attribution: {trace_info.get('attribution', trace_info.get('skipped', trace_info.get('error')))}")
    sw = {k: sweep.get(k) for k in ("source", "points", "sum_point_s", "sum_first_call_s", "timed_part_s", "wall_s")
          if k in sweep}
    print(f"sweep wall: {sw}")
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.2f}".format):
        print(df[cols].to_string(index=False))
    print(verdict)
    print(f"written: {out_dir / 'harness_overhead.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=None, help="default: flashinfer if available, else the first available")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--verify-tokens", type=int, default=4)
    ap.add_argument("--preset", default="qwen3.5-397b-a17b")
    ap.add_argument("--tp", type=int, default=4)
    ap.add_argument("--capacity", type=int, default=256, help="pool request slots (pool has capacity + 1 rows)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--no-triton", action="store_true", help="skip the triton.testing cross-check")
    ap.add_argument("--no-nsys", action="store_true", help="skip the nsys run")
    ap.add_argument("--nsys-timeout", type=int, default=300)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--plan", help=argparse.SUPPRESS)
    ap.add_argument("--events", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    return child(args) if args.child else parent(args)


if __name__ == "__main__":
    sys.exit(main())
