"""Engine backends on any machine: SGLang's kernel-selection rule as mirrored, the registry lines, the
one-line reasons an engine path gives when it cannot run, the bare-package import and the layout
helpers. Nothing here runs an engine kernel (that is ``test_engine_interpreter.py`` / ``_gpu.py``)."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from gdnlab import backends, engines
from gdnlab.inputs import make_inputs
from gdnlab.kernels import _engine_import as eng
from gdnlab.kernels import available_backends
from gdnlab.kernels.sglang import pack_inputs, packed_qkv, token_offsets
from gdnlab.kernels.sglang_rule import sglang_gdn_kernels
from gdnlab.shapes import GDNShape
from gdnlab.strategies import available_strategies, registry

from helpers.ids import case_id

SHAPE = GDNShape("engine-cpu", num_q_heads=2, num_v_heads=4, head_k_dim=16, head_v_dim=8)
ENGINE_BACKENDS = [b.name for b in backends.BACKENDS if b.engine]


# ------------------------------------------------------------------ SGLang's selection rule
@pytest.mark.parametrize("kw,want", [
    # defaults: Triton decode and verify, full cache, any state dtype, any GPU
    (dict(sm=90, state_dtype="float32"), ("triton", "triton", "full_cache", "sglang_triton", "sglang_triton")),
    (dict(sm=90, state_dtype="bfloat16"), ("triton", "triton", "full_cache", "sglang_triton", "sglang_triton")),
    # SM100 + bf16 state: decode defaults to FlashInfer and verify follows it
    (dict(sm=100, state_dtype="bfloat16"),
     ("flashinfer", "flashinfer", "full_cache", "sglang_flashinfer", "sglang_flashinfer")),
    (dict(sm="sm100", state_dtype="float32"), ("triton", "triton", "full_cache", "sglang_triton", "sglang_triton")),
    # SM90 FlashInfer decode: verify follows (fp32 MTP)
    (dict(sm=90, state_dtype="float32", decode_backend="flashinfer"),
     ("flashinfer", "flashinfer", "full_cache", "sglang_flashinfer", "sglang_flashinfer")),
    # explicit Triton verify wins over the FlashInfer decode
    (dict(sm=90, state_dtype="float32", decode_backend="flashinfer", verify_backend="triton"),
     ("flashinfer", "triton", "full_cache", "sglang_flashinfer", "sglang_triton")),
    # FlashInfer verify with a Triton decode: FlashInfer only because the SM90 fp32 prefill defaults to it
    (dict(sm=90, state_dtype="float32", verify_backend="flashinfer"),
     ("triton", "flashinfer", "full_cache", "sglang_triton", "sglang_flashinfer")),
    # CuTe DSL decode: verify is Triton
    (dict(sm=90, state_dtype="bfloat16", decode_backend="cutedsl"),
     ("cutedsl", "triton", "full_cache", "sglang_cutedsl", "sglang_triton")),
    # ReplaySSM spec: state dtype defaults to float32, the ring replaces the verify kernel
    (dict(sm=90, state_dtype=None, replayssm_spec=True),
     ("triton", "triton", "replay_ring", "sglang_triton", "sglang_triton")),
    (dict(sm=100, state_dtype="bfloat16", replayssm_spec=True),
     ("flashinfer", "triton", "replay_ring", "sglang_flashinfer", "sglang_triton")),
], ids=case_id)
def test_sglang_rule_selects(kw, want) -> None:
    k = sglang_gdn_kernels(**kw)
    assert (k.decode, k.verify, k.strategy, k.decode_backend, k.verify_backend) == want
    assert k.decode_backend in backends.names() and k.verify_backend in backends.names()


def test_sglang_rule_details() -> None:
    k = sglang_gdn_kernels(sm=90, state_dtype="float32", verify_backend="flashinfer", prefill_backend="triton")
    assert k.verify == "triton" and any("falls back to Triton" in n for n in k.notes)     # no FlashInfer prefill
    k = sglang_gdn_kernels(sm=90, state_dtype="float32", decode_backend="triton", replayssm=True)
    assert k.decode_kernel == "fused_recurrent_gdn_replayssm_decode"
    k = sglang_gdn_kernels(sm=(9, 0), state_dtype="bfloat16", replayssm_spec=True)
    assert k.state_dtype == "bfloat16" and any("folds the ring" in n for n in k.notes)
    assert sglang_gdn_kernels(sm=100, state_dtype="bfloat16").verify_kernel.startswith("flashinfer gdn_decode_bf16")
    k = sglang_gdn_kernels(sm=100, state_dtype="bfloat16", cuda_major=12, verify_backend="triton")
    assert k.prefill == "triton" and k.verify == "triton"
    assert "commit_gdn_replayssm_circular" in sglang_gdn_kernels(sm=90, state_dtype=None,
                                                                 replayssm_spec=True).commit_kernel


@pytest.mark.parametrize("kw,match", [
    (dict(sm=100, state_dtype="float32", decode_backend="flashinfer"), "SM100\\+ requires --mamba-ssm-dtype bfloat16"),
    (dict(sm=100, state_dtype="float32", verify_backend="flashinfer", decode_backend="triton"), "SM100\\+ requires"),
    (dict(sm=90, state_dtype="bfloat16", decode_backend="flashinfer"), "needs --mamba-ssm-dtype float32"),
    (dict(sm=90, state_dtype="float32", replayssm=True, replayssm_spec=True), "mutually exclusive"),
    (dict(sm=90, state_dtype="float32", decode_backend="cutedsl", replayssm_spec=True), "triton or flashinfer"),
    (dict(sm=90, state_dtype="float32", decode_backend="flashinfer", replayssm=True), "requires Triton"),
    (dict(sm=90, state_dtype=None), "model config"),
    (dict(sm=90, state_dtype="float16"), "--mamba-ssm-dtype must be one of"),
    (dict(sm=90, state_dtype="float32", decode_backend="helion"), "--linear-attn-decode-backend must be one of"),
    (dict(sm="hopper", state_dtype="float32"), "sm must look like"),
], ids=case_id)
def test_sglang_rule_refuses(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        sglang_gdn_kernels(**kw)


# ------------------------------------------------------------------ registry and engine runs
def test_engine_backends_are_registered_with_their_facts() -> None:
    assert ENGINE_BACKENDS == ["sglang_triton", "sglang_flashinfer", "sglang_cutedsl", "vllm_triton", "vllm_cuda"]
    for name in ENGINE_BACKENDS:
        b = backends.get(name)
        assert b.engine in engines.ENGINE_VERSIONS and b.packages == (b.engine,) and b.version_column == b.engine
        assert b.summary and b.label and b.kernel_pattern
    assert set(backends.version_columns()) >= {"sglang", "vllm"}
    from gdnlab.traces import names
    for kernel in ("fused_recurrent_gated_delta_rule_packed_decode_kernel", "gdn_replayssm_spec_circular_kernel",
                   "fused_sigmoid_gating_delta_rule_update_kernel", "gdn_decode_post_conv_mtp_kernel"):
        assert names.kernel_class(kernel) == "gdn", kernel
    for kernel in ("_fused_mamba_state_scatter_with_mask_kernel", "gdn_replayssm_compact_commit_kernel",
                   "_advance_gdn_spec_cursors_kernel", "_finish_gdn_replayssm_circular_fold_kernel"):
        assert names.kernel_class(kernel) == "commit", kernel


def test_engine_runs_name_registered_engine_backends() -> None:
    """Every EngineRun's backends exist, and each engine strategy backend implements the strategy."""
    from gdnlab.strategies import strategy_backend_class
    seen = set()
    for cls in registry.STRATEGY_CLASSES:
        for run in cls.engine_runs:
            for b in run.backends:
                assert b in backends.names(), (cls.name, b)
                if backends.get(b).engine and backends.get(b).strategies:
                    assert strategy_backend_class(cls.name, b).name == cls.name
                    seen.add((cls.name, b))
    assert seen >= {("full_cache", "sglang_triton"), ("full_cache", "sglang_flashinfer"),
                    ("replay_ring", "sglang_triton"), ("token_slots", "vllm_triton"), ("token_slots", "vllm_cuda")}
    ring = registry.strategy_class("replay_ring").engine_runs[0]
    assert ring.runs(state_dtype="bfloat16") and ring.runs(state_dtype="float32")


# ------------------------------------------------------------------ availability reasons
def test_every_engine_path_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    kst, sst = available_backends(), available_strategies()
    for name in ENGINE_BACKENDS:
        b = backends.get(name)
        ok, why = eng.check(b.engine)
        statuses = ([kst[name]] if b.kernels else []) + [s for (n, bn), s in sst.items() if bn == name
                                                         and "not implemented" not in s.reason]
        assert statuses, name
        for st in statuses:
            assert st.reason, name
            if not ok:
                assert not st.available and st.reason == why, (name, st.reason)


def test_check_says_missing_and_version_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eng, "installed_version", lambda e: None)
    ok, why = eng.check("sglang")
    assert not ok and why.startswith("sglang not installed") and "0.5.23" in why
    monkeypatch.setattr(eng, "installed_version", lambda e: "0.5.10")
    ok, why = eng.check("vllm")
    assert not ok and "vllm 0.5.10 installed" in why and "0.33.0" in why
    st = available_backends()["sglang_triton"]
    assert not st.available and "sglang 0.5.10 installed" in st.reason


def test_load_names_a_missing_dependency_and_symbol(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A fake engine package: a module importing an absent package, and a module lacking a symbol."""
    pkg = tmp_path / "sglang"
    (pkg / "kernels").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('the server must not start')\n")
    (pkg / "kernels" / "__init__.py").write_text("")
    (pkg / "kernels" / "needs_dep.py").write_text("import gdnlab_absent_dependency\n")
    (pkg / "kernels" / "ok.py").write_text("present = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = {m: sys.modules[m] for m in sys.modules if m == "sglang" or m.startswith("sglang.")}
    for mod in real:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(eng, "installed_version", lambda e: engines.ENGINE_VERSIONS[e])
    try:
        _fake_engine_checks()
    finally:                     # the fake package's modules must not outlive the test (the real ones come back)
        for mod in [m for m in sys.modules if (m == "sglang" or m.startswith("sglang.")) and m not in real]:
            del sys.modules[mod]


def _fake_engine_checks() -> None:
    with pytest.raises(eng.EngineUnavailable, match="needs the package 'gdnlab_absent_dependency'"):
        eng.load("sglang", "sglang.kernels.needs_dep")
    assert eng.load_symbols("sglang", "sglang.kernels.ok", "present") == (1,)
    with pytest.raises(eng.EngineUnavailable, match="sglang.kernels.ok has no 'absent'"):
        eng.load_symbols("sglang", "sglang.kernels.ok", "absent")
    with pytest.raises(eng.EngineUnavailable, match="is not in sglang 0.5.23"):
        eng.load("sglang", "sglang.kernels.moved_away")
    assert isinstance(sys.modules["sglang"], types.ModuleType) and "bare package" in sys.modules["sglang"].__doc__


# ------------------------------------------------------------------ layout helpers
def test_packed_qkv_is_a_view_only_for_packed_inputs() -> None:
    inp = make_inputs(SHAPE, 3, 2, seed=0)
    mixed, copied = packed_qkv(inp.q, inp.k, inp.v)
    assert copied and mixed.shape == (6, 2 * 2 * 16 + 4 * 8)
    packed = pack_inputs(inp)
    view, copied = packed_qkv(packed.q, packed.k, packed.v)
    assert not copied and view.data_ptr() == packed.q.data_ptr() and torch.equal(view, mixed)
    for name in ("q", "k", "v"):
        assert torch.equal(getattr(packed, name), getattr(inp, name))
    assert token_offsets(3, 2, torch.device("cpu")).tolist() == [0, 2, 4, 6]
    assert token_offsets(3, 2, torch.device("cpu")) is token_offsets(3, 2, torch.device("cpu"))   # cached


def test_vllm_slot_table_and_sglang_ring_constraints() -> None:
    from gdnlab.strategies.vllm import vllm_slot_table
    t = vllm_slot_table(10, 3)
    assert t[1:4].tolist() == [[1, 4, 5], [2, 6, 7], [3, 8, 9]] and bool((t[[0, 4, 9]] == -1).all())
    with pytest.raises(ValueError, match="holds none"):
        vllm_slot_table(3, 3)
    if not eng.check("sglang")[0]:
        pytest.skip(eng.check("sglang")[1])
    from gdnlab.strategies.sglang.triton import SGLangReplayRing
    with pytest.raises(ValueError, match="power of two"):
        SGLangReplayRing(ring_slots=12)
    s = SGLangReplayRing(ring_slots=8)
    with pytest.raises(ValueError, match=">= 2 T"):
        s.allocate(torch.zeros(5, *SHAPE.state_shape), 2, 5)
    rows = SGLangReplayRing.row_bytes(__import__("gdnlab.strategies.base", fromlist=["ByteUnits"]).ByteUnits.of(
        SHAPE, "float32"), 4, 2.0, ring_slots=16)
    assert rows["fold"].state_write > 0
