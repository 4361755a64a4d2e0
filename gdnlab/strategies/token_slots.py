"""``token_slots``: verify writes the state after token t into its own pool slot; commit moves a pointer.

vLLM's speculative GDN path (the FLA fork's ``IS_SPEC_DECODING``: the kernel reads the initial
state from ``ssm_state_indices[i, num_accepted - 1]`` and writes ``h_t`` to
``ssm_state_indices[i, t]``; FlashInfer's ``gated_delta_rule_mtp(ssm_state_indices=...)``).

Slots: each request owns ``1 + T`` pool rows, listed in ``slot_table [P, T+1]`` (int32): row
``s`` lists the slots of the request whose **base slot** is ``s`` (``slot_table[s, 0] == s``;
rows that are not base slots hold -1). ``indices[i]`` is always the request's base slot. A cursor
``current [P+1]`` (int32, on the device; entry P is the padding dummy) says which of the 1+T slots
holds the committed state. Verify reads ``slot_table[s, c]`` and writes token ``t``'s state into
``slot_table[s, (c + 1 + t) % (T+1)]`` — never the committed one, so a verify without a commit
changes nothing; commit sets ``c = (c + accepted) % (T+1)`` (a pointer move, no state bytes).

Default table (:meth:`TokenSlots.allocate` without ``slot_table``): a pool of ``P`` rows serves
``n = (P-1) // (T+1)`` requests with base slots ``1..n`` (what :meth:`gdnlab.state.StatePool.alloc`
hands out first); base slot ``s`` owns the extra slots ``n + (s-1) T + 1 .. n + s T``. Build the
pool with ``StatePool(shape, capacity=(T+1) * n)`` and hand out only base slots.

State traffic per step: read S + write T states = (T+1) S, and the pool is (1+T)x larger.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engines import ENGINE_VERSIONS, EngineRun
from ..inputs import GDNInputs
from ..roofline import RowBytes
from .base import ByteUnits, Scratch, VerifyStrategy, bookkeeping_index
from .ops import Tokens

__all__ = ["TokenSlots", "TokenSlotsScratch", "default_slot_table"]


@dataclass
class TokenSlotsScratch(Scratch):
    """``slot_table [P, T+1]`` int32 (base slot -> its slots, -1 for non-base rows) and
    ``current [P+1]`` int32 (which column holds the committed state)."""

    slot_table: torch.Tensor = None
    current: torch.Tensor = None


def default_slot_table(pool_slots: int, T: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The default ``[P, T+1]`` table (see the module docstring); raises if no request fits."""
    n = (pool_slots - 1) // (T + 1)
    if n < 1:
        raise ValueError(f"token_slots needs 1+T={T + 1} pool slots per request plus the reserved slot 0; "
                         f"a pool of {pool_slots} slots holds none")
    table = torch.full((pool_slots, T + 1), -1, dtype=torch.int32)
    base = torch.arange(1, n + 1, dtype=torch.int32)
    table[1:n + 1, 0] = base
    table[1:n + 1, 1:] = n + (base[:, None] - 1) * T + torch.arange(1, T + 1, dtype=torch.int32)
    return table.to(device)


class TokenSlots(VerifyStrategy):
    """vLLM-style per-token state slots (see the module docstring for the slot layout)."""

    name = "token_slots"
    summary = "verify writes state t into the request's slot t; commit moves the current-slot pointer"
    color = "#2ca02c"
    launches = {"verify": 1, "commit": 0}
    bookkeeping_ops = {"verify": 3, "commit": 2}
    main_kernel_phases = ("verify",)
    bookkeeping_fields = ("current", "slot_table")
    engine_runs = (
        EngineRun("vllm", ENGINE_VERSIONS["vllm"], (), backends=("vllm_cuda",),
                  env=(("VLLM_GDN_DECODE_KERNEL", "cuda"),), max_draft_tokens=8,
                  source="vllm-project/vllm v0.33.0 vllm/envs.py VLLM_GDN_DECODE_KERNEL (default cuda): "
                         "_C.fused_gdn_decode_post_conv_mtp, one state slot per draft position (PR #51674)",
                  note="vLLM's default compiled op (fused with the gated RMSNorm of the output); per-token "
                       "state slots, T per request (gdnlab.strategies.vllm.cuda)"),
        EngineRun("vllm", ENGINE_VERSIONS["vllm"], (), backends=("vllm_triton",),
                  env=(("VLLM_GDN_DECODE_KERNEL", "triton"),),
                  source="vllm-project/vllm v0.33.0 vllm/envs.py VLLM_GDN_DECODE_KERNEL=triton: "
                         "vllm/third_party/flash_linear_attention/ops/fused_sigmoid_gating.py "
                         "fused_sigmoid_gating_delta_rule_update (IS_SPEC_DECODING), called from "
                         "vllm/model_executor/layers/mamba/gdn/qwen_gdn_linear_attn.py L1757-L1778",
                  note="vLLM's Triton path of the same strategy; T slots per request, the committed one "
                       "overwritten in place (gdnlab.strategies.vllm)"),
    )

    @classmethod
    def slots_per_request(cls, T: int) -> int:
        return T + 1

    @classmethod
    def row_bytes(cls, u: ByteUnits, T: int, accept_len: float, **options) -> dict[str, RowBytes]:
        """verify reads S and writes T states into their slots; commit moves a pointer: ``(T + 1) S``."""
        return {"verify": RowBytes(state_read=u.S, state_write=T * u.S)}

    @classmethod
    def _scratch(cls, u: ByteUnits, B: int, T: int, P: int, *, ring_slots: int | None) -> int:
        """slot table ``P (T+1)`` + cursor ``P + 1`` int32 — its T extra states per request live in
        the pool (:meth:`memory_formula`)."""
        return P * (T + 1) * 4 + (P + 1) * 4

    def allocate(self, pool: torch.Tensor, max_batch: int, T: int, slot_table: torch.Tensor | None = None, *,
                 share: TokenSlotsScratch | None = None) -> TokenSlotsScratch:
        """As :meth:`VerifyStrategy.allocate`; ``slot_table [P, T+1]`` overrides the default layout."""
        scratch = super().allocate(pool, max_batch, T, share=share)
        if slot_table is not None:
            P = pool.shape[0]
            if not isinstance(slot_table, torch.Tensor) or tuple(slot_table.shape) != (P, T + 1):
                raise ValueError(f"slot_table must be a [P, T+1] = {(P, T + 1)} int tensor")
            tab = slot_table.detach().cpu().long()
            used = tab[tab[:, 0] >= 0]
            if used.numel() and (int(used.min()) < 1 or int(used.max()) >= P):
                raise ValueError(f"slot_table lists slots outside 1..{P - 1} (slot 0 is reserved)")
            if used.numel() != torch.unique(used).numel():
                raise ValueError("slot_table lists one pool slot twice")
            bases = torch.nonzero(tab[:, 0] >= 0, as_tuple=True)[0]
            if not torch.equal(tab[bases, 0], bases):
                raise ValueError("slot_table[s, 0] must be s for every base slot s")
            scratch.slot_table = slot_table.to(device=pool.device, dtype=torch.int32).contiguous()
        return scratch

    def _allocate(self, pool, max_batch, T):
        P = pool.shape[0]
        table = default_slot_table(P, T, pool.device)
        current = torch.zeros(P + 1, dtype=torch.int32, device=pool.device)
        return TokenSlotsScratch(T, max_batch, P, pool.dtype, pool.device, table, current)

    def _check_slots(self, indices, scratch) -> None:
        idx = indices.detach().cpu().long()
        live = idx[idx >= 0]
        if live.numel():
            ok = scratch.slot_table[live.to(scratch.device), 0].cpu().long() == live
            if not bool(ok.all()):
                raise ValueError(f"indices {live[~ok].tolist()} are not base slots of the token_slots table "
                                 "(each request is named by its base slot)")

    def reset(self, scratch, slots) -> None:
        s = torch.as_tensor(slots, device=scratch.device).reshape(-1)
        scratch.current.index_fill_(0, bookkeeping_index(s, scratch.pool_slots), 0)

    def _slots(self, indices, scratch):
        """``(src [B], dst [B, T])``: committed slot and the T slots verify writes (-1 for padding);
        once per step (:class:`~gdnlab.strategies.base.StepPlan`)."""
        return self._memo("slots", lambda: self._compute_slots(indices, scratch))

    def _compute_slots(self, indices, scratch):
        T = scratch.T
        bk = self._bk(indices, scratch)
        live = indices >= 0
        base = indices.long().clamp(min=0)
        c = scratch.current[bk].long()
        src = torch.where(live, scratch.slot_table[base, c], torch.full_like(indices, -1, dtype=torch.int32))
        cols = (c[:, None] + 1 + torch.arange(T, device=indices.device)) % (T + 1)
        dst = scratch.slot_table[base[:, None], cols]
        return src, dst

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        src, dst = self._slots(indices, scratch)
        self.ops.recurrent(pool, src, tokens=Tokens(GDNInputs(q, k, v, a, b, A_log, dt_bias), scale, o, dst=dst))

    def _commit(self, pool, indices, scratch, accepted):
        bk = self._bk(indices, scratch)

        def move() -> None:
            new = (scratch.current[bk] + accepted.to(torch.int32)) % (scratch.T + 1)
            scratch.current[bk] = new.to(torch.int32)
        self._once("move_current", move)

    def _state(self, pool, indices, scratch):
        src, _ = self._compute_slots(indices, scratch)
        return pool[src.long().clamp(min=0)].float()
