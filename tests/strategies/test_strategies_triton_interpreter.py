"""The Triton strategies on the CPU, through Triton's interpreter (``TRITON_INTERPRET=1``).

As in ``tests/kernels/test_triton_interpreter.py``, every launch runs in ONE child Python with
``TRITON_INTERPRET=1`` and ``CUDA_VISIBLE_DEVICES=""`` set before anything imports Triton (so a GPU
test later in the same pytest run still compiles); the child writes a JSON verdict per case and the
parent turns each into one test. Shapes are tiny (H=2, HV=4, K=V=16) and runs short (a few steps),
because the interpreter is slow; the 64-step runs at the real shape are in ``test_strategies_gpu.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from helpers.shapes import INTERP_SMALL

REPO = Path(__file__).resolve().parents[2]
SHAPE = INTERP_SMALL
NAMES = ("full_cache", "token_slots", "recompute", "recompute_fused", "replay_ring")


# ---------------------------------------------------------------------------- child side
def _check(name: str, state_dtype: torch.dtype, steps: int, T: int = 3, bv: int = 16, **opts) -> None:
    from gdnlab.strategies import get_strategy
    from gdnlab.strategies.check import check_strategy
    s = get_strategy(name, backend="triton", bv=bv, **opts)
    assert s.backend == "triton" and s.ops.name == "triton"
    res = check_strategy(s, SHAPE, batch=3, T=T, steps=steps, state_dtype=state_dtype, seed=3, drop_every=3)
    assert res.ok, res.summary()
    assert s.ops.last_launch.get("interpreter") is True


def _check_ops_all_flags() -> None:
    """One launch with replay + write + tokens + slot stores + stash, against :class:`TorchOps`."""
    from gdnlab.inputs import make_inputs
    from gdnlab.kernels import tolerances as tl_
    from gdnlab.strategies.ops import Replay, Stash, Tokens, TorchOps
    from gdnlab.strategies.triton import TritonOps
    gen = torch.Generator().manual_seed(0)
    B, T, L, P = 3, 2, 4, 12
    HV, V, K = SHAPE.HV, SHAPE.V, SHAPE.K
    inp = make_inputs(SHAPE, B, T, seed=4)
    pool0 = (0.1 * torch.randn((P, HV, V, K), generator=gen)).to(torch.bfloat16)
    ring = (0.3 * torch.randn((5, L, HV, V), generator=gen), torch.nn.functional.normalize(
        torch.randn((5, L, HV, K), generator=gen), dim=-1), -torch.rand((5, L, HV), generator=gen))
    src = torch.tensor([4, -1, 9], dtype=torch.int32)
    row, cnt = torch.tensor([2, 0, 4], dtype=torch.int32), torch.tensor([3, 2, 0], dtype=torch.int32)
    dst = torch.tensor([[1, 2], [3, 5], [6, 7]], dtype=torch.int32)
    out = {}
    for ops in (TorchOps(), TritonOps(bv=8)):
        pool = pool0.clone()
        st = tuple(torch.full((5, 2 * T, *x.shape[2:]), 9.0) for x in ring)
        o = torch.zeros((B, T, HV, V), dtype=torch.bfloat16)
        ops.recurrent(pool, src, replay=Replay(*ring, row, cnt, write=True),
                      tokens=Tokens(inp, K ** -0.5, o, dst=dst,
                                    stash=Stash(*st, torch.tensor([1, 2, 3], dtype=torch.int32),
                                                torch.tensor([1, 0, 2], dtype=torch.int32))))
        out[ops.name] = (pool, o, st)
    (p_r, o_r, s_r), (p_t, o_t, s_t) = out["torch"], out["triton"]
    tl_.assert_close(o_t, o_r, tl_.output_tol(torch.bfloat16, torch.bfloat16), "output")
    tl_.assert_close(p_t.float(), p_r.float(), tl_.state_tol(torch.bfloat16), "pool (replay write + slots)")
    assert torch.equal(p_t[[0, 8, 10, 11]], pool0[[0, 8, 10, 11]]), "wrote a slot nobody named"
    assert torch.equal(p_t[[3, 5]], pool0[[3, 5]]), "padding row's dst slots were written"
    # u = beta (v - S k) comes from the replayed state as stored in the bf16 pool: one bf16 ulp of S
    # may round differently on the two sides, so u gets the bf16-state tolerance; k and g do not see S
    for a, b, nm in zip(s_t, s_r, "ukg"):
        tl_.assert_close(a, b, tl_.state_tol(torch.bfloat16 if nm == "u" else torch.float32), f"stash {nm}")
    assert torch.all(s_t[0][2] == 9.0), "padding row's stash entries were written"


def _capturable(name: str) -> None:
    """verify/commit/fold of a Triton strategy with the real :class:`TritonOps` host code under the
    host-sync guard; only the kernel launch (which the interpreter runs on the host) is exempt."""
    from gdnlab.strategies import _triton_kernels as tk
    from gdnlab.strategies.host_sync import check_capturable, opaque
    from gdnlab.strategies.triton import STRATEGIES

    class Launcher:
        def __init__(self, kernel) -> None:
            self.kernel = kernel

        def __getitem__(self, grid):
            return opaque(self.kernel[grid])

    real = tk.get_kernels
    tk.get_kernels = lambda interpret=None: tuple(Launcher(k) for k in real(interpret))
    try:
        s = STRATEGIES[name](bv=16)
        check_capturable(s, SHAPE, batch=3, T=3, state_dtype=torch.bfloat16, steps=3, seed=6)
        assert s.ops.last_launch.get("interpreter") is True
    finally:
        tk.get_kernels = real


CASES = {
    **{f"{n}-fp32": (lambda n=n: _check(n, torch.float32, steps=6)) for n in NAMES},
    **{f"{n}-bf16": (lambda n=n: _check(n, torch.bfloat16, steps=4)) for n in NAMES},
    "full_cache-bv8-two-V-tiles": lambda: _check("full_cache", torch.bfloat16, steps=3, bv=8),
    "replay_ring-bv8-small-ring": lambda: _check("replay_ring", torch.float32, steps=6, T=2, bv=8, ring_slots=3),
    "recompute_fused-bv8": lambda: _check("recompute_fused", torch.float32, steps=4, T=2, bv=8),
    "ops-all-flags": _check_ops_all_flags,
    **{f"{n}-graph-capturable": (lambda n=n: _capturable(n)) for n in NAMES},
}


def _child_main(out_path: str) -> int:
    from helpers.interpreter import run_interpreter_cases  # tests/ is on the child's PYTHONPATH (conftest)

    return run_interpreter_cases(CASES, out_path)


# ---------------------------------------------------------------------------- parent side
#: the strategies' interpreter child runs many steps per case
INTERPRETER_TIMEOUT_S = 900


@pytest.mark.parametrize("case", list(CASES))
def test_interpreter_case(interpreter_results: dict, case: str) -> None:
    res = interpreter_results[case]
    assert res["ok"], f"{case}: {res['msg']}"


def test_available_under_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("triton")
    from gdnlab.strategies import available_strategies
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    st = available_strategies("triton")
    assert all(st[(n, "triton")].available for n in NAMES), {k: str(v) for k, v in st.items()}


def test_module_imports_without_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the Triton strategy module must not import Triton."""
    import importlib
    monkeypatch.setitem(sys.modules, "triton", None)
    for mod in ("gdnlab.strategies.triton", "gdnlab.strategies._triton_kernels"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    fresh = importlib.import_module("gdnlab.strategies.triton")
    assert fresh.availability() == (False, "triton not installed")
    assert set(fresh.STRATEGIES) >= set(NAMES)


def test_cpu_tensors_without_interpreter_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("triton")
    from gdnlab.inputs import make_inputs
    from gdnlab.strategies.triton import STRATEGIES
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    s = STRATEGIES["recompute"]()
    pool = torch.zeros(4, *SHAPE.state_shape)
    sc = s.allocate(pool, 1, 2)
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        s.verify(*make_inputs(SHAPE, 1, 2).args(), pool, torch.tensor([1], dtype=torch.int32), sc)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--child":
    sys.exit(_child_main(sys.argv[2]))
