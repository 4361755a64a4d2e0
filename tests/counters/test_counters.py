"""gdnlab.counters on CPU: the ncu CSV parser, kernel attribution, the tidy frame and its join with sweeps,
the nsight-python capability check, the whole ncu-csv pipeline against a fake ``ncu``, and the
``gdnlab counters`` command's handling of wrong files.

Data: ``tests/data/ncu_raw_constructed.csv`` + ``ncu_manifest_constructed.json`` are *constructed* in the
format of ``ncu --import R --csv --page raw --print-units base`` (Nsight Compute 2025.3); the real H100
capture (``tests/data/ncu_raw_h100.csv`` + ``ncu_manifest_h100.json``, from scripts/gpu/run_counters.py) is
tested by ``test_real_h100_capture`` when present.
"""
from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gdnlab import backends
from gdnlab.cli.counters import configure_parser, run
from gdnlab.counters import (
    CAUSES,
    JOIN_KEYS,
    NcuNotFoundError,
    assemble,
    attribute_kernels,
    build_import_command,
    build_profile_command,
    compare_with_sweep,
    find_ncu,
    format_table,
    nsight_python_support,
    parse_raw_csv,
    profile_kernels,
    summarize_calls,
)
from gdnlab.counters.ncu import metric_errors_in_log, metric_names, parse_version, to_base_unit
from gdnlab.errors import DataError
from gdnlab.results import load_sweep
from gdnlab.roofline import gdn_bytes
from gdnlab.shapes import GDNShape, preset

from helpers.ids import case_id

DATA = Path(__file__).resolve().parents[1] / "data"
RAW = DATA / "ncu_raw_constructed.csv"
MANIFEST = DATA / "ncu_manifest_constructed.json"
REAL_RAW = DATA / "ncu_raw_h100.csv"
REAL_MANIFEST = DATA / "ncu_manifest_h100.json"
PROV = ("gpu", "sm", "driver", "cuda", "torch", *backends.version_columns(), "timestamp")
SCHEMA = list(JOIN_KEYS) + ["rep", "kernel_idx", "kernel", "kernel_short", "is_gdn", "n_kernels", "outcome",
                            "reason", "H", "HV", "K", "V", "duration_us", "dram_read_bytes", "dram_write_bytes",
                            "dram_bytes", "dram_bw_gbps", "dram_throughput_pct", "achieved_occupancy_pct",
                            "sm_throughput_pct", "l2_hit_rate_pct", "registers_per_thread", "status", "engine",
                            *PROV]


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(MANIFEST.read_text())


@pytest.fixture(scope="module")
def metrics_df(manifest) -> pd.DataFrame:
    return assemble(parse_raw_csv(RAW), manifest)


# ------------------------------------------------------------------------------------------ parser
def test_parse_constructed_raw_csv():
    k = parse_raw_csv(RAW)
    assert list(k["block"].unique()) == [0, 1]                    # two ncu runs concatenated
    assert k.groupby("block")["id"].apply(lambda s: s.is_monotonic_increasing).all()
    assert (k["kernel"] == "gdnlab_ncu_marker").sum() == 14        # 7 profiled configs x 2 repeats
    first = k[k["kernel"] == "_gdn_fused_recurrent"].iloc[0]
    assert first["dram__bytes_read.sum"] == 1_065_465              # "1,065,465": thousands separators undone
    assert first["gpu__time_duration.sum"] == 3255.0
    assert first["grid_size"] == "(64, 1, 1)" and first["block_size"] == "(32, 1, 1)"
    assert k.attrs["units"]["gpu__time_duration.sum"] == "nsecond"
    assert k.attrs["units"]["dram__bytes_write.sum"] == "byte"
    assert k.attrs["units"]["dram__cycles_elapsed.avg.per_second"] == "hz"
    for m in metric_names(required_only=True):
        assert pd.api.types.is_float_dtype(k[m]), m


FIXED = ["ID", "Process ID", "Process Name", "Host Name", "Kernel Name", "Context", "Stream", "Block Size",
         "Grid Size", "Device", "CC"]


def _line(*cells: str) -> str:
    """One ncu CSV line: every field quoted, as ncu writes them."""
    return ",".join(f'"{c}"' for c in cells)


INLINE = "\n".join([
    "==PROF== Connected to process 77 (/usr/bin/python3.12)",
    '==PROF== Profiling "kern_a" - 0: 0%....50%....100% - 3 passes',
    _line(*FIXED, "dram__bytes_read.sum", "gpu__time_duration.sum", "launch__func_cache_config",
          "dram__cycles_elapsed.avg.per_second", "lts__t_sector_hit_rate.pct"),
    _line(*[""] * 11, "Kbyte", "usecond", "", "Mhz", "%"),
    _line("0", "77", "python3.12", "h", "kern_a", "1", "7", "(128, 1, 1)", "(2, 1, 1)", "0", "9.0", "1,234.50", "2.5",
          "CachePreferNone", "2,619", "n/a"),
    "==WARNING== a warning line inside the output",
    _line("1", "77", "python3.12", "h", "void ns::kern_b<float>(float *, int)", "1", "7", "(64, 1, 1)", "(4, 2, 1)",
          "0", "9.0", "2", "0.001", "CachePreferNone", "1", "50"),
    "==PROF== Disconnected from process 77",
]) + "\n"


def test_parse_units_noise_and_text_metrics():
    k = parse_raw_csv(INLINE)
    assert len(k) == 2 and list(k["id"]) == [0, 1]
    assert k.loc[0, "dram__bytes_read.sum"] == pytest.approx(1_234_500.0)       # Kbyte -> byte
    assert k.loc[0, "gpu__time_duration.sum"] == pytest.approx(2500.0)          # usecond -> nsecond
    assert k.loc[1, "gpu__time_duration.sum"] == pytest.approx(1.0)
    assert k.loc[0, "dram__cycles_elapsed.avg.per_second"] == pytest.approx(2.619e9)  # Mhz -> hz
    assert np.isnan(k.loc[0, "lts__t_sector_hit_rate.pct"])                   # n/a
    assert k.loc[0, "launch__func_cache_config"] == "CachePreferNone"          # text metric kept
    assert k.loc[1, "kernel"] == "void ns::kern_b<float>(float *, int)"


def test_parse_long_form_is_pivoted():
    pre = ["py", "h"]
    text = "\n".join([
        _line(*FIXED, "Section Name", "Metric Name", "Metric Unit", "Metric Value"),
        _line("0", "9", *pre, "k0", "1", "7", "(32, 1, 1)", "(1, 1, 1)", "0", "9.0", "", "gpu__time_duration.sum",
              "nsecond", "1,500"),
        _line("0", "9", *pre, "k0", "1", "7", "(32, 1, 1)", "(1, 1, 1)", "0", "9.0", "", "dram__bytes_read.sum",
              "Mbyte", "1.5"),
        _line("1", "9", *pre, "k1", "1", "7", "(32, 1, 1)", "(1, 1, 1)", "0", "9.0", "", "gpu__time_duration.sum",
              "usecond", "3"),
    ]) + "\n"
    k = parse_raw_csv(text)
    assert list(k["kernel"]) == ["k0", "k1"]
    assert k.loc[0, "gpu__time_duration.sum"] == 1500.0 and k.loc[1, "gpu__time_duration.sum"] == 3000.0
    assert k.loc[0, "dram__bytes_read.sum"] == 1.5e6 and np.isnan(k.loc[1, "dram__bytes_read.sum"])


def test_parse_without_header_names_the_problem():
    with pytest.raises(ValueError, match="no Nsight Compute CSV header"):
        parse_raw_csv("==PROF== No kernels were profiled.\nsomething else\n")


@pytest.mark.parametrize("value,unit,expected", [
    (2.0, "Gbyte", (2e9, "byte")), (3.0, "msecond", (3e6, "nsecond")), (1.5, "Ghz", (1.5e9, "hz")),
    (2.0, "cycle/nsecond", (2e9, "hz")), (4.0, "Gbyte/second", (4e9, "byte/second")),
    (1.0, "Kbyte/usecond", (1e9, "byte/second")), (7.0, "register/thread", (7.0, "register/thread")),
    (50.0, "%", (50.0, "%")), (1.0, "MiB", (2.0**20, "byte")),
], ids=case_id)
def test_to_base_unit(value, unit, expected):
    v, u = to_base_unit(value, unit)
    assert u == expected[1] and v == pytest.approx(expected[0])


def test_parse_version():
    assert parse_version("NVIDIA (R) Nsight Compute\nVersion 2025.3.1.0 (build 36398880)") == (2025, 3, 1, 0)
    assert parse_version("Version 2026.2.1 (build 1)") == (2026, 2, 1, 0)
    assert parse_version("garbage") is None


# ------------------------------------------------------------------------------------------ attribution
def test_attribution_by_marker_grid(manifest):
    k = attribute_kernels(parse_raw_csv(RAW), manifest)
    assert not k["kernel"].str.contains("gdnlab_ncu_marker").any()
    calls = {tuple(map(int, c)) for c in k[["cfg", "rep"]].drop_duplicates().to_numpy()}
    assert calls == {tuple(m) for m in manifest["markers"]}
    fi_verify = k[(k["cfg"] == 6) & (k["rep"] == 0)]
    assert list(fi_verify["kernel_idx"]) == [0, 1]                 # helper fill kernel, then the GDN kernel
    assert "FillFunctor" in fi_verify.iloc[0]["kernel"]


def test_attribution_without_grid_uses_manifest_order(manifest):
    raw = parse_raw_csv(RAW)
    a = attribute_kernels(raw, manifest)
    b = attribute_kernels(raw.drop(columns=["grid_size"]), manifest)
    assert a[["cfg", "rep", "kernel"]].equals(b[["cfg", "rep", "kernel"]])


def test_attribution_without_markers_splits_evenly_or_refuses(manifest):
    raw = parse_raw_csv(RAW)
    no_markers = raw[raw["kernel"] != "gdnlab_ncu_marker"].reset_index(drop=True)
    with pytest.raises(ValueError, match="cannot be split evenly"):
        attribute_kernels(no_markers, manifest)                    # 16 kernels over 14 calls
    even = no_markers[~no_markers["kernel"].str.contains("FillFunctor")].reset_index(drop=True)
    k = attribute_kernels(even, manifest)
    assert list(zip(k["cfg"], k["rep"])) == [tuple(m) for m in manifest["markers"]]


# ------------------------------------------------------------------------------------------ tidy frame
def _check_schema(df: pd.DataFrame, manifest: dict) -> None:
    missing = [c for c in SCHEMA if c not in df]
    assert not missing, f"missing columns {missing}"
    assert set(df["mode"]) <= {"decode", "verify"}
    assert set(df["state_dtype"]) <= {"float32", "bfloat16"}
    for c in ("batch", "draft_tokens", "H", "HV", "K", "V"):
        assert pd.api.types.is_integer_dtype(df[c]), c
    assert (df.loc[df["mode"] == "decode", "draft_tokens"] == 1).all()
    ok = df[df["outcome"] == "ok"]
    # every row records the versions of the packages of the backends it ran (not of every registered one)
    ran = {backends.get(b).version_column for b in ok["backend"].unique()} - {None}
    assert len(ok) and ok[[c for c in PROV if c not in backends.version_columns() or c in ran]].notna().all().all()
    assert (ok["status"] == "measured").all()
    assert (ok["duration_us"] > 0).all() and (ok["dram_bytes"] > 0).all()
    assert np.allclose(ok["dram_bw_gbps"], ok["dram_bytes"] / (ok["duration_us"] * 1e3))
    assert ok.groupby("backend")["is_gdn"].any().all()             # every backend shows a GDN kernel
    cfg_ids = {c["idx"] for c in manifest["configs"]}
    assert set(df["cfg"].dropna().astype(int)) == cfg_ids          # every configuration appears
    not_ok = {c["idx"] for c in manifest["configs"] if c.get("outcome") != "ok"}
    assert set(df.loc[df["outcome"] != "ok", "cfg"].astype(int)) >= not_ok


def test_metrics_frame_schema(metrics_df, manifest):
    _check_schema(metrics_df, manifest)
    skipped = metrics_df[metrics_df["outcome"] == "skipped"]
    assert len(skipped) == 1 and "bfloat16" in skipped.iloc[0]["reason"]
    assert np.isnan(skipped.iloc[0]["duration_us"])
    fi_v = metrics_df[(metrics_df["backend"] == "flashinfer") & (metrics_df["mode"] == "verify")
                      & (metrics_df["outcome"] == "ok")]
    assert (fi_v["n_kernels"] == 2).all() and fi_v["is_gdn"].sum() == 2     # 2 reps x (fill + gdn)
    assert metrics_df.loc[metrics_df["outcome"] == "ok", "kernel_short"].notna().all()


def test_summarize_calls_sums_kernels_and_takes_median(metrics_df):
    s = summarize_calls(metrics_df)
    assert len(s) == 7 and (s["reps"] == 2).all()
    assert not s.duplicated(list(JOIN_KEYS)).any()
    row = s[(s["backend"] == "flashinfer") & (s["mode"] == "verify")].iloc[0]
    calls = metrics_df[(metrics_df["cfg"] == 6)].groupby("rep")["duration_us"].sum()
    assert row["duration_us"] == pytest.approx(calls.median())
    assert row["n_kernels"] == 2 and row["main_kernel"].startswith("kernel_cutlass_gdn_verify")
    assert 0.8 < row["gdn_share"] < 1.0
    tri = s[s["backend"] == "triton"]
    assert ((tri["bytes_ratio"] - 1).abs() < 0.05).all()           # constructed counters = formula +-1 %
    table = format_table(s)
    assert "bytes/formula" in table and "_gdn_fused_recurrent" in table and len(table.splitlines()) == 8


# ------------------------------------------------------------------------------------------ sweep join
def _sweep_from(summary: pd.DataFrame, factor: float = 1.0) -> pd.DataFrame:
    """A sweep whose timing makes formula bandwidth = counter bandwidth x factor^-1."""
    shape = preset("qwen3.5-397b-a17b", tp=4)
    rows = []
    for _, r in summary.iterrows():
        fb = gdn_bytes(shape, int(r["batch"]), int(r["draft_tokens"]), mode=r["mode"],
                       state_dtype=r["state_dtype"]).total
        t_us = fb / (r["dram_bw_gbps"] * 1e3) * factor               # formula bytes at the counter bandwidth
        rows.append({"backend": r["backend"], "mode": r["mode"], "batch": int(r["batch"]),
                     "draft_tokens": int(r["draft_tokens"]), "state_dtype": r["state_dtype"],
                     "preset": "qwen3.5-397b-a17b", "tp": 4, "status": "ok", "time_us": t_us,
                     "gpu": "NVIDIA H100 80GB HBM3"})
    return pd.DataFrame(rows)


def test_compare_with_sweep_agrees_and_flags(metrics_df):
    s = summarize_calls(metrics_df)
    sweep = _sweep_from(s)
    sweep.loc[(sweep["backend"] == "triton") & (sweep["batch"] == 1) & (sweep["mode"] == "decode"), "time_us"] *= 1.5
    sweep = sweep[~((sweep["backend"] == "flashinfer") & (sweep["mode"] == "verify"))]
    # two sweeps (a list of frames or files) give 2 rows per configuration: their median is used
    cmp = compare_with_sweep(metrics_df, [sweep, sweep.assign(time_us=sweep["time_us"] * 1.02)])
    assert len(cmp) == 7 and cmp.attrs["time_col"] == "time_us" and "preset" in cmp.attrs["join_keys"]
    assert "gpu" in cmp.attrs["join_keys"]
    slow = cmp[(cmp["backend"] == "triton") & (cmp["batch"] == 1) & (cmp["mode"] == "decode")].iloc[0]
    assert slow["flag"] and "sweep time is 1.5" in slow["diagnosis"]
    missing = cmp[(cmp["backend"] == "flashinfer") & (cmp["mode"] == "verify")].iloc[0]
    assert missing["flag"] and missing["diagnosis"] == "no sweep timing for this configuration"
    good = cmp[~cmp["flag"]]
    assert len(good) == 5 and ((good["bw_ratio"] - 1).abs() <= 0.10).all()
    assert (good["sweep_rows"] == 2).all()
    assert np.allclose(good["counter_bw_gbps"], good["counter_bytes"] / (good["ncu_duration_us"] * 1e3))
    assert (cmp["peak_hbm_gbps"] == 3350.0).all()


def test_compare_reads_earlier_sweep_files(metrics_df, tmp_path):
    """A sweep file of an earlier gdnlab (``concurrency`` for the batch, no ``strategy``) is read through
    gdnlab.results.load_sweep and joins like a current one; several files are concatenated."""
    s = _sweep_from(summarize_calls(metrics_df)).rename(columns={"batch": "concurrency"})
    s.iloc[:3].to_parquet(tmp_path / "a.parquet", index=False)
    s.iloc[3:].to_csv(tmp_path / "b.csv", index=False)
    cmp = compare_with_sweep(metrics_df, [tmp_path / "a.parquet", tmp_path / "b.csv"])
    assert cmp["sweep_time_us"].notna().all() and (~cmp["flag"]).all()
    assert (cmp["cause"] == "agree").all()


def test_compare_names_columns_of_other_programs(metrics_df):
    """Columns gdnlab never writes (``B``, ``time_ms``) are not guessed at: a one-line error names them."""
    sweep = _sweep_from(summarize_calls(metrics_df)).rename(columns={"batch": "B"})
    with pytest.raises(DataError, match=r"lacks the columns \['batch'\]"):
        compare_with_sweep(metrics_df, sweep)
    with pytest.raises(DataError, match="time_us"):
        compare_with_sweep(metrics_df, _sweep_from(summarize_calls(metrics_df)).rename(columns={"time_us": "time_ms"}))


def test_compare_bad_input_is_a_clear_error(metrics_df):
    with pytest.raises(ValueError, match="lacks the columns"):
        compare_with_sweep(metrics_df, pd.DataFrame({"backend": ["triton"], "time_us": [1.0]}))
    with pytest.raises(ValueError, match="time_us"):
        compare_with_sweep(metrics_df, pd.DataFrame({"backend": ["t"], "mode": ["decode"], "batch": [1],
                                                     "draft_tokens": [1], "state_dtype": ["float32"],
                                                     "status": ["ok"]}))
    with pytest.raises(ValueError, match="tolerance"):
        compare_with_sweep(metrics_df, _sweep_from(summarize_calls(metrics_df)), tolerance=2)


# ------------------------------------------------------------------------------------------ ncu plumbing
def test_profile_command_flags():
    cmd = build_profile_command("/x/ncu", ["python", "-m", "drv", "plan.json"], report_base="/tmp/r")
    s = " ".join(cmd)
    assert "--clock-control none" in s and "--cache-control all" in s and "--profile-from-start off" in s
    assert cmd[cmd.index("--metrics") + 1] == ",".join(metric_names())
    assert cmd[-4:] == ["python", "-m", "drv", "plan.json"] and "--export /tmp/r" in s
    nv = build_profile_command("/x/ncu", ["app"], report_base="r", gate="nvtx", kernel_regex="gdn")
    assert nv[nv.index("--nvtx-include") + 1] == "gdnlab_profile/" and "--nvtx" in nv
    assert "--profile-from-start" not in nv
    assert nv[nv.index("--kernel-name") + 1] == "regex:gdnlab_ncu_marker|gdn"
    with pytest.raises(ValueError, match="gate"):
        build_profile_command("/x/ncu", ["app"], report_base="r", gate="cupti")
    assert build_import_command("/x/ncu", "r.ncu-rep")[1:] == ["--import", "r.ncu-rep", "--csv", "--page", "raw",
                                                               "--print-units", "base"]


def test_metric_errors_in_log():
    log = "==PROF== x\n==ERROR== Failed to find metric regex:^lts__t_sector_hit_rate.pct$\n"
    assert metric_errors_in_log(log, metric_names()) == ["lts__t_sector_hit_rate.pct"]
    assert metric_errors_in_log("all fine", metric_names()) == []


def _fake_exe(path: Path, body: str) -> str:
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def test_find_ncu_errors_name_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("NCU", str(tmp_path / "nope"))
    with pytest.raises(NcuNotFoundError, match=r"\$NCU"):
        find_ncu()
    monkeypatch.delenv("NCU")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("gdnlab.counters.ncu._CANDIDATE_GLOBS", (str(tmp_path / "none" / "ncu"),))
    with pytest.raises(NcuNotFoundError, match="Nsight Compute") as exc:
        find_ncu()
    assert "NCU=" in str(exc.value)
    fake = _fake_exe(tmp_path / "ncu", "print('Version 2025.3.1.0')\n")
    assert find_ncu() == fake                                      # found on PATH


_FAKE_NCU_VERSION = """\
import sys, os
if sys.argv[1:2] == ['--version']:
    print('NVIDIA (R) Nsight Compute Command Line Profiler'); print('Version {v} (build 1)'); sys.exit(0)
if '--list-injection-path-64' in sys.argv:
    if {inj}:
        print(os.path.dirname(os.path.abspath(__file__))); sys.exit(0)
    print("==ERROR== unrecognised option '--list-injection-path-64'"); sys.exit(1)
sys.exit(1)
"""


def _fake_nsight(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "site" / "nsight" / "collection"
    pkg.mkdir(parents=True)
    (pkg.parent / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "__init__.py").write_text("")
    (pkg / "ncu.py").write_text("import os\n\nBEGIN_SYMBOL = 'x'\nMIN_NCU_VERSION = (2026, 2, 1, 0)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def test_nsight_python_support_rejects_ncu_2025_3(tmp_path, monkeypatch):
    _fake_nsight(tmp_path, monkeypatch)
    ncu = _fake_exe(tmp_path / "ncu", _FAKE_NCU_VERSION.format(v="2025.3.1.0", inj=False))
    rep = nsight_python_support(ncu)
    assert not rep.ok
    assert rep.details["min_ncu"] == "2026.2.1.0" and rep.details["min_ncu_source"].endswith("ncu.py:L4")
    text = rep.describe()
    assert "2025.3.1.0 is older than" in text and "2026.2.1.0" in text and "--list-injection-path-64" in text
    assert "nsight" not in sys.modules or not hasattr(sys.modules["nsight"], "__file__") or \
        "site" not in str(getattr(sys.modules.get("nsight"), "__file__", ""))


def test_nsight_python_support_accepts_new_ncu_version(tmp_path, monkeypatch):
    _fake_nsight(tmp_path, monkeypatch)
    ncu = _fake_exe(tmp_path / "ncu", _FAKE_NCU_VERSION.format(v="2026.2.1.0", inj=True))
    rep = nsight_python_support(ncu)
    assert not any("older than" in r for r in rep.reasons)
    assert rep.details["list_injection_path"].startswith("ok:")


def test_profile_kernels_rejects_bad_arguments():
    with pytest.raises(ValueError, match="engine"):
        profile_kernels(engine="magic")
    with pytest.raises(ValueError, match="backends"):
        profile_kernels(backends=("cudnn",))
    with pytest.raises(ValueError, match="modes"):
        profile_kernels(modes=("prefill",))
    with pytest.raises(ValueError, match="batches"):
        profile_kernels(batches=(0,))
    with pytest.raises(ValueError, match="state_dtypes"):
        profile_kernels(state_dtypes=("int8",))
    with pytest.raises(ValueError, match="preset"):
        profile_kernels(preset="llama")
    with pytest.raises(ValueError, match="repeats"):
        profile_kernels(repeats=0)


# ------------------------------------------------------------------------------------------ driver + pipeline
def _plan(tmp_path: Path, backends=("reference",), device="cpu") -> dict:
    configs = []
    for be in backends:
        for mode, t in (("decode", 1), ("verify", 3)):
            configs.append({"idx": len(configs), "backend": be, "mode": mode, "batch": 2, "draft_tokens": t,
                            "state_dtype": "float32", "act_dtype": "bfloat16", "preset": "tiny", "H": 1,
                            "HV": 2, "K": 16, "V": 16})
    return {"engine": "ncu-csv", "device": device, "repeats": 2, "warmup": 1, "seed": 0, "deadline_epoch": None,
            "manifest_path": str(tmp_path / "manifest.json"), "configs": configs}


def test_driver_runs_a_plan_on_cpu(tmp_path):
    from gdnlab.counters.driver import run_plan

    plan = _plan(tmp_path, backends=("reference", "flashinfer"))
    man = run_plan(plan)
    assert json.loads(Path(plan["manifest_path"]).read_text())["configs"] == json.loads(json.dumps(
        man["configs"], default=str))
    out = {(c["backend"], c["mode"]): c for c in man["configs"]}
    assert out[("reference", "decode")]["outcome"] == "ok"
    assert out[("reference", "verify")]["intermediate_dtype"] == "float32"
    assert out[("reference", "verify")]["kernel_path"]["kernel"] == "torch_reference"
    assert man["markers"] == [[0, 0], [0, 1], [1, 0], [1, 1]]
    fi = out[("flashinfer", "decode")]
    if fi["outcome"] != "ok":                                      # no GPU here: a reason, not a crash
        assert fi["outcome"] in ("skipped", "failed") and fi["reason"]
    assert man["provenance"]["torch"]


_FAKE_NCU = """\
import csv, io, json, os, subprocess, sys
args = sys.argv[1:]
if args[:1] == ['--version']:
    print('Version 2025.3.1.0 (build 1)'); sys.exit(0)
if '--import' in args:
    sys.stdout.write(open(args[args.index('--import') + 1]).read()); sys.exit(0)
VALUED = {'--target-processes', '--replay-mode', '--clock-control', '--cache-control', '--metrics',
          '--profile-from-start', '--nvtx-include', '--kernel-name', '--launch-count', '--export'}
opts, i = {}, 0
while i < len(args) and args[i].startswith('-'):
    if args[i] in VALUED:
        opts[args[i]] = args[i + 1]; i += 2
    else:
        opts[args[i]] = True; i += 1
assert opts['--clock-control'] == 'none' and opts['--profile-from-start'] == 'off', opts
rc = subprocess.call(args[i:])
plan = json.load(open(args[-1]))
man = json.load(open(plan['manifest_path']))
metrics = opts['--metrics'].split(',')
fixed = ['ID', 'Process ID', 'Process Name', 'Host Name', 'Kernel Name', 'Context', 'Stream', 'Block Size',
         'Grid Size', 'Device', 'CC']
buf = io.StringIO(); w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator='\\n')
w.writerow(fixed + metrics)
w.writerow([''] * len(fixed) + ['nsecond' if 'time' in m else 'byte' if 'bytes' in m else '%' for m in metrics])
n = 0
for cfg, rep in man['markers']:
    for name, grid, val in (('gdnlab_ncu_marker', f'({cfg + 1}, {rep + 1}, 1)', 1.0),
                            ('_gdn_fake_kernel', '(8, 1, 1)', 1000.0 * (cfg + 1))):
        w.writerow([str(n), '1', 'python', 'h', name, '1', '7', '(32, 1, 1)', grid, '0', '9.0']
                   + [f'{val:,.0f}' if 'bytes' in m or 'time' in m else '50' for m in metrics])
        print(f'==PROF== Profiling "{name}" - {n}: 0%....50%....100% - 2 passes'); n += 1
open(opts['--export'] + '.ncu-rep', 'w').write(buf.getvalue())
sys.exit(rc)
"""


def test_profile_kernels_pipeline_with_fake_ncu(tmp_path):
    ncu = _fake_exe(tmp_path / "ncu", _FAKE_NCU)
    out = tmp_path / "out"
    out.mkdir()
    tiny = GDNShape("tiny", 1, 2, 16, 16)                          # small shape: the CPU reference is quick
    df = profile_kernels(backends=("reference",), modes=("decode", "verify"), batches=(1, 2),
                         state_dtypes=("float32",), preset=tiny, draft_tokens=2, repeats=2,
                         warmup=1, engine="ncu-csv", ncu=ncu, workdir=tmp_path / "work", device="cpu",
                         raw_csv_out=out / "ncu_raw.csv", manifest_out=out / "ncu_manifest.json",
                         time_budget_s=120, verbose=False)
    assert df.attrs["engine"] == "ncu-csv"
    assert (df["outcome"] == "ok").all() and len(df) == 4 * 2      # 4 configs x 2 repeats x 1 kernel
    assert set(df["kernel"]) == {"_gdn_fake_kernel"} and df["is_gdn"].all()
    assert np.allclose(df["duration_us"], 1.0 * (df["cfg"].astype(int) + 1))
    man = json.loads((out / "ncu_manifest.json").read_text())
    assert man["ncu_version"] == "2025.3.1.0" and man["options"]["clock_control"] == "none"
    again = assemble(parse_raw_csv(out / "ncu_raw.csv"), man)      # what the stored files give back
    pd.testing.assert_frame_equal(again.drop(columns=["timestamp"]), df.drop(columns=["timestamp"]),
                                  check_dtype=False)
    assert len(summarize_calls(df)) == 4


# ------------------------------------------------------------------------------------------ CLI + plots
def test_cli_from_raw_with_sweep(tmp_path, metrics_df, capsys):
    sweep = _sweep_from(summarize_calls(metrics_df))
    sweep.to_csv(tmp_path / "sweep.csv", index=False)
    p = argparse.ArgumentParser()
    configure_parser(p)
    args = p.parse_args(["--from-raw", str(RAW), "--manifest", str(MANIFEST), "--sweep", str(tmp_path / "sweep.csv"),
                         "--out", str(tmp_path / "o")])
    assert run(args) == 0
    text = capsys.readouterr().out
    assert "7/7 configurations agree" in text and "not profiled: flashinfer verify B=64 bfloat16" in text
    assert (tmp_path / "o" / "ncu_vs_sweep.csv").exists()
    assert any((tmp_path / "o").glob("ncu_metrics.*"))


def test_figures_carry_measured_provenance(metrics_df):
    pytest.importorskip("plotly")
    from gdnlab.plots.counters import bandwidth_agreement_figure, counters_figure, l2_residency_figure

    fig = counters_figure(metrics_df)
    assert "measured" in fig.layout.meta["provenance"] and "NVIDIA H100" in fig.layout.meta["provenance"]
    groups = summarize_calls(metrics_df).groupby(["backend", "mode", "state_dtype"]).ngroups
    assert len(fig.data) == 6 * groups                             # one trace per panel and group
    cmp = compare_with_sweep(metrics_df, _sweep_from(summarize_calls(metrics_df), factor=1.3))
    fig2 = bandwidth_agreement_figure(cmp)
    assert "measured" in fig2.layout.meta["provenance"] and "0/7 agree within" in fig2.layout.title.text
    with pytest.raises(ValueError, match="compare_with_sweep"):
        bandwidth_agreement_figure(metrics_df)
    fig3 = l2_residency_figure(cmp)
    assert "measured" in fig3.layout.meta["provenance"]
    assert sum(len(t.x) for t in fig3.data) == len(cmp)             # every configuration is a point
    assert any("L2 50 MiB" in (a.text or "") for a in fig3.layout.annotations)


def test_import_does_not_load_gpu_packages():
    code = ("import sys, gdnlab.counters, gdnlab.counters.profile, gdnlab.cli.counters; "
            "bad = [m for m in ('nsight', 'flashinfer', 'ncu_report', 'plotly', 'triton') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


# ------------------------------------------------------------------------------------------ real capture
@pytest.mark.skipif(not REAL_RAW.exists(), reason="tests/data/ncu_raw_h100.csv not captured yet "
                    "(scripts/gpu/run_counters.py writes $GDNLAB_OUT/ncu_raw.csv)")
def test_real_h100_capture():
    k = parse_raw_csv(REAL_RAW)
    assert len(k) > 0 and k["kernel"].str.contains("gdnlab_ncu_marker").any()
    for m in ("gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum",
              "dram__throughput.avg.pct_of_peak_sustained_elapsed", "launch__registers_per_thread"):
        assert m in k and pd.api.types.is_float_dtype(k[m]), m
    assert (k["gpu__time_duration.sum"] > 0).all()
    for m in ("dram__throughput.avg.pct_of_peak_sustained_elapsed",
              "sm__warps_active.avg.pct_of_peak_sustained_active"):
        if m in k:
            assert k[m].dropna().between(0, 100.5).all(), m
    # ncu's L2 sector hit rate counts hits and misses from separately sampled counters and can read a
    # little above 100 % (the H100 capture has 100.87 % on a tiny marker kernel): bound it at 102 %.
    if "lts__t_sector_hit_rate.pct" in k:
        assert k["lts__t_sector_hit_rate.pct"].dropna().between(0, 102).all()
    if not REAL_MANIFEST.exists():
        pytest.skip("tests/data/ncu_manifest_h100.json missing: parser checked, tidy frame not")
    man = json.loads(REAL_MANIFEST.read_text())
    df = assemble(k, man)
    _check_schema(df, man)
    ok = df[df["outcome"] == "ok"]
    assert ok.groupby(["cfg", "rep"]).ngroups == len(man["markers"])   # every profiled call attributed
    gdn = ok[ok["is_gdn"]]
    assert (gdn["registers_per_thread"] > 0).all() and (gdn["dram_bytes"] > 0).all()
    assert ok["gpu"].str.contains("H100").all()


def test_driver_respects_the_deadline(tmp_path):
    from gdnlab.counters.driver import run_plan

    plan = _plan(tmp_path)
    plan["deadline_epoch"] = 0.0                                   # long past
    man = run_plan(plan)
    assert [c["outcome"] for c in man["configs"]] == ["skipped", "skipped"]
    assert all("time budget" in c["reason"] for c in man["configs"]) and man["markers"] == []


def test_stream_stops_a_run_past_its_timeout(tmp_path):
    import time

    from gdnlab.counters.profile import _stream

    t0 = time.time()
    rc, timed_out = _stream([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
                            dict(os.environ), tmp_path / "log.txt", 1.5, verbose=False)
    assert timed_out and rc != 0 and time.time() - t0 < 30
    log = (tmp_path / "log.txt").read_text()
    assert "started" in log and "timed out" in log


def test_nsight_python_rows_become_the_same_frame(manifest):
    from gdnlab.counters.frame import nspy_rows_to_kernels

    rows = []
    for idx, kernel, n in ((0, "_gdn_fused_recurrent", 1),
                           (6, "fill_kernel|kernel_cutlass_gdn_verify_kernel_mtp_0", 2)):
        rows += [{"idx": idx, "metric": "gpu__time_duration.sum", "value": 3000.0 * n, "unit": "nsecond",
                  "kernel": kernel},
                 {"idx": idx, "metric": "dram__bytes_read.sum", "value": 2.0 * n, "unit": "Mbyte", "kernel": kernel},
                 {"idx": idx, "metric": "dram__bytes_write.sum", "value": 1e6, "unit": "byte", "kernel": kernel},
                 {"idx": idx, "metric": "sm__warps_active.avg.pct_of_peak_sustained_active", "value": 40.0 * n,
                  "unit": "%", "kernel": kernel}]
    k = nspy_rows_to_kernels(rows)
    man = dict(manifest, configs=[c for c in manifest["configs"] if c["idx"] in (0, 6)], engine="nsight-python")
    df = assemble(k, man, attributed=True)
    assert list(df["n_kernels"]) == [1, 2] and (df["outcome"] == "ok").all()
    assert list(df["duration_us"]) == [3.0, 6.0]                   # sums stay sums
    assert list(df["achieved_occupancy_pct"]) == [40.0, 40.0]      # summed percentages become the mean
    assert df.loc[0, "dram_read_bytes"] == 2e6 and df["engine"].eq("nsight-python").all()


REAL_SWEEP = Path(__file__).resolve().parents[2] / "traces" / "h100" / "sweep.parquet"
REAL_SWEEP_FP32I = REAL_SWEEP.with_name("sweep_triton_bf16verify_fp32intermediate.parquet")
REAL_METRICS = REAL_SWEEP.with_name("ncu_metrics.parquet")


@pytest.mark.skipif(not (REAL_SWEEP.exists() and REAL_METRICS.exists()), reason="shipped H100 sweep/metrics absent")
def test_compare_with_real_h100_sweep_uses_only_comparable_rows():
    """Eager, pool-scoped and rejected sweep rows are left out, intermediates of another dtype never
    joined; at B=256 (state far larger than L2) counters and formula agree within 10 %."""
    m = pd.read_parquet(REAL_METRICS)
    c = compare_with_sweep(m, [REAL_SWEEP, REAL_SWEEP_FP32I])
    assert (c["sweep_rows"].dropna() == 1).all(), "one graph-timed batch-scoped row per configuration"
    big = c[(c["batch"] == 256) & (c["state_dtype"] == "float32")]
    assert len(big) == 4 and big["agree"].all(), big[["backend", "mode", "bw_ratio"]]
    # without the fp32-intermediate rows, Triton's bf16 verify (profiled with fp32 intermediates) finds no match
    c2 = compare_with_sweep(REAL_METRICS, pd.read_parquet(REAL_SWEEP))
    tv = c2[(c2["backend"] == "triton") & (c2["mode"] == "verify") & (c2["state_dtype"] == "bfloat16")]
    assert tv["sweep_time_us"].isna().all()


@pytest.mark.skipif(not (REAL_SWEEP.exists() and REAL_METRICS.exists()), reason="shipped H100 sweep/metrics absent")
def test_every_real_h100_configuration_gets_a_diagnosis():
    """Counters vs formula for every profiled configuration, each with a cause and a diagnosis; the
    disagreements at small B are explained (L2-resident writes, extra kernels), not filtered out."""
    from gdnlab.hardware import spec_for

    m = pd.read_parquet(REAL_METRICS)
    c = compare_with_sweep(m, [REAL_SWEEP, REAL_SWEEP_FP32I])
    configs = summarize_calls(m)[list(JOIN_KEYS)].drop_duplicates()
    assert len(c) == len(configs) and not c.duplicated(list(JOIN_KEYS)).any()
    assert c["sweep_time_us"].notna().all(), c.loc[c["sweep_time_us"].isna(), list(JOIN_KEYS)]
    assert c["cause"].isin(CAUSES).all() and (c["diagnosis"].str.len() > 0).all()
    assert (c["cause"] == "agree").eq(c["agree"]).all()
    assert (c.loc[~c["agree"], "cause"] != "agree").all()
    l2 = spec_for(str(m["gpu"].iloc[0])).l2_mb * 2**20
    # decode writes its state back; where that fits in L2 the DRAM counters miss the write
    small = c[(c["mode"] == "decode") & (c["written_bytes"] <= l2) & (c["bytes_ratio"] < 0.9)]
    assert len(small) >= 8
    assert small["diagnosis"].str.contains("L2-resident state at small B").all()
    # FlashInfer calls with helper kernels besides the GDN kernel are named as such
    extra = c[(c["n_kernels"] > 1) & (c["gdn_share"] < 0.9) & ~c["agree"]]
    assert len(extra) and (extra["cause"] == "extra kernels").all()
    assert (extra["gdn_duration_us"] < extra["ncu_duration_us"]).all()


# ------------------------------------------------------------------------------------------ wrong files
def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from gdnlab.cli import main

    rc = main(["counters", *argv])
    cap = capsys.readouterr()
    return rc, cap.err.strip()


@pytest.mark.skipif(not REAL_SWEEP.exists(), reason="shipped H100 sweep absent")
def test_cli_sweep_given_as_counters_is_one_line(capsys):
    rc, err = _cli(["--input", str(REAL_SWEEP)], capsys)
    assert rc == 4 and len(err.splitlines()) == 1
    assert "is a sweep file, not a counters file" in err and str(REAL_SWEEP) in err


def test_cli_random_bytes_name_the_file_and_what_was_expected(tmp_path, capsys):
    junk = tmp_path / "junk.csv"
    junk.write_bytes(bytes(range(256)) * 8)
    rc, err = _cli(["--input", str(junk)], capsys)
    assert rc == 4 and len(err.splitlines()) == 1 and str(junk) in err and "counters table" in err
    rc, err = _cli(["--from-raw", str(junk), "--manifest", str(MANIFEST), "--out", str(tmp_path)], capsys)
    assert rc == 4 and len(err.splitlines()) == 1 and str(junk) in err and "Nsight Compute CSV" in err
    rc, err = _cli(["--from-raw", str(RAW), "--manifest", str(junk), "--out", str(tmp_path)], capsys)
    assert rc == 4 and str(junk) in err and "manifest" in err
    parquet = tmp_path / "junk.parquet"
    parquet.write_bytes(b"\x91" * 64)
    rc, err = _cli(["--input", str(parquet)], capsys)
    assert rc == 4 and str(parquet) in err


def test_cli_keeps_existing_outputs_when_a_write_fails(tmp_path, metrics_df, monkeypatch, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "ncu_metrics.parquet").write_bytes(b"earlier results")
    sweep = tmp_path / "sweep.csv"
    _sweep_from(summarize_calls(metrics_df)).to_csv(sweep, index=False)

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail)
    rc, err = _cli(["--from-raw", str(RAW), "--manifest", str(MANIFEST), "--sweep", str(sweep), "--out", str(out)],
                   capsys)
    assert rc == 7 and "disk full" in err and "\n" not in err            # one line, the I/O error exit code
    assert (out / "ncu_metrics.parquet").read_bytes() == b"earlier results"
    assert [p.name for p in out.iterdir()] == ["ncu_metrics.parquet"]      # no temporary file left behind
    # a sweep that is not a sweep fails before anything is written
    monkeypatch.undo()
    rc, err = _cli(["--from-raw", str(RAW), "--manifest", str(MANIFEST), "--sweep", str(RAW), "--out", str(out)],
                   capsys)
    assert rc == 4 and (out / "ncu_metrics.parquet").read_bytes() == b"earlier results"


def test_cli_options_have_help_and_batches_is_a_comma_list():
    p = argparse.ArgumentParser()
    configure_parser(p)
    no_help = [a.option_strings for a in p._actions if a.option_strings and a.option_strings != ["-h", "--help"]
               and not a.help]
    assert not no_help, no_help
    args = p.parse_args(["--batches", "1, 8,64", "--engine", "ncu-csv", "--cache-control", "none"])
    assert args.batches == [1, 8, 64] and args.engine == "ncu-csv" and args.cache_control == "none"
    assert p.parse_args(["--batch", "4"]).batches == [4]
    with pytest.raises(SystemExit):
        p.parse_args(["--batches", "1,x"])


def test_compare_uses_amortised_rows_and_never_eager_ones(metrics_df):
    """A sweep timed the default way (n calls per CUDA-graph sample) joins; its eager rows (host launch
    overhead, or a graph that failed to capture) never do."""
    s = summarize_calls(metrics_df)
    base = _sweep_from(s).assign(timing="amortised", timing_method="amortised", calls_per_sample=8)
    eager = base.assign(timing="eager", timing_method="eager", calls_per_sample=1, time_us=base["time_us"] * 3)
    fallback = base.assign(timing_method="eager", time_us=base["time_us"] * 5)
    cmp = compare_with_sweep(metrics_df, pd.concat([base, eager], ignore_index=True))
    assert (cmp["sweep_rows"] == 1).all() and cmp["agree"].all(), cmp[["backend", "mode", "bw_ratio"]]
    for rows in (eager, fallback):       # (fallback shares base's keys: a sweep file keeps one of them)
        with pytest.raises(DataError, match="timed in CUDA graphs"):
            compare_with_sweep(metrics_df, rows)


REAL_H200 = Path(__file__).resolve().parents[2] / "traces" / "h200"


@pytest.mark.skipif(not (REAL_H200 / "ncu_metrics.parquet").exists(), reason="shipped H200 counters absent")
def test_real_h200_counters_join_the_same_calls_of_the_h200_sweep():
    """The H200 counters and sweep come from one commit and one backend factory: every profiled
    configuration finds its sweep row, and at B=256 (state far beyond L2) DRAM bytes match the formula
    within 10 % for both backends and both state dtypes."""
    m = pd.read_parquet(REAL_H200 / "ncu_metrics.parquet")
    sw = load_sweep(REAL_H200 / "sweep.parquet")
    assert set(m["git_commit"].dropna()) == set(sw["git_commit"].dropna())
    c = compare_with_sweep(m, sw)
    assert c["sweep_time_us"].notna().all(), c.loc[c["sweep_time_us"].isna(), list(JOIN_KEYS)]
    big = c[c["batch"] == 256]
    assert len(big) == 8 and ((big["bytes_ratio"] - 1).abs() <= 0.10).all(), big[["backend", "mode", "bytes_ratio"]]
