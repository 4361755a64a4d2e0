"""``recompute`` and ``recompute_fused``: verify is output-only; the accepted prefix is replayed.

Verify reads each row's committed state once and writes **no state**: it stashes, per token, what
a replay needs — ``u = beta (v - exp(g) S k)`` ``[HV, V]``, the normalised ``k [HV, K]`` and the
log decay ``g [HV]`` (float32 by default). A replay step is then ``S = exp(g) S + u k^T``: no
``S k`` product. SGLang ``--gdn-mtp-cache-mode none`` (#26520, #29451), vLLM
``gdn/recoverssm_gdn.py`` and FlashInfer's bf16 ``gated_delta_rule_mtp(recovery_steps=...,
accepted_steps=...)`` (``gdn_kernels/gdn_decode_bf16_state.py``) do this.

* ``recompute``: commit replays ``accepted[i]`` stashed steps from ``pool[indices[i]]`` and writes
  the pool row once (one launch). The stash is batch-scoped ``[max_batch, T, ...]``.
  Traffic per step: verify reads S; commit reads S and writes S = 3 S, plus stash entries.
* ``recompute_fused``: commit only records ``pending[slot] = accepted`` on the device; the **next**
  verify first replays the pending steps (writing the pool row once), then runs its T tokens
  output-only from the replayed state (as stored, i.e. rounded to the pool dtype). Traffic per
  step: read S + write S = 2 S plus stash entries. The stash is pool-scoped (it must outlive the
  batch) and double-buffered ``[2P, T, ...]`` (entry row ``2 slot + parity``): a verify replays from
  one half while writing its new tokens into the other, so no program reads an entry another
  program of the same launch overwrites. After the kernel two bookkeeping ops clear ``pending`` and
  flip ``parity``. :meth:`VerifyStrategy.state` applies pending steps to a copy.

Bookkeeping writes use ``index_fill_`` / tensor values, never ``x[idx] = 0`` (which builds the
scalar on the host and copies it: not capturable in a CUDA graph).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..inputs import GDNInputs
from ..roofline import RowBytes
from .base import ByteUnits, Scratch, VerifyStrategy, _dtype_opt, bookkeeping_index
from .ops import Replay, Stash, Tokens

__all__ = ["Recompute", "RecomputeFused", "StashScratch", "FusedStashScratch", "stash_buffers"]


def stash_buffers(rows: int, length: int, pool: torch.Tensor, dtype: torch.dtype):
    """Zeroed ``u [rows, length, HV, V]``, ``k [rows, length, HV, K]``, ``g [rows, length, HV]``."""
    _, HV, V, K = pool.shape
    z = dict(dtype=dtype, device=pool.device)
    return (torch.zeros((rows, length, HV, V), **z), torch.zeros((rows, length, HV, K), **z),
            torch.zeros((rows, length, HV), **z))


@dataclass
class StashScratch(Scratch):
    """Batch-scoped stash ``u [max_batch,T,HV,V]``, ``k [max_batch,T,HV,K]``, ``g [max_batch,T,HV]``;
    ``rows [max_batch]`` = 0..max_batch-1 (entry row of batch row i) and ``zeros [max_batch]``."""

    u: torch.Tensor = None
    k: torch.Tensor = None
    g: torch.Tensor = None
    rows: torch.Tensor = None
    zeros: torch.Tensor = None


@dataclass
class FusedStashScratch(Scratch):
    """Pool-scoped double-buffered stash ``u [2P,T,HV,V]``, ``k [2P,T,HV,K]``, ``g [2P,T,HV]``;
    ``pending [P+1]`` (steps to replay) and ``parity [P+1]`` (which half holds them), int32."""

    u: torch.Tensor = None
    k: torch.Tensor = None
    g: torch.Tensor = None
    pending: torch.Tensor = None
    parity: torch.Tensor = None
    zeros: torch.Tensor = None


class Recompute(VerifyStrategy):
    """Output-only verify + replaying commit. Args: ``stash_dtype`` (float32 default, or bfloat16)."""

    name = "recompute"
    summary = "verify output-only, stashes (u, k, g); commit replays the accepted tokens, writes S once"
    color = "#9467bd"
    launches = {"verify": 1, "commit": 1}
    main_kernel_phases = ("verify", "commit")
    #: no released engine runs it (SGLang's ``--gdn-mtp-cache-mode none`` is not in 0.5.23)
    engine_runs = ()

    @classmethod
    def row_bytes(cls, u: ByteUnits, T: int, accept_len: float, **options) -> dict[str, RowBytes]:
        """verify reads S, writes T e; commit reads S and a e, writes S: ``3 S + (T + a) e``."""
        return {"verify": RowBytes(state_read=u.S, scratch_write=T * u.e),
                "commit": RowBytes(state_read=u.S, state_write=u.S, scratch_read=accept_len * u.e)}

    @classmethod
    def _scratch(cls, u: ByteUnits, B: int, T: int, P: int, *, ring_slots: int | None) -> int:
        """stash ``B T e`` + two ``[B]`` int32 row tables."""
        return B * T * u.e + 2 * B * 4

    def __init__(self, ops=None, stash_dtype: torch.dtype | str | None = None) -> None:
        super().__init__(ops)
        self.stash_dtype = _dtype_opt(stash_dtype, "stash_dtype") or torch.float32

    def roofline_options(self) -> dict:
        return {"stash_dtype": self.stash_dtype}

    def _allocate(self, pool, max_batch, T):
        u, k, g = stash_buffers(max_batch, T, pool, self.stash_dtype)
        rows = torch.arange(max_batch, dtype=torch.int32, device=pool.device)
        zeros = torch.zeros(max_batch, dtype=torch.int32, device=pool.device)
        return StashScratch(T, max_batch, pool.shape[0], pool.dtype, pool.device, u, k, g, rows, zeros)

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        B = dims.B
        st = Stash(scratch.u, scratch.k, scratch.g, scratch.rows[:B], scratch.zeros[:B])
        self.ops.recurrent(pool, indices, tokens=Tokens(GDNInputs(q, k, v, a, b, A_log, dt_bias), scale, o, stash=st))

    def _commit(self, pool, indices, scratch, accepted):
        B = indices.shape[0]
        rp = Replay(scratch.u, scratch.k, scratch.g, scratch.rows[:B], accepted, write=True)
        self.ops.recurrent(pool, indices, replay=rp)


class RecomputeFused(Recompute):
    """The replay of the accepted tokens fused into the next step's verify (see the module docstring)."""

    name = "recompute_fused"
    summary = "commit records accepted counts; the next verify replays them (writes S once) then verifies"
    color = "#8c564b"
    launches = {"verify": 1, "commit": 0}
    bookkeeping_ops = {"verify": 4, "commit": 1}
    main_kernel_phases = ("verify",)
    bookkeeping_fields = ("pending", "parity")
    #: its verify replays the previous step's accepted tokens: run alone it is not a steady-state verify
    separable_verify = False
    engine_runs = ()

    @classmethod
    def row_bytes(cls, u: ByteUnits, T: int, accept_len: float, **options) -> dict[str, RowBytes]:
        """verify reads S and the a pending entries, writes S once and T e: ``2 S + (T + a) e``
        (steady state: every step has pending steps)."""
        return {"verify": RowBytes(state_read=u.S, state_write=u.S, scratch_read=accept_len * u.e,
                                   scratch_write=T * u.e)}

    @classmethod
    def _scratch(cls, u: ByteUnits, B: int, T: int, P: int, *, ring_slots: int | None) -> int:
        """double-buffered pool-scoped stash ``2 P T e`` + pending and parity ``2 (P + 1)`` + one ``[B]`` int32."""
        return 2 * P * T * u.e + 2 * (P + 1) * 4 + B * 4

    def _allocate(self, pool, max_batch, T):
        P = pool.shape[0]
        u, k, g = stash_buffers(2 * P, T, pool, self.stash_dtype)
        z = dict(dtype=torch.int32, device=pool.device)
        return FusedStashScratch(T, max_batch, P, pool.dtype, pool.device, u, k, g,
                                 torch.zeros(P + 1, **z), torch.zeros(P + 1, **z), torch.zeros(max_batch, **z))

    def reset(self, scratch, slots) -> None:
        s = torch.as_tensor(slots, device=scratch.device).reshape(-1)
        scratch.pending.index_fill_(0, bookkeeping_index(s, scratch.pool_slots), 0)

    def _pending(self, indices, scratch):
        bk = bookkeeping_index(indices, scratch.pool_slots)
        par = scratch.parity[bk]
        rows = 2 * indices.long().clamp(min=0) + par
        return bk, par, rows, scratch.pending[bk]

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        bk, par, rows, pend = self._memo("pending", lambda: self._pending(indices, scratch))
        new_rows = self._memo("new_rows", lambda: rows + 1 - 2 * par)
        rp = Replay(scratch.u, scratch.k, scratch.g, rows, pend, write=True)
        st = Stash(scratch.u, scratch.k, scratch.g, new_rows, scratch.zeros[:dims.B])
        self.ops.recurrent(pool, indices, replay=rp,
                           tokens=Tokens(GDNInputs(q, k, v, a, b, A_log, dt_bias), scale, o, stash=st))

        def consume() -> None:
            scratch.pending.index_fill_(0, bk, 0)    # not pending[bk] = 0: that copies a host scalar
            scratch.parity[bk] = 1 - par
        self._once("consume_pending", consume)

    def _commit(self, pool, indices, scratch, accepted):
        bk = self._bk(indices, scratch)

        def record() -> None:
            scratch.pending[bk] = accepted.to(torch.int32)
        self._once("record_pending", record)

    def fold(self, pool, indices, scratch, force: bool = False) -> None:
        """Replay pending steps into the pool rows now (``force``); without ``force`` nothing is due:
        the next verify replays them."""
        super().fold(pool, indices, scratch, force)
        if force and indices.numel():
            bk, _, rows, pend = self._pending(indices, scratch)
            self.ops.recurrent(pool, indices, replay=Replay(scratch.u, scratch.k, scratch.g, rows, pend, True))
            scratch.pending.index_fill_(0, bk, 0)

    def _state(self, pool, indices, scratch):
        _, _, rows, pend = self._pending(indices, scratch)
        return self._materialise(pool, indices, Replay(scratch.u, scratch.k, scratch.g, rows, pend, True))
