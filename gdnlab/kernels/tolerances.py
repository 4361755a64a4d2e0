"""Backend-vs-reference tolerances: the ONE place every test and check script takes them from.

A backend result ``x`` passes against the reference ``r`` when ``|x - r| <= atol + rtol * |r|``
element-wise (``torch.testing.assert_close`` semantics). The reference is
:class:`gdnlab.kernels.reference.ReferenceBackend` (float32, or float64 in the tests), run on the same
inputs and the same starting pool; both sides round their results to the same storage dtype.

Why these numbers (state magnitudes from :meth:`gdnlab.state.StatePool.randomize_` (0.1 N(0,1)) and
:func:`gdnlab.inputs.make_inputs` (v ~ N(0,1)); k is unit-norm and beta < 1, so the delta rule keeps
state entries O(0.1..1) and outputs ``o = S q`` (|q| = K**-0.5) O(0.1..1)):

* **float32 storage** — both sides compute in fp32 (or fp64); the differences are summation order
  of the K=128-long reductions and approximate ``exp``/``rsqrt`` instructions (rel. error ~2**-22),
  i.e. ~1e-6 absolute per token, compounding over T <= 8 tokens to ~1e-5. ``atol = rtol = 1e-4``
  leaves 10x headroom while a real bug (wrong head mapping, missing L2 norm, stale state) moves
  values by 1e-2..1e-1.
* **bfloat16 storage** (outputs, pool, intermediate) — 8 significant bits: one unit in the last place
  is 2**-8..2**-7 relative (0.4 %..0.8 %). A tiny fp32 difference can round to the neighbouring
  bf16 value, so one ulp must pass: ``rtol = 2**-6`` (2 ulps). ``atol`` covers values whose fp32
  difference is absolute rather than relative (near zero): 2e-3 for outputs.
* **bfloat16 state pool** adds error on top of the storage dtype: a kernel may keep the state in
  bf16 between tokens (re-rounding each step, ~2**-9 relative per step, random-walking over T
  tokens) where the reference keeps fp32. Up to T=8 that is ~3 ulps of a state entry of ~0.25
  (~3e-3): state/intermediate ``atol = 8e-3``; outputs see it through ``S q`` with |q| = K**-0.5
  (damped ~10x), so outputs get ``+ 2e-3`` atol over their storage tolerance.
* **float16 outputs** (11 significant bits: one ulp is 2**-11..2**-10 relative): ``rtol = 2**-8``
  (4 ulps at the coarse end), ``atol = 1e-3``.

A commit copies intermediate rows into the pool, so it is judged like the intermediate buffer (or the
pool, whichever storage is coarser).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Tolerance", "output_tol", "state_tol", "intermediate_tol", "commit_tol", "assert_close",
           "max_violation", "rounded_beta_extra", "compact_ring_extra"]


@dataclass(frozen=True)
class Tolerance:
    """``|x - r| <= atol + rtol * |r|``; ``why`` says where the numbers come from."""

    atol: float
    rtol: float
    why: str = ""

    def __add__(self, other: Tolerance) -> Tolerance:
        return Tolerance(self.atol + other.atol, max(self.rtol, other.rtol), f"{self.why}; {other.why}")


# storage-dtype tolerances (rounding of the stored result)
_STORAGE: dict[torch.dtype, Tolerance] = {
    torch.float32: Tolerance(1e-4, 1e-4, "fp32 storage: fp32 summation order + approx exp/rsqrt"),
    torch.bfloat16: Tolerance(2e-3, 2.0 ** -6, "bf16 storage: one bf16 ulp is 2^-8..2^-7 relative"),
    torch.float16: Tolerance(1e-3, 2.0 ** -8, "fp16 storage: one fp16 ulp is 2^-11..2^-10 relative"),
}
# extra error when the recurrent state itself is held in bf16 (per-token re-rounding in some kernels)
_BF16_STATE_EXTRA_STATE = Tolerance(8e-3, 2.0 ** -6, "bf16 state: re-rounding per token, <= 8 tokens")
_BF16_STATE_EXTRA_OUTPUT = Tolerance(2e-3, 0.0, "bf16 state seen through o = S q (|q| = K^-0.5)")


def _storage(dtype: torch.dtype, what: str) -> Tolerance:
    try:
        return _STORAGE[dtype]
    except KeyError:
        raise ValueError(f"no tolerance for {what} dtype {dtype}; known: {[str(d) for d in _STORAGE]}") from None


def output_tol(out_dtype: torch.dtype, state_dtype: torch.dtype) -> Tolerance:
    """Outputs ``o`` (stored in ``out_dtype`` = q's dtype) computed from a ``state_dtype`` pool."""
    tol = _storage(out_dtype, "output")
    return tol + _BF16_STATE_EXTRA_OUTPUT if state_dtype == torch.bfloat16 else tol


def state_tol(state_dtype: torch.dtype) -> Tolerance:
    """The pool after decode (the state after the token, stored in ``state_dtype``)."""
    tol = _storage(state_dtype, "state")
    return tol + _BF16_STATE_EXTRA_STATE if state_dtype == torch.bfloat16 else tol


def intermediate_tol(inter_dtype: torch.dtype, state_dtype: torch.dtype) -> Tolerance:
    """Verify's intermediate states (stored in ``inter_dtype``) from a ``state_dtype`` pool."""
    tol = _storage(inter_dtype, "intermediate")
    return tol + _BF16_STATE_EXTRA_STATE if state_dtype == torch.bfloat16 else tol


def commit_tol(state_dtype: torch.dtype, inter_dtype: torch.dtype) -> Tolerance:
    """The pool after commit (intermediate rows copied into a ``state_dtype`` pool)."""
    a, b = intermediate_tol(inter_dtype, state_dtype), state_tol(state_dtype)
    return Tolerance(max(a.atol, b.atol), max(a.rtol, b.rtol), f"commit: coarser of ({a.why}) and ({b.why})")


def rounded_beta_extra() -> dict[str, Tolerance]:
    """Extra error of a kernel that rounds ``beta = sigmoid(b)`` to bf16 before the update (SGLang's
    packed decode, ``sglang/kernels/ops/attention/fla/fused_recurrent.py`` L255 in sglang 0.5.23):
    beta moves by up to 2**-9 relative, the state by ``2**-9 |beta (v - S k)| |k_j|`` <= 2**-9 * 4 * 0.6
    (|v| < 4 sigma, unit-norm k at K >= 32) ~ 5e-3 -> ``state`` atol 8e-3; the output sees it through
    ``k . q`` (|q| = K**-0.5) -> ``output`` atol 2e-3. Added to the storage tolerances by the checks
    of backends that declare it (``extra_tolerance``)."""
    why = "beta rounded to bf16 before the update"
    return {"state": Tolerance(8e-3, 0.0, why), "output": Tolerance(2e-3, 0.0, why)}


def compact_ring_extra() -> dict[str, Tolerance]:
    """Extra error of SGLang's ReplaySSM spec ring (``gdn_replayssm_spec_decode.py``, sglang 0.5.23):
    its verify rounds the history score matrices to the ring's bf16 dtype before they multiply the
    stored updates (L383-L386) and, on a GPU, runs its float32 dots in TF32; each committed update
    ``d`` then carries ~2**-9 relative error in its history term, and every fold bakes it into the
    checkpoint: ~1e-3 absolute on states of ~0.3 (1.5e-3 worst over 16 steps in Triton's interpreter,
    decaying with the gates) -> ``state`` atol 4e-3; outputs are read from the same history ->
    ``output`` atol 2e-3."""
    why = "SGLang ReplaySSM ring: bf16 history scores, TF32 dots"
    return {"state": Tolerance(4e-3, 0.0, why), "output": Tolerance(2e-3, 0.0, why)}


def max_violation(actual: torch.Tensor, expected: torch.Tensor, tol: Tolerance) -> tuple[float, float]:
    """``(max |x - r|, max of |x - r| / (atol + rtol |r|))``; the second is <= 1 when within tolerance."""
    x, r = actual.detach().double(), expected.detach().double()
    if x.numel() == 0:
        return 0.0, 0.0
    err = (x - r).abs()
    ratio = err / (tol.atol + tol.rtol * r.abs())
    ratio = torch.where(torch.isnan(err), torch.full_like(err, float("inf")), ratio)
    return float(err.max()), float(ratio.max())


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: Tolerance, what: str) -> None:
    """Raise ``AssertionError`` naming ``what`` when ``actual`` is outside ``tol`` of ``expected``."""
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    err, ratio = max_violation(actual, expected, tol)
    if not ratio <= 1.0:
        raise AssertionError(f"{what}: max |diff| {err:.3g} exceeds atol {tol.atol:g} + rtol {tol.rtol:g}*|ref| "
                             f"(worst element at {ratio:.2f}x the tolerance) [{tol.why}]")
