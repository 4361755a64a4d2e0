"""Run a strategy for many consecutive speculative steps against the reference decode.

:func:`check_strategy` is the correctness check the tests (and a sweep, before timing) use: requests
live in a pool; every step a random subset of them, in random order and with padding rows, is
verified with fresh random inputs, a random accepted length in 1..T is drawn per row, and the
strategy commits. The oracle, :class:`gdnlab.kernels.reference.ReferenceBackend` in float64, decodes
the same tokens one by one on its own pool (same state dtype, so it rounds the state after every
token as a decode-only engine would). After every step the strategy's verify outputs and every
request's committed state (:meth:`VerifyStrategy.state`) are compared with the oracle's; the result
reports the worst error per step, so drift over the steps is visible, not only one step's error.
Every few steps a verify is run and dropped (no commit) first: it must not change any committed state.
Each step draws its own gate parameters ``A_log`` / ``dt_bias``, except for a strategy that replays
stashed tokens with the *next* call's gates (:attr:`VerifyStrategy.constant_gates`, FlashInfer's
``recompute_fused``): it gets the gates of every :data:`GATE_EPOCH`-th step, held for that many steps,
and a ``fold(force=True)`` of every request before they change (what an engine must do when a
layer's gates change).

A strategy whose engine kernels are coarser than the storage tolerances declares the difference with an
``extra_tolerance(state_dtype) -> {"output": Tolerance, "state": Tolerance}`` method (added to both).

Pool slots: requests own slots ``1..P-1``; the reserved slot 0 must stay as it was unless the
strategy declares it as scratch (:meth:`VerifyStrategy.scratch_slots_for`: FlashInfer's bf16 kernels
send padding rows there). A declared scratch slot that a request owns is a problem too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..inputs import GDNInputs, make_inputs
from ..kernels import tolerances as tol_
from ..kernels.reference import ReferenceBackend
from ..shapes import GDNShape
from .base import VerifyStrategy

__all__ = ["StrategyCheck", "check_strategy", "GATE_EPOCH"]

#: steps a ``constant_gates`` strategy keeps one draw of ``A_log`` / ``dt_bias`` (module docstring)
GATE_EPOCH = 2


@dataclass
class StrategyCheck:
    """Errors of one run: per step, the max |diff| of outputs and of committed states and the worst
    ratio to the tolerance (<= 1 passes). ``state_drift`` = max state |diff| over all steps."""

    strategy: str
    backend: str
    state_dtype: torch.dtype
    steps: int
    output_err: list[float] = field(default_factory=list)
    output_ratio: list[float] = field(default_factory=list)
    state_err: list[float] = field(default_factory=list)
    state_ratio: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def state_drift(self) -> float:
        return max(self.state_err, default=0.0)

    @property
    def ok(self) -> bool:
        return not self.problems and max(self.output_ratio + self.state_ratio, default=0.0) <= 1.0

    def summary(self) -> str:
        worst_o = max(range(len(self.output_ratio)), key=self.output_ratio.__getitem__, default=0)
        worst_s = max(range(len(self.state_ratio)), key=self.state_ratio.__getitem__, default=0)
        first, last = (self.state_err[0], self.state_err[-1]) if self.state_err else (0.0, 0.0)
        text = (f"{self.strategy}/{self.backend} {str(self.state_dtype).removeprefix('torch.')} state, "
                f"{self.steps} steps: state drift max {self.state_drift:.3g} (step 0 {first:.3g}, last {last:.3g}; "
                f"worst {max(self.state_ratio, default=0):.2f}x tol at step {worst_s}); output max "
                f"{max(self.output_err, default=0):.3g} (worst {max(self.output_ratio, default=0):.2f}x tol at "
                f"step {worst_o})")
        return text + ("; problems: " + "; ".join(self.problems[:5]) if self.problems else "")


def check_strategy(strategy: VerifyStrategy, shape: GDNShape, *, batch: int, T: int, steps: int,
                   state_dtype: torch.dtype, requests: int | None = None, act_dtype: torch.dtype = torch.bfloat16,
                   device: torch.device | str = "cpu", seed: int = 0, drop_every: int = 8,
                   padding: bool = True) -> StrategyCheck:
    """Run ``steps`` steps of ``strategy`` on ``requests`` requests (default ``batch + 1``) in batches of
    ``batch`` rows of ``T`` tokens; see the module docstring. Never raises on a mismatch: read
    :attr:`StrategyCheck.ok` and :meth:`StrategyCheck.summary`."""
    device = torch.device(device)
    n_req = requests or batch + 1
    P = 1 + n_req * strategy.slots_per_request(T)
    gen = torch.Generator().manual_seed(seed)
    pool = (0.1 * torch.randn((P, *shape.state_shape), generator=gen)).to(state_dtype).to(device)
    pool[0] = 0
    slot0 = pool[0].clone()
    slots = torch.arange(1, n_req + 1, dtype=torch.int32)      # base slots (token_slots' default table)
    oracle = ReferenceBackend(compute_dtype=torch.float64)
    pool_ref = pool.clone()
    scratch = strategy.allocate(pool, max_batch=batch, T=T)
    res = StrategyCheck(strategy.name, strategy.backend, state_dtype, steps)
    check_slot0 = _check_scratch_slots(strategy, state_dtype, P, res)
    epoch = GATE_EPOCH if strategy.constant_gates else 1
    gates = None
    otol, stol = _tolerances(strategy, act_dtype, state_dtype)
    all_idx = slots.to(device)

    for step in range(steps):
        order, accepted = _draw_rows(slots, n_req, batch, T, padding, gen)
        idx, accepted = order.to(device), accepted.to(device)
        inp = make_inputs(shape, batch, T, act_dtype=act_dtype, device=device, seed=1000 * seed + step)
        if epoch > 1:
            if step % epoch == 0:
                if gates is not None:                               # the gates change: settle pending work
                    strategy.fold(pool, all_idx, scratch, force=True)
                gates = (inp.A_log, inp.dt_bias)
            inp.A_log, inp.dt_bias = gates
        if drop_every and step % drop_every == drop_every - 1:
            junk = make_inputs(shape, batch, T, act_dtype=act_dtype, device=device, seed=10**6 + step)
            if epoch > 1:
                junk.A_log, junk.dt_bias = gates
            strategy.verify(*junk.args(), pool, idx, scratch)       # dropped: no commit
        o = strategy.verify(*inp.args(), pool, idx, scratch)
        strategy.commit(pool, idx, scratch, accepted)
        o_ref = _oracle_step(oracle, inp, order, idx, accepted, pool_ref, o, T)

        err, ratio = tol_.max_violation(o, o_ref, otol)
        res.output_err.append(err)
        res.output_ratio.append(ratio)
        if not torch.all(o[(order < 0).to(device)] == 0):
            res.problems.append(f"step {step}: padding rows' outputs are not zero")
        st = strategy.state(pool, all_idx, scratch)
        err, ratio = tol_.max_violation(st, pool_ref[all_idx.long()].float(), stol)
        res.state_err.append(err)
        res.state_ratio.append(ratio)
    if check_slot0 and not torch.equal(pool[0], slot0):
        res.problems.append("the reserved pool slot 0 was written")
    _check_fold(strategy, pool, all_idx, scratch, st, T, res)
    return res


def _check_scratch_slots(strategy: VerifyStrategy, state_dtype: torch.dtype, P: int, res: StrategyCheck) -> bool:
    """Note in ``res`` the scratch slots the strategy declares that requests own (slots ``1..P-1``);
    returns whether the reserved slot 0 must stay untouched (it is not declared scratch)."""
    sacrificial = sorted({int(s) for s in strategy.scratch_slots_for(state_dtype)})
    owned = [s for s in sacrificial if 1 <= s < P]
    if owned:
        res.problems.append(f"declares pool slot(s) {owned} as scratch, but requests own them")
    return 0 not in sacrificial                                  # the reserved slot, unless scratch


def _tolerances(strategy: VerifyStrategy, act_dtype: torch.dtype,
                state_dtype: torch.dtype) -> tuple[tol_.Tolerance, tol_.Tolerance]:
    """``(output, state)`` tolerances of the storage dtypes plus the strategy's ``extra_tolerance``."""
    otol, stol = tol_.output_tol(act_dtype, state_dtype), tol_.state_tol(state_dtype)
    extra = strategy.extra_tolerance(state_dtype) if hasattr(strategy, "extra_tolerance") else {}
    otol, stol = (otol + extra["output"] if "output" in extra else otol), (stol + extra["state"] if "state" in extra
                                                                            else stol)
    return otol, stol


def _draw_rows(slots: torch.Tensor, n_req: int, batch: int, T: int, padding: bool,
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's rows, on the host: ``order`` (int32 [batch]: a random subset of the requests' slots
    in random order, about a quarter padding rows -1 with ``padding``) and ``accepted`` (int32
    [batch], 1..T, 0 for padding rows)."""
    order = slots[torch.randperm(n_req, generator=gen)][:batch].clone()
    if padding:
        pad = torch.rand(batch, generator=gen) < 0.25
        order[pad] = -1
    acc_cpu = torch.randint(1, T + 1, (batch,), generator=gen, dtype=torch.int32)
    acc_cpu[order < 0] = 0                                      # ignored for padding rows
    return order, acc_cpu


def _oracle_step(oracle: ReferenceBackend, inp: GDNInputs, order: torch.Tensor, idx: torch.Tensor,
                 accepted: torch.Tensor, pool_ref: torch.Tensor, o: torch.Tensor, T: int) -> torch.Tensor:
    """The oracle's outputs ``[batch, T, HV, V]`` (like ``o``): it decodes the T tokens one by one on a
    copy of ``pool_ref``, then keeps each live row's state after its accepted prefix in ``pool_ref``."""
    device = pool_ref.device
    live = (order >= 0).nonzero(as_tuple=True)[0].to(device)
    live_slots = idx.long()[live]
    p = pool_ref.clone()
    o_ref = torch.zeros_like(o)
    after = []
    for t in range(T):
        o_ref[:, t] = oracle.decode(*inp.token(t).args(), p, idx)[:, 0]
        after.append(p[live_slots].clone())
    stacked = torch.stack(after, 1)                             # [live, T, HV, V, K]
    keep = accepted.long()[live] - 1
    pool_ref[live_slots] = stacked[torch.arange(len(live), device=device), keep]
    return o_ref


def _check_fold(strategy: VerifyStrategy, pool: torch.Tensor, all_idx: torch.Tensor, scratch, st: torch.Tensor,
                T: int, res: StrategyCheck) -> None:
    """``fold(force=True)`` of every request keeps the committed states ``st`` and, unless a request
    owns several slots (token_slots), materialises them in the pool rows; problems go to ``res``."""
    # folding everything materialises the committed states in the pool rows (not for token_slots)
    strategy.fold(pool, all_idx, scratch, force=True)
    st_after = strategy.state(pool, all_idx, scratch)
    if not torch.allclose(st_after, st):
        res.problems.append("fold(force=True) changed the committed states")
    if strategy.slots_per_request(T) == 1 and not torch.allclose(pool[all_idx.long()].float(), st):
        res.problems.append("after fold(force=True) the pool rows are not the committed states")
