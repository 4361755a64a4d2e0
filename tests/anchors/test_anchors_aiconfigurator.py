"""AIConfigurator adapter (gdnlab.anchors.aiconfigurator, gdnlab.anchors.aic_tables).

Without AIConfigurator (CPU CI): the shipped per-op extract is validated (units, versions, status,
element-count all-reduce sizes) and the configuration mapping is checked. With the ``aiconfigurator``
extra installed: the engine's per-op values against the parquet rows they come from (the oracle is
the table file, read with pandas), the MTP pricing the module documents, and the shipped files
against a fresh extract."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from gdnlab.anchors import aic_tables
from gdnlab.anchors import aiconfigurator as aic
from gdnlab.errors import DataError, InputError, UnavailableError

from helpers.ids import case_id

_REASON = aic.availability()
needs_aic = pytest.mark.skipif(_REASON is not None, reason=f"{_REASON} (shipped tables are tested instead)")


def test_shipped_extract_is_valid_and_covers_the_needed_ops():
    df = aic_tables.load_ops_table()
    assert set(df["gpu"]) == set(aic_tables.EXTRACT_GPUS)
    assert set(df["op"]) == {"gemm_gdn_in_proj", "gemm_gdn_out_proj", "gemm_attn_qkv", "gemm_attn_out_proj",
                             "generation_attention", "moe", "allreduce", "gdn_conv1d_update", "gdn_recurrent_update"}
    assert set(df["tp"].dropna()) == {1, 4, 8}          # MoE rows carry moe_tp = tp / ep (EP 1 or EP = TP)
    assert set(df.loc[df["op"] == "allreduce", "tp"]) == {4, 8}
    assert {"fp8_block", "bfloat16"} <= set(df.loc[df["op"].str.startswith("gemm"), "dtype"])
    assert set(df.loc[df["op"] == "generation_attention", "kv_len"]) == {aic_tables.EXTRACT_KV_LEN}
    assert (df["engine"] == "sglang").all() and (df["engine_version"] == "0.5.14").all()
    assert (df["status"] == "reported (AIConfigurator 0.12.0, sglang 0.5.14)").all()
    # per GPU, a GDN decode step does not get cheaper with more requests (T=1 decode is bandwidth-bound)
    for (_, _, _), g in df[df["op"] == "gdn_recurrent_update"].groupby(["gpu", "tp", "dtype"]):
        lat = g.sort_values("batch")["latency_ms"].to_numpy()
        assert (lat[1:] >= lat[:-1] * 0.98).all()


def test_gb200_tp8_allreduce_is_extrapolated_from_four_gpus():
    """GB200's custom all-reduce table has 2- and 4-GPU rows only; AIConfigurator scales the 4-GPU value
    by the ring factor (2*(n-1)/n: 1.75 / 1.5) and still tags it 'silicon' -- recorded here."""
    df = aic_tables.load_ops_table()
    ar = df[(df["gpu"] == "gb200") & (df["op"] == "allreduce")].pivot_table(index="tokens", columns="tp",
                                                                           values="latency_ms")
    assert (ar[8] / ar[4]).to_numpy() == pytest.approx(1.75 / 1.5, rel=1e-6)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.assign(latency_ms=-d["latency_ms"]), "latency_ms"),
    (lambda d: d.assign(aiconfigurator_version="0.11.0"), "AIConfigurator"),
    (lambda d: d.assign(status="measured"), "status"),
    (lambda d: d.assign(message_elems=d["message_elems"] * 2), "element count"),
    (lambda d: d.drop(columns=["data_file"]), "missing column"),
], ids=case_id)
def test_extract_loader_rejects_bad_copies(tmp_path, edit, match):
    df = pd.read_csv(aic_tables.data_path(aic_tables.OPS_FILE), dtype={"engine_version": str})
    p = tmp_path / "ops.csv"
    edit(df).to_csv(p, index=False)
    with pytest.raises(DataError, match=match):
        aic_tables.load_ops_table(p)


def test_write_csv_atomic_keeps_the_old_file_on_failure(tmp_path):
    p = tmp_path / "t.csv"
    shutil.copy(aic_tables.data_path(aic_tables.OPS_FILE), p)
    before = p.read_bytes()

    class Boom(pd.DataFrame):
        def to_csv(self, *a, **k):
            raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        aic_tables.write_csv_atomic(Boom({"a": [1]}), p)
    assert p.read_bytes() == before and [x.name for x in tmp_path.iterdir()] == ["t.csv"]


def test_estimate_kwargs_mapping_and_validation():
    kw = aic._estimate_kwargs("fp8_block", "fp8", 8, 8, 1, 3, 3.31, "fp8")
    assert kw["model_path"] == "Qwen/Qwen3.5-397B-A17B" and kw["gemm_quant_mode"] == kw["moe_quant_mode"] == "fp8_block"
    assert (kw["moe_tp_size"], kw["moe_ep_size"]) == (1, 8) and kw["kvcache_quant_mode"] == "fp8"
    assert kw["nextn"] == 3 and kw["nextn_accepted"] == pytest.approx(2.31) and kw["fmha_quant_mode"] == "fp8"
    fp4 = aic._estimate_kwargs("nvfp4", "bf16", 4, 1, 1, 0, None, None)
    assert fp4["model_path"].startswith("nvidia/") and "gemm_quant_mode" not in fp4 and fp4["nextn_accepted"] is None
    assert (fp4["moe_tp_size"], fp4["moe_ep_size"]) == (4, 1)
    for bad in [("fp8_block", "fp8", 8, 8, 1, 3, 4.5, None),   # accept_len above nextn + 1
                ("fp8_block", "fp8", 8, 8, 1, 3, 0.9, None),   # below 1 (bonus token always kept)
                ("fp8_block", "fp8", 8, 8, 1, 3, None, None),  # MTP on, no accept length
                ("int4", "fp8", 8, 8, 1, 0, None, None), ("fp8_block", "fp16", 8, 1, 1, 0, None, None),
                ("fp8_block", "fp8", 8, 3, 1, 0, None, None), ("fp8_block", "fp8", 8, 1, 1, 0, None, "int8")]:
        with pytest.raises(InputError):
            aic._estimate_kwargs(*bad)


def test_unavailable_without_the_package(monkeypatch):
    monkeypatch.setattr(aic, "package_version", lambda d: None)
    reason = aic.availability()
    assert "gdnlab[aiconfigurator]" in reason and "aiconfigurator-core" in reason
    with pytest.raises(UnavailableError, match="not installed"):
        aic.op_latencies("h200")
    with pytest.raises(UnavailableError):
        aic.predict_e2e("h200", tp=8, isl=1024, osl=1024, concurrency=8)
    monkeypatch.setattr(aic, "package_version", lambda d: "0.11.0")
    assert "0.12.0 required" in aic.availability()


# ---------------------------------------------------------------- with AIConfigurator installed


def _parquet(rel: str) -> pd.DataFrame:
    from importlib import resources
    return pd.read_parquet(str(resources.files("aiconfigurator_core").joinpath(rel)))


@needs_aic
def test_model_dims_match_aiconfigurators_shipped_config():
    from importlib import resources
    cfg = json.loads(resources.files("aiconfigurator_core").joinpath(
        "model_configs/Qwen--Qwen3.5-397B-A17B_config.json").read_text())["text_config"]
    q = aic.QWEN35_397B
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
            cfg["head_dim"]) == (q["hidden"], q["layers"], q["heads"], q["kv_heads"], q["head_dim"])
    assert (cfg["linear_num_key_heads"], cfg["linear_key_head_dim"], cfg["linear_num_value_heads"],
            cfg["linear_value_head_dim"]) == (q["gdn_k_heads"], q["gdn_k_dim"], q["gdn_v_heads"], q["gdn_v_dim"])
    assert (cfg["num_experts"], cfg["num_experts_per_tok"], cfg["moe_intermediate_size"]) == (
        q["experts"], q["topk"], q["moe_inter"])
    assert cfg["layer_types"].count("linear_attention") == q["gdn_layers"] == q["layers"] - q["attn_layers"]


@pytest.fixture(scope="module")
def h200_ops():
    if _REASON:
        pytest.skip(_REASON)
    return aic.op_latencies("h200", "sglang", tp=8, batches=(1, 64, 128), kv_len=4096)


@needs_aic
def test_op_values_are_the_table_rows(h200_ops):
    """On a table grid point AIConfigurator's value is the parquet row it reads (the oracle)."""
    df = h200_ops
    checked = 0
    for _, r in df.iterrows():
        t = _parquet(r["data_file"])
        if r["op"].startswith("gemm"):
            hit = t[(t.gemm_dtype == r["dtype"]) & (t.m == r["m"]) & (t.n == r["n"]) & (t.k == r["k"])]
        elif r["op"] == "allreduce":     # message_size is an element count: tokens * hidden
            hit = t[(t.num_gpus == r["tp"]) & (t.message_size == r["tokens"] * 4096) & (t.backend == "sglang_graph")]
        elif r["op"].startswith("gdn_"):
            src = "causal_conv1d_update" if r["op"] == "gdn_conv1d_update" else \
                "fused_recurrent_gated_delta_rule_packed_decode"
            hit = t[(t.model_name == "Qwen/Qwen3.5-397B-A17B") & (t.phase == "generation") & (t.kernel_source == src)
                    & (t.batch_size == r["batch"]) & (t.num_k_heads == 16 // r["tp"])]
        elif r["op"] == "moe":
            hit = t[(t.moe_dtype == r["dtype"]) & (t.num_tokens == r["tokens"]) & (t.hidden_size == 4096)
                    & (t.inter_size == 1024) & (t.num_experts == 512) & (t.moe_tp_size == r["tp"])
                    & (t.moe_ep_size == r["ep"]) & (t.distribution == "power_law_1.2")]
        else:                            # generation attention: s = kv_len -> row step = kv_len - 1
            hit = t[(t.kernel_source == "fa3") & (t.kv_cache_dtype == "bfloat16") & (t.head_dim == 256)
                    & (t.num_heads == 4) & (t.num_key_value_heads == 1) & (t.batch_size == r["batch"])
                    & (t.step == r["kv_len"] - 1)]
            if len(hit) == 1:
                assert r["latency_ms"] == pytest.approx(float(hit["latency"].iloc[0]), rel=0.01)
                checked += 1
            continue
        if len(hit) == 1:
            assert r["latency_ms"] == pytest.approx(float(hit["latency"].iloc[0]), rel=1e-9), r["op"]
            checked += 1
    assert checked >= len(df) * 0.8


@needs_aic
def test_mtp_pricing_is_scaled_decode_at_batch_times_tokens():
    """nextn=3: every generation op x (60+3)/60, GDN priced as the T=1 decode at batch B*(3+1) (no verify
    kernel), and TPOT divided by 1 + accepted drafts."""
    from aiconfigurator.cli.api import cli_estimate
    base = dict(model_path="Qwen/Qwen3.5-397B-A17B", system_name="h200_sxm", backend_name="sglang", isl=1024,
                osl=2, batch_size=16, tp_size=8, moe_tp_size=1, moe_ep_size=8, gemm_quant_mode="fp8_block",
                moe_quant_mode="fp8_block", mode="static_gen", stride=1)
    with aic._quiet():
        off = cli_estimate(**base)
        on = cli_estimate(**base, nextn=3, nextn_accepted=0.0)
        on2 = cli_estimate(**base, nextn=3, nextn_accepted=2.0)
    t = _parquet("systems/data/h200_sxm/linear_attention/sglang/0.5.14/gdn_perf.parquet")
    row = lambda b: float(t[(t.model_name == "Qwen/Qwen3.5-397B-A17B") & (t.phase == "generation")
                            & (t.kernel_source == "fused_recurrent_gated_delta_rule_packed_decode")
                            & (t.num_k_heads == 2) & (t.batch_size == b)]["latency"].iloc[0])
    rec_off = off.summary.get_generation_latency_dict()["generation_gdn_recurrence"]
    rec_on = on.summary.get_generation_latency_dict()["generation_gdn_recurrence"]
    assert rec_off == pytest.approx(45 * row(16), rel=1e-6)
    assert rec_on == pytest.approx(45 * 63 / 60 * row(64), rel=1e-6)
    assert on2.tpot == pytest.approx(on.tpot / 3.0, rel=1e-3)


@needs_aic
def test_shipped_extract_equals_a_fresh_extract():
    fresh = aic_tables._one_gpu("h200", 8, "sglang")
    shipped = aic_tables.load_ops_table()
    keys = ["op", "dtype", "tp", "ep", "batch", "kv_len", "message_elems"]
    s = shipped[(shipped["gpu"] == "h200")].merge(fresh, on=keys, suffixes=("", "_fresh"))
    assert len(s) == len(fresh) > 50
    assert (s["latency_ms"] - s["latency_ms_fresh"]).abs().max() <= 1e-8 * s["latency_ms"].max()
    assert (s["data_file"] == s["data_file_fresh"]).all()


@needs_aic
def test_predict_e2e_reports_its_provenance_and_mtp_helps_tpot():
    off = aic.predict_e2e("h200", tp=8, ep=8, isl=1024, osl=1024, concurrency=16, weights="fp8_block",
                          kv_dtype="bf16")
    on = aic.predict_e2e("h200", tp=8, ep=8, isl=1024, osl=1024, concurrency=16, weights="fp8_block",
                         kv_dtype="bf16", nextn=3, accept_len=3.0)
    assert set(aic.PREDICTION_KEYS) <= set(off)
    assert off["status"] == "reported (AIConfigurator 0.12.0, sglang 0.5.14)" and off["num_gpus"] == 8
    assert on["tpot_ms"] < off["tpot_ms"] and on["nextn_accepted"] == pytest.approx(2.0)
    assert off["output_tok_s_total"] == pytest.approx(8 * off["output_tok_s_per_gpu"], rel=1e-6)
    with pytest.raises(InputError, match="gpu"):
        aic.predict_e2e("a100", tp=8, isl=1, osl=1, concurrency=1)
