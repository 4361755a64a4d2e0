"""``replay_ring`` on FlashInfer's ucache-flush kernel (:mod:`gdnlab.strategies.flashinfer`; "uf":
FlashInfer 0.7.4's ``gdn_kernels/gdn_decode_bf16_wy_ucache_flush.py``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import UnavailableError
from ...kernels.base import KernelPath
from ..base import Scratch, bookkeeping_index
from ..ops import RecurrentOps
from ..replay_ring import ReplayRing
from ._common import _UF, _FlashInferStrategy

# the ucache-flush ring (uf L316-L323): 16-row live window, 32 physical slots
_W_RING = 16
_RING_SLOTS = 32


@dataclass
class UCacheRingScratch(Scratch):
    """FlashInfer's ring, pool-scoped (uf L57-L72): ``k_cache [P, H, 32, K]`` (L2-normalised keys;
    allocated at the first verify), ``u_cache [P, HV, 32, V]`` (bf16), ``g_cache [P, HV, 32]`` float32
    (log decay accumulated since the checkpoint); cursors ``hist [P+1]`` (live entries, <= 16) and
    ``base [P+1]`` (window start, mod 32) int32 (entry P: padding dummy); ``flush_min``."""

    k_cache: torch.Tensor | None = None
    u_cache: torch.Tensor | None = None
    g_cache: torch.Tensor | None = None
    hist: torch.Tensor | None = None
    base: torch.Tensor | None = None
    flush_min: int = 0


class FlashInferReplayRing(_FlashInferStrategy, ReplayRing):
    """``replay_ring`` on FlashInfer's ``gated_delta_rule_mtp_ucache_flush`` (ReplaySSM).

    verify: one launch; rows with ``hist >= flush_min`` fold their window into the checkpoint
    (``S0 <- e^{G} S0 + sum_j e^{G - G_j} u_j k_j^T``, written to the pool) and append the T new
    entries past the window, others only append. Then, on the device, flushed rows' cursors slide
    (``base = (base + hist) & 31``, ``hist = 0``: the caller's commit of uf L3327-L3329, done here so
    that a verify without a commit leaves the committed state as it was). commit: ``hist +=
    accepted``. :meth:`state` evaluates the fold formula in PyTorch (float32).

    Args: ``flush_min`` (default ``17 - T``: flush when the window cannot take T more,
    uf L3663-L3668); ``ring_backend`` ``"auto"`` | ``"hmma"`` | ``"umma"`` (uf L3597-L3640; on SM90
    and for bf16 state ``"auto"`` runs HMMA).
    """

    name = "replay_ring"
    summary = "checkpoint + FlashInfer 32-slot (u, k, g) ring; verify folds full windows; commit moves a cursor"
    launches = {"verify": 1, "commit": 0}
    bookkeeping_ops = {"verify": 6, "commit": 3}
    kernel_modules = (_UF,)
    bookkeeping_fields = ("hist", "base")
    state_dtypes = (torch.bfloat16,)
    constraints = "state bfloat16; T in {4, 8}; K = V = 128"

    def __init__(self, ops: RecurrentOps | None = None, flush_min: int | None = None,
                 ring_backend: str = "auto") -> None:
        super().__init__(ops)
        if flush_min is not None and (not isinstance(flush_min, int) or flush_min < 1):
            raise ValueError(f"flush_min must be an integer >= 1, got {flush_min!r}")
        if ring_backend not in ("auto", "hmma", "umma"):
            raise ValueError(f"ring_backend must be 'auto', 'hmma' or 'umma', got {ring_backend!r}")
        self.flush_min = flush_min
        self.ring_backend = ring_backend

    @classmethod
    def _supports(cls, sd, T, batch, cc, HV):
        if T is not None and T not in (4, 8):
            return False, f"FlashInfer's ucache-flush kernel takes T in {{4, 8}}, got T={T} (uf L3656-L3661)"
        return True, "ok"

    def roofline_options(self) -> dict:
        return {"ring_slots": _RING_SLOTS, "flush_min": self.flush_min, "stash_dtype": torch.bfloat16}

    def scratch_bytes(self, shape, batch, T, pool_slots, state_dtype=None) -> int:
        """Ring ``P * 32 * (H K + HV V) * 2 + P * HV * 32 * 4`` + cursors ``2 (P+1) * 4``."""
        P = pool_slots
        return P * _RING_SLOTS * ((shape.H * shape.K + shape.HV * shape.V) * 2 + shape.HV * 4) + 2 * (P + 1) * 4

    def _allocate(self, pool, max_batch, T):
        self._check_alloc(pool, T)
        cap = _W_RING - T + 1
        fm = cap if self.flush_min is None else self.flush_min
        if not 1 <= fm <= cap:
            raise ValueError(f"flush_min={fm} out of range [1, {cap}] for T={T} (uf L3665-L3668)")
        P, HV, V, _ = pool.shape
        z = dict(device=pool.device)
        return UCacheRingScratch(
            T, max_batch, P, pool.dtype, pool.device, None,
            torch.zeros((P, HV, _RING_SLOTS, V), dtype=torch.bfloat16, **z),
            torch.zeros((P, HV, _RING_SLOTS), dtype=torch.float32, **z),
            torch.zeros(P + 1, dtype=torch.int32, **z), torch.zeros(P + 1, dtype=torch.int32, **z), fm)

    def reset(self, scratch, slots) -> None:
        bk = bookkeeping_index(torch.as_tensor(slots, device=scratch.device).reshape(-1), scratch.pool_slots)
        scratch.hist.index_fill_(0, bk, 0)
        scratch.base.index_fill_(0, bk, 0)

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        cc = self._prepare(q, pool, dims)
        if scratch.k_cache is None or scratch.k_cache.shape[1] != dims.H:
            scratch.k_cache = torch.zeros((scratch.pool_slots, dims.H, _RING_SLOTS, dims.K), dtype=torch.bfloat16,
                                          device=pool.device)
        mod = self._module(_UF)
        if (getattr(mod, "RING_SLOTS", _RING_SLOTS), getattr(mod, "W_RING", _W_RING)) != (_RING_SLOTS, _W_RING):
            raise UnavailableError(f"this FlashInfer's ucache ring has {mod.RING_SLOTS} slots / window "
                                   f"{mod.W_RING}; gdnlab reads 0.7.4's {_RING_SLOTS} / {_W_RING}")
        live = indices >= 0
        bk = self._bk(indices, scratch)
        hist, base = self._memo("fi_ring", lambda: (scratch.hist[bk].contiguous(), scratch.base[bk].contiguous()))
        kernel = "ucache_flush_hmma"
        why = getattr(mod, "_umma_unavailable_reason", None)
        if self.ring_backend != "hmma" and why is not None:
            try:
                if why(q.device, dims.T, dims.H, dims.H, dims.HV, True, False) is None:
                    kernel = "ucache_flush_umma"
            except Exception:  # noqa: BLE001 - description only
                pass
        self._path("verify", kernel, cc, dims, pool.dtype, fi_api="gdn_kernels.gated_delta_rule_mtp_ucache_flush",
                   flush_min=scratch.flush_min, ring_backend=self.ring_backend)
        out = mod.gated_delta_rule_mtp_ucache_flush(
            A_log=A_log, a=a.contiguous(), dt_bias=dt_bias, softplus_beta=1.0, softplus_threshold=20.0,
            q=q.contiguous(), k=k.contiguous(), v=v.contiguous(), b=b.contiguous(), initial_state_source=pool,
            initial_state_indices=self._memo("fi_idx", lambda: indices.to(torch.int32).contiguous()),
            use_qk_l2norm_in_kernel=True, scale=scale,
            output=self._out_arg(o), k_cache=scratch.k_cache, u_cache=scratch.u_cache, g_cache=scratch.g_cache,
            hist_len=hist, cache_base=base, flush_min=scratch.flush_min, restart_hist_on_flush=False,
            backend=self.ring_backend)
        self._emit(o, out, indices)  # the kernel retires padding rows' CTAs (uf L511-L530): zero their outputs

        def slide() -> None:
            flushed = live & (hist >= scratch.flush_min)
            zero = torch.zeros_like(hist)
            scratch.base[bk] = torch.where(flushed, (base + hist) & (_RING_SLOTS - 1), torch.where(live, base, zero))
            scratch.hist[bk] = torch.where(flushed | ~live, zero, hist)
        self._once("fi_slide", slide)

    def _commit(self, pool, indices, scratch, accepted):
        bk = self._bk(indices, scratch)

        def advance() -> None:
            live = indices >= 0
            new = scratch.hist[bk] + accepted.to(torch.int32)
            scratch.hist[bk] = torch.where(live, new, torch.zeros_like(new))
        self._once("fi_advance", advance)
        self.last_path = KernelPath("commit", "cursor_move", self.last_path.arch, {"strategy": self.name})

    def _window_state(self, pool, indices, scratch) -> torch.Tensor:
        """Checkpoint with the live window folded in, float32 ``[B, HV, V, K]`` (the kernel's flush
        formula, uf L18-L33 and L1814-L1834, in PyTorch)."""
        slots = indices.long().clamp(min=0)
        S0 = pool[slots].float()
        if scratch.k_cache is None:
            return S0
        bk = bookkeeping_index(indices, scratch.pool_slots)
        n = torch.where(indices >= 0, scratch.hist[bk], torch.zeros_like(scratch.hist[bk])).long()   # [B]
        B, HV = S0.shape[:2]
        H = scratch.k_cache.shape[1]
        j = torch.arange(_W_RING, device=pool.device)
        pos = (scratch.base[bk].long()[:, None] + j) & (_RING_SLOTS - 1)                             # [B, W]
        G = torch.gather(scratch.g_cache[slots], 2, pos[:, None, :].expand(B, HV, _W_RING))          # [B, HV, W]
        U = torch.gather(scratch.u_cache[slots], 2, pos[:, None, :, None].expand(B, HV, _W_RING, S0.shape[2]))
        Kc = torch.gather(scratch.k_cache[slots], 2, pos[:, None, :, None].expand(B, H, _W_RING, S0.shape[3]))
        Kc = Kc.repeat_interleave(HV // H, dim=1)
        G_last = torch.gather(G, 2, (n - 1).clamp(min=0)[:, None, None].expand(B, HV, 1))[..., 0]    # [B, HV]
        has = (n > 0)[:, None]
        mask = (j[None, :] < n[:, None])[:, None, :]                                                  # [B, 1, W]
        w = torch.where(mask, torch.exp(G_last[..., None] - G), torch.zeros_like(G))
        bdec = torch.where(has, torch.exp(G_last), torch.ones_like(G_last))
        return bdec[..., None, None] * S0 + torch.einsum("bhw,bhwv,bhwk->bhvk", w, U.float(), Kc.float())

    def _state(self, pool, indices, scratch):
        # as a fold would store it (rounded to the pool dtype), so fold(force=True) keeps it exactly
        return self._window_state(pool, indices, scratch).to(pool.dtype).float()

    def fold(self, pool, indices, scratch, force: bool = False) -> None:
        """``force``: fold every live row's window into its checkpoint now (PyTorch, one write per
        row) and empty the window; without ``force`` nothing is due (verify folds full windows).
        ``indices`` may list more rows than ``max_batch``. Padding rows write back slot 0's own
        value (no host sync to drop them)."""
        self._check_scratch(scratch, pool, None, scratch.T)
        if not force or not indices.numel():
            return
        live = indices >= 0
        slots = indices.long().clamp(min=0)
        S = self._window_state(pool, indices, scratch)
        pool.index_copy_(0, slots, torch.where(live.view(-1, 1, 1, 1), S.to(pool.dtype), pool[slots]))
        bk = bookkeeping_index(indices, scratch.pool_slots)       # padding rows: the dummy entry P
        hist = scratch.hist[bk]
        scratch.base[bk] = torch.where(live, (scratch.base[bk] + hist) & (_RING_SLOTS - 1), scratch.base[bk])
        scratch.hist.index_fill_(0, bk, 0)
