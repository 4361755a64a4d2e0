"""Kineto (PyTorch profiler) chrome traces: JSON and .json.gz, same frames as nsys, errors."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from gdnlab import traces
from gdnlab.traces import TraceError
from gdnlab.traces import synthetic as tg

SMALL = {
    "schemaVersion": 1,
    "deviceProperties": [{"id": 0, "name": "NVIDIA H100 80GB HBM3", "totalGlobalMem": 85520809984,
                          "computeMajor": 9, "computeMinor": 0, "numSms": 132}],
    "traceEvents": [
        {"ph": "X", "cat": "user_annotation", "name": "step", "pid": 7, "tid": 11, "ts": 100.0, "dur": 50.0},
        {"ph": "X", "cat": "user_annotation", "name": "gdn.decode", "pid": 7, "tid": 11, "ts": 101.0, "dur": 10.0},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 7, "tid": 11, "ts": 102.0,
         "dur": 3.0, "args": {"correlation": 5, "cbid": 211}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaGraphLaunch", "pid": 7, "tid": 11, "ts": 120.0,
         "dur": 4.0, "args": {"correlation": 6}},
        {"ph": "X", "cat": "kernel", "name": "void gdn_decode<128>(P)", "pid": 0, "tid": 7, "ts": 106.5,
         "dur": 2.25, "args": {"device": 0, "stream": 7, "correlation": 5, "grid": [64, 16, 1], "block": [128, 1, 1]}},
        {"ph": "X", "cat": "kernel", "name": "triton_poi_fused_add_0", "pid": 0, "tid": 7, "ts": 125.0,
         "dur": 1.0, "args": {"device": 0, "stream": 7, "correlation": 6}},
        {"ph": "X", "cat": "kernel", "name": "triton_poi_fused_mul_1", "pid": 0, "tid": 7, "ts": 126.5,
         "dur": 1.0, "args": {"device": 0, "stream": 7, "correlation": 6}},
        {"ph": "X", "cat": "gpu_user_annotation", "name": "step", "pid": 0, "tid": 7, "ts": 106.5, "dur": 21.0},
        {"ph": "X", "cat": "cpu_op", "name": "aten::add", "pid": 7, "tid": 11, "ts": 119.0, "dur": 6.0},
        {"ph": "M", "name": "process_name", "pid": 7, "args": {"name": "python"}},
    ],
}


@pytest.fixture(params=["json", "json.gz"])
def small(request, tmp_path) -> Path:
    data = json.dumps(SMALL).encode()
    p = tmp_path / f"trace.{request.param}"
    p.write_bytes(gzip.compress(data) if request.param.endswith("gz") else data)
    return p


def test_small_kineto_frames(small):
    t = traces.load(small)
    assert t.kind == "kineto"
    k = t.kernels.sort_values("start_ns").reset_index(drop=True)
    assert list(k["short_name"].astype(str)) == ["gdn_decode", "triton_poi_fused_add_0", "triton_poi_fused_mul_1"]
    assert list(k["start_ns"]) == [106_500, 125_000, 126_500]
    assert list(k["duration_ns"]) == [2_250, 1_000, 1_000]
    assert (k.loc[0, "grid_x"], k.loc[0, "grid_y"], k.loc[0, "block_x"]) == (64, 16, 128)
    assert list(k["tid"]) == [11, 11, 11] and list(k["pid"]) == [7, 7, 7]
    assert list(k["launch_api"].astype(str)) == ["cudaLaunchKernel", "cudaGraphLaunch", "cudaGraphLaunch"]
    assert len(t.runtime) == 2
    n = t.nvtx
    assert list(n["text"]) == ["step", "gdn.decode"] and list(n["depth"]) == [0, 1]
    g = t.gpu_ranges.set_index("text")
    assert g.loc["step", "kernel_count"] == 3 and g.loc["gdn.decode", "kernel_count"] == 1
    assert g.loc["step", "gpu_busy_ns"] == 4_250
    assert (g.loc["step", "gpu_start_ns"], g.loc["step", "gpu_end_ns"]) == (106_500, 127_500)
    # Kineto's own GPU projection of "step" spans the same interval
    ann = SMALL["traceEvents"][7]
    assert g.loc["step", "gpu_span_ns"] == round(ann["dur"] * 1000)


def test_small_kineto_metadata(small):
    t = traces.load(small)
    md = t.metadata
    assert md["source"] == "kineto" and md["schema_version"] == 1
    assert md["gpus"][0]["sm"] == "sm90" and md["gpus"][0]["sm_count"] == 132
    assert md["trace_span_ns"] == (100_000, 150_000)
    p = t.provenance()
    # test data that does not say gdnlab made it is not "measured", whatever GPU it names
    assert p.startswith("synthetic") and "H100" in p and small.name in p and "Kineto" in p
    assert md["gdnlab_capture"] is False and md["synthetic"] is None


def test_kineto_made_by_gdnlab_is_measured(tmp_path):
    p = tmp_path / "mine.json"
    p.write_text(json.dumps({**SMALL, "gdnlab": {"version": "0.1.0", "command": "gdnlab workload"}}))
    t = traces.load(p)
    assert t.status == "measured" and t.provenance().startswith("measured · NVIDIA H100")
    # ... unless it also carries the generator's marker, or names no GPU
    p.write_text(json.dumps({**SMALL, "gdnlab": {"version": "0.1.0"}, "gdnlab_synthetic": {"generator": "x"}}))
    assert traces.load(p).status == "synthetic"
    p.write_text(json.dumps({**SMALL, "gdnlab": {"version": "0.1.0"}, "deviceProperties": []}))
    assert traces.load(p).status == "synthetic"


def test_kineto_analyses_run(small):
    t = traces.load(small)
    ks = traces.kernel_summary(t, by="class")
    assert set(ks["class"]) == {"gdn", "triton_poi_fused_add", "triton_poi_fused_mul"}
    assert traces.range_breakdown(t).set_index("range").loc["step", "kernel_count"] == 3


def test_generated_kineto_equals_nsys(tmp_path):
    syn = tg.decode_loop(6, layers=3, kernels_per_layer=4)
    a = traces.load(tg.write_nsys_sqlite(tmp_path / "a.sqlite", syn))
    b = traces.load(tg.write_kineto_json(tmp_path / "b.json.gz", syn))
    ga, gb = a.gpu_ranges, b.gpu_ranges
    assert list(ga["kernel_count"]) == list(gb["kernel_count"])
    assert list(ga["gpu_busy_ns"]) == list(gb["gpu_busy_ns"])
    assert list(ga["depth"]) == list(gb["depth"])
    assert a.kernels["duration_ns"].sum() == b.kernels["duration_ns"].sum()


@pytest.mark.parametrize("content,match", [
    (b'{"traceEvents": [', "not valid JSON"),
    (b'{"foo": 1}', "no 'traceEvents'"),
    (b"[1, 2, 3]", "neither"),
])
def test_kineto_errors(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(TraceError, match=match) as e:
        traces.load(p)
    assert "bad.json" in str(e.value)


def test_truncated_gzip(tmp_path):
    data = gzip.compress(json.dumps(SMALL).encode())
    p = tmp_path / "cut.json.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceError, match=r"cut\.json\.gz.*gzip"):
        traces.load(p)
