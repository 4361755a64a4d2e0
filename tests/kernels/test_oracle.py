"""An independent float64 oracle for the GDN contract, and the backends checked against it.

The oracle (:func:`oracle`) is written from the maths in the docstring of :mod:`gdnlab.kernels.base`
alone, one row, one value head and one token at a time, in float64 with plain torch ops and Python
scalars; it shares no code with :mod:`gdnlab.kernels.reference`. The reference backend must match it
(and every other backend is tested against the reference), so a wrong term in the reference's
recurrence is caught here rather than copied into every comparison.

The data is chosen so that every term of the recurrence moves the result by far more than the
tolerances: random non-zero starting states (``N(0, 0.5^2)``), ``b ~ N(0, 2^2)`` (both signs, so the
sign of ``sigmoid(b)``'s argument matters), per-head decays ``exp(g)`` spread over ~[0.3, 0.9] (far
from 1), non-zero ``dt_bias``, ``a + dt_bias`` of both signs (softplus is not the identity there),
``H=2 < HV=6`` (GQA ratio 3, where ``repeat_interleave`` and ``tile`` map heads differently), K != V,
one live row whose q/k have squared norms ~1e-5 (so the L2 norm's ``+ 1e-6`` moves them by ~5 %),
a custom scale next to the default ``K**-0.5``, and a padding row. Pools are float32 and bfloat16;
tolerances come from :mod:`gdnlab.kernels.tolerances`.

The Triton backend runs against the same oracle in Triton's CPU interpreter, in one child process with
``TRITON_INTERPRET=1`` (the approach of ``tests/kernels/test_triton_interpreter.py``); with a CUDA device, the
GPU backends (Triton compiled, FlashInfer) run against it at K = V = 128.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from gdnlab import backends
from gdnlab.kernels import BackendUnavailable, get_backend
from gdnlab.kernels import tolerances as tol
from gdnlab.kernels.base import GDNBackend

REPO = Path(__file__).resolve().parents[2]

L2_EPS = 1e-6                     # from the contract: x * rsqrt(sum x^2 + 1e-6)
SOFTPLUS_THRESHOLD = 20.0         # softplus(x) = x above this (beta 1), as the contract's kernels pass
INDICES = [5, -1, 2, 9]           # scattered pool slots, a padding row; slot 0 is reserved by the contract
TINY_ROW = 3                      # live row whose q/k norms are ~3e-3 (the L2 epsilon matters there)
POOL_SLOTS = 11
SENTINEL = 7.0                    # pre-fill of intermediate buffers: padding rows must keep it


# ---------------------------------------------------------------------------- the oracle
def _softplus(x: float) -> float:
    return x if x > SOFTPLUS_THRESHOLD else math.log1p(math.exp(x))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / math.sqrt(float((x * x).sum()) + L2_EPS)


def oracle(q, k, v, a, b, A_log, dt_bias, pool, indices, scale: float | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The contract's maths, token by token, in float64.

    Args: as a backend's ``verify`` (CPU tensors, any dtypes; read as stored, then widened).
    Returns ``(o [B,T,HV,V], states [B,T,HV,V,K])``, both float64: the output of each token and the
    state after it. Padding rows: ``o`` zeros, states NaN (they have no state).
    """
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    group = HV // H
    s = K ** -0.5 if scale is None else float(scale)
    o = torch.zeros((B, T, HV, V), dtype=torch.float64)
    states = torch.full((B, T, HV, V, K), float("nan"), dtype=torch.float64)
    for i in range(B):
        slot = int(indices[i])
        if slot < 0:
            continue
        for hv in range(HV):
            h = hv // group                                         # q/k head of value head hv
            S = pool[slot, hv].to(torch.float64).clone()            # [V, K]
            A = math.exp(float(A_log[hv]))
            bias = float(dt_bias[hv])
            for t in range(T):
                qn = _unit(q[i, t, h].to(torch.float64)) * s        # [K]
                kn = _unit(k[i, t, h].to(torch.float64))            # [K]
                vt = v[i, t, hv].to(torch.float64)                  # [V]
                g = -A * _softplus(float(a[i, t, hv]) + bias)
                beta = _sigmoid(float(b[i, t, hv]))
                S = math.exp(g) * S
                u = beta * (vt - S @ kn)                            # [V]
                S = S + torch.outer(u, kn)
                o[i, t, hv] = S @ qn
                states[i, t, hv] = S
    return o, states


def oracle_decays(a, A_log, dt_bias) -> torch.Tensor:
    """``exp(g)`` for every (row, token, value head), float64 (for checking the test data)."""
    out = torch.empty(a.shape, dtype=torch.float64)
    for idx in torch.cartesian_prod(*(torch.arange(n) for n in a.shape)).tolist():
        hv = idx[-1]
        out[tuple(idx)] = math.exp(-math.exp(float(A_log[hv])) * _softplus(float(a[tuple(idx)]) + float(dt_bias[hv])))
    return out


# ---------------------------------------------------------------------------- cases and data
_DT = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Case:
    """One call configuration; ``id`` is the pytest id."""

    T: int
    pool: str = "fp32"          # state pool dtype
    act: str = "fp32"           # q/k/v/a/b dtype
    scale: float | None = None  # None: the default K**-0.5
    H: int = 2
    HV: int = 6
    K: int = 8
    V: int = 12
    seed: int = 0

    @property
    def id(self) -> str:
        sc = "scale-default" if self.scale is None else f"scale{self.scale:g}"
        return f"T{self.T}-H{self.H}-HV{self.HV}-K{self.K}-V{self.V}-{self.pool}pool-{self.act}act-{sc}"


CASES = [
    Case(T=1, seed=1),
    Case(T=3, scale=0.7, seed=2),
    Case(T=8, seed=3),
    Case(T=3, pool="bf16", act="bf16", seed=4),
    Case(T=8, pool="bf16", act="bf16", scale=0.5, seed=5),
    Case(T=3, act="bf16", seed=6),
    Case(T=3, H=2, HV=4, K=16, V=8, scale=0.3, seed=7),
]


def make_data(case: Case) -> dict:
    """Inputs, pool and indices for ``case`` on the CPU (seeded)."""
    gen = torch.Generator().manual_seed(1000 + case.seed)
    B = len(INDICES)

    def randn(*shape: int, std: float = 1.0) -> torch.Tensor:
        return std * torch.randn(shape, generator=gen, dtype=torch.float64)

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)

    q, k = randn(B, case.T, case.H, case.K), randn(B, case.T, case.H, case.K)
    q[TINY_ROW] *= 1e-3                        # |x|^2 ~ K * 1e-6: the L2 epsilon is a visible term
    k[TINY_ROW] *= 1e-3
    act = _DT[case.act]
    return {
        "q": q.to(act), "k": k.to(act),
        "v": randn(B, case.T, case.HV, case.V).to(act),
        "a": uniform(-0.5, 0.5, B, case.T, case.HV).to(act),
        "b": randn(B, case.T, case.HV, std=2.0).to(act),
        "A_log": torch.log(uniform(0.3, 0.9, case.HV)).float(),
        "dt_bias": uniform(-0.5, 0.5, case.HV).float(),
        "pool": randn(POOL_SLOTS, case.HV, case.V, case.K, std=0.5).to(_DT[case.pool]),
        "indices": torch.tensor(INDICES, dtype=torch.int32),
        "scale": case.scale,
    }


def _args(d: dict, device: torch.device, t: int | None = None) -> tuple:
    sl = slice(None) if t is None else slice(t, t + 1)
    return (d["q"][:, sl].to(device), d["k"][:, sl].to(device), d["v"][:, sl].to(device),
            d["a"][:, sl].to(device), d["b"][:, sl].to(device), d["A_log"].to(device), d["dt_bias"].to(device))


def _live() -> tuple[list[int], list[int]]:
    rows = [i for i, s in enumerate(INDICES) if s >= 0]
    return rows, [INDICES[i] for i in rows]


def _untouched(backend: GDNBackend, op: str, dtype: torch.dtype, live_slots: list[int]) -> list[int]:
    """Pool slots a call must leave bit-identical: all but the live rows' slots and the slots the
    backend declares as padding scratch (``scratch_slots_for``, FlashInfer's bf16 decode: slot 0)."""
    fn = getattr(backend, "scratch_slots_for", None)
    scratch = set(fn(op, dtype)) if fn is not None else set()
    return [s for s in range(POOL_SLOTS) if s not in live_slots and s not in scratch]


# ---------------------------------------------------------------------------- checks (any backend)
def check_verify_and_commit(backend: GDNBackend, case: Case, device: torch.device,
                            inter_dtype: torch.dtype = torch.float32) -> None:
    """verify (outputs, intermediate states, pool untouched) then commit with random accepted lengths."""
    d = make_data(case)
    o_ref, states = oracle(*_args(d, torch.device("cpu")), d["pool"], d["indices"], d["scale"])
    pool0 = d["pool"].to(device, copy=True)        # a copy, also on the CPU: d["pool"] stays the original
    pool = pool0.clone()
    idx = d["indices"].to(device)
    B, HV, V, K = len(INDICES), case.HV, case.V, case.K
    inter = torch.full((B, case.T, HV, V, K), SENTINEL, dtype=inter_dtype, device=device)
    o, inter = backend.verify(*_args(d, device), pool, idx, d["scale"], intermediate=inter)
    o, inter, pool = o.cpu(), inter.cpu(), pool.cpu()
    pdt = pool.dtype
    rows, slots = _live()
    assert torch.equal(pool, pool0.cpu()), "verify changed the pool"
    assert o.dtype == d["q"].dtype and o.shape == (B, case.T, HV, V), f"output {o.dtype} {tuple(o.shape)}"
    tol.assert_close(o[rows], o_ref[rows], tol.output_tol(o.dtype, pdt), "verify output vs oracle")
    assert torch.all(o[1] == 0), "padding row output must be zeros"
    tol.assert_close(inter[rows], states[rows], tol.intermediate_tol(inter.dtype, pdt),
                     "verify intermediate states vs oracle")
    if not (getattr(backend, "writes_padding_intermediate", False) and pdt == torch.bfloat16):
        assert torch.all(inter[1] == SENTINEL), "padding row's intermediate rows must not be written"

    gen = torch.Generator().manual_seed(2000 + case.seed)
    accepted = torch.randint(1, case.T + 1, (B,), generator=gen, dtype=torch.int32)
    backend.commit(pool0, idx, inter.to(device), accepted.to(device))
    after = pool0.cpu()
    want = torch.stack([states[i, int(accepted[i]) - 1] for i in rows])
    tol.assert_close(after[slots], want, tol.commit_tol(pdt, inter.dtype),
                     f"pool after commit (accepted {accepted.tolist()}) vs oracle")
    others = _untouched(backend, "commit", pdt, slots)
    assert torch.equal(after[others], d["pool"][others]), "commit wrote a pool slot it does not own"


def check_decode(backend: GDNBackend, case: Case, device: torch.device) -> None:
    """T sequential decodes on the pool: every token's output and the final pool rows."""
    d = make_data(case)
    o_ref, states = oracle(*_args(d, torch.device("cpu")), d["pool"], d["indices"], d["scale"])
    pool = d["pool"].to(device, copy=True)        # a copy, also on the CPU: d["pool"] stays the original
    idx = d["indices"].to(device)
    rows, slots = _live()
    pdt = pool.dtype
    for t in range(case.T):
        o = backend.decode(*_args(d, device, t), pool, idx, d["scale"]).cpu()
        assert o.dtype == d["q"].dtype and o.shape == (len(INDICES), 1, case.HV, case.V)
        tol.assert_close(o[rows, 0], o_ref[rows, t], tol.output_tol(o.dtype, pdt), f"decode output, token {t}")
        assert torch.all(o[1] == 0), "padding row output must be zeros"
    after = pool.cpu()
    tol.assert_close(after[slots], states[rows, case.T - 1], tol.state_tol(pdt),
                     f"pool after {case.T} decode(s) vs oracle")
    others = _untouched(backend, "decode", pdt, slots)
    assert torch.equal(after[others], d["pool"][others]), "decode wrote a pool slot it does not own"


# ---------------------------------------------------------------------------- the data has the properties
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_data_exercises_every_term(case: Case) -> None:
    d = make_data(case)
    decays = oracle_decays(d["a"], d["A_log"], d["dt_bias"])
    assert 0.25 < float(decays.min()) and float(decays.max()) < 0.95, "decays must stay in ~[0.3, 0.9]"
    assert float(decays.max() - decays.min()) > 0.2, "decays must vary"
    b = d["b"].double()
    assert float(b.min()) < -1 and float(b.max()) > 1, "b must take both signs, well away from 0"
    x = d["a"].double() + d["dt_bias"].double()
    assert float(x.min()) < 0 < float(x.max()), "a + dt_bias must take both signs (softplus != identity)"
    assert float(d["dt_bias"].abs().min()) > 0 and float(d["A_log"].abs().min()) > 0
    assert float(d["pool"].double().abs().mean()) > 0.2, "starting states must be non-zero"
    interleave = [hv // (case.HV // case.H) for hv in range(case.HV)]
    tile = [hv % case.H for hv in range(case.HV)]
    assert case.HV > case.H and interleave != tile, "GQA ratio > 1 where tile and repeat_interleave differ"
    tiny = float((d["k"][TINY_ROW].double() ** 2).sum(-1).max())
    assert tiny < 1e-4, "one live row must have q/k norms where the L2 epsilon matters"
    assert INDICES[TINY_ROW] >= 0 and INDICES[1] < 0


def test_oracle_terms_on_a_hand_case() -> None:
    """One token, one head, K = V = 1, zero state: o = beta v k_n q_n by hand (k_n = k/sqrt(k^2+eps))."""
    one = torch.ones((1, 1, 1, 1), dtype=torch.float64)
    q, k, v = 2 * one, 3 * one, 5 * one
    f64 = {"dtype": torch.float64}
    a, b = torch.full((1, 1, 1), 0.25, **f64), torch.full((1, 1, 1), -1.5, **f64)
    A_log, dt_bias = torch.tensor([math.log(0.5)], **f64), torch.tensor([0.1], **f64)
    pool = torch.zeros((1, 1, 1, 1), **f64)
    o, st = oracle(q, k, v, a, b, A_log, dt_bias, pool, torch.tensor([0]), scale=0.5)
    kn, qn = 3 / math.sqrt(9 + 1e-6), 2 / math.sqrt(4 + 1e-6) * 0.5
    beta = 1 / (1 + math.exp(1.5))
    assert math.isclose(float(st[0, 0, 0]), beta * 5 * kn, rel_tol=1e-12)
    assert math.isclose(float(o[0, 0, 0]), beta * 5 * kn * qn, rel_tol=1e-12)
    # with a state: S1 = exp(g) S0 + beta (v - exp(g) S0 k_n) k_n
    pool = torch.full((1, 1, 1, 1), 0.8, **f64)
    _, st = oracle(q, k, v, a, b, A_log, dt_bias, pool, torch.tensor([0]), scale=0.5)
    decay = math.exp(-0.5 * math.log1p(math.exp(0.35)))
    s1 = decay * 0.8 + beta * (5 - decay * 0.8 * kn) * kn
    assert math.isclose(float(st[0, 0, 0]), s1, rel_tol=1e-12)


# ---------------------------------------------------------------------------- the reference vs the oracle
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_reference_verify_and_commit_match_oracle(case: Case) -> None:
    check_verify_and_commit(get_backend("reference"), case, torch.device("cpu"))


@pytest.mark.parametrize("case", [c for c in CASES if c.pool == "bf16"], ids=lambda c: c.id)
def test_reference_verify_bf16_intermediate_matches_oracle(case: Case) -> None:
    check_verify_and_commit(get_backend("reference"), case, torch.device("cpu"), inter_dtype=torch.bfloat16)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_reference_decode_matches_oracle(case: Case) -> None:
    check_decode(get_backend("reference"), case, torch.device("cpu"))


# ---------------------------------------------------------------------------- Triton (CPU interpreter) vs the oracle
def _triton_checks() -> dict[str, Callable[[], None]]:
    from gdnlab.kernels.triton import TritonBackend

    cpu = torch.device("cpu")
    out: dict[str, Callable[[], None]] = {}
    for c in CASES:
        out[f"verify+commit-{c.id}"] = lambda c=c: check_verify_and_commit(TritonBackend(), c, cpu)
        out[f"decode-{c.id}"] = lambda c=c: check_decode(TritonBackend(), c, cpu)
    bf16 = [c for c in CASES if c.pool == "bf16"]
    for c in bf16:
        out[f"verify+commit-bf16inter-{c.id}"] = lambda c=c: check_verify_and_commit(
            TritonBackend(), c, cpu, inter_dtype=torch.bfloat16)
    out[f"verify+commit-bv8-{CASES[2].id}"] = lambda: check_verify_and_commit(TritonBackend(bv=8), CASES[2], cpu)
    return out


def _child_main(out_path: str) -> int:
    from helpers.interpreter import run_interpreter_cases  # tests/ is on the child's PYTHONPATH (conftest)

    return run_interpreter_cases(_triton_checks(), out_path)


def _triton_case_names() -> list[str]:
    names = [f"{op}-{c.id}" for c in CASES for op in ("verify+commit", "decode")]
    names += [f"verify+commit-bf16inter-{c.id}" for c in CASES if c.pool == "bf16"]
    return names + [f"verify+commit-bv8-{CASES[2].id}"]




@pytest.mark.parametrize("name", _triton_case_names())
def test_triton_interpreter_matches_oracle(interpreter_results: dict, name: str) -> None:
    assert name in interpreter_results, f"the child ran no check named {name}"
    res = interpreter_results[name]
    assert res["ok"], f"{name}: {res['msg']}"


# ---------------------------------------------------------------------------- GPU backends vs the oracle
GPU_CASES = [
    Case(T=1, pool="fp32", act="bf16", H=2, HV=4, K=128, V=128, seed=11),
    Case(T=4, pool="fp32", act="bf16", H=2, HV=4, K=128, V=128, scale=0.05, seed=12),
    Case(T=1, pool="bf16", act="bf16", H=2, HV=4, K=128, V=128, seed=13),
    Case(T=4, pool="bf16", act="bf16", H=2, HV=4, K=128, V=128, seed=14),
]


@pytest.mark.gpu
@pytest.mark.parametrize("name", backends.kernel_backend_names())
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: c.id)
def test_gpu_backend_matches_oracle(cuda_device: torch.device, name: str, case: Case) -> None:
    try:
        backend = get_backend(name)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    inter_dtype = torch.float32 if case.pool == "fp32" else torch.bfloat16
    if case.T == 1:
        check_decode(backend, case, cuda_device)
    check_verify_and_commit(backend, case, cuda_device, inter_dtype=inter_dtype)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--child":
    sys.exit(_child_main(sys.argv[2]))
