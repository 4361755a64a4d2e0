"""How gdnlab wraps its Triton kernels (:func:`gdnlab.kernels._triton_gdn.jit_kernels`), on the CPU:
the names traces show, one cache per mode, the shared per-token device function, and the compiled
path (PTX for sm_90a, built offline: Triton compiles without a GPU) that the interpreter tests
(``tests/kernels/test_triton_interpreter.py``, ``tests/strategies/test_strategies_triton_interpreter.py``) do not reach.
"""
from __future__ import annotations

import inspect

import pytest

triton = pytest.importorskip("triton", reason="triton not installed")

from gdnlab.analysis.phases import assign_phases  # noqa: E402 - after the skip (triton is needed below)
from gdnlab.kernels import _triton_gdn as tg  # noqa: E402 - after the skip: the module imports triton
from gdnlab.strategies import _triton_kernels as tk  # noqa: E402 - after the skip: the module imports triton


@pytest.fixture
def compiled_mode(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def test_kernels_keep_the_names_traces_show(compiled_mode):
    dec = tg.get_kernel()
    rec, scatter = tk.get_kernels()
    assert [k.__name__ for k in (dec, rec, scatter)] == ["_gdn_fused_recurrent", "_strategy_recurrent",
                                                         "_scatter_commit"]
    # the trace readers find them by these names
    assert assign_phases(["phase_marker_verify", rec.__name__, "phase_marker_commit", scatter.__name__],
                         "full_cache") == ["marker", "verify", "marker", "commit"]


def test_one_wrapper_per_mode_and_the_mode_must_match(compiled_mode):
    assert tk.get_kernels() is tk.get_kernels() and tg.get_kernel() is tg.get_kernel()
    assert isinstance(tg.get_kernel(), triton.runtime.jit.JITFunction)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        tg.jit_kernels((tg._gdn_fused_recurrent,), interpret=True)


def test_both_kernels_run_the_one_per_token_function(compiled_mode):
    """The decode/verify kernel and the strategies' kernel call the same ``gdn_token``, and each
    wrapped kernel sees it wrapped in the kernel's own mode (its module keeps the plain function)."""
    for raw in (tg._gdn_fused_recurrent, tk._strategy_recurrent):
        assert "gdn_token" in raw.__code__.co_names and "tl.sum(b_s * b_q" not in inspect.getsource(raw)
    dec = tg.get_kernel()
    rec, _ = tk.get_kernels()
    for kern in (dec, rec):
        helper = kern.fn.__globals__["gdn_token"]
        assert isinstance(helper, triton.runtime.jit.JITFunction) and helper.fn.__code__ is tg.gdn_token.__code__
    assert rec.fn.__globals__["_replay"].fn.__code__ is tk._replay.__code__
    assert not isinstance(tg.gdn_token, triton.runtime.jit.JITFunction)       # the module keeps the plain one


def _ptx(kernel, const: dict, ptr_types: dict) -> tuple[str, str]:
    from triton.backends.compiler import GPUTarget

    sig = {}
    for p in inspect.signature(kernel.fn).parameters:
        sig[p] = ("constexpr" if p in const else "*" + ptr_types.get(p, "i32") if p.endswith("_ptr")
                  else "fp32" if p == "scale" else "i64" if p.startswith("s_") else "i32")
    src = triton.compiler.ASTSource(fn=kernel, signature=sig, constexprs=const)
    try:
        c = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 1, "num_stages": 3})
    except (RuntimeError, FileNotFoundError, OSError) as exc:       # no ptxas / CUDA backend in this Triton
        pytest.skip(f"Triton cannot build sm_90a code offline here: {type(exc).__name__}: {exc}")
    return c.metadata.name, c.asm["ptx"]


def test_compiled_kernels_build_offline_for_sm90(compiled_mode, monkeypatch, tmp_path):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))           # nothing written to the user's cache
    shape = dict(H=2, HV=4, K=16, V=16, BK=16, BV=16, NV=1)
    acts = {p: "bf16" for p in ("q_ptr", "k_ptr", "v_ptr", "a_ptr", "b_ptr", "o_ptr")}
    acts.update(A_log_ptr="fp32", dt_bias_ptr="fp32", pool_ptr="bf16", inter_ptr="bf16")
    name, ptx = _ptx(tg.get_kernel(), dict(shape, WRITE_POOL=False, STORE_INTERMEDIATE=True), acts)
    assert name == "_gdn_fused_recurrent" and ".entry _gdn_fused_recurrent(" in ptx
    rec, scatter = tk.get_kernels()
    flags = dict.fromkeys(("REPLAY", "REPLAY_WRITE", "TOKENS", "STORE_INTER", "STORE_SLOTS", "STASH"), True)
    stash = dict(acts, ru_ptr="fp32", rk_ptr="fp32", rg_ptr="fp32", wu_ptr="fp32", wk_ptr="fp32", wg_ptr="fp32")
    name, ptx = _ptx(rec, dict(shape, **flags), stash)
    assert name == "_strategy_recurrent" and ".entry _strategy_recurrent(" in ptx
    code = [ln.split()[0] for ln in ptx.split(".entry _strategy_recurrent(")[1].split("\n}")[0].splitlines()
            if ln.strip() and not ln.lstrip().startswith("//")]
    assert code and not any(op.startswith("call") for op in code)             # device functions are inlined
    name, _ = _ptx(scatter, {k: v for k, v in shape.items() if k != "H"}, {"pool_ptr": "bf16", "inter_ptr": "bf16"})
    assert name == "_scatter_commit"


def _constexpr_names(fn) -> set[str]:
    return {name for name, ann in inspect.get_annotations(fn).items() if "constexpr" in str(ann)}


def test_wrapped_copies_keep_their_constexpr_parameters(compiled_mode):
    """A wrapped copy declares the same ``tl.constexpr`` parameters as the function it copies: Triton
    reads them from the annotations, and a compiled helper (unlike the interpreter) cannot build
    ``tl.arange(0, BK)`` from a runtime ``BK``."""
    dec = tg.get_kernel()
    rec, scatter = tk.get_kernels()
    wrapped = [dec, rec, scatter]
    for kern in (dec, rec):
        wrapped += [v for v in kern.fn.__globals__.values() if isinstance(v, triton.runtime.jit.JITFunction)]
    checked = 0
    for jf in wrapped:
        want = _constexpr_names(jf.fn)
        original = getattr(tg, jf.__name__, None) or getattr(tk, jf.__name__)
        assert _constexpr_names(original) == want
        assert {p.name for p in jf.params if p.is_constexpr} == want, jf.__name__
        checked += bool(want)
    assert checked >= 4                                  # the kernels and program_tile declare constexprs
