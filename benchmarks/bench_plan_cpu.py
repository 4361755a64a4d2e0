"""Benchmark: CPU time of ``gdnlab plan`` (the default plan from the shipped data) as whole processes.

Runs ``python -m gdnlab plan`` ``--runs`` times in this checkout with the seed fit's cache warm
(``GDNLAB_CACHE_DIR`` in a temporary folder, filled by one untimed run) and once cold (an empty cache:
the fit simulates the seed's 35 serving runs), and, with ``--baseline REV``, as the package was at git
revision ``REV`` (its ``gdnlab/`` exported to a temporary folder with ``traces/`` linked here),
interleaved run by run so both see the same load. Reports the median CPU seconds (user + system of
the child) and wall seconds per case, and writes ``benchmarks/results/plan_cpu.json`` with the
machine's CPUs, load average and versions. Target: 3 s of CPU on a 2-core machine (warm cache).

    python3 benchmarks/bench_plan_cpu.py [--runs 5] [--baseline main] [--args "--gpu gb200"]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_CPU_S = 3.0


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def _export(rev: str, dest: Path) -> str:
    commit = _git("rev-parse", rev)
    tar = subprocess.run(["git", "archive", "--format=tar", commit, "gdnlab"], cwd=ROOT, capture_output=True,
                         check=True).stdout
    with tarfile.open(fileobj=BytesIO(tar)) as tf:
        tf.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(dest)
    (dest / "traces").symlink_to(ROOT / "traces", target_is_directory=True)
    return commit


def _run(tree: Path, argv: list[str], cache: Path) -> tuple[float, float]:
    """``(cpu s, wall s)`` of one ``python -m gdnlab plan`` in ``tree`` (user + system of the child)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "GDNLAB_CACHE_DIR": str(cache)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gdnlab", "plan", *argv], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def _summary(samples: list[tuple[float, float]]) -> dict:
    cpu, wall = zip(*samples)
    return {"cpu_s_median": statistics.median(cpu), "wall_s_median": statistics.median(wall),
            "cpu_s": list(cpu), "wall_s": list(wall), "runs": len(samples)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline", default=None, help="git revision to compare with (e.g. main)")
    ap.add_argument("--args", default="", help="extra arguments of gdnlab plan")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "plan_cpu.json")
    a = ap.parse_args(argv)
    extra = shlex.split(a.args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"this tree": ROOT}
        base_commit = None
        if a.baseline:
            (tmp / "base").mkdir()
            base_commit = _export(a.baseline, tmp / "base")
            trees[f"baseline {a.baseline}"] = tmp / "base"
        cold = _run(ROOT, extra, tmp / "cold-cache")             # the seed fit computed (and cached)
        samples: dict[str, list] = {k: [] for k in trees}
        load = [os.getloadavg()]
        for k, tree in trees.items():                             # one untimed run each: caches warm
            _run(tree, extra, tmp / f"cache-{len(samples[k])}-{k[:4]}")
        for _ in range(a.runs):
            for k, tree in trees.items():
                samples[k].append(_run(tree, extra, tmp / f"cache-0-{k[:4]}"))
        load.append(os.getloadavg())
    res = {k: _summary(v) for k, v in samples.items()}
    res["this tree, cold fit cache"] = _summary([cold])
    out = {"benchmark": "gdnlab plan CPU time (user + system of the process)", "args": extra,
           "target_cpu_s": TARGET_CPU_S, "commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--short")),
           "baseline_commit": base_commit, "results": res,
           "machine": {"cpus": os.cpu_count(), "loadavg_before_after": load, "platform": platform.platform(),
                       "python": platform.python_version()}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmpf = a.out.with_suffix(".json.tmp")
    tmpf.write_text(json.dumps(out, indent=1) + "\n")
    os.replace(tmpf, a.out)
    for k, r in res.items():
        print(f"{k:32s} CPU {r['cpu_s_median']:6.2f} s  wall {r['wall_s_median']:6.2f} s  ({r['runs']} runs)")
    warm = res["this tree"]["cpu_s_median"]
    print(f"target: <= {TARGET_CPU_S:g} s CPU (warm cache): {'met' if warm <= TARGET_CPU_S else 'missed'} "
          f"({warm:.2f} s); wrote {a.out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
