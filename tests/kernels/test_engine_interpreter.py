"""The engines' own GDN kernels (SGLang 0.5.23, vLLM 0.33.0) on the CPU, in Triton's interpreter,
against gdnlab's reference.

As in ``tests/strategies/test_strategies_triton_interpreter.py``, every launch runs in ONE child Python with
``TRITON_INTERPRET=1`` (:func:`conftest.interpreter_results`); each case is one test. The engines come
from their installed packages (``bash scripts/install_engines_cpu.sh`` installs SGLang; vLLM's wheel
is too large for CI, so its cases skip there, saying so). Shapes are tiny (H=1, HV=2, K=V=32: SGLang's
ReplaySSM kernel needs K >= 32) and runs short, because the interpreter is slow; the real shape and
every B, T are in ``tests/kernels/test_engine_gpu.py``.
"""
from __future__ import annotations

import sys

import pytest
import torch

from gdnlab.kernels import _engine_import as eng
from gdnlab.shapes import GDNShape

SHAPE = GDNShape("engine-interp", num_q_heads=1, num_v_heads=2, head_k_dim=32, head_v_dim=32)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


# ---------------------------------------------------------------------------- child side
def _pool(P: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    pool = (0.1 * torch.randn((P, *SHAPE.state_shape), generator=gen)).to(dtype)
    pool[0] = 0
    return pool


def _contract(backend: str, dtype: torch.dtype, packed: bool = False) -> None:
    """decode, then verify + commit, of a kernel-contract backend against the float64 reference
    (padding row in the middle, pool slots permuted, slot 0 untouched)."""
    from gdnlab.inputs import make_inputs
    from gdnlab.kernels import get_backend
    from gdnlab.kernels import tolerances as tl_
    from gdnlab.kernels.reference import ReferenceBackend
    from gdnlab.kernels.sglang import pack_inputs
    be, ref = get_backend(backend), ReferenceBackend(compute_dtype=torch.float64)
    extra = be.extra_tolerance if hasattr(be, "extra_tolerance") else (lambda op, d: {})
    idx = torch.tensor([5, -1, 2, 7], dtype=torch.int32)
    live, pad = idx >= 0, idx < 0
    pool0 = _pool(9, dtype, seed=1)
    inp = make_inputs(SHAPE, 4, 1, seed=2)
    inp = pack_inputs(inp) if packed else inp
    pool, pool_ref = pool0.clone(), pool0.clone()
    o, o_ref = be.decode(*inp.args(), pool, idx), ref.decode(*inp.args(), pool_ref, idx)
    ex = extra("decode", dtype)
    tl_.assert_close(o[live], o_ref[live], tl_.output_tol(o.dtype, dtype) + ex.get("output", tl_.Tolerance(0, 0)),
                     f"{backend} decode output")
    tl_.assert_close(pool.float(), pool_ref.float(), tl_.state_tol(dtype) + ex.get("state", tl_.Tolerance(0, 0)),
                     f"{backend} decode pool")
    assert torch.all(o[pad] == 0) and torch.equal(pool[[0, 1, 3]], pool0[[0, 1, 3]])
    assert be.last_path.detail["qkv"] == ("packed view (no copy)" if packed else "concatenated (one cat launch)")
    if not be.verify_state_dtypes:
        return
    T = 3
    inp = make_inputs(SHAPE, 4, T, seed=3)
    pool, pool_ref = pool0.clone(), pool0.clone()
    inter = torch.full((4, T, *SHAPE.state_shape), 3.0, dtype=dtype)
    o, _ = be.verify(*inp.args(), pool, idx, intermediate=inter)
    o_ref, inter_ref = ref.verify(*inp.args(), pool_ref, idx)
    tl_.assert_close(o[live], o_ref[live], tl_.output_tol(o.dtype, dtype), f"{backend} verify output")
    tl_.assert_close(inter[live].float(), inter_ref[live].float(), tl_.intermediate_tol(dtype, dtype),
                     f"{backend} verify intermediate")
    assert torch.all(o[pad] == 0) and torch.all(inter[pad] == 3.0) and torch.equal(pool, pool0)
    accepted = torch.tensor([3, 0, 1, 2], dtype=torch.int32)
    be.commit(pool, idx, inter, accepted)
    ref.commit(pool_ref, idx, inter_ref, accepted)
    tl_.assert_close(pool.float(), pool_ref.float(), tl_.commit_tol(dtype, dtype), f"{backend} pool after commit")
    assert torch.equal(pool[[0, 1, 3]], pool0[[0, 1, 3]]), "commit touched slots no live row owns"


def _engine_padding() -> None:
    """``contract_padding=False`` runs SGLang's launches as SGLang does: live rows are the same, padding
    rows' outputs are not zeroed and their intermediate rows are written (SGLang never reads them)."""
    from gdnlab.inputs import make_inputs
    from gdnlab.kernels import make_backend
    idx = torch.tensor([5, -1, 2], dtype=torch.int32)
    inp, pool = make_inputs(SHAPE, 3, 2, seed=4), _pool(8, torch.float32, seed=4)
    outs = {}
    for engine in ("sglang", None):
        be = make_backend("sglang_triton", engine=engine)
        inter = torch.full((3, 2, *SHAPE.state_shape), 3.0)
        outs[engine] = (be.verify(*inp.args(), pool.clone(), idx, intermediate=inter)[0], inter, be)
    (o_e, i_e, be_e), (o_c, i_c, be_c) = outs["sglang"], outs[None]
    assert be_e.contract_padding is False and be_e.gdnlab_options == {"contract_padding": False}
    assert be_c.contract_padding is True
    assert torch.equal(o_e[[0, 2]], o_c[[0, 2]]) and torch.equal(i_e[[0, 2]], i_c[[0, 2]])
    assert torch.all(o_c[1] == 0) and not torch.all(o_e[1] == 0)
    assert torch.all(i_c[1] == 3.0) and not torch.all(i_e[1] == 3.0)


def _strategy(backend: str, name: str, dtype: torch.dtype, steps: int, T: int = 3, drop_every: int = 3,
              **opts) -> None:
    from gdnlab.strategies import get_strategy
    from gdnlab.strategies.check import check_strategy
    s = get_strategy(name, backend=backend, **opts)
    assert s.backend == backend
    res = check_strategy(s, SHAPE, batch=3, T=T, steps=steps, state_dtype=dtype, seed=3, drop_every=drop_every)
    assert res.ok, res.summary()
    assert s.last_path.op == "commit" or name == "token_slots"


def _replay_cursor_semantics() -> None:
    """SGLang's ring cursors after each commit: ``write_pos`` grows by the accepted count and the
    row folds (write_pos back to 0, cache_base advanced) once ``write_pos + 2 T > L``."""
    from gdnlab.inputs import make_inputs
    from gdnlab.strategies import get_strategy
    s = get_strategy("replay_ring", backend="sglang_triton", ring_slots=8)
    pool = _pool(4, torch.float32, seed=5)
    idx = torch.tensor([1, 2], dtype=torch.int32)
    sc = s.allocate(pool, 2, 2)
    seen = []
    for step, acc in enumerate(([2, 1], [2, 1], [1, 1])):
        s.verify(*make_inputs(SHAPE, 2, 2, seed=step).args(), pool, idx, sc)
        s.commit(pool, idx, sc, torch.tensor(acc, dtype=torch.int32))
        seen.append((sc.write_pos[1:3].tolist(), sc.cache_base[1:3].tolist()))
    # L=8, T=2: a row folds when write_pos + 2T > L, i.e. write_pos >= 5: row 1 at the third commit
    assert seen == [([2, 1], [0, 0]), ([4, 2], [0, 0]), ([0, 3], [5, 0])], seen


def _two_layers(backend: str, name: str, **opts) -> None:
    """Two layers stepped as an engine steps a model (scratches sharing their bookkeeping, one
    :class:`StepPlan` per step) end in the same committed states as each layer stepped alone."""
    from gdnlab.inputs import make_inputs
    from gdnlab.strategies import get_strategy
    from gdnlab.strategies.base import StepPlan
    s = get_strategy(name, backend=backend, **opts)
    B, T = 2, 2
    P = 1 + (B + 1) * s.slots_per_request(T)
    pools = [_pool(P, torch.float32, seed=20 + i) for i in range(2)]
    idx = torch.tensor([2, 1], dtype=torch.int32)
    results = []
    for shared in (True, False):
        ps = [p.clone() for p in pools]
        sc0 = s.allocate(ps[0], B, T)
        scs = [sc0, s.allocate(ps[1], B, T, share=sc0 if shared else None)]
        for step, acc in enumerate(([2, 1], [1, 2], [2, 2])):
            plan = StepPlan() if shared else None
            inp = [make_inputs(SHAPE, B, T, seed=10 * step + i) for i in range(2)]
            for i in range(2):
                s.verify(*inp[i].args(), ps[i], idx, scs[i], plan=plan)
            for i in range(2):
                s.commit(ps[i], idx, scs[i], torch.tensor(acc, dtype=torch.int32), plan=plan)
        results.append([s.state(ps[i], idx, scs[i]) for i in range(2)])
    for a, b in zip(*results):
        assert torch.equal(a, b)


def _vllm(fn):
    def run():
        ok, why = eng.check("vllm")
        if not ok:
            raise _Skip(why)
        fn()
    return run


class _Skip(Exception):
    pass


CASES = {
    **{f"sglang_triton-contract-{k}": (lambda d=d: _contract("sglang_triton", d)) for k, d in DTYPES.items()},
    "sglang_triton-contract-packed-qkv": lambda: _contract("sglang_triton", torch.bfloat16, packed=True),
    "sglang_triton-engine-padding": _engine_padding,
    **{f"sglang_triton-full_cache-{k}": (lambda d=d: _strategy("sglang_triton", "full_cache", d, steps=6))
       for k, d in DTYPES.items()},
    **{f"sglang_triton-replay_ring-{k}": (lambda d=d: _strategy("sglang_triton", "replay_ring", d, steps=10,
                                                                ring_slots=8)) for k, d in DTYPES.items()},
    "sglang_triton-replay_ring-T2-L16": lambda: _strategy("sglang_triton", "replay_ring", torch.float32, steps=8,
                                                         T=2, ring_slots=16),
    "sglang_triton-replay_ring-cursors": _replay_cursor_semantics,
    **{f"sglang_triton-{n}-two-layers-one-plan": (lambda n=n, o=o: _two_layers("sglang_triton", n, **o))
       for n, o in (("full_cache", {}), ("replay_ring", {"ring_slots": 4}))},
    "vllm_triton-token_slots-two-layers-one-plan": _vllm(lambda: _two_layers("vllm_triton", "token_slots")),
    **{f"vllm_triton-contract-{k}": _vllm(lambda d=d: _contract("vllm_triton", d)) for k, d in DTYPES.items()},
    **{f"vllm_triton-token_slots-{k}": _vllm(lambda d=d: _strategy("vllm_triton", "token_slots", d, steps=6,
                                                                   drop_every=0)) for k, d in DTYPES.items()},
}


def _child_main(out_path: str) -> int:
    from helpers.interpreter import run_interpreter_cases  # tests/ is on the child's PYTHONPATH (conftest)

    def wrap(fn):
        def run():
            try:
                fn()
            except _Skip as exc:
                raise RuntimeError(f"SKIP: {exc}") from None
        return run

    return run_interpreter_cases({k: wrap(v) for k, v in CASES.items()}, out_path)


# ---------------------------------------------------------------------------- parent side
INTERPRETER_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def _sglang() -> None:
    ok, why = eng.check("sglang")
    if not ok:
        pytest.skip(f"SGLang engine backends not testable here: {why}")


@pytest.mark.parametrize("case", list(CASES))
def test_interpreter_case(_sglang, interpreter_results: dict, case: str) -> None:
    res = interpreter_results[case]
    if not res["ok"] and "SKIP: " in res["msg"]:
        pytest.skip(res["msg"].split("SKIP: ", 1)[1].splitlines()[0])
    assert res["ok"], f"{case}: {res['msg']}"


def test_engine_backends_need_the_interpreter_or_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CUDA and without TRITON_INTERPRET the Triton engine paths say exactly why."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    from gdnlab.kernels import available_backends
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    st = available_backends()
    for name, engine in (("sglang_triton", "sglang"), ("vllm_triton", "vllm")):
        ok, why = eng.check(engine)
        assert not st[name].available
        assert ("no CUDA device" in st[name].reason) if ok else (st[name].reason == why)
    assert "needs a CUDA GPU" in st["sglang_flashinfer"].reason or not eng.check("sglang")[0]


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--child":
    sys.exit(_child_main(sys.argv[2]))
