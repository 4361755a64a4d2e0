"""The ``triton`` backend of every strategy: the strategy logic on :class:`TritonOps`, gdnlab's own
Triton kernels (:mod:`gdnlab.strategies._triton_kernels`).

Per step each strategy launches (bookkeeping ops on ``[B]`` int32 tensors aside):
``full_cache`` verify + scatter commit (2); ``token_slots`` verify (1); ``recompute`` verify +
replay commit (2); ``recompute_fused`` replay+verify (1); ``replay_ring`` fold (rows that need it
only) + replay+verify (2). Nothing reads a device value back to the host with ``validate=False``.

Tiling follows :func:`gdnlab.kernels.triton.auto_config` (BV rows of V per program, one warp by
default); ``bv`` / ``num_warps`` / ``num_stages`` options override it. Importing this module never
imports Triton; :func:`availability` says why it cannot run (no CUDA device and no
``TRITON_INTERPRET=1``, Triton not installed).
"""
from __future__ import annotations

import torch

from ..kernels.triton import TritonBackend, _next_pow2, check_bv, launch_mode, tiling
from .base import VerifyStrategy
from .ops import RecurrentOps, Replay, Tokens
from .registry import STRATEGY_CLASSES

__all__ = ["STRATEGIES", "availability", "TritonOps", "BACKEND"]

BACKEND = "triton"


def availability() -> tuple[bool, str]:
    return TritonBackend.availability()


class TritonOps(RecurrentOps):
    """Launches the strategy kernels. Args: ``bv`` (power of two), ``num_warps``, ``num_stages``
    (``None``: :func:`gdnlab.kernels.triton.auto_config`)."""

    name = "triton"

    def __init__(self, bv: int | None = None, num_warps: int | None = None, num_stages: int | None = None) -> None:
        check_bv(bv)
        self.bv, self.num_warps, self.num_stages = bv, num_warps, num_stages
        self.last_launch: dict = {}

    def _launch(self, B: int, pool: torch.Tensor) -> tuple[bool, int, int, int, int]:
        """``(interpreter, BV, num_warps, num_stages, NV)`` of a launch over ``B`` rows of ``pool``."""
        interp = launch_mode(pool.device, "triton strategies")
        _, HV, V, _ = pool.shape
        bv, nw, ns = tiling(B, HV, V, pool.device, self.bv, self.num_warps, self.num_stages)
        return interp, bv, nw, ns, -(-V // bv)

    def recurrent(self, pool, src, *, replay: Replay | None = None, tokens: Tokens | None = None) -> None:
        from . import _triton_kernels as tk
        B = src.shape[0]
        _, HV, V, K = pool.shape
        if B == 0:
            return
        interp, bv, nw, ns, NV = self._launch(B, pool)
        dummy_i = src
        rp = replay
        if rp is not None:
            ru, rk, rg, rrow, rcnt = rp.u, rp.k, rp.g, rp.row, rp.count
            rs = (*ru.stride()[:3], *rk.stride()[:3], *rg.stride()[:2])
        else:
            ru = rk = rg = pool
            rrow = rcnt = dummy_i
            rs = (0,) * 8
        if tokens is not None:
            tk_ = tokens
            T, H = tk_.q.shape[1], tk_.q.shape[2]
            ins = (tk_.q, tk_.k, tk_.v, tk_.a, tk_.b, tk_.A_log, tk_.dt_bias, tk_.o)
            strides = (*tk_.q.stride(), *tk_.k.stride(), *tk_.v.stride(), *tk_.a.stride(), *tk_.b.stride())
            o_s = tk_.o.stride()[:3]
            inter = tk_.inter if tk_.inter is not None else pool
            i_s = tk_.inter.stride()[:4] if tk_.inter is not None else (0, 0, 0, 0)
            dst = tk_.dst if tk_.dst is not None else dummy_i
            d_s = tk_.dst.stride()[:2] if tk_.dst is not None else (0, 0)
            st = tk_.stash
            if st is not None:
                w = (st.u, st.k, st.g, st.row, st.base)
                w_s = (*st.u.stride()[:3], *st.k.stride()[:3], *st.g.stride()[:2])
            else:
                w, w_s = (pool, pool, pool, dummy_i, dummy_i), (0,) * 8
            scale = float(tk_.scale)
        else:
            T, H, scale = 0, 1, 1.0
            ins = (pool,) * 5 + (pool, pool, pool)
            strides = (0,) * 18
            o_s, inter, i_s, dst, d_s = (0, 0, 0), pool, (0, 0, 0, 0), dummy_i, (0, 0)
            w, w_s = (pool, pool, pool, dummy_i, dummy_i), (0,) * 8
        kern, _ = tk.get_kernels(interp)
        kern[(NV * B * HV,)](
            pool, src, ru, rk, rg, rrow, rcnt, *ins, inter, dst, *w,
            T, scale, *rs, *strides, *pool.stride()[:3], *o_s, *i_s, *d_s, *w_s,
            H=H, HV=HV, K=K, V=V, BK=_next_pow2(K), BV=bv, NV=NV,
            REPLAY=rp is not None, REPLAY_WRITE=bool(rp is not None and rp.write), TOKENS=tokens is not None,
            STORE_INTER=bool(tokens is not None and tokens.inter is not None),
            STORE_SLOTS=bool(tokens is not None and tokens.dst is not None),
            STASH=bool(tokens is not None and tokens.stash is not None),
            num_warps=nw, num_stages=ns,
        )
        self.last_launch = {"kernel": "gdnlab_triton_strategy_recurrent", "BV": bv, "num_warps": nw,
                            "num_stages": ns, "grid": NV * B * HV, "interpreter": interp,
                            "replay": rp is not None, "tokens": tokens is not None}

    def scatter_commit(self, pool, indices, inter, accepted) -> None:
        from . import _triton_kernels as tk
        B = indices.shape[0]
        _, HV, V, K = pool.shape
        if B == 0:
            return
        interp, bv, nw, _, NV = self._launch(B, pool)
        _, kern = tk.get_kernels(interp)
        kern[(NV * B * HV,)](pool, indices, inter, accepted, *pool.stride()[:3], *inter.stride()[:4],
                             HV=HV, K=K, V=V, BK=_next_pow2(K), BV=bv, NV=NV, num_warps=nw)
        self.last_launch = {"kernel": "gdnlab_triton_scatter_commit", "BV": bv, "num_warps": nw,
                            "grid": NV * B * HV, "interpreter": interp}


def _bind(cls: type[VerifyStrategy]) -> type[VerifyStrategy]:
    tiling = ("bv", "num_warps", "num_stages")

    def init(self, **options) -> None:
        ops = TritonOps(**{k: options.pop(k) for k in tiling if k in options})
        cls.__init__(self, ops, **options)

    return type(f"Triton{cls.__name__}", (cls,), {
        "backend": BACKEND, "make_ops": TritonOps, "__init__": init,
        "__doc__": f"{cls.__doc__}\n\nBackend: gdnlab's Triton kernels; also takes bv, num_warps, num_stages."})


STRATEGIES: dict[str, type[VerifyStrategy]] = {c.name: _bind(c) for c in STRATEGY_CLASSES}
