"""``recompute`` and ``recompute_fused`` on FlashInfer (:mod:`gdnlab.strategies.flashinfer`; "gd",
"bf16", "wy": FlashInfer 0.7.4 sources named in its docstring): raw-input stashes and the two
strategies."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...kernels.base import KernelPath
from ...shapes import GDNShape
from ..base import Scratch, bookkeeping_index
from ..ops import RecurrentOps
from ..recompute import Recompute, RecomputeFused
from . import _common
from ._common import _BF16, _GD, _MTP, _WY, MASK_LOGIT, _FlashInferStrategy, _sm_name


@dataclass
class RawStashScratch(Scratch):
    """Raw inputs of the last verify, batch-scoped: ``k [N,T,H,K]``, ``v [N,T,HV,V]``, ``a``, ``b
    [N,T,HV]`` (activation dtype; allocated at the first verify), ``A_log``/``dt_bias [HV]`` float32."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    a: torch.Tensor | None = None
    b: torch.Tensor | None = None
    A_log: torch.Tensor | None = None
    dt_bias: torch.Tensor | None = None


def _raw_entry_bytes(shape: GDNShape, act_bytes: int = 2) -> int:
    """Bytes of one stashed token: k ``[H, K]``, v ``[HV, V]``, a and b ``[HV]``."""
    return (shape.H * shape.K + shape.HV * shape.V + 2 * shape.HV) * act_bytes


def _ensure_stash(scratch: RawStashScratch, rows: int, q: torch.Tensor, v: torch.Tensor) -> None:
    """(Re)allocate the raw stash for this call's H and activation dtype (host-side shape check only)."""
    T, H, K = scratch.T, q.shape[2], q.shape[3]
    HV, V = v.shape[2], v.shape[3]
    if scratch.k is not None and tuple(scratch.k.shape) == (rows, T, H, K) and scratch.k.dtype == q.dtype:
        return
    z = dict(dtype=q.dtype, device=q.device)
    scratch.k = torch.zeros((rows, T, H, K), **z)
    scratch.v = torch.zeros((rows, T, HV, V), **z)
    scratch.a = torch.zeros((rows, T, HV), **z)
    scratch.b = torch.zeros((rows, T, HV), **z)
    scratch.A_log = torch.zeros(HV, dtype=torch.float32, device=q.device)
    scratch.dt_bias = torch.zeros(HV, dtype=torch.float32, device=q.device)


class FlashInferRecompute(_FlashInferStrategy, Recompute):
    """``recompute`` on FlashInfer: output-only verify (bf16: the WY kernel; fp32: MTP with a frozen
    state), the raw k/v/a/b stashed; commit replays the accepted tokens with one MTP launch."""

    summary = "verify output-only (FlashInfer WY / frozen MTP), stashes raw k, v, a, b; commit replays them"
    kernel_modules = (_GD, _MTP, _BF16, _WY)
    constraints = "state float32 or bfloat16; 2 <= T (<= 16 for bfloat16, the WY kernel's tile)"

    def __init__(self, ops: RecurrentOps | None = None) -> None:
        super().__init__(ops)

    @classmethod
    def _supports(cls, sd, T, batch, cc, HV):
        if sd == torch.bfloat16 and T is not None and T > 16:
            return False, f"FlashInfer's WY output-only kernel takes T <= 16 (wy L2111), got T={T}"
        return True, "ok"

    def scratch_bytes(self, shape, batch, T, pool_slots, state_dtype=None) -> int:
        """Raw stash ``B T (H K + HV V + 2 HV) * 2`` (bf16 activations) + gate copies ``2 HV * 4``."""
        return batch * T * _raw_entry_bytes(shape) + 2 * shape.HV * 4

    def _allocate(self, pool, max_batch, T):
        self._check_alloc(pool, T)
        return RawStashScratch(T, max_batch, pool.shape[0], pool.dtype, pool.device)

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        cc = self._prepare(q, pool, dims)
        _ensure_stash(scratch, scratch.max_batch, q, v)
        B = dims.B
        idx = indices.to(torch.int32).contiguous()
        qc, kc, vc, ac, bc = (t.contiguous() for t in (q, k, v, a, b))
        if pool.dtype == torch.bfloat16:
            self._path("verify", "bf16_wy_output_only", cc, dims, pool.dtype,
                       fi_api="gdn_kernels.gated_delta_rule_mtp_wy_output_only", native_T=dims.T in (4, 8))
            # frozen state: padding rows read the reserved slot 0 (a TMA load at -1 is not defined)
            src = torch.where(idx < 0, torch.zeros_like(idx), idx)
            # A_log/dt_bias as given: the kernel caches their bf16 cast by tensor identity (wy L1998-L2018)
            out = self._module(_WY).gated_delta_rule_mtp(
                A_log=A_log, a=ac, dt_bias=dt_bias, softplus_beta=1.0, softplus_threshold=20.0, q=qc, k=kc, v=vc,
                b=bc, initial_state_source=pool, initial_state_indices=src, use_qk_l2norm_in_kernel=True,
                scale=scale, output=self._out_arg(o))
        else:
            self._path("verify", "mtp_fp32", cc, dims, pool.dtype, fi_api="gdn_decode.gated_delta_rule_mtp",
                       disable_state_update=True, intermediate="none")
            A, dt = self._gates(A_log, dt_bias)
            out, _ = self.fi.kernels.mtp_fp32(
                q=qc, k=kc, v=vc, initial_state=pool, initial_state_indices=idx, A_log=A, a=ac, dt_bias=dt, b=bc,
                scale=scale, output=self._out_arg(o), intermediate_states_buffer=None, disable_state_update=True,
                use_qk_l2norm=True)
        self._emit(o, out, indices)
        for dst, src_t in ((scratch.k, kc), (scratch.v, vc), (scratch.a, ac), (scratch.b, bc)):
            dst[:B].copy_(src_t)
        scratch.A_log.copy_(A_log)
        scratch.dt_bias.copy_(dt_bias)

    def _commit(self, pool, indices, scratch, accepted):
        if scratch.k is None:
            raise ValueError("commit without a verify: nothing is stashed")
        B = indices.shape[0]
        cc = _common._tensor_cc(pool) or (0, 0)
        kernel, detail = self._replay(pool, indices, scratch.k[:B], scratch.v[:B], scratch.a[:B], scratch.b[:B],
                                      accepted, scratch.A_log, scratch.dt_bias)
        self.last_path = KernelPath("commit", kernel, _sm_name(cc), {"strategy": self.name, **detail})


# ---------------------------------------------------------------------------------------------- recompute_fused
@dataclass
class FusedRawStashScratch(RawStashScratch):
    """Pool-scoped raw stash (rows ``0..P``, row P = padding dummy), ``pending [P+1]`` int32 (stashed
    tokens still to replay), and the packed ``[max_batch, 2T, ...]`` inputs of the fused call
    (``pq`` ... ``pb``; positions ``0..T-1`` stashed tokens, ``T..2T-1`` the new ones)."""

    pending: torch.Tensor | None = None
    pq: torch.Tensor | None = None
    pk: torch.Tensor | None = None
    pv: torch.Tensor | None = None
    pa: torch.Tensor | None = None
    pb: torch.Tensor | None = None


class FlashInferRecomputeFused(_FlashInferStrategy, RecomputeFused):
    """``recompute_fused`` on FlashInfer: one bf16 MTP launch per step over ``2T`` packed tokens —
    the row's pending (accepted, stashed) tokens with the rejected ones masked, then the T new ones —
    with ``accepted_steps = max(pending, 1) - 1``: Phase A replays the first ``max(pending, 1)``
    tokens and writes that state to the pool, Phase B runs the rest (masked ones leave the state as
    it is) and emits the outputs; ``o = out[:, T:]``. The new tokens are stashed by pool slot;
    commit records ``pending[slot] = accepted``. Needs ``B * HV >= 128``: below that FlashInfer
    dispatches to its ILP4 kernel, which has no fused mode (bf16 L3759-L3764).

    The stash keeps raw ``a``/``b``, so the replay uses the *next* call's ``A_log``/``dt_bias``: they
    must be the layer's constants (as in a model), not values that change between steps; before they
    change, ``fold(force=True)`` replays pending tokens with the stashed gates (:attr:`constant_gates`)."""

    summary = "one bf16 MTP launch replays the pending accepted tokens, writes S once, then verifies"
    constant_gates = True
    bookkeeping_fields = ("pending",)
    kernel_modules = (_GD, _BF16)
    state_dtypes = (torch.bfloat16,)
    constraints = "state bfloat16; T >= 2; B * HV >= 128 (wide_vec kernel)"

    def __init__(self, ops: RecurrentOps | None = None) -> None:
        super().__init__(ops)

    @classmethod
    def _supports(cls, sd, T, batch, cc, HV):
        if batch is not None and HV is not None and batch * HV < 128:
            return False, (f"FlashInfer's fused recovery runs in the wide_vec kernel only, which needs "
                           f"B * HV >= 128; got B={batch}, HV={HV} (bf16 L3759-L3764)")
        return True, "ok"

    def scratch_bytes(self, shape, batch, T, pool_slots, state_dtype=None) -> int:
        """Pool-scoped raw stash ``(P+1) T e`` + packed inputs ``B 2T (2 H K + HV V + 2 HV) * 2`` +
        pending ``(P+1) * 4`` + gate copies (e: :func:`_raw_entry_bytes`, bf16 activations)."""
        packed = batch * 2 * T * (2 * shape.H * shape.K + shape.HV * shape.V + 2 * shape.HV) * 2
        return (pool_slots + 1) * T * _raw_entry_bytes(shape) + packed + (pool_slots + 1) * 4 + 2 * shape.HV * 4

    def _allocate(self, pool, max_batch, T):
        self._check_alloc(pool, T)
        P = pool.shape[0]
        pending = torch.zeros(P + 1, dtype=torch.int32, device=pool.device)
        return FusedRawStashScratch(T, max_batch, P, pool.dtype, pool.device, pending=pending)

    def _ensure(self, scratch, q, v) -> None:
        _ensure_stash(scratch, scratch.pool_slots + 1, q, v)
        n, T2 = scratch.max_batch, 2 * scratch.T
        if scratch.pq is not None and scratch.pq.shape[2] == q.shape[2] and scratch.pq.dtype == q.dtype:
            return
        z = dict(dtype=q.dtype, device=q.device)
        scratch.pq = torch.zeros((n, T2, *q.shape[2:]), **z)   # positions < T stay zero (no output needed)
        scratch.pk = torch.zeros((n, T2, *q.shape[2:]), **z)
        scratch.pv = torch.zeros((n, T2, *v.shape[2:]), **z)
        scratch.pa = torch.zeros((n, T2, v.shape[2]), **z)
        scratch.pb = torch.zeros((n, T2, v.shape[2]), **z)

    def _pending_rows(self, indices, scratch):
        """``(bk, pending [B])``: bookkeeping index and stashed tokens to replay (0 for padding rows)."""
        bk = bookkeeping_index(indices, scratch.pool_slots)
        return bk, torch.where(indices >= 0, scratch.pending[bk], torch.zeros_like(scratch.pending[bk]))

    def _stashed(self, indices, scratch):
        """``(bk, pending [B], k, v, a, b)`` of each row's stash (masked: rejected tokens)."""
        bk, pend = self._memo("fi_pending", lambda: self._pending_rows(indices, scratch))
        return bk, pend, scratch.k[bk], scratch.v[bk], scratch.a[bk], scratch.b[bk]

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        cc = self._prepare(q, pool, dims)
        self._ensure(scratch, q, v)
        B, T = dims.B, dims.T
        bk, pend, sk, sv, sa, sb = self._stashed(indices, scratch)
        keep = self._memo("fi_keep", lambda: (torch.arange(T, device=q.device)[None, :]
                                              < pend.long()[:, None])[..., None])   # [B, T, 1]
        pq, pk, pv, pa, pb = (t[:B] for t in (scratch.pq, scratch.pk, scratch.pv, scratch.pa, scratch.pb))
        pk[:, :T].copy_(sk)
        pv[:, :T].copy_(sv)
        pa[:, :T].copy_(torch.where(keep, sa, torch.full_like(sa, MASK_LOGIT)))
        pb[:, :T].copy_(torch.where(keep, sb, torch.full_like(sb, MASK_LOGIT)))
        for dst, src in ((pq, q), (pk, k), (pv, v), (pa, a), (pb, b)):
            dst[:, T:].copy_(src)
        steps = self._memo("fi_steps", lambda: (pend.clamp(min=1) - 1).to(torch.int32).contiguous())
        A, dt = self._gates(A_log, dt_bias)
        tile = self._module(_BF16)._select_wide_vec_tile_v(B, dims.HV)
        self._path("verify", "bf16_wide_vec_mtp", cc, dims, pool.dtype, tile_v=tile, fused_recovery=True,
                   fi_api="gdn_kernels.gdn_decode_bf16_state.gated_delta_rule_mtp", packed_tokens=2 * T)
        out = self.fi.kernels.mtp_bf16(
            A_log=A, a=pa, dt_bias=dt, softplus_beta=1.0, softplus_threshold=20.0, q=pq, k=pk, v=pv, b=pb,
            initial_state_source=pool, initial_state_indices=self._memo(
                "fi_idx", lambda: indices.to(torch.int32).contiguous()),
            accepted_steps=steps, disable_state_update=False, use_qk_l2norm_in_kernel=True, scale=scale)
        self._emit(o, out[:, T:], indices)
        # stash the new tokens by pool slot (padding rows -> dummy row P); the kernel read the packed copy
        for dst, src in ((scratch.k, k), (scratch.v, v), (scratch.a, a), (scratch.b, b)):
            dst.index_copy_(0, bk, src.to(dst.dtype))
        scratch.A_log.copy_(A_log)
        scratch.dt_bias.copy_(dt_bias)
        # not pending[bk] = 0: that copies a host scalar
        self._once("fi_consume_pending", lambda: scratch.pending.index_fill_(0, bk, 0))

    def _commit(self, pool, indices, scratch, accepted):
        bk = self._bk(indices, scratch)

        def record() -> None:
            scratch.pending[bk] = torch.where(indices >= 0, accepted, torch.zeros_like(accepted)).to(torch.int32)
        self._once("fi_record_pending", record)
        self.last_path = KernelPath("commit", "pending_record", self.last_path.arch, {"strategy": self.name})

    def reset(self, scratch, slots) -> None:
        s = torch.as_tensor(slots, device=scratch.device).reshape(-1)
        scratch.pending.index_fill_(0, bookkeeping_index(s, scratch.pool_slots), 0)

    def fold(self, pool, indices, scratch, force: bool = False) -> None:
        """``force``: replay pending tokens into the pool rows now (one MTP launch); else nothing is
        due (the next verify replays them). ``indices`` may list more rows than ``max_batch``."""
        self._check_scratch(scratch, pool, None, scratch.T)
        if not force or not indices.numel() or scratch.k is None:
            return
        bk, pend, sk, sv, sa, sb = self._stashed(indices, scratch)
        self._replay(pool, indices, sk, sv, sa, sb, pend, scratch.A_log, scratch.dt_bias)
        scratch.pending.index_fill_(0, bk, 0)

    def _state(self, pool, indices, scratch):
        if scratch.k is None:
            return pool[indices.long().clamp(min=0)].float()
        B = indices.shape[0]
        _, pend, sk, sv, sa, sb = self._stashed(indices, scratch)
        tmp = torch.zeros((B + 1, *pool.shape[1:]), dtype=pool.dtype, device=pool.device)  # row 0: padding sink
        tmp[1:] = pool[indices.long().clamp(min=0)]
        rows = torch.arange(1, B + 1, dtype=torch.int32, device=pool.device)
        src = torch.where(indices >= 0, rows, torch.full_like(rows, -1))
        self._replay(tmp, src, sk, sv, sa, sb, pend, scratch.A_log, scratch.dt_bias)
        return tmp[1:].float()
