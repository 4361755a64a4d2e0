"""vLLM 0.33.0's own verify strategy, ``token_slots``, as vLLM lays it out (backends ``vllm_triton`` and
``vllm_cuda``; the kernels: :mod:`gdnlab.kernels.vllm`).

vLLM gives each speculative request ``T`` state slots (one per verified token, the bonus included:
``spec_state_indices_tensor [B, 1 + num_speculative_tokens]``, ``vllm/v1/attention/backends/gdn_attn.py``)
and a per-request ``num_accepted_tokens``. A verify reads the committed state from slot
``num_accepted - 1`` and writes the state after token ``t`` into slot ``t`` — in place, so the slot of
the committed state is overwritten by the new token at that position (both kernels load a tile before
they store it, so the call itself is consistent). The commit is the new ``num_accepted``: no state
bytes move.

Here: ``slot_table [P, T]`` (int32) lists each base slot's T slots (column 0 is the base slot;
default layout: ``n = (P - 1) // T`` requests with base slots ``1..n``, base ``s`` owning
``n + (s-1)(T-1) + 1 .. n + s(T-1)``), ``num_accepted [P+1]`` (int32, on the device, 1 for a new
request; entry P is the padding dummy). Per verify: two gathers and a ``where`` build vLLM's
``[B, T]`` index rows and ``[B]`` accepted counts (vLLM's metadata builder does this per step, once
for all layers); per commit one scatter. Padding rows get a row of -1 (vLLM's kernels skip slots
``<= 0``) and their outputs are zeroed (``contract_padding``, one ``masked_fill_``).

**Differences from gdnlab's ``token_slots``** (:class:`gdnlab.strategies.token_slots.TokenSlots`):
``T`` slots per request instead of ``T + 1``, and a verify that is *not* undone by skipping its
commit: a dropped verify overwrites the committed slot (vLLM never drops one). Checks run with
``drop_every=0``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import Scratch, VerifyStrategy, bookkeeping_index
from ..sglang import KernelOutputVerify
from ..token_slots import TokenSlots

__all__ = ["VLLMTokenSlots", "VLLMSlotsScratch", "vllm_slot_table"]


@dataclass
class VLLMSlotsScratch(Scratch):
    """``slot_table [P, T]`` int32 (base slot -> its T slots, -1 for non-base rows), ``num_accepted
    [P+1]`` int32, and strategy-specific buffers in ``extra``."""

    slot_table: torch.Tensor = None
    num_accepted: torch.Tensor = None
    extra: dict | None = None


def vllm_slot_table(pool_slots: int, T: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The default ``[P, T]`` table (module docstring); raises if no request fits."""
    n = (pool_slots - 1) // T
    if n < 1:
        raise ValueError(f"vLLM's token slots need T={T} pool slots per request plus the reserved slot 0; a pool of "
                         f"{pool_slots} slots holds none")
    table = torch.full((pool_slots, T), -1, dtype=torch.int32)
    base = torch.arange(1, n + 1, dtype=torch.int32)
    table[1:n + 1, 0] = base
    if T > 1:
        table[1:n + 1, 1:] = n + (base[:, None] - 1) * (T - 1) + torch.arange(1, T, dtype=torch.int32)
    return table.to(device)


class VLLMTokenSlots(KernelOutputVerify, TokenSlots):
    """vLLM's per-token slots (module docstring); subclasses launch the kernel in :meth:`_launch`."""

    bookkeeping_ops = {"verify": 3, "commit": 1}
    #: per request, shared by a model's layers (vLLM builds the index rows once per step)
    bookkeeping_fields = ("num_accepted", "slot_table")
    #: a verify overwrites the committed slot: a verify without its commit loses the committed state
    drop_safe = False

    def __init__(self, ops=None, contract_padding: bool = True) -> None:
        super().__init__(ops)
        self.contract_padding = bool(contract_padding)

    @classmethod
    def slots_per_request(cls, T: int) -> int:
        return T

    @classmethod
    def _scratch(cls, u, B, T, P, *, ring_slots):
        """slot table ``P T`` + ``num_accepted`` ``P + 1`` int32 (its T states per request live in the pool)."""
        return P * T * 4 + (P + 1) * 4

    def allocate(self, pool, max_batch, T, slot_table=None, *, share=None) -> VLLMSlotsScratch:
        if slot_table is not None:
            raise ValueError("vLLM's token slots take the default slot table only")
        return VerifyStrategy.allocate(self, pool, max_batch, T, share=share)

    def _allocate(self, pool, max_batch, T):
        P = pool.shape[0]
        acc = torch.ones(P + 1, dtype=torch.int32, device=pool.device)
        return VLLMSlotsScratch(T, max_batch, P, pool.dtype, pool.device, vllm_slot_table(P, T, pool.device), acc, {})

    def reset(self, scratch, slots) -> None:
        s = torch.as_tensor(slots, device=scratch.device).reshape(-1)
        scratch.num_accepted.index_fill_(0, bookkeeping_index(s, scratch.pool_slots), 1)

    def _rows(self, indices, scratch) -> tuple[torch.Tensor, torch.Tensor]:
        """vLLM's ``(spec_state_indices [B, T], num_accepted_tokens [B])`` (-1 rows for padding), once
        per step under a :class:`~gdnlab.strategies.base.StepPlan`."""
        def rows_now():
            rows = scratch.slot_table[indices.long().clamp(min=0)]
            rows = torch.where((indices >= 0)[:, None], rows, torch.full_like(rows, -1))
            return rows, scratch.num_accepted[bookkeeping_index(indices, scratch.pool_slots)]
        return self._memo("vllm_rows", rows_now)

    def _verify_out(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims):
        rows, acc = self._rows(indices, scratch)
        o = self._launch(q, k, v, a, b, A_log, dt_bias, pool, rows, acc, scratch, scale, dims)
        if self.contract_padding:
            o.masked_fill_((indices < 0).view(-1, 1, 1, 1), 0)
        return o

    def _launch(self, q, k, v, a, b, A_log, dt_bias, pool, rows, acc, scratch, scale, dims) -> torch.Tensor:
        raise NotImplementedError

    def _commit(self, pool, indices, scratch, accepted):
        def store() -> None:
            scratch.num_accepted[bookkeeping_index(indices, scratch.pool_slots)] = accepted.to(torch.int32)
        self._once("vllm_num_accepted", store)

    def _slots(self, indices, scratch):
        rows, acc = self._rows(indices, scratch)
        src = rows.gather(1, (acc.long() - 1).clamp(min=0)[:, None])[:, 0]
        return src, rows

    def _state(self, pool, indices, scratch):
        src, _ = self._slots(indices, scratch)
        return pool[src.long().clamp(min=0)].float()
