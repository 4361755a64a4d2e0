"""gdnlab.results: the sweep schema, the append-only writer (crash safety, resume, overwrite) and
load_sweep's checks and normalisation of earlier files (the shipped H100 sweep among them)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from gdnlab.errors import DataError
from gdnlab.results import (
    COLUMNS,
    KEY_COLUMNS,
    SCHEMA,
    SweepWriter,
    load_sweep,
    normalize,
    point_key,
    resolve_output,
    staging_dir,
)

SHIPPED = Path(__file__).resolve().parent.parent / "traces" / "h100" / "sweep.parquet"


def _row(batch: int, **kw) -> dict:
    row = {"preset": "tiny", "tp": 1, "backend": "reference", "mode": "decode", "strategy": "decode",
           "draft_tokens": 1, "batch": batch, "state_dtype": "float32", "timing": "amortised", "l2_flush": True,
           "act_dtype": "bfloat16", "pool_slots": 9, "status": "ok", "time_us": 10.0 + batch, "gpu": "cpu",
           "sweep_id": "run-1"}
    row.update(kw)
    return row


# ------------------------------------------------------------------ schema


def test_schema_is_one_table_with_units():
    assert SCHEMA.names == [c.name for c in COLUMNS] and len(set(SCHEMA.names)) == len(SCHEMA.names)
    assert set(KEY_COLUMNS) <= set(SCHEMA.names) and "concurrency" not in SCHEMA.names
    assert SCHEMA.field("time_us").metadata[b"unit"] == b"us" and SCHEMA.field("bytes").metadata[b"unit"] == b"bytes"
    assert all(c.doc for c in COLUMNS)


# ------------------------------------------------------------------ shipped data


@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped sweep not in this checkout")
def test_load_sweep_normalises_the_shipped_h100_sweep():
    raw = pd.read_parquet(SHIPPED)
    assert {"concurrency", "batch", "rotate"} <= set(raw.columns) and "strategy" not in raw.columns
    df = load_sweep(SHIPPED)
    assert len(df) == len(raw)
    assert "batch" in df.columns and "concurrency" not in df.columns and "rotate" not in df.columns
    assert (df["batch"].to_numpy() == raw["concurrency"].to_numpy()).all()
    # the buffer scope from the earlier "intermediate" column; call rows have no verify strategy
    assert "intermediate" not in df.columns and df["strategy"].isna().all()
    assert (df["buffer_scope"].astype(str).to_numpy() == raw["intermediate"].to_numpy()).all()
    # timing in the current vocabulary: one call per graph sample was "graph"
    assert set(df["timing"]) == {"single", "eager"}
    assert ((df["timing"] == "single").to_numpy() == (raw["timing"] == "graph").to_numpy()).all()
    # time values unchanged, row for row
    for col in ("time_us", "time_p10_us", "time_p90_us", "bw_gbps"):
        pd.testing.assert_series_equal(df[col], raw[col].astype("float64"), check_names=False)
    assert df.groupby(["backend", "mode", "buffer_scope", "timing"])["time_us"].median().notna().all()
    assert df["git_commit"].isna().all() and df["git_dirty"].isna().all()
    assert str(df["git_dirty"].dtype) == "boolean" and str(df["batch"].dtype) == "Int64"


H200 = SHIPPED.parent.parent / "h200" / "sweep.parquet"


@pytest.mark.skipif(not H200.is_file(), reason="shipped H200 sweep not in this checkout")
def test_load_sweep_moves_the_call_rows_strategy_of_the_shipped_h200_sweep_to_buffer_scope():
    """An earlier file whose call rows stored their buffer in ``strategy`` (decode, full_cache,
    full_cache_pool_scoped): ``strategy`` keeps the step rows' verify strategies only."""
    raw = pd.read_parquet(H200)
    df = load_sweep(H200)
    assert len(df) == len(raw) and "intermediate" not in df.columns
    call = (raw["measure"] == "call").to_numpy()
    scope = {"decode": "none", "full_cache": "batch", "full_cache_pool_scoped": "pool"}
    assert list(df.loc[call, "buffer_scope"]) == list(raw.loc[call, "strategy"].map(scope))
    assert list(df.loc[call, "buffer_scope"]) == list(raw.loc[call, "intermediate"])
    assert df.loc[call, "strategy"].isna().all() and df.loc[~call, "buffer_scope"].isna().all()
    assert list(df.loc[~call, "strategy"]) == list(raw.loc[~call, "strategy"])
    for col in ("time_us", "step_us", "verify_us", "commit_us"):        # values unchanged, row for row
        pd.testing.assert_series_equal(df[col], raw[col].astype("float64"), check_names=False)
    # every point keeps its own key, and the current schema reads back as it is
    assert len({point_key(r) for r in df.to_dict("records")}) == len(df)
    pd.testing.assert_frame_equal(normalize(df), df)


# ------------------------------------------------------------------ earlier and other files


def test_earlier_columns_are_renamed_and_filled(tmp_path):
    old = pd.DataFrame([{"backend": "triton", "mode": "verify", "verify_tokens": 4, "concurrency": 16,
                         "state_dtype": "float32", "intermediate": "pool", "status": "ok", "time_us": 5.0,
                         "timing": "graph", "rotate": True},
                        {"backend": "triton", "mode": "decode", "verify_tokens": 1, "concurrency": 16,
                         "state_dtype": "float32", "intermediate": "none", "status": "ok", "time_us": 2.0,
                         "timing": "eager"}])
    path = tmp_path / "old.csv"
    old.to_csv(path, index=False)
    df = load_sweep(path)
    assert list(df["batch"]) == [16, 16] and list(df["draft_tokens"]) == [4, 1]
    assert list(df["buffer_scope"]) == ["pool", "none"] and df["strategy"].isna().all()
    assert list(df["timing"]) == ["amortised", "eager"]
    assert df["timing_method"].isna().all() and df["calls_per_sample"].isna().all()
    assert "verify_tokens" not in df.columns and "concurrency" not in df.columns


def test_earlier_rows_are_call_rows_and_step_rows_keep_their_measure(tmp_path):
    """Rows of files without ``measure`` time one call; a step row states its accept length."""
    old = pd.DataFrame([_row(1), _row(2, mode="verify", strategy="full_cache", draft_tokens=4)])
    old.to_parquet(tmp_path / "old.parquet")
    df = load_sweep(tmp_path / "old.parquet")
    assert list(df["measure"]) == ["call", "call"] and df["accept_len"].isna().all()
    assert str(df["measure"].dtype) == "string" and str(df["accept_len"].dtype) == "float64"
    # the resume key of an earlier row (no measure, no accept length) is the key load_sweep gives it
    assert [point_key(r) for r in df.to_dict("records")] == [point_key(_row(1)),
                                                             point_key(_row(2, mode="verify", strategy="full_cache",
                                                                            draft_tokens=4))]
    step = _row(4, mode="step", strategy="replay_ring", draft_tokens=4, accept_len=3.17, step_us=9.0)
    mixed = pd.DataFrame([_row(1, measure="call"), step])      # a step row whose measure was lost
    back = normalize(mixed)
    assert list(back["measure"]) == ["call", "step"] and back["accept_len"].iloc[1] == 3.17
    assert point_key(step) == point_key(back.iloc[1].to_dict())
    # accept lengths that differ are different points; the same one read back is the same point
    assert point_key(step) != point_key({**step, "accept_len": 2.5})
    assert point_key(step) == point_key({**step, "accept_len": 3.17 + 1e-13})


def test_writer_round_trips_step_rows(tmp_path):
    path = tmp_path / "s.parquet"
    w = SweepWriter(path)
    w.append(_row(1))
    w.append(_row(8, mode="step", strategy="token_slots", draft_tokens=4, measure="step", accept_len=3.17,
                  step_us=12.5, verify_us=10.0, commit_us=2.5, copy_bw_gbps=4000.0, scratch_bytes=123))
    w.finish()
    df = load_sweep(path)
    r = df[df["measure"] == "step"].iloc[0]
    assert (r["step_us"], r["verify_us"], r["commit_us"], r["copy_bw_gbps"], r["scratch_bytes"]) == \
        (12.5, 10.0, 2.5, 4000.0, 123)
    assert SweepWriter(path, "resume", gpu="cpu").done_keys() == {point_key(rr) for rr in df.to_dict("records")}


def test_batch_and_concurrency_that_differ_are_an_error():
    with pytest.raises(DataError, match="differ"):
        normalize(pd.DataFrame([_row(4, concurrency=8)]), source="x.parquet")


def test_not_a_sweep_is_a_data_error_naming_the_file(tmp_path):
    counters = tmp_path / "counters.parquet"
    pd.DataFrame({"kernel": ["k"], "dram_bytes": [1]}).to_parquet(counters)
    with pytest.raises(DataError, match=r"counters\.parquet is not a gdnlab sweep.*time_us"):
        load_sweep(counters)
    text = tmp_path / "notes.parquet"
    text.write_text("not parquet")
    with pytest.raises(DataError, match=r"notes\.parquet is not a parquet file"):
        load_sweep(text)
    binary = tmp_path / "blob.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01PAR1\x89")
    with pytest.raises(DataError, match=r"blob\.csv is not a text CSV file"):
        load_sweep(binary)
    torn = tmp_path / "torn.parquet"
    torn.write_bytes(b"PAR1" + b"\x00" * 20)
    with pytest.raises(DataError, match="not a readable parquet"):
        load_sweep(torn)
    with pytest.raises(FileNotFoundError):
        load_sweep(tmp_path / "missing.parquet")
    with pytest.raises(ValueError, match=r"\.parquet"):
        resolve_output(tmp_path / "out.csv")


# ------------------------------------------------------------------ writer


def test_writer_appends_parts_and_compacts_once(tmp_path):
    path = tmp_path / "s.parquet"
    w = SweepWriter(path)
    for b in (1, 2, 3):
        w.append(_row(b))
    parts = sorted(staging_dir(path).glob("part-*.parquet"))
    assert len(parts) == 3 and all(pq.read_schema(p).names == SCHEMA.names for p in parts)
    assert not path.exists()                                   # nothing rewritten per point
    assert w.finish() == path and not staging_dir(path).exists()
    df = load_sweep(path)
    assert list(df["batch"]) == [1, 2, 3] and pq.read_schema(path).names == SCHEMA.names


def test_killed_writer_keeps_every_completed_point(tmp_path, capsys):
    path = tmp_path / "s.parquet"
    # a writer killed after two points: no finish(), no cleanup (its lock file stays behind)
    code = ("import json, os, sys\nfrom gdnlab.results import SweepWriter\nw = SweepWriter(sys.argv[1])\n"
            "for r in json.loads(sys.argv[2]):\n    w.append(r)\nos._exit(9)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SHIPPED.parents[2]), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, "-c", code, str(path), json.dumps([_row(1), _row(2)])], env=env)
    assert killed.returncode == 9 and (tmp_path / ".s.parquet.lock").exists()
    # a part being written when the kill came is a hidden temporary file
    (staging_dir(path) / ".part-000002.parquet.123.tmp").write_bytes(b"PAR1 half")
    assert len(load_sweep(staging_dir(path))) == 2
    with pytest.raises(ValueError, match="unfinished run"):
        SweepWriter(path)
    assert "taking over the stale lock" in capsys.readouterr().err      # the dead writer's lock, said so
    r = SweepWriter(path, "resume", gpu="cpu")
    assert r.done_keys() == {point_key(_row(1)), point_key(_row(2))}
    r.append(_row(3))
    r.finish()
    assert list(load_sweep(path)["batch"]) == [1, 2, 3]


def test_resume_appends_and_retry_replaces(tmp_path):
    path = tmp_path / "s.parquet"
    w = SweepWriter(path)
    w.append(_row(1))
    w.append(_row(2, status="oom", time_us=None))
    w.finish()
    r = SweepWriter(path, "resume", gpu="cpu")
    assert r.done_keys(retry_failed=True) == {point_key(_row(1))}
    r.append(_row(2, sweep_id="run-2"))
    r.finish()
    df = load_sweep(path)
    assert len(df) == 2 and df.set_index("batch").loc[2, "status"] == "ok"
    assert df.set_index("batch").loc[2, "sweep_id"] == "run-2"


def test_resume_refuses_another_gpu(tmp_path):
    path = tmp_path / "s.parquet"
    w = SweepWriter(path)
    w.append(_row(1, gpu="NVIDIA H100 80GB HBM3"))
    w.finish()
    with pytest.raises(DataError, match="H100.*this run is on NVIDIA H200"):
        SweepWriter(path, "resume", gpu="NVIDIA H200")
    SweepWriter(path, "resume", gpu="NVIDIA H100 80GB HBM3")   # the same GPU is fine


def test_overwrite_replaces_only_on_completion(tmp_path):
    path = tmp_path / "s.parquet"
    w = SweepWriter(path)
    w.append(_row(1))
    w.finish()
    before = path.read_bytes()
    o = SweepWriter(path, "overwrite", gpu="cpu")
    o.append(_row(5))
    assert o.finish(complete=False) is None and path.read_bytes() == before
    r = SweepWriter(path, "resume", gpu="cpu")               # continues the overwrite run
    assert r.done_keys() == {point_key(_row(5))}
    r.append(_row(6))
    r.finish()
    assert list(load_sweep(path)["batch"]) == [5, 6]


def test_new_writer_refuses_an_existing_file(tmp_path):
    path = tmp_path / "s.parquet"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="--resume.*--overwrite"):
        SweepWriter(path)
    assert path.read_bytes() == b"x"
