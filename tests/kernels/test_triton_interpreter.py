"""The Triton backend's kernels on the CPU, through Triton's interpreter (``TRITON_INTERPRET=1``).

Why a subprocess: Triton picks "compile" or "interpret" when a function is wrapped by ``triton.jit``,
from ``TRITON_INTERPRET`` (Triton 3.8: ``triton.knobs.runtime.interpret``, which re-reads the
environment each time). gdnlab wraps its kernel lazily per mode, so toggling the variable in-process
would work here — but setting it in this pytest process would also make any later GPU test in the same
run interpret instead of compile, and older Triton versions patch ``triton.language`` globally while
interpreting. So every kernel launch below runs in ONE child Python (``TRITON_INTERPRET=1`` and
``CUDA_VISIBLE_DEVICES=""`` set in its environment before anything imports Triton), which writes a JSON
verdict per case; the parent turns each case into one pytest test. Checks that launch nothing
(availability reasons, argument errors) run in-process.

Shapes are tiny (H=2, HV=4, K=V=16, B=3) so the whole module runs in a few seconds. The oracle is
:class:`ReferenceBackend` in float64; tolerances come from :mod:`gdnlab.kernels.tolerances`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from gdnlab.inputs import make_inputs
from gdnlab.kernels import tolerances as tl_
from gdnlab.kernels.reference import ReferenceBackend
from gdnlab.shapes import GDNShape

from helpers.ids import case_id
from helpers.shapes import INTERP_SMALL

REPO = Path(__file__).resolve().parents[2]
SHAPE = INTERP_SMALL
POOL_SLOTS = 10
INDICES = [7, -1, 2]          # non-contiguous slots, a padding row in the middle


# ---------------------------------------------------------------------------- helpers (child side)
def _pool(shape: GDNShape, slots: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (0.1 * torch.randn((slots, *shape.state_shape), generator=gen)).to(dtype)


def _idx(vals: list[int]) -> torch.Tensor:
    return torch.tensor(vals, dtype=torch.int32)


def _backend(**kw):
    from gdnlab.kernels.triton import TritonBackend
    return TritonBackend(**kw)


def _ref() -> ReferenceBackend:
    return ReferenceBackend(compute_dtype=torch.float64)


def _check_decode(pool_dtype: torch.dtype, act_dtype: torch.dtype, shape: GDNShape = SHAPE, **kw) -> None:
    idx = _idx(INDICES)
    inp = make_inputs(shape, len(INDICES), 1, act_dtype=act_dtype, seed=3)
    pool0 = _pool(shape, POOL_SLOTS, pool_dtype, seed=4)
    p_tri, p_ref = pool0.clone(), pool0.clone()
    be = _backend(**kw)
    o = be.decode(*inp.args(), p_tri, idx)
    o_ref = _ref().decode(*inp.args(), p_ref, idx)
    assert o.dtype == act_dtype and o.shape == (3, 1, shape.HV, shape.V)
    tl_.assert_close(o, o_ref, tl_.output_tol(act_dtype, pool_dtype), "decode output")
    assert torch.all(o[1] == 0), "padding row output must be zeros"
    live = [s for s in INDICES if s >= 0]
    tl_.assert_close(p_tri[live], p_ref[live], tl_.state_tol(pool_dtype), "decode pool rows")
    untouched = [s for s in range(POOL_SLOTS) if s not in live]
    assert torch.equal(p_tri[untouched], pool0[untouched]), "decode wrote a pool slot it does not own"
    assert be.last_path.op == "decode" and be.last_path.detail["interpreter"] is True


def _check_verify(pool_dtype: torch.dtype, T: int, inter_dtype: torch.dtype | None = None,
                  shape: GDNShape = SHAPE, **kw) -> None:
    idx = _idx(INDICES)
    inp = make_inputs(shape, len(INDICES), T, act_dtype=torch.bfloat16, seed=5 + T)
    pool0 = _pool(shape, POOL_SLOTS, pool_dtype, seed=6)
    pool = pool0.clone()
    be = _backend(**kw)
    inter = None
    if inter_dtype is not None:
        inter = torch.full((3, T, *shape.state_shape), 7.0, dtype=inter_dtype)   # sentinel
    o, inter = be.verify(*inp.args(), pool, idx, intermediate=inter)
    o_ref, inter_ref = _ref().verify(*inp.args(), pool0.clone(), idx)
    assert torch.equal(pool, pool0), "verify must not change the pool"
    tl_.assert_close(o, o_ref, tl_.output_tol(o.dtype, pool_dtype), f"verify output (T={T})")
    assert torch.all(o[1] == 0), "padding row output must be zeros"
    it = tl_.intermediate_tol(inter.dtype, pool_dtype)
    tl_.assert_close(inter[[0, 2]], inter_ref[[0, 2]], it, f"verify intermediate (T={T})")
    if inter_dtype is not None:
        assert torch.all(inter[1] == 7.0), "padding row's intermediate rows must not be written"
    assert be.last_path.detail["intermediate_dtype"] == str(inter.dtype).removeprefix("torch.")


def _check_commit(pool_dtype: torch.dtype, T: int = 3, replay_as_decodes: bool = False) -> None:
    idx = _idx(INDICES)
    inp = make_inputs(SHAPE, 3, T, act_dtype=torch.bfloat16, seed=9)
    pool0 = _pool(SHAPE, POOL_SLOTS, pool_dtype, seed=10)
    accepted = torch.tensor([2, 1, T], dtype=torch.int32)
    be, ref = _backend(), _ref()
    p_tri, p_ref = pool0.clone(), pool0.clone()
    _, inter = be.verify(*inp.args(), p_tri, idx)
    _, inter_ref = ref.verify(*inp.args(), p_ref, idx)
    be.commit(p_tri, idx, inter, accepted)
    ref.commit(p_ref, idx, inter_ref, accepted)
    tl_.assert_close(p_tri, p_ref, tl_.commit_tol(pool_dtype, inter.dtype), "pool after commit")
    untouched = [s for s in range(POOL_SLOTS) if s not in (7, 2)]
    assert torch.equal(p_tri[untouched], pool0[untouched]), "commit wrote a slot it does not own"
    if not replay_as_decodes:
        return
    # commit of accepted=T equals T sequential decodes (verify and decode agree)
    p_dec = pool0.clone()
    for t in range(T):
        be.decode(*inp.token(t).args(), p_dec, idx)
    tl_.assert_close(p_dec[2], p_tri[2], tl_.commit_tol(pool_dtype, inter.dtype), "decode x T vs verify+commit")


def _check_batch_scoped_intermediate() -> None:
    """Pool slots far above B, intermediate = the first B rows of a bigger buffer: row i must be
    batch row i (a pool-scoped kernel would write rows 7 and 9 of the backing buffer instead)."""
    T, slots = 2, 12
    idx = _idx([9, 7])
    inp = make_inputs(SHAPE, 2, T, act_dtype=torch.bfloat16, seed=11)
    pool = _pool(SHAPE, slots, torch.float32, seed=12)
    backing = torch.zeros((slots, T, *SHAPE.state_shape), dtype=torch.float32)
    inter = backing[:2]
    _backend().verify(*inp.args(), pool, idx, intermediate=inter)
    _, inter_ref = _ref().verify(*inp.args(), pool.clone(), idx)
    tl_.assert_close(inter, inter_ref, tl_.intermediate_tol(torch.float32, torch.float32), "batch-scoped rows")
    assert torch.all(backing[2:] == 0), "verify wrote intermediate rows beyond B (pool-scoped indexing?)"


def _check_noncontiguous_inputs() -> None:
    """q/k/v/a/b as strided views (e.g. slices of a packed projection) give the same result."""
    T = 2
    inp = make_inputs(SHAPE, 3, T, act_dtype=torch.bfloat16, seed=13)
    wide_qk = torch.zeros((3, T, 2 * SHAPE.H, SHAPE.K), dtype=torch.bfloat16)
    q = wide_qk[:, :, ::2]
    q.copy_(inp.q)
    k = inp.k.transpose(0, 1).contiguous().transpose(0, 1)
    v = torch.cat([inp.v, inp.v], dim=-1)[..., : SHAPE.V]
    ab = torch.stack([inp.a, inp.b], dim=-1)
    a, b = ab[..., 0], ab[..., 1]
    assert not (q.is_contiguous() or k.is_contiguous() or a.is_contiguous())
    pool = _pool(SHAPE, POOL_SLOTS, torch.float32, seed=14)
    idx = _idx(INDICES)
    o, inter = _backend().verify(q, k, v, a, b, inp.A_log, inp.dt_bias, pool, idx)
    o_ref, inter_ref = _ref().verify(*inp.args(), pool.clone(), idx)
    tl_.assert_close(o, o_ref, tl_.output_tol(torch.bfloat16, torch.float32), "strided inputs: output")
    tl_.assert_close(inter[[0, 2]], inter_ref[[0, 2]], tl_.intermediate_tol(torch.float32, torch.float32),
                     "strided inputs: intermediate")


def _check_all_padding() -> None:
    inp = make_inputs(SHAPE, 2, 1, act_dtype=torch.bfloat16, seed=15)
    pool0 = _pool(SHAPE, 4, torch.bfloat16, seed=16)
    pool = pool0.clone()
    o = _backend().decode(*inp.args(), pool, _idx([-1, -1]))
    assert torch.all(o == 0) and torch.equal(pool, pool0), "all-padding batch must write zeros and no state"


_ODD = GDNShape("interp-odd", num_q_heads=1, num_v_heads=2, head_k_dim=24, head_v_dim=20)

#: case id -> zero-argument check (run in the child)
CASES = {
    "decode-fp32pool-bf16act": lambda: _check_decode(torch.float32, torch.bfloat16),
    "decode-bf16pool-bf16act": lambda: _check_decode(torch.bfloat16, torch.bfloat16),
    "decode-fp32pool-fp32act": lambda: _check_decode(torch.float32, torch.float32),
    "decode-bv8-2warps": lambda: _check_decode(torch.float32, torch.bfloat16, bv=8, num_warps=2),
    "decode-odd-KV-masks": lambda: _check_decode(torch.float32, torch.bfloat16, shape=_ODD, bv=8),
    "verify-fp32-T1": lambda: _check_verify(torch.float32, 1),
    "verify-fp32-T2": lambda: _check_verify(torch.float32, 2),
    "verify-fp32-T3": lambda: _check_verify(torch.float32, 3, torch.float32),
    "verify-bf16pool-fp32inter": lambda: _check_verify(torch.bfloat16, 3, torch.float32),
    "verify-bf16pool-bf16inter": lambda: _check_verify(torch.bfloat16, 3, torch.bfloat16),
    "verify-bf16pool-default-bf16inter": lambda: _check_verify(torch.bfloat16, 2,
                                                               intermediate_dtype=torch.bfloat16),
    "verify-odd-KV-masks": lambda: _check_verify(torch.bfloat16, 2, torch.float32, shape=_ODD, bv=16),
    "commit-fp32-and-decode-replay": lambda: _check_commit(torch.float32, replay_as_decodes=True),
    "commit-bf16": lambda: _check_commit(torch.bfloat16),
    "batch-scoped-intermediate": _check_batch_scoped_intermediate,
    "strided-inputs": _check_noncontiguous_inputs,
    "all-padding": _check_all_padding,
}


def _child_main(out_path: str) -> int:
    from helpers.interpreter import run_interpreter_cases  # tests/ is on the child's PYTHONPATH (conftest)

    return run_interpreter_cases(CASES, out_path)


# ---------------------------------------------------------------------------- parent side


@pytest.mark.parametrize("case", list(CASES))
def test_interpreter_case(interpreter_results: dict, case: str) -> None:
    res = interpreter_results[case]
    assert res["ok"], f"{case}: {res['msg']}"


def test_backend_is_registered() -> None:
    from gdnlab.kernels import backend_names
    assert "triton" in backend_names()


def test_availability_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    from gdnlab.kernels.triton import TritonBackend
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if TritonBackend.availability() == (False, "triton not installed"):
        pytest.skip("triton not installed here")
    ok, why = TritonBackend.availability()
    assert not ok and why.startswith("no CUDA device") and "TRITON_INTERPRET=1" in why
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    ok, why = TritonBackend.availability()
    assert ok and "interpreter" in why
    monkeypatch.setitem(sys.modules, "triton", None)           # makes `import triton` raise ImportError
    assert TritonBackend.availability() == (False, "triton not installed")


def test_module_imports_without_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the backend module must not import Triton: re-import it with ``import triton`` failing."""
    import importlib

    import gdnlab.kernels as kernels_pkg
    from gdnlab.kernels import BackendUnavailable, get_backend
    monkeypatch.setitem(sys.modules, "triton", None)                       # `import triton` -> ImportError
    for mod in ("gdnlab.kernels.triton", "gdnlab.kernels._triton_gdn"):
        monkeypatch.delitem(sys.modules, mod, raising=False)              # restored after the test
    monkeypatch.delattr(kernels_pkg, "triton", raising=False)
    monkeypatch.delattr(kernels_pkg, "_triton_gdn", raising=False)
    fresh = importlib.import_module("gdnlab.kernels.triton")
    assert fresh.TritonBackend.availability() == (False, "triton not installed")
    with pytest.raises(BackendUnavailable, match="triton not installed"):   # only triton is asked about:
        get_backend("triton")                                             # other backends may import triton


@pytest.mark.parametrize("kw, word", [({"bv": 3}, "bv"), ({"bv": 0}, "bv"), ({"num_warps": 3}, "num_warps"),
                                      ({"num_stages": 0}, "num_stages"),
                                      ({"intermediate_dtype": torch.float16}, "intermediate_dtype")], ids=case_id)
def test_constructor_rejects_bad_arguments(kw: dict, word: str) -> None:
    from gdnlab.kernels.triton import TritonBackend
    with pytest.raises(ValueError, match=word):
        TritonBackend(**kw)


def test_cpu_tensors_without_interpreter_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("triton")
    from gdnlab.kernels.triton import TritonBackend
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    inp = make_inputs(SHAPE, 3, 1, seed=0)
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        TritonBackend().decode(*inp.args(), _pool(SHAPE, POOL_SLOTS, torch.float32), _idx(INDICES))


def test_tolerances_catch_a_real_error() -> None:
    """The tolerances are tight enough to flag a wrong head mapping (tile instead of repeat_interleave)."""
    inp = make_inputs(SHAPE, 3, 2, act_dtype=torch.float32, seed=1)
    pool = _pool(SHAPE, POOL_SLOTS, torch.float32)
    o_good, _ = _ref().verify(*inp.args(), pool, _idx(INDICES))
    q_bad = inp.q.flip(2)          # swaps the two q/k heads: a head-mapping bug
    k_bad = inp.k.flip(2)
    o_bad, _ = _ref().verify(q_bad, k_bad, *inp.args()[2:], pool, _idx(INDICES))
    for dt in (torch.float32, torch.bfloat16):
        with pytest.raises(AssertionError):
            tl_.assert_close(o_bad.to(dt), o_good, tl_.output_tol(dt, torch.bfloat16), "bad head mapping")
        tl_.assert_close(o_good.to(dt), o_good, tl_.output_tol(dt, torch.float32), "rounding only")


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--child":
    sys.exit(_child_main(sys.argv[2]))
