"""Engine-grade components (gdnlab.components.engine, engine_ops, sglang_kernels) on the CPU.

SGLang's own Triton kernels (fused MoE, block-FP8 GEMM, per-token-group quant, decode attention,
RMSNorm) run at tiny shapes in Triton's interpreter in one child process (``TRITON_INTERPRET=1``, see
``tests/conftest.py``), each against torch written from the maths: the GEMMs from the kernel's own
quantised inputs (exact up to bf16 rounding), the token alignment against a Python loop of its
contract, attention against float32 SDPA. Two interpreter artefacts are worked around in the child
only: Triton 3.8's interpreter multiplies bf16 ``tl.dot`` operands as raw 16-bit patterns (operands are
widened to float32 first, exact) and rounds some float32 -> FP8 conversions to the wrong binade (the
FP8-rounding checks get a looser bound here than on a GPU, :data:`gdnlab.components.engine.CHECK_TOL`).
Without sglang 0.5.23 installed the child cases skip and say why.

In-process: loading failures are one-line reasons; the engine step uses measured rows in place of
AIConfigurator's tables only where every component of a part was measured and passed its check."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from gdnlab.components import sglang_kernels as sk

INTERPRETER_TIMEOUT_S = 600
_REASON = None if sk.sglang_version() == sk.SGLANG_VERSION else f"sglang {sk.SGLANG_VERSION} not installed"
CASES = ("linear", "moe", "align", "attention_bf16", "attention_fp8", "grid")


# ---------------------------------------------------------------------------- child side
def _widen_bf16_dot() -> None:
    """Triton 3.8's interpreter: widen bf16 ``tl.dot`` operands to float32 (exact; GPUs accumulate bf16
    products in float32 too)."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter as interp

    original = interp.InterpreterBuilder.create_dot

    def widen(h):
        if h.dtype == tl.bfloat16:
            return interp.TensorHandle((h.data.view(np.uint16).astype(np.uint32) << 16).view(np.float32), tl.float32)
        return h

    interp.InterpreterBuilder.create_dot = lambda self, a, b, d, p, m: original(self, widen(a), widen(b), d, p, m)


def _linear():
    from gdnlab.components import engine_ops as E

    ks = E.load_kernels()
    x = (torch.randn(5, 256, generator=torch.Generator().manual_seed(1)) * 0.5).to(torch.bfloat16)
    lin = E.BlockFP8Linear(ks, 256, 384, "cpu")
    lin.bind(x)
    lin.run()
    c = lin.checks()
    assert c["gemm"] < 0.01, c
    assert c["quant"] < 0.15, c                         # FP8 rounding (interpreter: wider, see the docstring)
    lin.out.mul_(1.1)                                  # a 10 % wrong output is caught by the exact check
    assert lin.checks()["gemm"] > 0.05


def _moe():
    from gdnlab.components import engine_ops as E

    ks = E.load_kernels()
    x = (torch.randn(3, 256, generator=torch.Generator().manual_seed(2)) * 0.5).to(torch.bfloat16)
    moe = E.FusedMoEFP8(ks, 256, 128, 8, 2, 128, "cpu")
    moe.bind(x)
    moe.run()
    c = moe.checks()
    assert c["gemm1"] < 0.01 and c["gemm2"] < 0.01, c
    assert c["end_to_end"] < 0.2, c
    assert "fused_moe_kernel" in ks.how["moe"] and "sglang 0.5.23" in ks.how["moe"]
    moe.topw.mul_(0.5)                                 # the routed sum depends on the weights it was given
    assert moe.checks()["gemm2"] > 0.3


def _align():
    from gdnlab.components.engine_ops import moe_align_torch

    ids = torch.tensor([[2, 3], [1, 2], [1, 3], [1, 2], [0, 3]], dtype=torch.int32)
    E_, bm = 5, 4
    n = ids.numel()
    P = ((n + (E_ + 1) * (bm - 1)) + bm - 1) // bm * bm
    s, e = torch.empty(P, dtype=torch.int32), torch.empty(P // bm, dtype=torch.int32)
    post = torch.empty(1, dtype=torch.int32)
    moe_align_torch(ids, E_, bm, s, e, post)
    flat = ids.reshape(-1).tolist()
    want_s, want_e = [], []                           # the contract, by a loop
    for ex in range(E_):
        pairs = [i for i, v in enumerate(flat) if v == ex]
        if not pairs:
            continue
        pad = -(-len(pairs) // bm) * bm
        want_s += pairs + [n] * (pad - len(pairs))
        want_e += [ex] * (pad // bm)
    assert int(post[0]) == len(want_s)
    assert s[:len(want_s)].tolist() == want_s and (s[len(want_s):] == n).all()
    assert e[:len(want_e)].tolist() == want_e and (e[len(want_e):] == -1).all()


def _attention(kv_dtype):
    from gdnlab.components import engine_ops as E

    att = E.TritonDecodeAttention(4, 1, 64, 3, 70, kv_dtype, "cpu")
    att.prepare(3, 67)
    o = att.attend()
    err = E.rel_err(o, att.reference())
    assert err < (0.02 if kv_dtype == torch.bfloat16 else 0.15), err     # fp8: the interpreter's conversions


def _grid(out: Path):
    from gdnlab.components import engine as G

    cfg = G.EngineGridConfig(tps=(1,), tokens=(3,), requests=(2,), kv_lens=(40,), device="cpu", tiny=True, repeats=2,
                             warmup=1, attention=("flashinfer", "sglang-triton"), budget_s=600)
    df = G.run_engine_grid(cfg, out / "ok", log=lambda m: None, flashinfer_status={"bf16": "CPU run"})
    stored = pd.read_parquet(out / "ok" / "components.parquet")
    assert len(stored) == len(df) and set(G.ENGINE_COMPONENTS) <= set(stored["component"])
    ok = stored[stored["component"] != "launch.graph"]
    assert (ok["outcome"] == "ok").all(), ok[["component", "outcome"]]
    assert (ok["status"] == "synthetic").all() and (ok["grade"] == "engine").all()
    assert ok["check_tokens"].dropna().eq(ok["tokens"].dropna()).all()          # checked at the timed batch
    exact = ok[ok["component"].isin(["eng.gdn_in_proj", "eng.attn_o_proj", "eng.lm_head", "eng.rmsnorm"])]
    assert exact["check_ok"].all()
    meta = json.loads((out / "ok" / "run.json").read_text())
    assert "fused_moe_kernel" in meta["kernels"]["moe"] and meta["attention"]["bf16"] == "CPU run"
    cfg.budget_s = 0.0                                 # no time left: every op is recorded as skipped
    df = G.run_engine_grid(cfg, out / "late", log=lambda m: None)
    assert set(df.loc[df["component"] != "launch.graph", "outcome"]) == {"skipped: time budget"}


def _child_cases(out: Path) -> dict:
    _widen_bf16_dot()
    return {"linear": _linear, "moe": _moe, "align": _align,
            "attention_bf16": lambda: _attention(torch.bfloat16),
            "attention_fp8": lambda: _attention(torch.float8_e4m3fn), "grid": lambda: _grid(out)}


# ---------------------------------------------------------------------------- parent side
@pytest.mark.parametrize("case", CASES)
def test_engine_kernels_in_the_interpreter(request, case):
    if _REASON:
        pytest.skip(_REASON)
    res = request.getfixturevalue("interpreter_results")[case]
    assert res["ok"], res["msg"]


def test_missing_kernel_and_package_are_one_line_reasons(monkeypatch):
    if _REASON:
        pytest.skip(_REASON)
    with pytest.raises(sk.EngineUnavailable, match="no @triton.jit"):
        sk.jit_from_source(sk.MOE_KERNELS[0], ("no_such_kernel",))
    monkeypatch.setattr(sk, "sglang_version", lambda: "0.4.0")
    with pytest.raises(sk.EngineUnavailable, match="0.4.0 installed"):
        sk.import_sglang(sk.ATTENTION_MODULE)


def test_configs_name_their_source():
    cfg, how = sk.moe_config(512, 96, 4096, 10, 64)           # no tuned table has N=96
    assert cfg["BLOCK_SIZE_N"] == 128 and cfg["BLOCK_SIZE_K"] == 128 and "default" in how
    cfg, how = sk.block_gemm_config(5120, 4096, 16)
    assert cfg["BLOCK_SIZE_K"] % 128 == 0 or 128 % cfg["BLOCK_SIZE_K"] == 0
    assert "config" in how


def _rows(parts: dict[str, float], tokens=(1, 64, 256)) -> pd.DataFrame:
    rows = [{"component": c, "tokens": n, "kv_len": None, "net_us": us * (1 + n / 64), "outcome": "ok", "tp": 4,
             "check_ok": True} for c, us in parts.items() for n in tokens]
    rows += [{"component": "eng.attention", "tokens": b, "kv_len": kv, "kv_dtype": "bf16", "attn_impl": "flashinfer",
              "net_us": 5.0 + b * kv / 1e4, "outcome": "ok", "tp": 4, "check_ok": True}
             for b in (1, 64) for kv in (1024, 4096)]
    return pd.DataFrame(rows)


def test_measured_rows_replace_a_part_only_when_complete():
    from gdnlab.model.step_ops import step_ops_for

    ops = step_ops_for("h200", 4, 1, "fp8_block", "bf16")
    rows = _rows({"eng.moe_block": 100.0, "eng.moe_align_torch": 10.0, "eng.gdn_in_proj": 5.0,
                  "eng.gdn_out_proj": 3.0, "eng.lm_head": 20.0})            # gdn proj lacks gdn_ba_proj
    m = ops.with_measured(rows, "measured (test)")
    assert m.decode("gdn", "moe", 64) == pytest.approx(45 * (100.0 - 10.0) * 2)
    assert m.decode("full", "moe", 64) == pytest.approx(15 * 90.0 * 2)
    assert m.decode("model", "lm_head", 1) == pytest.approx(20.0 * (1 + 1 / 64))
    assert m.decode("gdn", "proj", 64) == ops.decode("gdn", "proj", 64)       # incomplete: tables kept
    assert m.sources[("gdn", "moe")] == "measured (test)" and m.sources[("gdn", "proj")] == ops.status
    assert m.attention(64, 4096) == pytest.approx(15 * (5.0 + 64 * 4096 / 1e4))
    assert "flashinfer" in m.sources[("full", "attention")]
    bf16 = step_ops_for("h200", 8, 1, "bf16", "bf16").with_measured(rows, "x")   # FP8 rows never price bf16
    assert bf16.sources[("gdn", "moe")] != "x" and bf16.sources[("model", "lm_head")] == "x"


def test_engine_step_reads_a_measured_run_and_drops_failed_checks(tmp_path):
    from gdnlab.model.engine_build import engine_rows, engine_step_for

    rows = _rows({"eng.moe_block": 100.0, "eng.moe_align_torch": 10.0})
    rows.loc[rows["component"] == "eng.attention", "check_ok"] = False
    rows.to_parquet(tmp_path / "components.parquet")
    got = engine_rows("h200", 4, tmp_path)
    assert set(got["component"]) == {"eng.moe_block", "eng.moe_align_torch"}
    step = engine_step_for("h200", 4, components_dir=tmp_path)
    assert any("replace the tables" in n and "gdn.moe" in n for n in step.notes)
    assert step.ops.sources[("gdn", "moe")].startswith("measured (H200")
    assert engine_rows("h200", 8, tmp_path) is None


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--child":
    from helpers.interpreter import run_interpreter_cases  # tests/ is on the child's PYTHONPATH (conftest)

    out = Path(sys.argv[2]).parent
    sys.exit(run_interpreter_cases(_child_cases(out), sys.argv[2]))
