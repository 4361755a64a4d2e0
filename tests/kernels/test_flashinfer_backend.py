"""FlashInfer backend: availability reasons, argument passing (CPU, with a fake ``flashinfer`` module
injected through ``sys.modules``) and correctness against the reference (GPU, ``-m gpu``)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import pytest
import torch

import gdnlab.kernels.flashinfer as fimod
from gdnlab.inputs import make_inputs
from gdnlab.kernels.flashinfer import FlashInferBackend
from gdnlab.kernels.reference import ReferenceBackend
from gdnlab.state import StatePool

from helpers.ids import case_id
from helpers.shapes import SERVED_TP4

SHAPE = SERVED_TP4  # H=4, HV=16, K=V=128 per GPU (the seed's shape)
H, HV, K, V = SHAPE.H, SHAPE.HV, SHAPE.K, SHAPE.V


# =============================================================================================== CPU
# ---------------------------------------------------------------- availability under patched conditions
@pytest.fixture
def fake_cuda(monkeypatch):
    """Pretend a CUDA device is present (capability set through the returned setter)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "NVIDIA H100 80GB HBM3")
    cc = {"value": (9, 0)}
    monkeypatch.setattr(fimod, "device_capability", lambda dev: cc["value"])
    return cc


def _imports_ok(monkeypatch, failing: dict[str, BaseException] | None = None):
    failing = failing or {}

    def fake_import(name):
        if name in failing:
            raise failing[name]
        mod = types.ModuleType(name)
        mod.__version__ = "0.7.2.post1"
        return mod

    monkeypatch.setattr(fimod, "_find_spec", lambda name: object())
    monkeypatch.setattr(fimod, "_import_module", fake_import)


def test_availability_no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert FlashInferBackend.availability() == (False, "no CUDA device")


def test_availability_not_installed(fake_cuda, monkeypatch):
    monkeypatch.setattr(fimod, "_find_spec", lambda name: None)
    ok, reason = FlashInferBackend.availability()
    assert not ok
    assert reason == "flashinfer-python not installed (pip install 'gdnlab[gpu]')"


def test_availability_not_installed_via_sys_modules(fake_cuda, monkeypatch):
    # the real importlib.util.find_spec reports a module blocked in sys.modules as absent
    monkeypatch.setitem(sys.modules, "flashinfer", None)
    ok, reason = FlashInferBackend.availability()
    assert not ok and reason.startswith("flashinfer-python not installed")


def test_availability_cute_dsl_import_raises(fake_cuda, monkeypatch):
    err = OSError("libcute_dsl_native.so: undefined symbol: _ZN4mlir7Context")
    _imports_ok(monkeypatch, {"cutlass.cute": err})
    ok, reason = FlashInferBackend.availability()
    assert not ok
    assert reason.startswith("CuTe DSL failed to import: ")
    assert "undefined symbol: _ZN4mlir7Context" in reason and "OSError" in reason


def test_availability_gdn_kernel_module_raises(fake_cuda, monkeypatch):
    # flashinfer.gdn_decode swallows these errors itself, so the backend imports the kernel modules
    err = ImportError("cannot import name 'fma_packed_f32x2' from 'cutlass.cute.arch'")
    _imports_ok(monkeypatch, {"flashinfer.gdn_kernels.gdn_decode_bf16_state": err})
    ok, reason = FlashInferBackend.availability()
    assert not ok
    assert reason.startswith("CuTe DSL failed to import")
    assert "gdn_decode_bf16_state" in reason and "fma_packed_f32x2" in reason


def test_availability_needs_sm90(fake_cuda, monkeypatch):
    _imports_ok(monkeypatch)
    fake_cuda["value"] = (8, 0)
    assert FlashInferBackend.availability() == (False, "needs SM90+, found sm80")


def test_availability_ok_names_version_gpu_and_sm(fake_cuda, monkeypatch):
    _imports_ok(monkeypatch)
    monkeypatch.setattr(fimod.metadata, "version", _no_dist)
    ok, reason = FlashInferBackend.availability()
    assert ok
    assert reason == "flashinfer 0.7.2.post1 on NVIDIA H100 80GB HBM3 (sm90)"


def _no_dist(name):
    raise fimod.metadata.PackageNotFoundError(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the real no-GPU answer")
def test_availability_real_no_gpu():
    assert FlashInferBackend.availability() == (False, "no CUDA device")


def test_module_imports_without_flashinfer():
    code = textwrap.dedent("""
        import sys
        sys.modules["flashinfer"] = None      # not importable
        sys.modules["cutlass"] = None
        import gdnlab
        import gdnlab.kernels.flashinfer as m
        from gdnlab.kernels import available_backends
        st = available_backends()["flashinfer"]
        assert not st.available, st
        b = m.FlashInferBackend()             # constructing needs no FlashInfer either
        assert sys.modules["flashinfer"] is None and sys.modules["cutlass"] is None
        print("OK", st.reason)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OK ")


# ---------------------------------------------------------------- fake FlashInfer: argument passing
class FakeFlashInfer:
    """Records calls and mimics the real wrappers' assertions and padding behaviour (0.7.2.post1)."""

    GARBAGE = 7.0

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    @staticmethod
    def marker(i: int, t: int) -> float:
        return float(10 * (i + 1) + t + 1)

    def decode(self, **kw):  # gated_delta_rule_decode_pretranspose
        self.calls.append(("decode", kw))
        q, v, pool, idx = kw["q"], kw["v"], kw["initial_state"], kw["initial_state_indices"]
        assert kw["state"] is None and kw["A_log"].dtype == torch.float32
        B, T = q.shape[:2]
        if pool.dtype == torch.bfloat16:       # bf16 fast path: -1 -> slot 0 (read and written)
            out = torch.full((B, T, v.shape[2], v.shape[3]), self.GARBAGE, dtype=torch.bfloat16)
            pool[0] += 1
        else:                                  # fp32 legacy path: padding skipped, output zero
            out = torch.zeros((B, T, v.shape[2], v.shape[3]), dtype=torch.bfloat16)
            out[idx >= 0] = 1.0
        return out.to(q.dtype), pool

    def mtp_fp32(self, **kw):  # gdn_decode.gated_delta_rule_mtp
        self.calls.append(("mtp_fp32", kw))
        q, v, buf, idx = kw["q"], kw["v"], kw["intermediate_states_buffer"], kw["initial_state_indices"]
        assert kw["initial_state"].dtype == torch.float32 and kw["A_log"].dtype == torch.float32
        B, T = q.shape[:2]
        assert buf.shape[0] >= B and buf.shape[1] >= T and buf.dtype == torch.float32 and buf.is_contiguous()
        out = torch.zeros((B, T, v.shape[2], v.shape[3]), dtype=torch.bfloat16)
        for i in range(B):
            if int(idx[i]) >= 0:
                out[i] = 1.0
                for t in range(T):
                    buf[i, t] = self.marker(i, t)
        return out.to(q.dtype), kw["initial_state"]

    def mtp_bf16(self, **kw):  # gdn_kernels.gdn_decode_bf16_state.gated_delta_rule_mtp
        self.calls.append(("mtp_bf16", kw))
        q, v, buf = kw["q"], kw["v"], kw["intermediate_states_buffer"]
        assert kw["initial_state_source"].dtype == torch.bfloat16 and kw["A_log"].dtype == torch.float32
        B, T = q.shape[:2]
        assert buf.shape[0] == B, "the buffer is batch-scoped, not pool-scoped"   # bf16 L3701
        assert buf.dtype == torch.bfloat16 and buf.shape[1] >= T
        for i in range(B):                      # padding rows too: -1 reads slot 0
            for t in range(T):
                buf[i, t] = self.marker(i, t)
        return torch.full((B, T, v.shape[2], v.shape[3]), self.GARBAGE, dtype=torch.bfloat16)


@pytest.fixture
def fake_fi(monkeypatch):
    fake = FakeFlashInfer()
    pkg = types.ModuleType("flashinfer")
    pkg.__version__ = "0.7.2.post1"
    gd = types.ModuleType("flashinfer.gdn_decode")
    gd.gated_delta_rule_decode_pretranspose = fake.decode
    gd.gated_delta_rule_mtp = fake.mtp_fp32
    kpkg = types.ModuleType("flashinfer.gdn_kernels")
    bf = types.ModuleType("flashinfer.gdn_kernels.gdn_decode_bf16_state")
    bf.gated_delta_rule_mtp = fake.mtp_bf16
    for name, mod in (("flashinfer", pkg), ("flashinfer.gdn_decode", gd), ("flashinfer.gdn_kernels", kpkg),
                      ("flashinfer.gdn_kernels.gdn_decode_bf16_state", bf)):
        monkeypatch.setitem(sys.modules, name, mod)
    cc = {"value": (9, 0)}
    monkeypatch.setattr(fimod, "device_capability", lambda dev: cc["value"])
    fake.cc = cc
    return fake


def _cpu_case(B, T, dtype, n_pad=0, capacity=None, act=torch.bfloat16):
    inp = make_inputs(SHAPE, B, T, act_dtype=act, seed=1)
    sp = StatePool(SHAPE, capacity or B + 2, dtype=dtype).randomize_(1)
    idx = sp.batch_indices(sp.alloc(B - n_pad), pad_to=B)
    return inp, sp.tensor, idx


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=case_id)
def test_fake_decode_arguments(fake_fi, dtype):
    inp, pool, idx = _cpu_case(3, 1, dtype)
    A_log = inp.A_log.to(torch.bfloat16)                     # the backend must hand FlashInfer float32
    be = FlashInferBackend()
    o = be.decode(inp.q, inp.k, inp.v, inp.a, inp.b, A_log, inp.dt_bias, pool, idx, scale=0.125)
    (name, kw), = fake_fi.calls
    assert name == "decode"
    assert kw["A_log"].dtype == torch.float32 and torch.equal(kw["A_log"], A_log.float())
    assert kw["state"] is None and kw["initial_state"] is pool
    assert kw["initial_state_indices"].dtype == torch.int32 and torch.equal(kw["initial_state_indices"], idx)
    assert kw["use_qk_l2norm"] is True and kw["scale"] == 0.125 and kw["backend"] == "flashinfer"
    assert o.shape == (3, 1, HV, V) and o.dtype == inp.q.dtype
    assert be.last_path.op == "decode" and be.last_path.arch == "sm90"
    expected = "pretranspose_fp32_pool" if dtype == torch.float32 else "bf16_mtp_ilp4"  # B*HV = 48 < 512
    assert be.last_path.kernel == expected


def test_fake_decode_int64_indices_become_int32(fake_fi):
    inp, pool, idx = _cpu_case(2, 1, torch.float32)
    FlashInferBackend().decode(*inp.args(), pool, idx.long())
    assert fake_fi.calls[0][1]["initial_state_indices"].dtype == torch.int32


def test_fake_bf16_decode_zeroes_padding_outputs(fake_fi):
    inp, pool, idx = _cpu_case(4, 1, torch.bfloat16, n_pad=2)
    o = FlashInferBackend().decode(*inp.args(), pool, idx)
    assert torch.all(o[2:] == 0)
    assert torch.all(o[:2] == FakeFlashInfer.GARBAGE)        # live rows keep the kernel's values
    o_raw = FlashInferBackend(zero_padding_output=False).decode(*inp.args(), pool, idx)
    assert torch.all(o_raw[2:] == FakeFlashInfer.GARBAGE)    # exactly SGLang's behaviour when off


def test_fake_bf16_decode_refuses_live_slot0_with_padding(fake_fi):
    inp, pool, _ = _cpu_case(3, 1, torch.bfloat16)
    idx = torch.tensor([0, 2, -1], dtype=torch.int32)
    with pytest.raises(ValueError, match="slot 0"):
        FlashInferBackend().decode(*inp.args(), pool, idx)
    assert fake_fi.calls == []                               # refused before any kernel call
    with pytest.raises(ValueError, match="slot 0"):          # slot 0 is reserved, padding or not
        FlashInferBackend().decode(*inp.args(), pool, torch.tensor([0, 2, 1], dtype=torch.int32))
    assert fake_fi.calls == []


def test_fake_fp32_decode_refuses_slot0_allows_padding(fake_fi):
    inp, pool, _ = _cpu_case(3, 1, torch.float32)
    with pytest.raises(ValueError, match="slot 0"):
        FlashInferBackend().decode(*inp.args(), pool, torch.tensor([0, 2, -1], dtype=torch.int32))
    assert fake_fi.calls == []
    FlashInferBackend().decode(*inp.args(), pool, torch.tensor([1, 2, -1], dtype=torch.int32))
    assert len(fake_fi.calls) == 1


@pytest.mark.parametrize("dtype,fn", [(torch.float32, "mtp_fp32"), (torch.bfloat16, "mtp_bf16")], ids=case_id)
def test_fake_verify_passes_batch_scoped_buffer(fake_fi, dtype, fn):
    B, T, P = 3, 4, 8
    inp, pool, _ = _cpu_case(B, T, dtype, capacity=P - 1)
    idx = torch.tensor([6, 2, 5], dtype=torch.int32)          # pool slots >= B, as in serving
    buf = torch.full((P + 1, T, HV, V, K), -3.0, dtype=dtype)  # pool-sized, like SGLang's intermediate_ssm
    pool_before = pool.clone()
    o, inter = FlashInferBackend().verify(*inp.args(), pool, idx, intermediate=buf)
    (name, kw), = fake_fi.calls
    assert name == fn
    kbuf = kw["intermediate_states_buffer"]
    assert kbuf.shape[0] == B and kbuf.shape[1:] == (T, HV, V, K)      # the seed's [:batch_size] fix
    assert kbuf.data_ptr() == buf.data_ptr()                         # a view: writes land in buf rows 0..B-1
    assert kw["disable_state_update"] is True                        # explicit (FlashInfer default changes in 0.8)
    assert kw["A_log"].dtype == torch.float32
    pool_key = "initial_state" if fn == "mtp_fp32" else "initial_state_source"
    assert kw[pool_key] is pool and torch.equal(kw["initial_state_indices"], idx)
    assert kw.get("use_qk_l2norm", kw.get("use_qk_l2norm_in_kernel")) is True
    assert inter is buf and o.shape == (B, T, HV, V)
    for i in range(B):
        for t in range(T):
            assert torch.all(buf[i, t] == FakeFlashInfer.marker(i, t))
    assert torch.all(buf[B:] == -3.0)                                # rows >= B untouched
    assert torch.equal(pool, pool_before)


def test_fake_verify_staged_when_buffer_has_more_tokens(fake_fi):
    B, T = 3, 2
    inp, pool, idx = _cpu_case(B, T, torch.bfloat16, n_pad=1)
    buf = torch.full((B, T + 2, HV, V, K), -3.0, dtype=torch.float32)  # fp32 buffer for a bf16 pool, extra tokens
    be = FlashInferBackend()
    o, _ = be.verify(*inp.args(), pool, idx, intermediate=buf)
    kbuf = fake_fi.calls[0][1]["intermediate_states_buffer"]
    assert kbuf.shape == (B, T, HV, V, K) and kbuf.dtype == torch.bfloat16   # what the kernel accepts
    assert be.last_path.detail["intermediate"] == "staged"
    for i in range(B - 1):
        for t in range(T):
            assert torch.all(buf[i, t] == FakeFlashInfer.marker(i, t))
    assert torch.all(buf[:, T:] == -3.0)                             # tokens >= T untouched
    assert torch.all(buf[B - 1] == -3.0)                             # padding row untouched when staged
    assert torch.all(o[B - 1] == 0) and torch.all(o[: B - 1] == FakeFlashInfer.GARBAGE)


def test_fake_verify_direct_path_recorded(fake_fi):
    inp, pool, idx = _cpu_case(2, 4, torch.float32)
    be = FlashInferBackend()
    be.verify(*inp.args(), pool, idx)
    assert be.last_path.detail["intermediate"] == "direct" and be.last_path.kernel == "mtp_fp32"
    assert be.last_path.detail["variant"] == "inline"                # B*HV = 32 <= 128


def test_fake_verify_pool_scoped_hands_the_whole_buffer(fake_fi):
    """verify_pool_scoped: the pool-sized buffer reaches the fp32 kernel unsliced (SGLang before PR
    #23273); the fake bf16 wrapper asserts dim0 == B (as FlashInfer's does) and the assert propagates."""
    B, T, P = 3, 2, 8
    inp, pool, _ = _cpu_case(B, T, torch.float32, capacity=P - 1)
    idx = torch.tensor([6, 2, 5], dtype=torch.int32)
    buf = torch.full((P, T, HV, V, K), -3.0, dtype=torch.float32)
    be = FlashInferBackend()
    o = be.verify_pool_scoped(*inp.args(), pool, idx, intermediate=buf)
    (name, kw), = fake_fi.calls
    assert name == "mtp_fp32" and kw["intermediate_states_buffer"] is buf            # not a [:B] view
    assert kw["disable_state_update"] is True and kw["A_log"].dtype == torch.float32
    assert be.last_path.detail["intermediate"] == "unsliced" and o.shape == (B, T, HV, V)
    assert torch.all(buf[0, 0] == FakeFlashInfer.marker(0, 0)) and torch.all(buf[B:] == -3.0)
    inp16, pool16, _ = _cpu_case(B, T, torch.bfloat16, capacity=P - 1)
    with pytest.raises(AssertionError, match="batch-scoped"):
        be.verify_pool_scoped(*inp16.args(), pool16, idx, intermediate=buf.bfloat16())
    with pytest.raises(ValueError, match="pool's dtype"):                           # no silent staging
        be.verify_pool_scoped(*inp16.args(), pool16, idx, intermediate=buf)


def test_make_backend_uses_the_engine_options(monkeypatch):
    import gdnlab.kernels as kernels
    from gdnlab.kernels.base import BackendStatus

    assert kernels.ENGINE_OPTIONS["sglang"]["flashinfer"] == {"zero_padding_output": False}
    monkeypatch.setattr(kernels, "_status", lambda name: BackendStatus(name, True, "ok"))
    be = kernels.make_backend("flashinfer")
    assert isinstance(be, FlashInferBackend) and be.zero_padding_output is False
    assert be.gdnlab_options == {"zero_padding_output": False}
    contract = kernels.make_backend("FlashInfer", engine=None)
    assert contract.zero_padding_output is True and contract.gdnlab_options == {}
    assert kernels.make_backend("flashinfer", fi_backend="auto").fi_backend == "auto"
    assert kernels.make_backend("reference").gdnlab_options == {}
    with pytest.raises(ValueError, match="unknown engine"):
        kernels.make_backend("reference", engine="vllm")


def test_new_intermediate_uses_pool_dtype():
    from gdnlab.kernels.validation import GDNCallDims
    dims = GDNCallDims(B=2, T=4, H=H, HV=HV, K=K, V=V, P=5)
    for dt in (torch.float32, torch.bfloat16):
        buf = FlashInferBackend().new_intermediate(dims, torch.zeros(5, HV, V, K, dtype=dt))
        assert buf.shape == (2, 4, HV, V, K) and buf.dtype == dt


def test_fake_verify_allocates_pool_dtype_buffer(fake_fi):
    inp, pool, idx = _cpu_case(2, 3, torch.bfloat16)
    _, inter = FlashInferBackend().verify(*inp.args(), pool, idx)
    assert inter.dtype == torch.bfloat16 and inter.shape == (2, 3, HV, V, K)


def test_fake_commit_uses_base_contract(fake_fi):
    B, T = 3, 4
    inp, pool, idx = _cpu_case(B, T, torch.float32, n_pad=1)
    be = FlashInferBackend()
    _, inter = be.verify(*inp.args(), pool, idx)
    before = pool.clone()
    be.commit(pool, idx, inter, torch.tensor([2, 4, 1], dtype=torch.int32))
    assert torch.all(pool[idx[0]] == FakeFlashInfer.marker(0, 1))
    assert torch.all(pool[idx[1]] == FakeFlashInfer.marker(1, 3))
    untouched = [s for s in range(pool.shape[0]) if s not in (int(idx[0]), int(idx[1]))]
    assert torch.equal(pool[untouched], before[untouched])
    assert be.last_path.op == "commit"


def test_fake_sm100_path_records_packed_fma(fake_fi):
    fake_fi.cc["value"] = (10, 0)
    inp, pool, idx = _cpu_case(16, 4, torch.bfloat16)
    be = FlashInferBackend()
    be.verify(*inp.args(), pool, idx)
    assert be.last_path.arch == "sm100" and be.last_path.kernel == "bf16_wide_vec_mtp"
    assert be.last_path.detail["fma"] == "packed_f32x2" and be.last_path.detail["tile_v"] == 32  # B*HV = 256


def test_fake_sm90_bf16_verify_notes_sglang_gap(fake_fi):
    inp, pool, idx = _cpu_case(1, 4, torch.bfloat16)
    be = FlashInferBackend()
    be.verify(*inp.args(), pool, idx)
    assert be.last_path.kernel == "bf16_mtp_ilp4" and be.last_path.detail["fma"] == "scalar"
    assert "no bf16 verify on SM90" in be.last_path.detail["sglang"]


def test_fake_rejects_float32_activations(fake_fi):
    inp, pool, idx = _cpu_case(2, 1, torch.float32, act=torch.float32)
    with pytest.raises(ValueError, match="q has dtype torch.float32"):
        FlashInferBackend().decode(*inp.args(), pool, idx)


def test_fake_rejects_bf16_pool_with_small_head_dim(fake_fi):
    from gdnlab.shapes import GDNShape
    small = GDNShape("small", 2, 4, 64, 64)
    inp = make_inputs(small, 2, 1)
    pool = StatePool(small, 3, dtype="bf16").tensor
    with pytest.raises(ValueError, match="K = V = 128"):
        FlashInferBackend().decode(*inp.args(), pool, torch.tensor([1, 2], dtype=torch.int32))


def test_fake_rejects_pre_sm90(fake_fi):
    fake_fi.cc["value"] = (8, 9)
    inp, pool, idx = _cpu_case(2, 1, torch.float32)
    with pytest.raises(ValueError, match="SM90"):
        FlashInferBackend().decode(*inp.args(), pool, idx)


def test_fake_rejects_cpu_tensors_without_gpu(monkeypatch):
    inp, pool, idx = _cpu_case(2, 1, torch.float32)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        FlashInferBackend().decode(*inp.args(), pool, idx)


@pytest.mark.parametrize("kwargs,needs", [({"cache_replayssm": True}, "sm100"), ({"fi_backend": "rubin"}, "sm107")],
                         ids=case_id)
def test_fake_sm100_only_features_raise_on_sm90(fake_fi, kwargs, needs):
    inp, pool, idx = _cpu_case(2, 4, torch.float32)
    with pytest.raises(NotImplementedError, match=needs):
        FlashInferBackend(**kwargs).verify(*inp.args(), pool, idx)
    assert fake_fi.calls == []


def test_unknown_fi_backend_is_a_value_error():
    with pytest.raises(ValueError, match="fi_backend"):
        FlashInferBackend(fi_backend="cake")


def test_scratch_slots_declared():
    be = FlashInferBackend()
    assert FlashInferBackend.scratch_slots == (StatePool.PADDING_SLOT,)  # the slot StatePool reserves
    assert be.scratch_slots_for("decode", torch.bfloat16) == (0,)
    assert be.scratch_slots_for("decode", torch.float32) == ()
    assert be.scratch_slots_for("verify", torch.bfloat16) == ()


# =============================================================================================== GPU
def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (both in float64)."""
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _state_tol(dtype):
    return 1e-4 if dtype == torch.float32 else 2e-2


OUT_TOL = 2e-2  # outputs are bf16 on every FlashInfer path


@pytest.fixture
def fib(cuda_device):
    ok, why = FlashInferBackend.availability()
    if not ok:
        pytest.skip(f"flashinfer backend unavailable: {why}")
    return FlashInferBackend()


def _gpu_case(device, B, T, dtype, n_pad=0, capacity=None, seed=0):
    inp = make_inputs(SHAPE, B, T, device=device, seed=seed)
    sp = StatePool(SHAPE, capacity or B + 3, dtype=dtype, device=device).randomize_(seed)  # slot 0 random too
    idx = sp.batch_indices(sp.alloc(B - n_pad), pad_to=B)
    return inp, sp.tensor, idx


def _sm(device) -> str:
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm{major}{minor}"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_gpu_decode_matches_reference(fib, cuda_device, dtype):
    B, n_pad = 16, 2
    inp, pool, idx = _gpu_case(cuda_device, B, 1, dtype, n_pad)
    before, ref_pool = pool.clone(), pool.clone()
    o = fib.decode(*inp.args(), pool, idx)
    o_ref = ReferenceBackend().decode(*inp.args(), ref_pool, idx)
    live = idx[idx >= 0].long()
    assert _rel(o[: B - n_pad], o_ref[: B - n_pad]) < OUT_TOL
    assert torch.all(o[B - n_pad:] == 0)                                     # padding rows: zeros
    assert _rel(pool[live], ref_pool[live]) < _state_tol(dtype)
    kept = set(live.tolist()) | set(fib.scratch_slots_for("decode", dtype))
    others = [s for s in range(pool.shape[0]) if s not in kept]
    assert torch.equal(pool[others], before[others])                         # untouched slots
    if dtype == torch.float32:
        assert torch.equal(pool[0], before[0])                               # fp32: not even scratch
    assert fib.last_path.arch == _sm(cuda_device)
    assert fib.last_path.kernel == ("pretranspose_fp32_pool" if dtype == torch.float32 else "bf16_mtp_ilp4")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_gpu_verify_matches_reference(fib, cuda_device, dtype):
    B, T, n_pad = 16, 4, 2
    inp, pool, idx = _gpu_case(cuda_device, B, T, dtype, n_pad, seed=3)
    before = pool.clone()
    inter = torch.full((B, T, HV, V, K), -5.0, dtype=dtype, device=cuda_device)
    o, inter = fib.verify(*inp.args(), pool, idx, intermediate=inter)
    o_ref, inter_ref = ReferenceBackend().verify(*inp.args(), pool.clone(), idx)
    n = B - n_pad
    assert _rel(o[:n], o_ref[:n]) < OUT_TOL
    assert torch.all(o[n:] == 0)
    assert _rel(inter[:n], inter_ref[:n]) < _state_tol(dtype)
    assert torch.equal(pool, before)                                         # verify never writes the pool
    if not fib.writes_padding_intermediate or dtype == torch.float32:
        assert torch.all(inter[n:] == -5.0)
    assert fib.last_path.detail["intermediate"] == "direct"
    assert fib.last_path.kernel == ("mtp_fp32" if dtype == torch.float32 else "bf16_wide_vec_mtp")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_gpu_slicing_fix_regression(fib, cuda_device, dtype):
    """A pool-sized buffer [P+1, T, ...] (SGLang's intermediate_ssm): only rows < B are written and
    row i holds batch row i's states, whatever its pool slot."""
    B, T, P = 3, 4, 12
    inp, pool, _ = _gpu_case(cuda_device, B, T, dtype, capacity=P - 1, seed=5)
    idx = torch.tensor([9, 4, 11], dtype=torch.int32, device=cuda_device)  # slots >= B
    buf = torch.full((P + 1, T, HV, V, K), 3.0, dtype=dtype, device=cuda_device)
    o, _ = fib.verify(*inp.args(), pool, idx, intermediate=buf)
    o_ref, inter_ref = ReferenceBackend().verify(*inp.args(), pool.clone(), idx)
    assert torch.all(buf[B:] == 3.0)
    for i in range(B):
        assert _rel(buf[i], inter_ref[i]) < _state_tol(dtype), f"row {i}"
    assert _rel(o, o_ref) < OUT_TOL
    if dtype == torch.bfloat16:  # why the slice exists: FlashInfer's bf16 wrapper rejects the pool-sized buffer
        A = inp.A_log.float()
        # 0.7.2: "intermediate_states_buffer dim 0 (P) must equal batch size B";
        # 0.7.4: "intermediate_states_buffer must have logical shape [B, >=T, ...]"
        with pytest.raises(AssertionError, match="intermediate_states_buffer"):
            fib.kernels.mtp_bf16(A_log=A, a=inp.a, dt_bias=inp.dt_bias, q=inp.q, k=inp.k, v=inp.v, b=inp.b,
                                 initial_state_source=pool, initial_state_indices=idx,
                                 intermediate_states_buffer=buf, disable_state_update=True)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_gpu_verify_pool_scoped(fib, cuda_device, dtype):
    """verify_pool_scoped hands FlashInfer the pool-sized buffer: fp32 writes rows < B by batch
    position (rows >= B untouched); the bf16 wrapper rejects the buffer (dim0 must equal B)."""
    B, T, P = 3, 4, 12
    inp, pool, _ = _gpu_case(cuda_device, B, T, dtype, capacity=P - 1, seed=6)
    idx = torch.tensor([9, 4, 11], dtype=torch.int32, device=cuda_device)
    buf = torch.full((P + 1, T, HV, V, K), 3.0, dtype=dtype, device=cuda_device)
    if dtype == torch.bfloat16:
        with pytest.raises(AssertionError):
            fib.verify_pool_scoped(*inp.args(), pool, idx, intermediate=buf)
        return
    o = fib.verify_pool_scoped(*inp.args(), pool, idx, intermediate=buf)
    o_ref, inter_ref = ReferenceBackend().verify(*inp.args(), pool.clone(), idx)
    assert torch.all(buf[B:] == 3.0) and fib.last_path.detail["intermediate"] == "unsliced"
    for i in range(B):
        assert _rel(buf[i], inter_ref[i]) < _state_tol(dtype), f"row {i}"
    assert _rel(o, o_ref) < OUT_TOL


@pytest.mark.gpu
def test_gpu_staged_intermediate_more_tokens_fp32_buffer(fib, cuda_device):
    B, T, n_pad = 4, 3, 1
    inp, pool, idx = _gpu_case(cuda_device, B, T, torch.bfloat16, n_pad, seed=7)
    buf = torch.full((B + 2, T + 2, HV, V, K), -1.0, dtype=torch.float32, device=cuda_device)
    o, _ = fib.verify(*inp.args(), pool, idx, intermediate=buf)
    _, inter_ref = ReferenceBackend().verify(*inp.args(), pool.clone(), idx,
                                             intermediate=torch.zeros_like(buf))
    n = B - n_pad
    assert fib.last_path.detail["intermediate"] == "staged"
    assert _rel(buf[:n, :T], inter_ref[:n, :T]) < 2e-2
    assert torch.all(buf[:, T:] == -1.0) and torch.all(buf[n:] == -1.0)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_gpu_verify_commit_matches_reference(fib, cuda_device, dtype):
    B, T = 8, 4
    inp, pool, idx = _gpu_case(cuda_device, B, T, dtype, n_pad=1, seed=11)
    ref_pool = pool.clone()
    accepted = torch.tensor([1, 2, 3, 4, 4, 3, 2, 1], dtype=torch.int32, device=cuda_device)
    _, inter = fib.verify(*inp.args(), pool, idx)
    fib.commit(pool, idx, inter, accepted)
    ref = ReferenceBackend()
    _, inter_ref = ref.verify(*inp.args(), ref_pool, idx)
    ref.commit(ref_pool, idx, inter_ref, accepted)
    assert _rel(pool, ref_pool) < _state_tol(dtype)


@pytest.mark.gpu
def test_gpu_path_recording(fib, cuda_device):
    sm = _sm(cuda_device)
    major = torch.cuda.get_device_capability(cuda_device)[0]
    cases = [("decode", torch.float32, 1, "pretranspose_fp32_pool"),
             ("decode", torch.bfloat16, 1, "bf16_mtp_ilp4"),          # B*HV = 16 < 512
             ("decode", torch.bfloat16, 64, "bf16_wide_vec_t1"),      # B*HV = 1024 -> tile_v 128
             ("verify", torch.float32, 1, "mtp_fp32"),
             ("verify", torch.bfloat16, 1, "bf16_mtp_ilp4"),          # B*HV = 16 < 128
             ("verify", torch.bfloat16, 64, "bf16_wide_vec_mtp")]
    for op, dtype, B, kernel in cases:
        T = 1 if op == "decode" else 4
        inp, pool, idx = _gpu_case(cuda_device, B, T, dtype)
        getattr(fib, op)(*inp.args(), pool, idx)
        p = fib.last_path
        assert (p.op, p.kernel, p.arch) == (op, kernel, sm), (op, dtype, B, p)
        if kernel.startswith("bf16"):
            assert p.detail["fma"] == ("packed_f32x2" if major >= 10 else "scalar")
    assert fib.last_path.detail["tile_v"] == 128


@pytest.mark.gpu
def test_gpu_sm100_only_features_raise_elsewhere(cuda_device):
    cc = tuple(torch.cuda.get_device_capability(cuda_device))
    if cc in {(10, 0), (10, 3)}:
        pytest.skip("this GPU is SM100-class: cache_replayssm exists here")
    with pytest.raises(NotImplementedError, match="sm100"):
        FlashInferBackend(cache_replayssm=True)
    if cc != (10, 7):
        with pytest.raises(NotImplementedError, match="sm107"):
            FlashInferBackend(fi_backend="rubin")
