"""The planner's acceptance (gdnlab.model.plan_accept): exactly one source, contradictory input refused,
a shipped curve read from the CSV format (curve, draft_tokens, accept_len, source, status, convention),
engine logs with their T, context buckets narrowed by the context per request."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gdnlab import acceptance_curves
from gdnlab.errors import InputError
from gdnlab.model.plan_accept import DEFAULT_CURVE, point_curve, resolve_acceptance, select_bucket

from helpers.ids import case_id


@pytest.mark.parametrize(("a", "t", "match"), [
    ([1.0], [1], "T=1"),                       # a verify of one token accepts nothing
    ([2.0, 2.5], [4, 4], "T=4 is given twice"),
    ([4.5], [4], "outside"),                   # more tokens kept than verified
    ([0.5], [4], "outside"),
    ([2.0, 3.0], [4], "one accept length per T"),
], ids=case_id)
def test_contradictory_points_are_refused(a, t, match):
    with pytest.raises(InputError, match=match):
        point_curve(a, t)


def test_points_make_a_curve():
    c = point_curve([1.8, 3.1], [2, 4])
    assert c.mean(2) == pytest.approx(1.8) and c.mean(4) == pytest.approx(3.1) and 1.8 < c.mean(3) < 3.1
    one = point_curve(3.0, 4)                  # one point: a constant-rate chain through it
    assert one.mean(4) == pytest.approx(3.0) and one.extrapolated(6) and not one.extrapolated(4)


def test_one_source_only_and_what_each_needs(tmp_path):
    f = tmp_path / "c.csv"
    pd.DataFrame({"draft_tokens": [2, 4], "accept_len": [1.9, 3.2]}).to_csv(f, index=False)
    with pytest.raises(InputError, match="give one"):
        resolve_acceptance(accept_len=[3.0], curve=str(f))
    with pytest.raises(InputError, match="give --accept-len"):
        resolve_acceptance(accept_T=[4])
    with pytest.raises(InputError, match="needs --engine"):
        resolve_acceptance(log=str(f))
    with pytest.raises(InputError, match="give the log"):
        resolve_acceptance(engine="vllm")
    c, how = resolve_acceptance(curve=str(f))
    assert c.points == {2: 1.9, 4: 3.2} and "file" in how and c.status == "measured"
    c, how = resolve_acceptance(accept_len=[3.0, 3.5], accept_T=[4, 6])
    assert c.points == {4: 3.0, 6: 3.5} and "3 at T=4" in how


def test_a_T_given_twice_in_a_file_is_refused(tmp_path):
    f = tmp_path / "twice.csv"
    pd.DataFrame({"draft_tokens": [4, 4], "accept_len": [3.0, 3.2]}).to_csv(f, index=False)
    with pytest.raises(ValueError, match="T=4 twice"):
        resolve_acceptance(curve=str(f))


def test_context_buckets_pick_the_curve_for_the_context(tmp_path):
    f = tmp_path / "b.csv"
    pd.DataFrame({"draft_tokens": [4, 4, 4], "accept_len": [3.4, 3.1, 2.7],
                  "context_bucket": [4096, 32768, 131072]}).to_csv(f, index=False)
    assert resolve_acceptance(curve=str(f), ctx_tokens=1024)[0].points[4] == pytest.approx(3.4)
    assert resolve_acceptance(curve=str(f), ctx_tokens=20000)[0].points[4] == pytest.approx(3.1)
    assert resolve_acceptance(curve=str(f), ctx_tokens=100000)[0].points[4] == pytest.approx(2.7)
    with pytest.raises(InputError, match="no context bucket"):
        resolve_acceptance(curve=str(f), ctx_tokens=500000)
    logs = {n: point_curve(a, 4) for n, a in (("s@ctx<=4096", 3.3), ("s@ctx<=32768", 3.0), ("s@ctx>32768", 2.5))}
    assert select_bucket(logs, 5000).points[4] == pytest.approx(3.0)
    assert select_bucket(logs, 90000).points[4] == pytest.approx(2.5)


SGL = "\n".join(f"[2026] Decode batch, #running-req: {r}, #token: {r * ctx}, accept len: {a:.2f}, gen throughput: 1"
                for r, ctx, a in ((8, 1000, 3.3), (8, 1200, 3.1), (4, 60000, 2.4)))
VLLM = ("INFO SpecDecoding metrics: Mean acceptance length: 2.80, Accepted throughput: 1 tokens/s, Drafted throughput: "
        "1 tokens/s, Accepted: 540 tokens, Drafted: 900 tokens, Per-position acceptance rate: 0.800, 0.600, 0.400, "
        "Avg Draft acceptance rate: 60.0%\n")


def test_engine_logs_with_their_T(tmp_path):
    s = tmp_path / "sgl.log"
    s.write_text(SGL)
    with pytest.raises(InputError, match="--accept-log-draft-tokens"):
        resolve_acceptance(log=str(s), engine="sglang")
    c, _ = resolve_acceptance(log=str(s), engine="sglang", log_T=4)
    assert c.points == {4: pytest.approx((3.3 + 3.1 + 2.4) / 3)}
    c, _ = resolve_acceptance(log=str(s), engine="sglang", log_T=4, context_buckets=[4096], ctx_tokens=1024)
    assert c.points[4] == pytest.approx(3.2)
    v = tmp_path / "vllm.log"
    v.write_text(VLLM)
    c, _ = resolve_acceptance(log=str(v), engine="vllm")
    assert c.points == pytest.approx({2: 1.8, 3: 2.4, 4: 2.8})
    with pytest.raises(InputError, match="not T=6"):
        resolve_acceptance(log=str(v), engine="vllm", log_T=6)


CSV = ("curve,draft_tokens,accept_len,source,status,convention\n"
       f"{DEFAULT_CURVE},2,1.93,InferenceX golden_al_distribution,reported,T\n"
       f"{DEFAULT_CURVE},4,3.39,InferenceX golden_al_distribution,reported,T\n"
       "drafts-curve,1,1.9,somewhere,reported,drafts\n"
       "drafts-curve,3,3.3,somewhere,reported,drafts\n")


class _Files:
    def __init__(self, root: Path) -> None:
        self.root = root

    def files(self, _pkg):
        return self.root


@pytest.mark.parametrize("column", ["curve", "curve_id"])
def test_shipped_curves_by_name_and_default(tmp_path, monkeypatch, column):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "acceptance_curves.csv").write_text(CSV.replace("curve,", f"{column},", 1))
    monkeypatch.setattr(acceptance_curves, "resources", _Files(tmp_path))
    c, how = resolve_acceptance()
    assert c.name == DEFAULT_CURVE and c.status == "reported" and c.points == {2: 1.93, 4: 3.39}
    assert "default" in how
    d, _ = resolve_acceptance(curve="drafts-curve")
    assert d.points == {2: 1.9, 4: 3.3}                      # draft positions shifted by the bonus token
    with pytest.raises(InputError, match="no acceptance curve named"):
        resolve_acceptance(curve="nosuch")


def test_default_without_a_shipped_table_is_the_seeds_point(tmp_path, monkeypatch):
    monkeypatch.setattr(acceptance_curves, "resources", _Files(tmp_path))
    c, how = resolve_acceptance()
    assert c.points == {4: pytest.approx(3.175)} and c.status == "reported" and "seed" in how
