"""Every real trace shipped under traces/ (``traces/**/*.sqlite``) loads, and its row counts and
kernel-duration sums match plain SQL on the same file. Skips while none are present."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gdnlab import traces

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "traces").glob("**/*.sqlite"))
PARAMS = [pytest.param(p, id=str(p.relative_to(ROOT))) for p in FILES] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no real traces yet: traces/**/*.sqlite is empty"))]


def _count(db: sqlite3.Connection, table: str, where: str = "") -> int:
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone():
        return 0
    return db.execute(f"SELECT count(*) FROM {table} {where}").fetchone()[0]


@pytest.mark.parametrize("path", PARAMS)
def test_real_trace_matches_sql(path: Path):
    t = traces.load(path)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        n_k, dur = db.execute("SELECT count(*), coalesce(sum(end - start), 0) "
                              "FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()
        n_api = _count(db, "CUPTI_ACTIVITY_KIND_RUNTIME") + _count(db, "CUPTI_ACTIVITY_KIND_DRIVER")
        n_nvtx = _count(db, "NVTX_EVENTS", "WHERE eventType IN (59, 60) AND end IS NOT NULL")
        cols = {r[1] for r in db.execute("PRAGMA table_info(CUPTI_ACTIVITY_KIND_KERNEL)")}
        name_col = "demangledName" if "demangledName" in cols else "shortName"
        per_name = dict(db.execute(f"SELECT s.value, sum(k.end - k.start) FROM CUPTI_ACTIVITY_KIND_KERNEL k "
                                   f"JOIN StringIds s ON s.id = k.{name_col} GROUP BY s.value").fetchall())
    k = t.kernels
    assert len(k) == n_k > 0
    assert int(k["duration_ns"].sum()) == dur
    assert len(t.runtime) == n_api
    assert len(t.nvtx) == n_nvtx
    ks = traces.kernel_summary(t).set_index("name")["total_ns"]
    assert {n: int(v) for n, v in ks.items()} == per_name
    g = t.gpu_ranges
    assert len(g) == n_nvtx and (g["kernel_count"] >= 0).all()
    assert (g["gpu_busy_ns"] <= g["gpu_span_ns"].fillna(0)).all()
    top = g[g["depth"] == 0]
    assert top["kernel_count"].sum() <= n_k
    assert t.provenance().startswith("measured")
    # captured by gdnlab (META_DATA_CAPTURE names gdnlab's workload) on the H100 the export names
    assert t.status == "measured" and t.metadata["gdnlab_capture"] and t.metadata["synthetic"] is None
    assert t.warnings == []


@pytest.mark.parametrize("path", PARAMS)
def test_real_trace_metadata_read_from_file(path: Path):
    """GPU, compute capability and nsys version come from the export's own tables (nsys 2025.3.2:
    TARGET_INFO_GPU.computeMajor/Minor, clockRate in Hz; META_DATA_EXPORT.EXPORT_PRODUCT_VERSION), not
    inferred from the GPU name."""
    md = traces.load(path).metadata
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        name, sms, major, minor, clock_hz = db.execute(
            "SELECT name, smCount, computeMajor, computeMinor, clockRate FROM TARGET_INFO_GPU").fetchone()
        version = db.execute("SELECT value FROM META_DATA_EXPORT "
                             "WHERE name = 'EXPORT_PRODUCT_VERSION'").fetchone()[0]
    g = md["gpus"][0]
    assert g["name"] == name and g["sm_count"] == sms and g["sm"] == f"sm{major}{minor}"
    assert g["sm_inferred"] is False
    assert g["clock_rate_hz"] == clock_hz and 5e8 < g["clock_rate_hz"] < 5e9   # Hz, not kHz
    assert md["nsys_version"] == version


@pytest.mark.parametrize("path", PARAMS)
def test_real_trace_nvtx_domains_and_projection_match_sql(path: Path):
    """NVTX texts (registered strings via textId) and domains (NvtxDomainCreate rows), and the GPU
    projection of a few ranges, recomputed by hand in SQL: a kernel belongs to a range when its
    launching runtime call (same correlationId and process) starts on the range's thread inside it."""
    t = traces.load(path)
    nv, g = t.nvtx, t.gpu_ranges
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT n.start, n.end, n.globalTid, coalesce(n.text, s.value), coalesce(d.text, 'default') "
            "FROM NVTX_EVENTS n LEFT JOIN StringIds s ON s.id = n.textId "
            "LEFT JOIN NVTX_EVENTS d ON d.eventType = 75 AND d.domainId = n.domainId AND n.domainId != 0 "
            "AND (d.globalTid >> 24) = (n.globalTid >> 24) "
            "WHERE n.eventType IN (59, 60) AND n.end IS NOT NULL ORDER BY n.start, n.end DESC").fetchall()
        assert [r[3] for r in rows] == list(nv["text"].astype(str))
        assert [r[4] for r in rows] == list(nv["domain"].astype(str))
        for i in sorted({0, 1, 2, len(rows) // 2, len(rows) - 1}):
            start, end, gtid = rows[i][:3]
            n, total, first, last = db.execute(
                "SELECT count(*), coalesce(sum(k.end - k.start), 0), min(k.start), max(k.end) "
                "FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN CUPTI_ACTIVITY_KIND_RUNTIME r "
                "ON r.correlationId = k.correlationId AND (r.globalTid >> 24) = (k.globalPid >> 24) "
                "WHERE r.globalTid = ? AND r.start BETWEEN ? AND ?", (gtid, start, end)).fetchone()
            row = g.loc[i]
            assert (row["start_ns"], row["end_ns"]) == (start, end)
            assert (int(row["kernel_count"]), int(row["kernel_sum_ns"])) == (n, total)
            if n:
                assert (int(row["gpu_start_ns"]), int(row["gpu_end_ns"])) == (first, last)
        graph_nodes = db.execute("SELECT count(graphNodeId) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0]
    assert int(t.kernels["graph_node_id"].notna().sum()) == graph_nodes
