"""A corpus of broken traces, generated here from :mod:`gdnlab.traces.synthetic` (so the repository
keeps no binary fixtures): every reader refuses what would give wrong numbers with one clear error
naming the file and the problem, or loads with a visible warning that reaches the provenance line;
nothing the user had is changed or lost; nothing hangs. (Traces that are valid row by row but not
physical, and a gzip bomb, are in tests/reliability/test_reliability_numbers.py.)
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gdnlab import traces
from gdnlab.errors import DataError, InputError, exit_code
from gdnlab.traces import TraceDataError, TraceNotFoundError
from gdnlab.traces import synthetic as tg

GTID = tg.global_tid(4242, 1)


# --------------------------------------------------------------------------- corpus builders

def _nsys(path: Path, *sql: str, schema: str = "2025.3") -> Path:
    """The hand-made trace as an nsys export, then ``sql`` run on it."""
    tg.write_nsys_sqlite(path, tg.handmade(), schema)
    with sqlite3.connect(path) as db:
        for stmt in sql:
            db.execute(stmt)
    return path


def _untyped(path: Path, kernels: list[tuple], runtime: list[tuple] = (), nvtx: list[tuple] = ()) -> Path:
    """A small export with untyped columns (so NULL, REAL, Inf and text can be stored), names inline."""
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start, end, deviceId, streamId, correlationId, shortName TEXT);
            CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start, end, globalTid, correlationId, name TEXT);
            CREATE TABLE NVTX_EVENTS (start, end, eventType, text, globalTid);
        """)
        db.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (?, ?, 0, 7, ?, 'k')", kernels)
        db.executemany(f"INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?, ?, {GTID}, ?, 'cudaLaunchKernel')",
                       runtime)
        db.executemany(f"INSERT INTO NVTX_EVENTS VALUES (?, ?, 59, 'step', {GTID})", nvtx)
    return path


def _kineto(path: Path, edit: Callable[[dict], None], *, gz: bool = False) -> Path:
    """The hand-made trace as a Kineto JSON trace, with ``edit`` applied to its dict."""
    d = tg.kineto_dict(tg.handmade())
    edit(d)
    data = json.dumps(d).encode()            # allow_nan: NaN / Infinity literals as Python writes them
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _first(d: dict, cat: str) -> dict:
    return next(e for e in d["traceEvents"] if e.get("cat") == cat)


def _set(cat: str, key: str, value) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        _first(d, cat)[key] = value
    return edit


def _drop(cat: str, key: str) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        del _first(d, cat)[key]
    return edit


def _without(*cats: str) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        d["traceEvents"] = [e for e in d["traceEvents"] if e.get("cat") not in cats]
    return edit


K, R, N = "CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS"
KERNEL_NAME_ID = f"(SELECT demangledName FROM {K} LIMIT 1)"
REGISTERED_TEXT_ID = f"(SELECT textId FROM {N} WHERE textId IS NOT NULL LIMIT 1)"

#: name -> (builder(dir) -> path, match): the load or a frame must raise TraceDataError matching ``match``
ERRORS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "nsys_no_stringids": (lambda d: _nsys(d / "nostrings.sqlite", "DROP TABLE StringIds"),
                          r"demangledName holds StringIds ids but the export has no StringIds table"),
    "nsys_kernel_names_not_in_stringids": (
        lambda d: _nsys(d / "lostnames.sqlite", f"DELETE FROM StringIds WHERE id IN (SELECT demangledName FROM {K})"),
        r"none of the \d+ kernel names is in StringIds"),
    "nsys_kernel_end_before_start": (
        lambda d: _nsys(d / "negdur.sqlite", f"UPDATE {K} SET end = start - 5 WHERE rowid = 3"),
        rf"{K}: 1 of \d+ kernels that end before they start"),
    "nsys_kernel_negative_time": (
        lambda d: _nsys(d / "negtime.sqlite", f"UPDATE {K} SET start = -100, end = 50 WHERE rowid = 1"),
        r"kernels with a negative time"),
    "nsys_api_end_before_start": (
        lambda d: _nsys(d / "negapi.sqlite", f"UPDATE {R} SET end = start - 1 WHERE rowid = 2"),
        rf"{R}: 1 of \d+ CUDA API calls that end before they start"),
    "nsys_nvtx_end_before_start": (
        lambda d: _nsys(d / "negnvtx.sqlite", f"UPDATE {N} SET end = start - 10 WHERE text = 'graph'"),
        rf"{N}: 1 of \d+ NVTX ranges that end before they start"),
    "nsys_kernel_null_start": (lambda d: _untyped(d / "nullstart.sqlite", [(None, 200, 1)]),
                               r"kernels without a start time \(NULL\)"),
    "nsys_kernel_null_end": (lambda d: _untyped(d / "nullend.sqlite", [(100, None, 1)]),
                             r"kernels without an end time \(NULL\)"),
    "nsys_kernel_real_time": (lambda d: _untyped(d / "real.sqlite", [(100, 250.5, 1)]),
                              rf"{K}\.end: a value that is not an integer \('250\.5'\)"),
    "nsys_kernel_infinite_time": (lambda d: _untyped(d / "inf.sqlite", [(100, float("inf"), 1)]),
                                  rf"{K}\.end: a value that is not an integer"),
    "nsys_kernel_nan_text_time": (lambda d: _untyped(d / "text.sqlite", [("soon", 200, 1)]),
                                  rf"{K}\.start: a value that is not an integer \('soon'\)"),
    "nsys_no_links_at_all": (lambda d: _nsys(d / "noruntime.sqlite", f"DROP TABLE {R}",
                                             "DROP TABLE IF EXISTS CUPTI_ACTIVITY_KIND_DRIVER"),
                             r"none of the \d+ kernels can be linked to the CUDA call that launched it"),
    "kineto_kernel_without_ts": (lambda d: _kineto(d / "nots.json", _drop("kernel", "ts")),
                                 r"kernel / range / API events without a 'ts' value"),
    "kineto_kernel_without_dur": (lambda d: _kineto(d / "nodur.json.gz", _drop("kernel", "dur"), gz=True),
                                  r"without a 'dur' value"),
    "kineto_kernel_null_dur": (lambda d: _kineto(d / "nulldur.json", _set("kernel", "dur", None)),
                               r"without a 'dur' value \(absent, null or NaN\)"),
    "kineto_kernel_nan_dur": (lambda d: _kineto(d / "nandur.json", _set("kernel", "dur", float("nan"))),
                              r"without a 'dur' value \(absent, null or NaN\)"),
    "kineto_kernel_infinite_dur": (lambda d: _kineto(d / "infdur.json", _set("kernel", "dur", float("inf"))),
                                   r"whose 'dur' is infinite"),
    "kineto_kernel_negative_dur": (lambda d: _kineto(d / "negdur.json", _set("kernel", "dur", -3.0)),
                                   r"whose 'dur' is negative"),
    "kineto_api_text_ts": (lambda d: _kineto(d / "textts.json", _set("cuda_runtime", "ts", "later")),
                           r"cuda_runtime / range / API events whose 'ts' is not a number"),
    "kineto_range_negative_ts": (lambda d: _kineto(d / "negts.json", _set("user_annotation", "ts", -1.0)),
                                 r"user_annotation / range / API events whose 'ts' is negative"),
    "kineto_no_runtime": (lambda d: _kineto(d / "noruntime.json", _without("cuda_runtime", "cuda_driver")),
                          r"none of the \d+ kernels can be linked"),
    "kineto_kernel_dur_beyond_int64_ns": (lambda d: _kineto(d / "hugedur.json", _set("kernel", "dur", 1e17)),
                                          r"whose 'dur' is too large for a time \(beyond int64 ns\)"),
    "nsys_kernel_end_absurd": (
        lambda d: _nsys(d / "absurd.sqlite", f"UPDATE {K} SET end = {2**62} WHERE start = 90000"),
        r"1 of \d+ kernels end at an absurd time \(first: 'void bar\(int\)'"),
}

#: name -> (builder(dir) -> path, warning fragment): loads, every frame reads, a warning says what is wrong
WARNINGS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "nsys_no_runtime_table": (lambda d: _nsys(d / "noruntime.sqlite", f"DROP TABLE {R}",
                                              "DROP TABLE IF EXISTS CUPTI_ACTIVITY_KIND_DRIVER", f"DELETE FROM {N}"),
                              f"no {R} table: kernels cannot be linked"),
    "nsys_no_nvtx_table": (lambda d: _nsys(d / "nonvtx.sqlite", f"DROP TABLE {N}"), f"no {N} table"),
    "nsys_one_kernel_name_lost": (
        lambda d: _nsys(d / "onelost.sqlite", f"DELETE FROM StringIds WHERE id = {KERNEL_NAME_ID}"),
        "kernel names not found in StringIds; shown as '<string ID>'"),
    "nsys_registered_text_lost": (
        lambda d: _nsys(d / "textlost.sqlite", f"DELETE FROM StringIds WHERE id = {REGISTERED_TEXT_ID}"),
        "NVTX range texts (textId) not found in StringIds"),
    "nsys_unclosed_range": (
        lambda d: _nsys(d / "open.sqlite", f"INSERT INTO {N} (start, end, eventType, text, globalTid) "
                                           f"VALUES (5, NULL, 59, 'open', {GTID})"),
        "1 NVTX range(s) never closed"),
    "nsys_orphan_kernel": (lambda d: _nsys(d / "orphan.sqlite"),
                           f"1 of {len(tg.handmade().kernels)} kernels have no launching CUDA call"),
    "kineto_no_ranges": (lambda d: _kineto(d / "noranges.json", _without("user_annotation")),
                         "no user_annotation events"),
    "kineto_no_runtime_no_ranges": (
        lambda d: _kineto(d / "bare.json", _without("cuda_runtime", "cuda_driver", "user_annotation")),
        "no cuda_runtime / cuda_driver events"),
    "nsys_api_rows_twice": (lambda d: _nsys(d / "api2.sqlite", f"INSERT INTO {R} SELECT * FROM {R}"),
                            f"{len(tg.handmade().runtime)} CUDA API call rows are stored twice"),
    "nsys_kernels_overlap_on_one_stream": (
        lambda d: _nsys(d / "overlap.sqlite", f"UPDATE {K} SET start = 94500, end = 97000 WHERE start = 90000"),
        "1 kernels on stream 7 (device 0) start while the previous one on that stream still runs (up to 2.0 µs"),
    "nsys_unclosed_range_with_sentinel_end": (
        lambda d: _nsys(d / "sentinel.sqlite", f"INSERT INTO {N} (start, end, eventType, text, globalTid) "
                                               f"VALUES (5, {2**62}, 59, 'open', {GTID})"),
        "1 NVTX range(s) end at an absurd time (first: 'open'"),
}


# --------------------------------------------------------------------------- helpers

def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: its kind, and the sha256 of regular files (FIFOs are not opened)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_fifo():
            out[str(p)] = "fifo"
        elif p.is_dir():
            out[str(p)] = "dir"
        else:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _read_all(t: traces.Trace) -> None:
    _ = t.kernels, t.runtime, t.nvtx, t.metadata, t.gpu_ranges


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("case", sorted(ERRORS))
def test_broken_input_is_refused_with_reason(case, tmp_path):
    build, match = ERRORS[case]
    path = build(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(TraceDataError, match=match) as e:
        _read_all(traces.load(path))
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and "Errno" not in msg
    assert isinstance(e.value, DataError) and exit_code(e.value) == (4, "bad data")
    assert _snapshot(tmp_path) == before          # nothing changed or lost


@pytest.mark.parametrize("case", sorted(WARNINGS))
def test_incomplete_input_loads_with_visible_warning(case, tmp_path):
    build, fragment = WARNINGS[case]
    path = build(tmp_path)
    before = _snapshot(tmp_path)
    t = traces.load(path)
    _read_all(t)
    assert any(fragment in w for w in t.warnings), t.warnings
    prov = t.provenance()
    assert "warning: " in prov and fragment in prov
    # the analyses carry it too, so a figure made from them shows it
    assert fragment in traces.kernel_summary(t).attrs["provenance"]
    assert _snapshot(tmp_path) == before


def test_lost_kernel_name_is_shown_not_hidden(tmp_path):
    path = WARNINGS["nsys_one_kernel_name_lost"][0](tmp_path)
    names = set(traces.load(path).kernels["name"].astype(str))
    assert any(n.startswith("<string ") for n in names)
    assert "k1" in names                           # the other names still resolve


def test_no_runtime_table_keeps_kernel_numbers(tmp_path):
    """Without API calls the kernel table is still right; only the range projection is refused."""
    path = _nsys(tmp_path / "nolinks.sqlite", f"DROP TABLE {R}")
    t = traces.load(path)
    ks = traces.kernel_summary(t)
    assert ks["count"].sum() == len(tg.handmade().kernels)
    with pytest.raises(TraceDataError, match="GPU time of the 5 NVTX ranges is unknown"):
        traces.range_breakdown(t)


def test_complete_trace_has_no_warnings(tmp_path):
    b = tg.Builder()
    b.range("step", 0, 10_000)
    b.launch("k", 100, 1_000, 500)
    t = traces.load(tg.write_nsys_sqlite(tmp_path / "ok.sqlite", b.build()))
    assert t.warnings == [] and "warning" not in t.provenance()


@pytest.mark.parametrize("kind", ["directory", "fifo", "char_device"])
def test_non_regular_files_are_refused_unopened(kind, tmp_path):
    if kind == "directory":
        path, what = tmp_path / "trace.sqlite", "a directory"
        path.mkdir()
    elif kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this platform")
        path, what = tmp_path / "pipe.sqlite", r"a FIFO \(named pipe\)"
        os.mkfifo(path)
    else:
        path, what = Path("/dev/null"), "a character device"
        if not path.is_char_device():
            pytest.skip("no /dev/null character device here")
    before = _snapshot(tmp_path)
    result: list[BaseException | None] = []

    def attempt() -> None:
        try:
            traces.load(path)
            result.append(None)
        except BaseException as e:
            result.append(e)

    th = threading.Thread(target=attempt, daemon=True)   # a FIFO opened for reading would block forever
    th.start()
    th.join(timeout=20)
    assert not th.is_alive(), f"traces.load({kind}) blocked"
    err = result[0]
    assert isinstance(err, TraceDataError), err
    assert re.search(rf"is {what}, not a trace file", str(err))
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("how", ["missing", "dangling_symlink"])
def test_missing_file_message_is_readable(how, tmp_path):
    path = tmp_path / "gone.sqlite"
    if how == "dangling_symlink":
        link = tmp_path / "link.sqlite"
        link.symlink_to(path)
        path = link
    with pytest.raises(TraceNotFoundError) as e:
        traces.load(path)
    assert str(e.value) == f"{path}: no such file"
    assert "Errno" not in str(e.value) and "None" not in str(e.value)
    assert isinstance(e.value, FileNotFoundError) and exit_code(e.value) == (5, "file not found")


def test_status_override_and_bad_status(tmp_path):
    path = tg.write_nsys_sqlite(tmp_path / "s.sqlite", tg.handmade())
    assert traces.load(path).status == "synthetic"
    t = traces.load(path, status="measured")
    assert t.status == "measured" and t.provenance().startswith("measured · ")
    with pytest.raises(InputError, match="status must be one of measured, projected, reported, synthetic"):
        traces.load(path, status="real")
