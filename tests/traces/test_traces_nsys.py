"""nsys SQLite reader: schema flavours, columns, pid/tid decoding, metadata, error cases."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gdnlab import traces
from gdnlab.traces import TraceError, TraceNotFoundError
from gdnlab.traces import synthetic as tg

from helpers.ids import case_id


@pytest.fixture(scope="module", params=tg.SCHEMAS)
def export(request, tmp_path_factory) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp("nsys") / f"handmade_{request.param}.sqlite"
    tg.write_nsys_sqlite(path, tg.handmade(), request.param)
    return request.param, path


def test_kernels_columns_and_values(export):
    schema, path = export
    t = traces.load(path)
    k = t.kernels
    for col in ("name", "short_name", "start_ns", "end_ns", "duration_ns", "device", "stream", "correlation_id",
                "grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "graph_node_id", "pid", "tid",
                "launch_start_ns", "launch_api"):
        assert col in k, col
    syn = tg.handmade()
    assert len(k) == len(syn.kernels)
    assert (k["duration_ns"] == k["end_ns"] - k["start_ns"]).all()
    assert k["duration_ns"].sum() == (syn.kernels["end"] - syn.kernels["start"]).sum()
    names = set(k["name"].astype(str))
    if schema == "minimal":   # only shortName ids: the short name is all there is
        assert "gdn_decode_kernel" in names
    else:
        assert "void gdn_decode_kernel<128, float>(Params)" in names
        row = k[k["name"] == "void gdn_decode_kernel<128, float>(Params)"].iloc[0]
        assert row["short_name"] == "gdn_decode_kernel"
        assert (row["grid_x"], row["block_x"]) == (64, 128)
    # pid from globalPid (or the launching call), tid from the launching call's globalTid
    bar = k[k["short_name"] == "bar"].iloc[0]
    assert (bar["pid"], bar["tid"]) == (4242, 2)
    lost = k[k["short_name"] == "lost"].iloc[0]
    assert pd.isna(lost["tid"]) and pd.isna(lost["launch_start_ns"])
    graph = k[k["launch_api"] == "cudaGraphLaunch_v10000"]
    assert len(graph) == 3 and graph["correlation_id"].nunique() == 1
    if schema == "2025.3":
        assert sorted(graph["graph_node_id"].astype(int)) == [1000, 1001, 1002]
    else:
        assert graph["graph_node_id"].isna().all()


def test_runtime_frame(export):
    _, path = export
    r = traces.load(path).runtime
    syn = tg.handmade()
    assert len(r) == len(syn.runtime)
    assert set(r["name"].astype(str)) == set(syn.runtime["name"])
    assert set(zip(r["pid"], r["tid"])) == {(4242, 1), (4242, 2)}
    assert (r["duration_ns"] >= 0).all()


def test_nvtx_text_domains_depth(export):
    schema, path = export
    n = traces.load(path).nvtx
    assert list(n["text"].astype(str)) == ["step", "other", "layer", "idle", "graph"]  # sorted by start
    depth = dict(zip(n["text"].astype(str), n["depth"]))
    assert depth == {"step": 0, "other": 0, "layer": 1, "idle": 2, "graph": 1}
    kinds = dict(zip(n["text"].astype(str), n["kind"].astype(str)))
    assert kinds["other"] == "startend" and kinds["step"] == "pushpop"
    dom = dict(zip(n["text"].astype(str), n["domain"].astype(str)))
    assert dom["layer"] == ("gdnlab" if schema == "2025.3" else "default")
    assert dom["step"] == "default"
    assert (n["duration_ns"] == n["end_ns"] - n["start_ns"]).all()
    assert set(n["tid"]) == {1, 2}


def test_decode_global_tid_like_nsys():
    from gdnlab.traces.nsys import decode_global_tid
    g = np.array([tg.global_tid(4242, 7), tg.global_tid(0xABCDEF, 0x123456, vm=3), -1])
    pid, tid = decode_global_tid(g)
    assert list(pid) == [4242, 0xABCDEF, -1]
    assert list(tid) == [7, 0x123456, -1]


def test_metadata_2025_has_gpu_and_version(tmp_path):
    p = tg.write_nsys_sqlite(tmp_path / "m.sqlite", tg.handmade(), "2025.3")
    t = traces.load(p)
    md = t.metadata
    assert md["source"] == "nsys" and md["file"] == "m.sqlite"
    g = md["gpus"][0]
    assert g["name"] == "NVIDIA H100 80GB HBM3" and g["sm"] == "sm90" and g["compute_capability"] == "9.0"
    assert g["sm_count"] == 132 and g["memory_bandwidth_bytes_per_s"] > 3e12 and not g["sm_inferred"]
    assert md["nsys_version"].startswith("2025.3.1") and md["export_schema_version"]
    assert md["capture_start_utc_ns"] == tg.Synthetic(None, None, None).session_start_utc_ns
    text = t.provenance()
    # a generated export names an H100 but carries the synthetic marker: never "measured"
    assert text.startswith("synthetic") and "H100" in text and "sm90" in text and "m.sqlite" in text
    assert "nsys 2025.3.1" in text
    assert t.status == "synthetic" and md["synthetic"]["generator"] == "gdnlab.traces.synthetic"


@pytest.mark.parametrize("command,marker,status", [
    (["python3", "-m", "gdnlab", "workload", "--backend", "triton"], False, "measured"),   # gdnlab capture
    (["/venv/bin/python3", "-m", "gdnlab.workload"], False, "measured"),
    (["python3", "-m", "gdnlab", "workload"], True, "synthetic"),      # the generator's marker wins
    (["python3", "serve.py", "--model", "/models/gdnlab-ish"], False, "synthetic"),   # someone else's run
    (None, False, "synthetic"),                                         # no command recorded
], ids=case_id)
def test_status_from_capture_metadata(tmp_path, command, marker, status):
    syn = tg.handmade()
    syn.capture_command = command
    t = traces.load(tg.write_nsys_sqlite(tmp_path / "c.sqlite", syn, marker=marker))
    assert t.status == status, t.status_reason
    assert t.provenance().startswith(f"{status} · NVIDIA H100 80GB HBM3 (sm90) · c.sqlite")
    assert t.metadata["gdnlab_capture"] is (command is not None and "gdnlab" in " ".join(command[1:3]))


def test_gdnlab_capture_without_gpu_compute_capability_is_synthetic(tmp_path):
    syn = tg.handmade()
    syn.capture_command = ["python3", "-m", "gdnlab", "workload"]
    p = tg.write_nsys_sqlite(tmp_path / "c.sqlite", syn, marker=False)
    with sqlite3.connect(p) as db:
        db.execute("UPDATE TARGET_INFO_GPU SET computeMajor = NULL, computeMinor = NULL")
        db.execute("DROP TABLE TARGET_INFO_CUDA_DEVICE")
    t = traces.load(p)
    assert t.gpu["sm_inferred"] and t.status == "synthetic" and "compute capability" in t.status_reason


def test_metadata_old_schema_without_gpu_tables(tmp_path):
    p = tg.write_nsys_sqlite(tmp_path / "old.sqlite", tg.handmade(), "2021")
    t = traces.load(p)
    assert t.metadata["gpus"] == [] and t.metadata["nsys_version"] is None
    assert "GPU unknown" in t.provenance() and t.provenance().startswith("synthetic")


def test_gpu_name_only_infers_sm(tmp_path):
    p = tg.write_nsys_sqlite(tmp_path / "n.sqlite", tg.handmade(), "2025.3")
    with sqlite3.connect(p) as db:   # nsys 2025.3 keeps the compute capability in TARGET_INFO_GPU
        db.execute("UPDATE TARGET_INFO_GPU SET computeMajor = NULL, computeMinor = NULL")
        db.execute("DROP TABLE TARGET_INFO_CUDA_DEVICE")
    g = traces.load(p).metadata["gpus"][0]
    assert g["sm"] == "sm90" and g["sm_inferred"] is True
    assert "inferred" in traces.load(p).provenance()


def test_kernel_summary_matches_plain_sql(export):
    schema, path = export
    col = "shortName" if schema == "minimal" else "demangledName"
    with sqlite3.connect(path) as db:
        rows = db.execute(f"""SELECT s.value, count(*), sum(k.end - k.start), min(k.end - k.start),
                                     max(k.end - k.start)
                              FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s ON s.id = k.{col}
                              GROUP BY s.value""").fetchall()
    expected = {r[0]: r[1:] for r in rows}
    ks = traces.kernel_summary(traces.load(path)).set_index("name")
    assert set(ks.index) == set(expected)
    for name, (count, total, mn, mx) in expected.items():
        assert tuple(ks.loc[name, ["count", "total_ns", "min_ns", "max_ns"]]) == (count, total, mn, mx)
    assert ks["share_pct"].sum() == pytest.approx(100.0)
    assert list(ks["total_ns"]) == sorted(ks["total_ns"], reverse=True)


def test_driver_api_launch_is_linked(tmp_path):
    b = tg.Builder()
    b.range("drv", 0, 10_000, tid=3)
    b.launch("drv_kernel", 1_000, 5_000, 1_000, tid=3, api="cuLaunchKernel", driver=True)
    p = tg.write_nsys_sqlite(tmp_path / "drv.sqlite", b.build(), "2025.3")
    t = traces.load(p)
    assert set(t.runtime["api"].astype(str)) == {"driver"}
    assert t.kernels.loc[0, "tid"] == 3
    assert t.gpu_ranges.loc[0, "kernel_count"] == 1


def test_unclosed_range_dropped_and_counted(tmp_path):
    p = tg.write_nsys_sqlite(tmp_path / "u.sqlite", tg.handmade(), "2025.3")
    with sqlite3.connect(p) as db:
        db.execute("INSERT INTO NVTX_EVENTS (start, end, eventType, text, globalTid) VALUES (5, NULL, 59, 'open', ?)",
                   (tg.global_tid(4242, 1),))
    t = traces.load(p)
    assert "open" not in set(t.nvtx["text"].astype(str))
    assert t.metadata["nvtx_unclosed"] == 1


def test_empty_kernel_table_is_a_valid_trace(tmp_path):
    p = tg.write_nsys_sqlite(tmp_path / "e.sqlite", tg.Builder().build(), "2025.3")
    t = traces.load(p)
    assert t.kernels.empty and t.gpu_ranges.empty
    assert traces.kernel_summary(t).empty


def test_parallel_and_serial_reads_agree(tmp_path):
    syn = tg.decode_loop(40, layers=5, kernels_per_layer=4)
    p = tg.write_nsys_sqlite(tmp_path / "d.sqlite", syn)
    import gdnlab.traces.nsys as nsys_mod
    old = nsys_mod._CHUNK_ROWS
    nsys_mod._CHUNK_ROWS = 97          # many chunks, read by several threads
    try:
        a = traces.load(p, workers=3)
        ka, ga = a.kernels, a.gpu_ranges
    finally:
        nsys_mod._CHUNK_ROWS = old
    b = traces.load(p, workers=1)
    pd.testing.assert_frame_equal(ka, b.kernels)
    pd.testing.assert_frame_equal(ga, b.gpu_ranges)
    assert (ka["start_ns"].to_numpy() == syn.kernels["start"].to_numpy()).all()


# ------------------------------------------------------------------ errors

def _valid(tmp_path: Path) -> Path:
    return tg.write_nsys_sqlite(tmp_path / "valid.sqlite", tg.decode_loop(20, layers=4), "2025.3")


def test_missing_file(tmp_path):
    p = tmp_path / "nope.sqlite"
    with pytest.raises(TraceNotFoundError) as e:
        traces.load(p)
    assert isinstance(e.value, TraceError) and isinstance(e.value, FileNotFoundError)
    assert "nope.sqlite" in str(e.value)


def test_text_file_renamed_sqlite(tmp_path):
    p = tmp_path / "notes.sqlite"
    p.write_text("this is not a trace\n" * 100)
    with pytest.raises(TraceError, match=r"notes\.sqlite.*neither an nsys SQLite export"):
        traces.load(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.sqlite"
    p.write_bytes(b"")
    with pytest.raises(TraceError, match=r"empty\.sqlite.*empty file"):
        traces.load(p)


def test_truncated_first_kib(tmp_path):
    src = _valid(tmp_path)
    p = tmp_path / "trunc.sqlite"
    p.write_bytes(src.read_bytes()[:1024])
    with pytest.raises(TraceError, match=r"trunc\.sqlite.*truncated"):
        traces.load(p)


def test_truncated_half(tmp_path):
    src = _valid(tmp_path)
    data = src.read_bytes()
    p = tmp_path / "half.sqlite"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceError, match=r"half\.sqlite.*truncated"):
        traces.load(p)


def test_corrupt_pages_raise_trace_error_not_sqlite_error(tmp_path):
    src = _valid(tmp_path)
    data = bytearray(src.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)
    p = tmp_path / "corrupt.sqlite"
    p.write_bytes(bytes(data))
    with pytest.raises(TraceError, match=r"corrupt\.sqlite"):
        t = traces.load(p)
        _ = t.kernels, t.nvtx, t.gpu_ranges


def test_sqlite_without_kernel_table(tmp_path):
    p = tmp_path / "nokernels.sqlite"
    with sqlite3.connect(p) as db:
        db.execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT)")
        db.execute("CREATE TABLE NVTX_EVENTS (start INTEGER, end INTEGER, eventType INTEGER, text TEXT)")
    with pytest.raises(TraceError, match=r"nokernels\.sqlite.*no CUPTI_ACTIVITY_KIND_KERNEL table.*NVTX_EVENTS"):
        traces.load(p)


def test_kernel_table_without_times(tmp_path):
    p = tmp_path / "notimes.sqlite"
    with sqlite3.connect(p) as db:
        db.execute("CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (deviceId INTEGER)")
    with pytest.raises(TraceError, match=r"lacks column"):
        traces.load(p)


def test_trace_error_is_value_error():
    assert issubclass(TraceError, ValueError)


def test_inline_text_names_and_untyped_columns(tmp_path):
    """Hand-written exports (other tools) put names inline as TEXT and may declare no types."""
    p = tmp_path / "inline.sqlite"
    gtid = tg.global_tid(9, 9)
    with sqlite3.connect(p) as db:
        db.executescript("""
            CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start, end, deviceId, streamId, correlationId, shortName TEXT);
            CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start, end, globalTid, correlationId, nameId);
            CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT);
            CREATE TABLE NVTX_EVENTS (start, end, eventType, text, globalTid);
        """)
        db.execute("INSERT INTO StringIds VALUES (1, 'cudaLaunchKernel')")
        db.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (?, ?, 0, 7, ?, ?)",
                       [(100, 200, 1, "alpha"), (300, 450, 2, "beta"), (500, 600, 3, "alpha")])
        db.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?, ?, ?, ?, 1)",
                       [(10, 20, gtid, 1), (30, 40, gtid, 2), (400, 410, gtid, 3)])
        db.execute("INSERT INTO NVTX_EVENTS VALUES (0, 50, 59, 'first', ?)", (gtid,))
    t = traces.load(p)
    assert list(t.kernels["name"].astype(str)) == ["alpha", "beta", "alpha"]
    assert list(t.runtime["name"].astype(str)) == ["cudaLaunchKernel"] * 3
    assert list(t.kernels["tid"]) == [9, 9, 9]
    g = t.gpu_ranges.iloc[0]
    assert (g["text"], g["kernel_count"], g["gpu_busy_ns"]) == ("first", 2, 250)


def test_same_columns_in_every_schema_and_kineto(tmp_path):
    syn = tg.handmade()
    frames = [traces.load(tg.write_nsys_sqlite(tmp_path / f"{s}.sqlite", syn, s)) for s in tg.SCHEMAS]
    frames.append(traces.load(tg.write_kineto_json(tmp_path / "k.json", syn)))
    for attr in ("kernels", "runtime", "nvtx", "gpu_ranges"):
        cols = [list(getattr(t, attr).columns) for t in frames]
        assert all(c == cols[0] for c in cols), attr
