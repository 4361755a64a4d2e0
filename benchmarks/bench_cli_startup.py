"""Benchmark: how long the command line takes to answer, as whole processes.

Times ``python -m gdnlab --help``, ``python -m gdnlab COMMAND --help`` for every command, and
``python -m gdnlab plan`` (the default plan from the shipped data), each as a fresh process, over
``--runs`` runs, and stores the median wall and CPU (user + system) seconds per case in
``benchmarks/results/cli_startup.json`` with the machine's CPUs, load average and versions.
Target: every ``--help`` under 1 s of wall time on a 2-core CPU.

``--baseline REV`` also times the package as it is at git revision ``REV`` (its ``gdnlab/`` folder
exported to a temporary folder, which is the baseline's working folder, with ``traces/`` linked to
this checkout's data), interleaved with the working tree run by run so that both see the same load.
Each process runs in its tree's folder, because ``python -m`` imports from the working folder first.

    python3 benchmarks/bench_cli_startup.py [--runs 5] [--baseline main] [--no-plan]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.0


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def _export(rev: str, dest: Path) -> str:
    """``gdnlab/`` as of ``rev`` under ``dest``, and ``dest/traces`` linked to this checkout's data;
    returns the full commit id."""
    commit = _git("rev-parse", rev)
    tar = subprocess.run(["git", "archive", "--format=tar", commit, "gdnlab"], cwd=ROOT, capture_output=True,
                         check=True).stdout
    with tarfile.open(fileobj=BytesIO(tar)) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(dest, filter="data")
        else:                                   # Python < 3.10.12: no filters; our own archive
            tf.extractall(dest)
    (dest / "traces").symlink_to(ROOT / "traces", target_is_directory=True)
    return commit


def _commands(tree: Path) -> list[str]:
    """The commands of the package in ``tree``; checks that a process started there imports that
    tree's package (not an installed one)."""
    code = "import gdnlab.cli as c; print(c.__file__); print(' '.join(c.COMMANDS))"
    where, names = subprocess.run([sys.executable, "-c", code], cwd=tree, env=_env(tree), capture_output=True,
                                  text=True, check=True).stdout.splitlines()
    if not Path(where).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"a process in {tree} imports gdnlab from elsewhere ({where})")
    return names.split()


def _env(pythonpath: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GDNLAB_OUT")}
    env["PYTHONPATH"] = str(pythonpath)
    return env


def _time_once(argv: list[str], tree: Path) -> tuple[float, float, int]:
    """(wall s, CPU s of the child, exit code) of ``python -m gdnlab ARGV`` run in ``tree``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.run([sys.executable, "-m", "gdnlab", *argv], cwd=tree, env=_env(tree),
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, rc


def machine_info() -> dict:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_model": cpu_model,
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


def _summary(samples: dict[str, list[tuple[float, float, int]]]) -> dict:
    return {case: {"median_wall_s": round(statistics.median(s[0] for s in runs), 3),
                   "median_cpu_s": round(statistics.median(s[1] for s in runs), 3),
                   "wall_s": [round(s[0], 3) for s in runs], "exit_codes": sorted({s[2] for s in runs})}
            for case, runs in samples.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="processes per case (median reported)")
    ap.add_argument("--baseline", default=None, help="also time the package at this git revision")
    ap.add_argument("--no-plan", action="store_true", help="skip 'gdnlab plan' (the slowest case)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cli_startup.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"working tree": (ROOT, _git("rev-parse", "HEAD"), bool(_git("status", "--porcelain", "gdnlab")))}
        if args.baseline:
            trees["baseline"] = (Path(tmp), _export(args.baseline, Path(tmp)), False)
        cases = {"--help": ["--help"]}
        for tree, _, _ in trees.values():
            _commands(tree)
        for cmd in _commands(ROOT):
            cases[f"{cmd} --help"] = [cmd, "--help"]
        if not args.no_plan:
            cases["plan"] = ["plan"]
        samples: dict[str, dict[str, list]] = {t: {c: [] for c in cases} for t in trees}
        load_before = os.getloadavg()
        for _ in range(args.runs):
            for case, case_argv in cases.items():
                for tree, (path, _, _) in trees.items():
                    samples[tree][case].append(_time_once(case_argv, path))
        load_after = os.getloadavg()
    result = {
        "benchmark": "cli_startup", "runs": args.runs, "target_help_wall_s": TARGET_S,
        "trees": {t: {"commit": commit, "gdnlab_dirty": dirty, "cases": _summary(samples[t])}
                  for t, (_, commit, dirty) in trees.items()},
        "note": "wall and CPU (user + system) seconds of whole 'python -m gdnlab ...' processes on a shared "
                "machine; other processes' load is in loadavg_*",
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
        "machine": machine_info(), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    names = list(trees)
    print(f"{'case':<22}" + "".join(f"{n + ' wall s':>20}{'CPU s':>8}" for n in names))
    for case in cases:
        row = "".join(f"{result['trees'][n]['cases'][case]['median_wall_s']:>20.2f}"
                      f"{result['trees'][n]['cases'][case]['median_cpu_s']:>8.2f}" for n in names)
        print(f"{case:<22}{row}")
    slow = [c for c, v in result["trees"]["working tree"]["cases"].items()
            if c.endswith("--help") and v["median_wall_s"] >= TARGET_S]
    print(f"medians of {args.runs} runs; cpus {os.cpu_count()}, loadavg {load_before[0]:.2f} -> {load_after[0]:.2f}; "
          + (f"over the {TARGET_S:g} s target: {', '.join(slow)}" if slow else f"every --help under {TARGET_S:g} s"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(args.out.name + ".tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
