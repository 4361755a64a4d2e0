"""The ``sglang_triton`` verify strategies: SGLang 0.5.23's Triton full-cache verify and its ReplaySSM
spec ring (see :mod:`gdnlab.strategies.sglang`).

``replay_ring`` (:class:`SGLangReplayRing`) holds SGLang's buffers for one layer
(``sglang/srt/mem_cache/memory_pool.py`` L758-L855, L1034-L1052), keyed by pool slot (gdnlab's request
id; SGLang keys the rings by request slot and the checkpoint by mamba slot, one and the same here):

* ``d [P+1, HV, L, V]`` and ``k [P+1, H, L, K]`` in the activation dtype plus their low parts
  ``d_res`` / ``k_res`` (same shapes; SGLang's ``replayssm_rawv`` / ``replayssm_rawk``, allocated
  because the ring dtype is not float32), ``g [P+1, HV, L]`` float32;
* cursors ``write_pos``, ``cache_base`` (int32) and ``is_flush`` (int8), ``[P+1]``;
* ``L`` = ``--linear-replayssm-cache-len`` (default 16; a power of two, ``L >= 2 T``).

Per step: verify = one launch (rows whose checkpoint is folded get no special work: SGLang folds in
the commit); commit = the cursor kernel, the compact fold kernel (rows whose next window would not
fit: ``write_pos + 2 T > L``, or every row with history for a non-float32 state) and the finish
kernel: three launches. In the engine the fold launch covers every GDN layer at once; here it covers
one layer, so its launch overhead is not shared. The H, activation dtype of the ring are known at
the first verify, which allocates it (outside a CUDA-graph capture: run one step first).

Byte formula: :class:`~gdnlab.strategies.replay_ring.ReplayRing`'s, with the ring of ``L`` entries,
the fold condition ``cursor >= L - 2 T + 1`` (``flush_min``; 1 for a bf16 state, which folds every
commit) and entries counted as float32 (a hi + lo bf16 pair is 4 bytes); it counts ``k`` per value
head where SGLang keeps it per key head (HV / H times fewer bytes).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...kernels import _engine_import as eng
from ...kernels._triton_interpret import interpret_enabled
from ...kernels.base import KernelPath, _arch
from ...kernels.sglang import SGLangTritonBackend, token_offsets
from ...shapes import dtype_from_name
from ..base import Scratch, VerifyStrategy, bookkeeping_index
from ..full_cache import FullCache
from ..replay_ring import ReplayRing
from . import KernelFullCache, KernelOutputVerify

__all__ = ["STRATEGIES", "availability", "BACKEND", "SGLangTritonFullCache", "SGLangReplayRing", "SGLangRingScratch"]

BACKEND = "sglang_triton"
_SPEC = "sglang.kernels.ops.attention.linear.gdn_replayssm_spec_decode"


def availability() -> tuple[bool, str]:
    return SGLangTritonBackend.availability()


class SGLangTritonFullCache(KernelFullCache, FullCache):
    """``full_cache`` as SGLang runs it with ``--linear-attn-verify-backend triton``: the intermediate
    buffer has the pool's dtype (SGLang's ``intermediate_ssm``). Options: ``contract_padding``."""

    backend = BACKEND

    def __init__(self, ops=None, intermediate_dtype=None, contract_padding: bool = True) -> None:
        super().__init__(ops, intermediate_dtype)
        self.kern = SGLangTritonBackend(contract_padding=contract_padding)
        self.last_path = KernelPath()


@dataclass
class SGLangRingScratch(Scratch):
    """SGLang's ReplaySSM ring of one layer and its cursors (module docstring); ``d`` ... ``k_res``
    are ``None`` until the first verify."""

    d: torch.Tensor | None = None
    k: torch.Tensor | None = None
    g: torch.Tensor | None = None
    d_res: torch.Tensor | None = None
    k_res: torch.Tensor | None = None
    write_pos: torch.Tensor = None
    cache_base: torch.Tensor = None
    is_flush: torch.Tensor = None
    ring_len: int = 16


class SGLangReplayRing(KernelOutputVerify, ReplayRing):
    """``replay_ring`` as SGLang runs it (``--enable-linear-replayssm-spec``). Options:
    ``ring_slots`` = ``--linear-replayssm-cache-len`` (default 16), ``contract_padding``."""

    backend = BACKEND
    launches = {"verify": 1, "commit": 3}
    bookkeeping_ops: dict[str, int] = {}
    main_kernel_phases = ("verify",)
    #: each layer keeps its own cursors: SGLang advances them once per step and folds every layer in
    #: one launch (spec_utils.py L1113-L1143); per layer here, the three commit launches are not shared
    bookkeeping_fields = ()

    def __init__(self, ops=None, ring_slots: int | None = 16, contract_padding: bool = True) -> None:
        super().__init__(ops, ring_slots=ring_slots or 16)
        L = self.ring_slots
        if L & (L - 1):
            raise ValueError(f"ring_slots (--linear-replayssm-cache-len) must be a power of two, got {L}")
        self.contract_padding = bool(contract_padding)
        self.flush_min = None
        if interpret_enabled():
            eng.interpreter_bf16_dot()
        self._fns = None
        self.last_path = KernelPath()

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            eng.load_symbols("sglang", _SPEC, "gdn_replayssm_spec_decode", "commit_gdn_replayssm_spec",
                             "commit_gdn_replayssm_circular")
        except eng.EngineUnavailable as exc:
            return False, str(exc)
        return True, "ok"

    @classmethod
    def supports(cls, state_dtype=None, T=None, batch=None, sm=None, *, HV=None, K=None, V=None, act_dtype=None):
        """SGLang's ring needs ``L >= 2 T`` (T <= 8 at the default L = 16) and K >= 32 (its dot tiles)."""
        ok, why = super().supports(state_dtype, T, batch, sm, HV=HV, K=K, V=V, act_dtype=act_dtype)
        if ok and T is not None and 2 * int(T) > 16:
            return False, f"SGLang's ReplaySSM ring (--linear-replayssm-cache-len 16) takes T <= 8, got T={T}"
        if ok and K is not None and int(K) < 32:
            return False, f"SGLang's ReplaySSM kernel needs head_k_dim >= 32 (tl.dot tiles of 16), got K={K}"
        return ok, why

    def extra_tolerance(self, state_dtype) -> dict:
        """The ring's precision (:func:`gdnlab.kernels.tolerances.compact_ring_extra`), float32 states;
        a bf16 state's storage tolerance already covers it."""
        from ...kernels.tolerances import compact_ring_extra
        return compact_ring_extra() if dtype_from_name(state_dtype) == torch.float32 else {}

    @classmethod
    def row_bytes(cls, u, T, accept_len, *, ring_slots=None, flush_min=None, **options):
        """:meth:`ReplayRing.row_bytes` with SGLang's fold condition ``cursor >= L - 2 T + 1``."""
        L = ring_slots or 16
        return super().row_bytes(u, T, accept_len, ring_slots=L, flush_min=flush_min or max(1, L - 2 * T + 1))

    def roofline_options(self) -> dict:
        return {"ring_slots": self.ring_slots, "flush_min": self.flush_min, "stash_dtype": torch.float32}

    def _spec(self):
        if self._fns is None:
            self._fns = eng.load_symbols("sglang", _SPEC, "gdn_replayssm_spec_decode", "commit_gdn_replayssm_spec",
                                         "commit_gdn_replayssm_circular")
        return self._fns

    def _allocate(self, pool, max_batch, T):
        L = self.ring_slots
        if L < 2 * T:
            raise ValueError(f"SGLang's ReplaySSM ring needs --linear-replayssm-cache-len >= 2 T: L={L}, T={T} "
                             "(its cursor kernel flushes one window early)")
        P = pool.shape[0]
        self.flush_min = 1 if pool.dtype != torch.float32 else None
        z = dict(device=pool.device)
        return SGLangRingScratch(T, max_batch, P, pool.dtype, pool.device,
                                 write_pos=torch.zeros(P + 1, dtype=torch.int32, **z),
                                 cache_base=torch.zeros(P + 1, dtype=torch.int32, **z),
                                 is_flush=torch.zeros(P + 1, dtype=torch.int8, **z), ring_len=L)

    def _ring(self, sc: SGLangRingScratch, H: int, act: torch.dtype) -> None:
        """Allocate the ring at the first verify (memory_pool.py L758-L855: d/k in the activation dtype
        with low parts, g float32)."""
        if sc.d is not None:
            return
        P, (HV, V, K), L = sc.pool_slots + 1, self._dims, sc.ring_len
        z = dict(device=sc.device)
        sc.d, sc.d_res = (torch.zeros((P, HV, L, V), dtype=act, **z) for _ in range(2))
        sc.k, sc.k_res = (torch.zeros((P, H, L, K), dtype=act, **z) for _ in range(2))
        sc.g = torch.zeros((P, HV, L), dtype=torch.float32, **z)

    def _verify_out(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims):
        self._dims = (dims.HV, dims.V, dims.K)
        self._ring(scratch, dims.H, q.dtype)
        spec, _, _ = self._spec()
        N = dims.B * dims.T
        out = torch.empty((N, dims.HV, dims.V), dtype=q.dtype, device=q.device)
        spec(q=q.reshape(N, dims.H, dims.K), k=k.reshape(N, dims.H, dims.K), v=v.reshape(N, dims.HV, dims.V),
             a=a.reshape(N, dims.HV), b=b.reshape(N, dims.HV), A_log=A_log, dt_bias=dt_bias, checkpoint_state=pool,
             d_cache=scratch.d, k_cache=scratch.k, g_cache=scratch.g, rawv_cache=scratch.d_res,
             rawk_cache=scratch.k_res, beta_cache=None, out=out,
             query_start_loc=token_offsets(dims.B, dims.T, q.device), ssm_state_indices=indices,
             replay_indices=indices, write_pos=scratch.write_pos, cache_base=scratch.cache_base,
             is_flush=scratch.is_flush, max_cache_len=scratch.ring_len, max_spec_len=dims.T, scale=scale,
             use_qk_l2norm_in_kernel=True, null_block_id=-1, launch_mode="verify",
             **({"dot_precision": "ieee"} if interpret_enabled() else {}))
        o = out.view(dims.B, dims.T, dims.HV, dims.V)
        if self.contract_padding:
            o.masked_fill_((indices < 0).view(-1, 1, 1, 1), 0)
        self.last_path = KernelPath("verify", "gdn_replayssm_spec_circular_kernel", _arch(q.device),
                                    {"strategy": self.name, "ring_len": scratch.ring_len})
        return o

    def _fold_rows(self, pool, indices, sc: SGLangRingScratch, accepted, write_pos, cache_base, is_flush) -> None:
        _, _, circular = self._spec()
        circular(checkpoint_state=pool.unsqueeze(0), d_cache=sc.d.unsqueeze(0), k_cache=sc.k.unsqueeze(0),
                 g_cache=sc.g.unsqueeze(0), d_residual_cache=sc.d_res.unsqueeze(0),
                 k_residual_cache=sc.k_res.unsqueeze(0), state_batch_indices=indices, replay_indices=indices,
                 write_pos=write_pos, cache_base=cache_base, is_flush=is_flush, accept_lens=accepted,
                 null_block_id=-1)

    def _commit(self, pool, indices, scratch, accepted):
        if scratch.d is None:
            raise ValueError("commit before the first verify (the ring is allocated by the first verify)")
        _, advance, _ = self._spec()
        advance(write_pos=scratch.write_pos, cache_base=scratch.cache_base, is_flush=scratch.is_flush,
                num_accepted=accepted, replay_indices=indices, max_cache_len=scratch.ring_len,
                max_spec_len=scratch.T, fold_every_commit=pool.dtype != torch.float32, null_block_id=-1)
        self._fold_rows(pool, indices, scratch, accepted, scratch.write_pos, scratch.cache_base, scratch.is_flush)
        self.last_path = KernelPath("commit", "commit_gdn_replayssm_spec + commit_gdn_replayssm_circular",
                                    _arch(pool.device), {"strategy": self.name})

    def reset(self, scratch, slots) -> None:
        """SGLang zeroes the cursors of fresh rows (memory_pool.py L1578-L1589)."""
        s = bookkeeping_index(torch.as_tensor(slots, device=scratch.device).reshape(-1), scratch.pool_slots)
        for t in (scratch.write_pos, scratch.cache_base, scratch.is_flush):
            t.index_fill_(0, s, 0)

    def fold(self, pool, indices, scratch, force: bool = False) -> None:
        """SGLang folds in the commit; ``force=True`` folds every row of ``indices`` with history now
        (with SGLang's fold kernel)."""
        VerifyStrategy.fold(self, pool, indices, scratch, force)
        if not force or scratch.d is None or not indices.numel():
            return
        bk = bookkeeping_index(indices, scratch.pool_slots)
        scratch.is_flush[bk] = (scratch.write_pos[bk] > 0).to(torch.int8)
        self._fold_rows(pool, indices, scratch, torch.zeros_like(indices), scratch.write_pos, scratch.cache_base,
                   scratch.is_flush)

    def _state(self, pool, indices, scratch):
        if scratch.d is None:
            return pool[indices.long().clamp(min=0)].float()
        tmp = pool.clone()
        wp, base = scratch.write_pos.clone(), scratch.cache_base.clone()
        self._fold_rows(tmp, indices, scratch, torch.zeros_like(indices), wp, base, (wp > 0).to(torch.int8))
        return tmp[indices.long().clamp(min=0)].float()


STRATEGIES: dict[str, type[VerifyStrategy]] = {c.name: c for c in (SGLangTritonFullCache, SGLangReplayRing)}
