"""``replay_ring``: a checkpoint state plus a ring of per-token (u, k, g); commit moves a cursor.

ReplaySSM (SGLang #28451/#28695 ``--enable-linear-replayssm-spec``, vLLM #47576/#49887, FlashInfer
``gdn_kernels.gated_delta_rule_mtp_ucache_flush``): the pool row is a **checkpoint**; each request
also owns a ring of ``R`` entries (``u [HV, V]``, normalised ``k [HV, K]``, log decay ``g [HV]``,
float32 by default) and a cursor ``cursor [P+1]`` (int32 on the device; entry P is the padding
dummy). The committed state is the checkpoint with ring entries ``0..cursor-1`` replayed
(``S = exp(g) S + u k^T``).

* verify: (1) **fold** — one launch over the batch; rows whose ring cannot take T more entries
  (``cursor + T > R``) or that reached ``flush_min`` replay their ring into the checkpoint and write
  the pool row once, then a bookkeeping op sets their cursor to 0; other rows load nothing.
  (2) verify — replay the live entries onto the checkpoint (in registers), run the T tokens
  output-only with the full delta rule, write their ``(u, k, g)`` at ring positions
  ``cursor .. cursor+T-1``. No state is written.
* commit: ``cursor += accepted`` (a pointer move).

Amortised fold: with accept length ``a`` a row folds every ``f = min(floor((R-T)/a) + 1,
ceil(flush_min/a))`` steps, moving 2 S plus ``f a`` ring entries; the verify replays on average
``a (f-1) / 2`` entries. Per step: S (1 + 2/f) plus ring entries (:meth:`ReplayRing.row_bytes`).
So the fold cost depends on the accept length — a sweep must draw accepted lengths with the
intended mean and time ``verify + commit`` over many steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..engines import ENGINE_VERSIONS, EngineRun
from ..inputs import GDNInputs
from ..roofline import RowBytes
from .base import ByteUnits, Scratch, VerifyStrategy, _dtype_opt, bookkeeping_index
from .ops import Replay, Stash, Tokens
from .recompute import stash_buffers

__all__ = ["ReplayRing", "RingScratch", "default_ring_slots", "ring_fold_period"]


def default_ring_slots(T: int) -> int:
    """``max(16, 4 T)`` ring entries per request."""
    return max(16, 4 * T)


def ring_fold_period(T: int, accept_len: float, ring_slots: int | None = None, flush_min: int | None = None) -> int:
    """Steps between two folds of a ``replay_ring`` row whose cursor grows by ``accept_len`` a step:
    the smallest ``f >= 1`` with ``f a > R - T`` (the next verify would not fit) or ``f a >= flush_min``,
    i.e. ``min(floor((R - T) / a) + 1, ceil(flush_min / a))`` (R = ``ring_slots``, default
    :func:`default_ring_slots`). A mean-value estimate: real rows draw integer accept lengths, so
    measure the fold by timing steps with the intended distribution."""
    R = ring_slots or default_ring_slots(T)
    if not 1 <= accept_len <= T or R < T:
        raise ValueError(f"need 1 <= accept_len <= T and ring_slots >= T; got accept_len={accept_len}, T={T}, "
                         f"ring_slots={R}")
    m = min(flush_min or R, R)
    return max(1, min(math.floor((R - T) / accept_len) + 1, math.ceil(m / accept_len)))


@dataclass
class RingScratch(Scratch):
    """Pool-scoped ring ``u [P,R,HV,V]``, ``k [P,R,HV,K]``, ``g [P,R,HV]`` and ``cursor [P+1]`` int32;
    ``ring_slots`` R and ``flush_min`` (cursor at which a row folds even if T more entries fit)."""

    u: torch.Tensor = None
    k: torch.Tensor = None
    g: torch.Tensor = None
    cursor: torch.Tensor = None
    ring_slots: int = 0
    flush_min: int = 0


class ReplayRing(VerifyStrategy):
    """Args: ``ring_slots`` R (default :func:`default_ring_slots`, must be >= T); ``flush_min``
    (fold once ``cursor >= flush_min``; default: only when full); ``ring_dtype`` (float32 default)."""

    name = "replay_ring"
    summary = "checkpoint + ring of (u, k, g); verify replays the ring; commit moves a cursor; fold when full"
    color = "#d62728"
    launches = {"fold": 1, "verify": 1, "commit": 0}
    bookkeeping_ops = {"fold": 3, "verify": 2, "commit": 2}
    main_kernel_phases = ("fold", "verify")
    folds = True
    bookkeeping_fields = ("cursor",)
    engine_runs = (
        EngineRun("sglang", ENGINE_VERSIONS["sglang"],
                  ("--linear-attn-decode-backend", "triton", "--enable-linear-replayssm-spec",
                   "--linear-replayssm-cache-len", "16"),
                  state_dtypes=("float32", "bfloat16"), backends=("sglang_triton",),
                  source="sgl-project/sglang v0.5.23 python/sglang/srt/arg_groups/fields/exec_.py "
                         "--enable-linear-replayssm-spec, --linear-replayssm-cache-len (PR #28695); "
                         "arg_groups/attention_hook.py L450-L525 (unset --mamba-ssm-dtype becomes float32, "
                         "bfloat16 is allowed with a warning); python/sglang/kernels/ops/attention/linear/"
                         "gdn_replayssm_spec_decode.py (gdn_replayssm_spec_decode, commit_gdn_replayssm_spec / "
                         "_circular)",
                  note="SGLang's Triton ReplaySSM verify; its commit folds rows whose ring is full into the "
                       "checkpoint (every commit for a bf16 state); bf16 d/k ring with low parts, per key head "
                       "(gdnlab.strategies.sglang.triton); gdnlab's flashinfer replay_ring is FlashInfer's bf16 "
                       "ucache ring, which no released engine runs"),
    )

    @classmethod
    def row_bytes(cls, u: ByteUnits, T: int, accept_len: float, *, ring_slots: int | None = None,
                  flush_min: int | None = None, **options) -> dict[str, RowBytes]:
        """Fold period f = :func:`ring_fold_period`; verify reads S, on average ``a (f - 1) / 2``
        live entries, writes T e; the fold reads S and ``f a`` entries and writes S every f steps:
        ``S (1 + 2 / f) + e (a (f - 1) / 2 + T + a)``."""
        a = float(accept_len)
        f = ring_fold_period(T, a, ring_slots, flush_min)
        return {"verify": RowBytes(state_read=u.S, scratch_read=a * (f - 1) / 2 * u.e, scratch_write=T * u.e),
                "fold": RowBytes(state_read=u.S / f, state_write=u.S / f, scratch_read=a * u.e)}

    @classmethod
    def _scratch(cls, u: ByteUnits, B: int, T: int, P: int, *, ring_slots: int | None) -> int:
        """ring ``P R e`` + cursor ``P + 1`` int32 (R = ``ring_slots``, default :func:`default_ring_slots`)."""
        return P * (ring_slots or default_ring_slots(T)) * u.e + (P + 1) * 4

    def __init__(self, ops=None, ring_slots: int | None = None, flush_min: int | None = None,
                 ring_dtype: torch.dtype | str | None = None) -> None:
        super().__init__(ops)
        for nm, val in (("ring_slots", ring_slots), ("flush_min", flush_min)):
            if val is not None and (not isinstance(val, int) or val < 1):
                raise ValueError(f"{nm} must be an integer >= 1, got {val!r}")
        self.ring_slots = ring_slots
        self.flush_min = flush_min
        self.ring_dtype = _dtype_opt(ring_dtype, "ring_dtype") or torch.float32

    def roofline_options(self) -> dict:
        return {"ring_slots": self.ring_slots, "flush_min": self.flush_min, "stash_dtype": self.ring_dtype}

    def _allocate(self, pool, max_batch, T):
        R = self.ring_slots or default_ring_slots(T)
        if R < T:
            raise ValueError(f"ring_slots={R} must be >= T={T} (a verify appends T entries)")
        P = pool.shape[0]
        u, k, g = stash_buffers(P, R, pool, self.ring_dtype)
        cursor = torch.zeros(P + 1, dtype=torch.int32, device=pool.device)
        flush = min(self.flush_min or R, R)
        return RingScratch(T, max_batch, P, pool.dtype, pool.device, u, k, g, cursor, R, flush)

    def reset(self, scratch, slots) -> None:
        s = torch.as_tensor(slots, device=scratch.device).reshape(-1)
        scratch.cursor.index_fill_(0, bookkeeping_index(s, scratch.pool_slots), 0)

    def fold(self, pool, indices, scratch, force: bool = False) -> None:
        """Replay the ring into the checkpoint of rows that need it (``cursor + T > R`` or
        ``cursor >= flush_min``; ``force``: every row with entries); set their cursor to 0."""
        super().fold(pool, indices, scratch, force)
        if not indices.numel():
            return
        self._fold(pool, indices, scratch, force)

    def _fold_plan(self, indices, scratch, force: bool):
        """``(bk, cursor before, rows to fold, cursor after)`` of this step's rows."""
        bk = bookkeeping_index(indices, scratch.pool_slots)
        cur = scratch.cursor[bk]
        if force:
            need = (indices >= 0) & (cur > 0)
        else:
            need = (indices >= 0) & ((cur + scratch.T > scratch.ring_slots) | (cur >= scratch.flush_min))
        src = torch.where(need, indices, torch.full_like(indices, -1))
        return bk, cur, src, torch.where(need, torch.zeros_like(cur), cur)

    def _fold(self, pool, indices, scratch, force: bool) -> None:
        """The fold launch (rows that need it) and, once per step, their cursors set to 0."""
        bk, cur, src, after = self._memo(f"fold_{force}", lambda: self._fold_plan(indices, scratch, force))
        self.ops.recurrent(pool, src, replay=Replay(scratch.u, scratch.k, scratch.g, indices, cur, write=True))

        def reset() -> None:
            scratch.cursor[bk] = after
        self._once(f"fold_cursor_{force}", reset)

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        self._fold(pool, indices, scratch, False)
        cur = self._memo("fold_False", lambda: self._fold_plan(indices, scratch, False))[3]
        rp = Replay(scratch.u, scratch.k, scratch.g, indices, cur, write=False)
        st = Stash(scratch.u, scratch.k, scratch.g, indices, cur)
        self.ops.recurrent(pool, indices, replay=rp,
                           tokens=Tokens(GDNInputs(q, k, v, a, b, A_log, dt_bias), scale, o, stash=st))

    def _commit(self, pool, indices, scratch, accepted):
        bk = self._bk(indices, scratch)

        def advance() -> None:
            scratch.cursor[bk] = scratch.cursor[bk] + accepted.to(torch.int32)
        self._once("advance_cursor", advance)

    def _state(self, pool, indices, scratch):
        cur = scratch.cursor[bookkeeping_index(indices, scratch.pool_slots)]
        return self._materialise(pool, indices, Replay(scratch.u, scratch.k, scratch.g, indices, cur, True))
