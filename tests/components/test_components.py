"""Component benchmarks on CPU with tiny shapes: layers, the slice, the composition, the all-reduce projection."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from gdnlab.components.allreduce import allreduce_frame, allreduce_us
from gdnlab.components.bench import GridConfig, run_grid
from gdnlab.components.compose import check_frame, predict_step_us
from gdnlab.components.dims import component_shapes, tiny_shapes
from gdnlab.components.layers import MoEBlock, StepPoint
from gdnlab.components.slice import SyntheticSlice
from gdnlab.kernels import make_backend
from gdnlab.strategies import get_strategy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_slice() -> SyntheticSlice:
    torch.manual_seed(0)
    return SyntheticSlice(tiny_shapes(), dtype=torch.float32, device="cpu", attn_impl="sdpa", max_batch=4,
                          max_kv_len=64, page_size=16)


def _bind(slc: SyntheticSlice, mode: str, B: int = 3, kv: int = 40):
    return slc.bind(StepPoint(mode, B, 4, kv), backend=make_backend("reference"),
                    strategy=get_strategy("full_cache", backend="reference"))


def test_per_gpu_shapes_of_the_served_model():
    sh = component_shapes("qwen3.5-397b-a17b", 4)
    assert (sh.q_heads_per_gpu, sh.kv_heads_per_gpu, sh.attn_head_dim) == (8, 1, 256)
    assert (sh.moe_intermediate_per_gpu, sh.shared_intermediate_per_gpu, sh.vocab_per_gpu) == (256, 256, 62080)
    assert (sh.gdn.H, sh.gdn.HV, sh.conv_channels) == (4, 16, 2 * 4 * 128 + 16 * 128)
    assert sh.kv_cache_bytes(256, 16384, 16) == 2 * 256 * 16384 * 256 * 2
    nxt = component_shapes("qwen3-next-80b-a3b", 4)
    assert (nxt.hidden, nxt.moe_intermediate_per_gpu, nxt.gdn.HV) == (2048, 128, 8)
    with pytest.raises(ValueError, match="tp"):
        component_shapes("qwen3.5-397b-a17b", 3)


@pytest.mark.parametrize("mode", ["decode", "mtp"])
def test_every_layer_builds_and_runs(tiny_slice, mode):
    b = _bind(tiny_slice, mode)
    y = b.run()
    N = 3 * (4 if mode == "mtp" else 1)
    assert y.shape == (N, 64) and torch.isfinite(y).all()
    assert b.lm_head.run().shape == (N, tiny_slice.shapes.vocab_per_gpu)
    rec = b.recipe()
    assert rec["gdn.recurrent"] == 3 and rec["moe.experts"] == 4 and rec["attn.attention"] == 1
    assert rec.get("gdn.commit", 0) == (3 if mode == "mtp" else 0)
    if mode == "mtp":
        assert torch.isfinite(b.draft.run()).all()
    b.set_kv_len(50)
    assert torch.isfinite(b.run()).all()


@pytest.mark.parametrize("mode", ["decode", "mtp"])
def test_slice_step_equals_its_layers_one_by_one(tiny_slice, mode):
    point = StepPoint(mode, 2, 4, 33)
    be, stg = make_backend("reference"), get_strategy("full_cache", backend="reference")
    b = tiny_slice.bind(point, backend=be, strategy=stg, seed=5)
    for op in b.step_ops():
        op()
    per_layer = [lb.output().clone() for lb in b.layers]
    prev = b.x.clone()
    for i, layer in enumerate(tiny_slice.layers):
        opts = {"backend": be, "strategy": stg, "seed": 5 + i} if layer.kind == "gdn" else {}
        alone = layer.bind(lambda p=prev: p, point, **opts)
        y = alone.run()
        torch.testing.assert_close(y, per_layer[i], rtol=1e-5, atol=1e-5)
        if layer.kind == "gdn":        # the committed states and conv states agree too
            torch.testing.assert_close(alone.state.pool, b.layers[i].state.pool, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(alone.state.conv_pool, b.layers[i].state.conv_pool)
        prev = y.clone()


def test_gdn_commit_runs_after_the_forward_and_changes_the_pool(tiny_slice):
    b = _bind(tiny_slice, "mtp")
    gdn = b.first_of("gdn")
    for op in b.step_ops()[:-3]:                    # forward only
        op()
    pool_before = gdn.state.pool.clone()
    assert [op.component for op in b.step_ops()[-3:]] == ["gdn.commit"] * 3
    for op in b.step_ops()[-3:]:
        op()
    assert not torch.equal(pool_before, gdn.state.pool)


@pytest.mark.parametrize("impl", ["grouped_mm", "bmm"])
def test_moe_matches_a_per_token_loop(impl):
    sh = tiny_shapes()
    moe = MoEBlock(sh, torch.float32, "cpu", impl, seed=3)
    point = StepPoint("mtp", 3, 2, 8)
    x = torch.randn(point.tokens, sh.hidden)
    zero = torch.zeros_like(x)
    b = moe.bind(lambda: x, lambda: zero, point)
    y = b.run()
    I = sh.moe_intermediate_per_gpu
    hn = torch.nn.functional.rms_norm(x, (sh.hidden,), moe.norm_w, 1e-6)
    ref = torch.empty_like(x)
    for n in range(point.tokens):
        p = torch.softmax(hn[n] @ moe.w_router.T, -1)
        v, i = p.topk(sh.experts_per_token)
        v = v / v.sum()
        acc = torch.zeros(sh.hidden)
        for w, e in zip(v, i):
            h1 = moe.w13[e] @ hn[n]
            acc += w * (moe.w2[e] @ (torch.nn.functional.silu(h1[:I]) * h1[I:]))
        gu = moe.ws13 @ hn[n]
        s = moe.ws2 @ (torch.nn.functional.silu(gu[:gu.shape[0] // 2]) * gu[gu.shape[0] // 2:])
        ref[n] = x[n] + acc + torch.sigmoid(moe.w_sgate @ hn[n]) * s
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)


def _components(overhead: float = 2.0) -> pd.DataFrame:
    rows = [
        {"component": "a", "mode": "decode", "batch": 1, "kv_len": None, "strategy": None, "median_us": 10.0},
        {"component": "b", "mode": "decode", "batch": 1, "kv_len": None, "strategy": None, "median_us": 5.0},
        {"component": "attn.attention", "mode": "decode", "batch": 1, "kv_len": 1024, "strategy": None,
         "median_us": 7.0},
        {"component": "attn.attention", "mode": "decode", "batch": 1, "kv_len": 4096, "strategy": None,
         "median_us": 20.0},
        {"component": "gdn.recurrent", "mode": "mtp", "batch": 1, "kv_len": None, "strategy": "full_cache",
         "median_us": 9.0},
        {"component": "gdn.recurrent", "mode": "mtp", "batch": 1, "kv_len": None, "strategy": "recompute",
         "median_us": 4.0},
    ]
    df = pd.DataFrame(rows)
    df["outcome"] = "ok"
    return df


def test_composition_sums_component_times_net_of_the_graph_overhead():
    comp = _components()
    pred, missing = predict_step_us(comp, {"a": 3, "b": 1, "attn.attention": 1}, mode="decode", batch=1,
                                    kv_len=4096, strategy=None, overhead_us=2.0)
    assert missing == [] and pred == pytest.approx(2.0 + 3 * 8.0 + 3.0 + 18.0)
    pred_mtp, _ = predict_step_us(comp, {"gdn.recurrent": 2}, mode="mtp", batch=1, kv_len=1024,
                                  strategy="recompute", overhead_us=2.0)
    assert pred_mtp == pytest.approx(2.0 + 2 * 2.0)
    pred_missing, missing = predict_step_us(comp, {"a": 1, "z": 1}, mode="decode", batch=1, kv_len=1024,
                                            strategy=None, overhead_us=2.0)
    assert math.isnan(pred_missing) and missing == ["z"]


def test_check_frame_reports_relative_error_and_tolerance():
    comp = _components()
    recipes = pd.DataFrame([{"mode": "decode", "component": "a", "count": 2},
                            {"mode": "decode", "component": "attn.attention", "count": 1}])
    slices = pd.DataFrame([
        {"preset": "p", "mode": "decode", "batch": 1, "kv_len": 1024, "strategy": None, "median_us": 25.0,
         "outcome": "ok", "status": "synthetic"},
        {"preset": "p", "mode": "decode", "batch": 1, "kv_len": 4096, "strategy": None, "median_us": 40.0,
         "outcome": "ok", "status": "synthetic"},
        {"preset": "p", "mode": "decode", "batch": 4, "kv_len": 1024, "strategy": None, "median_us": math.nan,
         "outcome": "skipped: memory", "status": "synthetic"}])
    chk = check_frame(comp, slices, recipes, overhead_us=2.0, tol=0.10)
    assert chk["predicted_us"].iloc[0] == pytest.approx(2 + 16 + 5)      # 23 vs 25: -8 %
    assert chk["rel_err"].iloc[0] == pytest.approx(-2 / 25) and bool(chk["within_tol"].iloc[0])
    assert chk["predicted_us"].iloc[1] == pytest.approx(2 + 16 + 18)     # 36 vs 40: -10 %
    assert not bool(chk["within_tol"].iloc[2]) and chk["outcome"].iloc[2] == "skipped: memory"


def test_allreduce_projection_units_and_monotonicity():
    assert allreduce_us(1e6, 1) == 0.0
    # 4 GPUs, busbw 450 GB/s -> algbw 300 GB/s; 1 GB takes 1/300 s
    assert allreduce_us(1e9, 4, busbw_gbps=450.0, latency_us=0.0) == pytest.approx(1e6 / 300)
    sizes = [0, 1e3, 1e5, 1e7]
    times = [allreduce_us(s, 4) for s in sizes]
    assert times == sorted(times) and times[0] == pytest.approx(8.0)
    assert allreduce_us(1e7, 8) < allreduce_us(1e7, 2) * 2
    with pytest.raises(ValueError):
        allreduce_us(-1, 4)
    fr = allreduce_frame("p", 4096, 4, (1, 64), 4, num_layers=4)
    assert set(fr["status"]) == {"projected"}
    assert fr.loc[(fr["mode"] == "mtp") & (fr["batch"] == 64), "message_bytes"].item() == 64 * 4 * 4096 * 2


def _tiny_cfg(**kw) -> GridConfig:
    base = dict(tiny=True, device="cpu", dtype=torch.float32, batches=(2,), kv_lens=(32,), repeats=2, warmup=0,
                l2_flush=False, gdn_backend="reference", strategy_backend="reference", attn_impl="sdpa",
                strategies=("full_cache", "recompute"), modes=("mtp",))
    base.update(kw)
    return GridConfig(**base)


def test_run_grid_on_cpu_gives_components_slice_and_a_complete_check():
    res = run_grid(_tiny_cfg(), log=lambda m: None)
    comp, sl = res["components"], res["slice"]
    assert set(sl["outcome"]) == {"ok"} and len(sl) == 1
    assert {"gdn.recurrent", "gdn.commit", "moe.experts", "attn.attention", "lm_head.gemm", "mtp_draft",
            "launch.graph"} <= set(comp["component"])
    assert set(comp.loc[comp["component"] == "gdn.commit", "strategy"]) == {"full_cache", "recompute"}
    chk = check_frame(comp, sl, res["recipes"], res["meta"]["launch"]["overhead_us"])
    assert chk["missing"].eq("").all() and chk["predicted_us"].gt(0).all()
    assert set(comp["status"]) == {"synthetic"} and "git_commit" in comp


def test_run_grid_records_skips_instead_of_failing():
    res = run_grid(_tiny_cfg(budget_s=0.0), log=lambda m: None)
    assert set(res["slice"]["outcome"]) == {"skipped: time budget"}
    res = run_grid(_tiny_cfg(mem_limit_gb=1e-9), log=lambda m: None)
    assert res["slice"]["outcome"].str.startswith("skipped: memory").all()


def test_gpu_script_runs_on_cpu_and_writes_its_files(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("run_components", ROOT / "scripts/gpu/run_components.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rc = mod.main(["--out", str(tmp_path), "--device", "cpu", "--tiny", "--batches", "2", "--kv-lens", "32",
                   "--repeats", "2", "--warmup", "0", "--modes", "decode"])
    assert rc == 0
    names = {p.stem for p in tmp_path.iterdir()}
    assert {"components", "slice", "slice_check", "recipes", "allreduce", "run"} <= names
    assert "slice check:" in capsys.readouterr().out


@pytest.mark.gpu
def test_run_grid_on_gpu_with_tiny_shapes(cuda_device):
    res = run_grid(_tiny_cfg(device=str(cuda_device), dtype=torch.bfloat16, gdn_backend="triton",
                             strategy_backend="triton", strategies=("full_cache",), modes=("decode", "mtp"),
                             l2_flush=True, repeats=5), log=lambda m: None)
    sl = res["slice"]
    assert set(sl["outcome"]) == {"ok"}, sl["outcome"].tolist()
    assert set(sl["method"]) == {"single"} and set(res["components"]["status"]) == {"synthetic"}
    chk = check_frame(res["components"], sl, res["recipes"], res["meta"]["launch"]["overhead_us"])
    assert chk["predicted_us"].gt(0).all()
