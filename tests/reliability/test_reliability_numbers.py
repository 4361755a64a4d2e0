"""Reliability corpus, part 2: no confident numbers from impossible input.

Resuming a sweep with a wider grid, traces whose content cannot be physical (kernels on one stream
overlapping, kernels starting before their launch, NVTX ranges ending at 2^62 ns, every row stored
twice), a gzip bomb posing as a Kineto trace, and sweep files that mix GPUs or commits, store times in
the wrong unit, hold a point twice with times 10x apart, or text and fractions in numeric columns.
Each case says what must happen: a refusal with one clear line naming the file and the problem, or a
load whose provenance line (and metadata) carries the warning, with the numbers right.
"""
from __future__ import annotations

import gzip
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from gdnlab import sweep as sw
from gdnlab import traces
from gdnlab.errors import DataError, exit_code
from gdnlab.results import KEY_COLUMNS, load_sweep, point_key
from gdnlab.traces import TraceDataError
from gdnlab.traces import synthetic as tg

from helpers.shapes import TINY

REPO = Path(__file__).resolve().parents[2]
SHIPPED_SWEEPS = ("traces/h100/sweep.parquet", "traces/h100/sweep_triton_bf16verify_fp32intermediate.parquet",
                  "traces/h200/sweep.parquet", "traces/h200/triton_strategy_tiling.parquet")
K = "CUPTI_ACTIVITY_KIND_KERNEL"


# ------------------------------------------------------------------------------------------ resume key

def _cfg(batches, **kw):
    base = dict(backends=["reference"], batches=batches, modes=("decode", "verify"), draft_tokens=(2,),
                buffer_scopes=("batch",), presets=(TINY,), repeats=2, warmup=0, device="cpu",
                strategies=(), state_dtypes=("float32",), copy_mib=1)
    return sw.SweepConfig(**{**base, **kw})


def _measured_keys(df) -> list[tuple]:
    """Point keys without the pool size: what was measured."""
    cols = [c for c in KEY_COLUMNS if c != "pool_slots"]
    return [tuple(point_key(r)[KEY_COLUMNS.index(c)] for c in cols) for r in df[list(KEY_COLUMNS)].to_dict("records")]


def resume_widened_batches_runs_only_new_points(tmp: Path) -> None:
    out = tmp / "s.parquet"
    first = sw.run_sweep(_cfg((1, 2)), out, progress=False)
    assert len(first) == 4
    wider = sw.run_sweep(_cfg((1, 2, 8)), out, resume=True, progress=False)
    assert wider.attrs["points_run"] == 2                       # decode and verify at B=8 only
    assert len(wider) == 6 and len(set(_measured_keys(wider))) == 6


def resume_widened_batches_keeps_earlier_rows(tmp: Path) -> None:
    out = tmp / "s.parquet"
    first = sw.run_sweep(_cfg((1, 2)), out, progress=False)
    sw.run_sweep(_cfg((1, 2, 8)), out, resume=True, progress=False)
    df = load_sweep(out)
    kept = df[df["batch"].isin([1, 2])]
    assert set(kept["sweep_id"]) == set(first["sweep_id"]) and len(kept) == 4


def resume_with_another_pool_capacity_runs_nothing(tmp: Path) -> None:
    out = tmp / "s.parquet"
    sw.run_sweep(_cfg((1, 2)), out, progress=False)
    again = sw.run_sweep(_cfg((1, 2), pool_capacity=64), out, resume=True, progress=False)
    assert again.attrs["points_run"] == 0 and len(again) == 4


# ------------------------------------------------------------------------------------------ traces

def _stream_overlap() -> tg.Synthetic:
    """8 kernels on stream 7, each launched by its own call, all starting at 10 µs and running for 10 µs
    (one) or 9.4 µs (seven): their durations add up to 7.6x the time from the first start to the last end."""
    b = tg.Builder()
    b.range("step", 0, 100_000)
    for i in range(8):
        b.launch(f"k{i}", 1_000 + 100 * i, 10_000, 10_000 if i == 0 else 9_400)
    return b.build()


def _kernel_before_launch() -> tg.Synthetic:
    b = tg.Builder()
    b.range("step", 0, 100_000)
    b.launch("early", 50_000, 40_000, 1_000)            # on the GPU 10 µs before the call that launched it
    b.launch("fine", 60_000, 62_000, 1_000)
    return b.build()


def _range_ends_at_2_62() -> tg.Synthetic:
    b = tg.Builder()
    b.range("step", 0, 100_000)
    b.range("open", 5_000, 2**62)                       # an open range written with a sentinel end
    b.launch("k", 1_000, 10_000, 1_000)
    return b.build()


def _graph_overlap_small() -> tg.Synthetic:
    """Graph nodes overlapping by 0.5 µs, as real CUDA-graph captures show: physical, no warning."""
    b = tg.Builder()
    b.range("step", 0, 100_000)
    b.graph_launch([("g1", 10_000, 2_000), ("g2", 11_500, 2_000), ("g3", 13_000, 2_000)], 1_000)
    return b.build()


def _nsys_of(syn: tg.Synthetic, *sql: str) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        p = tg.write_nsys_sqlite(d / "t.sqlite", syn)
        with sqlite3.connect(p) as db:
            for s in sql:
                db.execute(s)
        return p
    return build


def _kineto_of(syn: tg.Synthetic, edit: Callable[[dict], None] | None = None) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        data = tg.kineto_dict(syn)
        if edit is not None:
            edit(data)
        p = d / "t.json"
        p.write_text(json.dumps(data))
        return p
    return build


def _twice(data: dict) -> None:
    data["traceEvents"] += [dict(e) for e in data["traceEvents"] if e.get("cat") == "kernel"]


def _read_all(t: traces.Trace) -> None:
    _ = t.kernels, t.runtime, t.nvtx, t.metadata, t.gpu_ranges


#: trace cases that must be refused: (builder, message fragment)
TRACE_REFUSED: dict[str, tuple[Callable[[Path], Path], str]] = {
    "nsys-stream-overlap-7.6x": (_nsys_of(_stream_overlap()), r"stream 7 .*overlap.*7\.6x"),
    "kineto-stream-overlap-7.6x": (_kineto_of(_stream_overlap()), r"stream 7 .*overlap.*7\.6x"),
    "nsys-kernel-end-at-2^62": (_nsys_of(tg.handmade(), f"UPDATE {K} SET end = {2**62} WHERE rowid = 2"),
                                r"kernels? end(s)? at an absurd time"),
}

#: trace cases that load with a warning in the provenance line: (builder, fragment, check of the frames)
TRACE_WARNED: dict[str, tuple[Callable[[Path], Path], str, Callable[[traces.Trace], bool]]] = {
    "nsys-kernel-before-launch": (_nsys_of(_kernel_before_launch()),
                                  "1 of 2 kernels start before the CUDA call that launched them",
                                  lambda t: len(t.kernels) == 2),
    "kineto-kernel-before-launch": (_kineto_of(_kernel_before_launch()),
                                    "1 of 2 kernels start before the CUDA call that launched them",
                                    lambda t: len(t.kernels) == 2),
    "nsys-nvtx-range-ends-at-2^62": (_nsys_of(_range_ends_at_2_62()), "1 NVTX range(s) end at an absurd time",
                                     lambda t: "open" not in set(t.nvtx["text"].astype(str))
                                     and "open" not in set(t.gpu_ranges["text"].astype(str))),
    "kineto-range-ends-at-2^62": (_kineto_of(_range_ends_at_2_62()), "1 NVTX range(s) end at an absurd time",
                                  lambda t: "open" not in set(t.nvtx["text"].astype(str))),
    "nsys-every-kernel-row-twice": (_nsys_of(tg.handmade(), f"INSERT INTO {K} SELECT * FROM {K}"),
                                    f"{len(tg.handmade().kernels)} kernel rows are stored twice",
                                    lambda t: len(t.kernels) == len(tg.handmade().kernels)
                                    and int(traces.kernel_summary(t)["count"].sum()) == len(t.kernels)),
    "kineto-every-kernel-row-twice": (_kineto_of(tg.handmade(), _twice),
                                      f"{len(tg.handmade().kernels)} kernel rows are stored twice",
                                      lambda t: len(t.kernels) == len(tg.handmade().kernels)),
}


def _trace_refused(case: str, tmp: Path) -> None:
    build, match = TRACE_REFUSED[case]
    path = build(tmp)
    with pytest.raises(TraceDataError, match=match) as e:
        _read_all(traces.load(path))
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)


def _trace_warned(case: str, tmp: Path) -> None:
    build, fragment, frames_ok = TRACE_WARNED[case]
    t = traces.load(build(tmp))
    _read_all(t)
    assert any(fragment in w for w in t.warnings), t.warnings
    assert fragment in t.provenance() and fragment in traces.kernel_summary(t).attrs["provenance"]
    assert fragment in " ".join(t.metadata["checks"])
    assert frames_ok(t)


def trace_graph_nodes_overlapping_a_little_load_clean(tmp: Path) -> None:
    for build in (_nsys_of(_graph_overlap_small()), _kineto_of(_graph_overlap_small())):
        t = traces.load(build(tmp))
        _read_all(t)
        assert t.warnings == [] and t.metadata["checks"] == []


def trace_shipped_captures_load_without_check_warnings(tmp: Path) -> None:
    for p in sorted((REPO / "traces").glob("*/*.sqlite")):
        t = traces.load(p)
        _read_all(t)
        assert t.metadata["checks"] == [], (p.name, t.metadata["checks"])


def _bomb(path: Path, gib: float) -> Path:
    """gzip members of 1 MiB of JSON whitespace each, concatenated: ``gib`` GiB once decompressed."""
    member = gzip.compress(b" " * 2**20, compresslevel=9)
    with path.open("wb") as f:
        f.write(gzip.compress(b'{"traceEvents": [] '))
        for _ in range(int(gib * 1024)):
            f.write(member)
    return path


def kineto_gzip_bomb_1_5_gib_refused(tmp: Path) -> None:
    path = _bomb(tmp / "bomb.json.gz", 1.5)
    assert path.stat().st_size < 8 * 2**20
    t0 = time.monotonic()
    with pytest.raises(TraceDataError, match=r"decompresses to more than 1 GiB") as e:
        _read_all(traces.load(path))
    assert time.monotonic() - t0 < 60 and exit_code(e.value) == (4, "bad data")


def kineto_json_over_the_size_limit_refused(tmp: Path) -> None:
    from gdnlab.traces import kineto

    path = tg.write_kineto_json(tmp / "t.json", tg.handmade())
    with pytest.raises(TraceDataError, match=r"larger than the 100 B limit"):
        kineto.KinetoSource(path, max_bytes=100)


# ------------------------------------------------------------------------------------------ sweep files

def _h100() -> pd.DataFrame:
    return load_sweep(REPO / "traces/h100/sweep.parquet")


def _write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path


def _two_gpus(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df.loc[df.index[::2], "gpu"] = "NVIDIA H200"
    return df


def _two_commits(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["git_commit"] = "a" * 40
    df.loc[df.index[::3], "git_commit"] = "b" * 40
    return df


def _times_in_ns(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in ("time_us", "time_p10_us", "time_p90_us", "time_mean_us", "time_min_us"):
        df[c] = df[c] * 1000.0
    return df


def _times_and_bandwidth_in_ns(df: pd.DataFrame) -> pd.DataFrame:
    df = _times_in_ns(df)
    df["bw_gbps"] = df["bw_gbps"] / 1000.0
    df["pct_of_peak_bw"] = df["pct_of_peak_bw"] / 1000.0
    return df


def _duplicate_10x(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[df["status"] == "ok"]
    dup = ok.iloc[[0]].copy()
    dup["time_us"] = dup["time_us"] * 10.0
    dup["bw_gbps"] = dup["bw_gbps"] / 10.0
    return pd.concat([df, dup], ignore_index=True)


def _duplicate_close(df: pd.DataFrame) -> pd.DataFrame:
    dup = df[df["status"] == "ok"].iloc[[0]].copy()
    dup["time_us"] = dup["time_us"] * 1.05
    dup["bw_gbps"] = dup["bw_gbps"] / 1.05
    return pd.concat([df, dup], ignore_index=True)


def _text_in(col: str, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df[col] = df[col].astype(object)
        df.loc[df.index[3], col] = value
        return df
    return edit


def _fraction_batch(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["batch"] = df["batch"].astype("float64")
    df.loc[df.index[5], "batch"] = 1.5
    return df


def _ok_without_time(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    i = df.index[df["status"] == "ok"][0]
    df.loc[i, "time_us"] = -2.0
    return df


#: sweep files that must be refused: (edit of the shipped H100 sweep, file suffix, message fragment)
SWEEP_REFUSED: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str, str]] = {
    "two-gpus": (_two_gpus, ".parquet", r"measured on 2 GPUs \(NVIDIA H100 80GB HBM3, NVIDIA H200\)"),
    "two-gpus-csv": (_two_gpus, ".csv", r"measured on 2 GPUs"),
    "two-commits": (_two_commits, ".parquet", r"2 git commits"),
    "times-in-ns-under-us": (_times_in_ns, ".parquet", r"time_us .* 1000x .*ns"),
    "times-and-bandwidth-in-ns": (_times_and_bandwidth_in_ns, ".parquet", r"time_us .*wall time .*ns under"),
    "duplicate-point-10x-apart": (_duplicate_10x, ".parquet", r"1 point is stored twice with times 10(\.0)?x apart"),
    "text-in-time_us": (_text_in("time_us", "fast"), ".csv", r"column time_us holds text \('fast'\) in 1 row"),
    "text-in-batch": (_text_in("batch", "many"), ".csv", r"column batch holds text \('many'\) in 1 row"),
    "fraction-in-batch": (_fraction_batch, ".parquet", r"column batch holds non-integers \(1\.5\) in 1 row"),
    "garbage-in-l2_flush": (_text_in("l2_flush", "maybe"), ".csv", r"column l2_flush holds .*'maybe'"),
    "ok-row-with-negative-time": (_ok_without_time, ".parquet", r"1 ok row has no positive time_us"),
}


def _sweep_refused(case: str, tmp: Path) -> None:
    edit, suffix, match = SWEEP_REFUSED[case]
    path = _write(edit(_h100()), tmp / f"sweep{suffix}")
    with pytest.raises(DataError, match=match) as e:
        load_sweep(path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg and exit_code(e.value) == (4, "bad data")


def sweep_two_gpus_allowed_when_asked_and_labelled(tmp: Path) -> None:
    path = _write(_two_gpus(_h100()), tmp / "mixed.parquet")
    df = load_sweep(path, allow_mixed=True)
    assert len(df) == 392 and "2 GPUs" in df.attrs["mixed"]
    from gdnlab.report.notebook import describe

    assert "2 GPUs" in describe(df)["mixed"]


def sweep_duplicate_10x_allowed_when_asked_keeps_last(tmp: Path) -> None:
    path = _write(_duplicate_10x(_h100()), tmp / "dup.parquet")
    df = load_sweep(path, allow_mixed=True)
    assert len(df) == 392 and "stored twice" in df.attrs["mixed"]


def sweep_duplicate_close_times_keeps_last_silently(tmp: Path) -> None:
    base = _h100()
    path = _write(_duplicate_close(base), tmp / "dup.parquet")
    df = load_sweep(path)
    assert len(df) == len(base) and "mixed" not in df.attrs


def sweep_allow_mixed_never_hides_wrong_units(tmp: Path) -> None:
    path = _write(_times_in_ns(_h100()), tmp / "ns.parquet")
    with pytest.raises(DataError, match="time_us"):
        load_sweep(path, allow_mixed=True)


def sweep_shipped_files_load_clean(tmp: Path) -> None:
    for rel in SHIPPED_SWEEPS:
        df = load_sweep(REPO / rel)
        assert len(df) and "mixed" not in df.attrs, rel


def sweep_resume_into_another_commit_refused(tmp: Path) -> None:
    from gdnlab import provenance

    out = tmp / "s.parquet"
    sw.run_sweep(_cfg((1,)), out, progress=False)
    df = load_sweep(out)
    df["git_commit"] = "f" * 40
    _write(df, out)
    commit = provenance.git_state()[0]
    if not commit:
        pytest.skip("not a git checkout: this run has no commit to compare")
    with pytest.raises(DataError, match=r"commit f{12}"):
        sw.run_sweep(_cfg((1, 2)), out, resume=True, progress=False)
    assert load_sweep(out)["git_commit"].eq("f" * 40).all()


# ------------------------------------------------------------------------------------------ the corpus

CASES: dict[str, Callable[[Path], None]] = {
    **{name.replace("_", "-"): fn for name, fn in dict(globals()).items()
       if callable(fn) and name.startswith(("resume_", "trace_", "kineto_", "sweep_")) and not name.startswith("_")},
    **{f"trace-refused-{c}": (lambda tmp, c=c: _trace_refused(c, tmp)) for c in TRACE_REFUSED},
    **{f"trace-warned-{c}": (lambda tmp, c=c: _trace_warned(c, tmp)) for c in TRACE_WARNED},
    **{f"sweep-refused-{c}": (lambda tmp, c=c: _sweep_refused(c, tmp)) for c in SWEEP_REFUSED},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_confident_numbers_from_impossible_input(case, tmp_path):
    CASES[case](tmp_path)
