"""Every real trace shipped under traces/ (``traces/**/*.sqlite``) loads, and its row counts and
kernel-duration sums match plain SQL on the same file. Skips while none are present."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gdnlab import traces

ROOT = Path(__file__).resolve().parents[1]
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
