"""``gdnlab summary FILE`` on the shipped sweep and traces, checked against counts made here from the
files themselves (pyarrow rows, SQLite kernel rows and a plain interval union), and ``gdnlab summary``
without FILE, which still runs the reference kernel. Bad files are in ``tests/cli/test_cli_errors.py``."""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gdnlab.cli import main

REPO = Path(__file__).resolve().parents[2]
SWEEP = REPO / "traces/h200/sweep.parquet"
TRACE = REPO / "traces/h200/triton_c64_osl512_t4_replay_ring.sqlite"


def _rows() -> list[dict]:
    return pq.read_table(SWEEP).to_pylist()


def test_sweep_summary_names_its_rows_gpus_and_commits(capsys):
    assert main(["summary", str(SWEEP)]) == 0
    out = capsys.readouterr().out
    rows = _rows()
    assert f"sweep, {len(rows)} rows" in out
    gpus = {r["gpu"] for r in rows}
    commits = {r["git_commit"][:12] for r in rows}
    assert all(g in out for g in gpus) and all(c in out for c in commits)
    assert "measured" in out.split("\n", 2)[1]                         # provenance line, from the rows
    assert "median µs per call" in out and "µs per step" in out       # the sweep's own summary table


def test_sweep_overview_counts_match_the_file():
    """Per (measure, backend, what, state dtype): rows, ok, checked, correct, B and T ranges, timing
    methods, against a plain loop over the parquet rows as stored (call rows name their call by its
    earlier strategy name there: decode, full_cache = batch buffer, full_cache_pool_scoped = pool buffer)."""
    from gdnlab.cli.summary import sweep_overview
    from gdnlab.results import load_sweep

    ov = sweep_overview(load_sweep(SWEEP)).set_index(["measure", "backend", "what", "state_dtype"])
    calls = {"decode": "decode", "full_cache": "verify/batch buffer", "full_cache_pool_scoped": "verify/pool buffer"}
    want: dict[tuple, dict] = {}
    for r in _rows():
        measure = r["measure"] or "call"
        what = r["strategy"] if measure == "step" else calls[r["strategy"]]
        key = (measure, r["backend"], what, r["state_dtype"])
        w = want.setdefault(key, {"rows": 0, "ok": 0, "checked": 0, "correct": 0, "B": set(), "T": set(),
                                  "timing": set()})
        w["rows"] += 1
        w["ok"] += r["status"] == "ok"
        w["checked"] += r["correct"] is not None
        w["correct"] += r["correct"] is True
        w["B"].add(r["batch"])
        w["T"].add(r["draft_tokens"])
        if r["timing_method"] is not None:
            w["timing"].add(r["timing_method"])
    assert set(ov.index) == set(want)
    for key, w in want.items():
        got = ov.loc[key]
        assert (got["rows"], got["ok"], got["checked"], got["correct"]) == (w["rows"], w["ok"], w["checked"],
                                                                            w["correct"]), key
        span = (lambda s: f"{min(s)}" if min(s) == max(s) else f"{min(s)}-{max(s)}")
        assert (got["B"], got["T"]) == (span(w["B"]), span(w["T"])), key
        assert got["timing"] == (",".join(sorted(w["timing"])) or "-"), key
    assert ov["rows"].sum() == len(_rows()) and ov["correct"].sum() < ov["rows"].sum()


def _union_ns(intervals: list[tuple[int, int]]) -> int:
    total, end = 0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def test_trace_summary_counts_kernels_and_gpu_busy_from_the_sqlite(capsys):
    assert main(["summary", str(TRACE), "--top", "3"]) == 0
    out = capsys.readouterr().out
    with sqlite3.connect(TRACE) as con:
        kernels = con.execute("SELECT start, end FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchall()
    busy_ms = _union_ns(kernels) / 1e6
    span_ms = (max(e for _, e in kernels) - min(s for s, _ in kernels)) / 1e6
    assert f"kernels: {len(kernels)} " in out
    m = re.search(r"GPU busy: ([\d.]+) ms of ([\d.]+) ms", out)
    assert m and float(m.group(1)) == pytest.approx(busy_ms, abs=1e-3) and \
        float(m.group(2)) == pytest.approx(span_ms, abs=1e-3)
    assert "top 3 kernels by total time" in out and "NVIDIA H200" in out and "nsys" in out
    table = out.split("top 3 kernels by total time:\n", 1)[1].strip().splitlines()
    assert len(table) == 1 + 3


def test_summary_of_a_sweep_folder_and_a_csv(tmp_path, capsys):
    """A folder holding a sweep.parquet, and a sweep written as CSV, are sweeps too."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "sweep.parquet").write_bytes(SWEEP.read_bytes())
    assert main(["summary", str(tmp_path / "run")]) == 0
    assert f"sweep, {len(_rows())} rows" in capsys.readouterr().out
    pq.read_table(SWEEP).to_pandas().to_csv(tmp_path / "s.csv", index=False)
    assert main(["summary", str(tmp_path / "s.csv")]) == 0
    assert f"sweep, {len(_rows())} rows" in capsys.readouterr().out


def test_summary_without_a_file_runs_the_reference_kernel(capsys):
    assert main(["summary", "--device", "cpu", "--tp", "16", "--batches", "1,2", "--draft-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gdnlab reference kernel on cpu: qwen3.5-397b-a17b@tp16")
    assert "max|o_verify - o_decodes|" in out
