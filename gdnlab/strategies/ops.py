"""The one recurrent primitive every verify strategy is built from, and its PyTorch implementation.

:meth:`RecurrentOps.recurrent` does, for every row ``i`` of a batch and every value head, in float32:

1. load the state ``S = pool[src[i]]`` (``src[i] < 0``: padding row, nothing loaded or stored);
2. optionally **replay** ``count[i]`` stashed steps ``S = exp(g_j) S + u_j k_j^T`` (no ``S k``
   product: ``u`` was computed when the token was verified) from entry row ``row[i]``, positions
   ``0..count[i]-1``; optionally store the result into ``pool[src[i]]`` (rows with ``count[i] > 0``)
   and continue from the stored value (rounded to the pool dtype, so the same bytes a later reader sees);
3. optionally run **T new tokens** with the full delta rule (:mod:`gdnlab.kernels.base`), writing
   ``o[i, t]`` and, per token, optionally the state to a batch-scoped buffer ``inter[i, t]``, to pool
   slots ``dst[i, t]``, and/or the token's ``(u, k, g)`` to a stash at row ``stash.row[i]``,
   position ``stash.base[i] + t``.

``scatter_commit`` copies ``inter[i, accepted[i]-1]`` into ``pool[indices[i]]``.

Stash/ring buffers: ``u [N, L, HV, V]``, ``k [N, L, HV, K]`` (L2-normalised), ``g [N, L, HV]``
(log-space decay), float32 or bfloat16, last dim contiguous. The stored ``u`` is
``beta (v - exp(g) S_{t-1} k)`` in float32 before the cast.

:class:`TorchOps` is the PyTorch version (vectorised over rows and heads, sequential over tokens,
float32; reads replay counts back to the host, which is fine for the oracle);
:class:`gdnlab.strategies.triton.TritonOps` launches gdnlab's Triton kernels with the same semantics.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

import torch

from ..inputs import GDNInputs
from ..kernels.reference import gdn_gates, l2norm

__all__ = ["RecurrentOps", "TorchOps", "Replay", "Tokens", "Stash"]


@dataclass
class Replay:
    """Stashed steps to replay: buffers ``u [N,L,HV,V]``, ``k [N,L,HV,K]``, ``g [N,L,HV]``; per batch
    row its entry row ``row [B]`` and step count ``count [B]`` (int32/int64); ``write``: store the
    replayed state back into ``pool[src]`` (rows with ``count > 0``)."""

    u: torch.Tensor
    k: torch.Tensor
    g: torch.Tensor
    row: torch.Tensor
    count: torch.Tensor
    write: bool = False


@dataclass
class Stash:
    """Where the new tokens' ``(u, k, g)`` go: buffers as in :class:`Replay`, entry row ``row [B]``,
    first position ``base [B]`` (token ``t`` at ``base + t``)."""

    u: torch.Tensor
    k: torch.Tensor
    g: torch.Tensor
    row: torch.Tensor
    base: torch.Tensor


_INPUT_FIELDS = frozenset(f.name for f in fields(GDNInputs))


@dataclass
class Tokens:
    """The T new tokens of each row (``x``: :class:`gdnlab.inputs.GDNInputs`, whose fields read
    through: ``tokens.q`` is ``tokens.x.q``), ``scale`` for q, the output ``o [B,T,HV,V]`` to fill,
    and optional per-token state writes: ``inter [>=B, >=T, HV, V, K]`` (batch-scoped), ``dst [B, T]``
    pool slots, ``stash``."""

    x: GDNInputs
    scale: float
    o: torch.Tensor
    inter: torch.Tensor | None = None
    dst: torch.Tensor | None = None
    stash: Stash | None = None

    def __getattr__(self, name: str):
        if name in _INPUT_FIELDS:
            return getattr(self.x, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


class RecurrentOps(ABC):
    """A backend's implementation of the primitive (see the module docstring)."""

    name: str = "base"

    @abstractmethod
    def recurrent(self, pool: torch.Tensor, src: torch.Tensor, *, replay: Replay | None = None,
                  tokens: Tokens | None = None) -> None: ...

    @abstractmethod
    def scatter_commit(self, pool: torch.Tensor, indices: torch.Tensor, inter: torch.Tensor,
                       accepted: torch.Tensor) -> None: ...


class TorchOps(RecurrentOps):
    """PyTorch implementation of the primitive: the reference strategies' engine (CPU or GPU)."""

    name = "torch"

    def recurrent(self, pool, src, *, replay=None, tokens=None) -> None:
        s = src.long()
        live = s >= 0
        slot = s.clamp(min=0)
        S = pool[slot].float()                                                   # [B,HV,V,K]
        if replay is not None:
            S = self._replay(pool, S, live, slot, replay)
        if tokens is not None:
            self._tokens(pool, S, live, tokens)

    @staticmethod
    def _replay(pool, S, live, slot, rp: Replay) -> torch.Tensor:
        cnt = torch.where(live, rp.count.long(), torch.zeros_like(rp.count, dtype=torch.long))
        rows = rp.row.long().clamp(min=0)
        for j in range(int(cnt.max()) if cnt.numel() else 0):
            act = (cnt > j).view(-1, 1, 1, 1)
            u, k, g = rp.u[rows, j].float(), rp.k[rows, j].float(), rp.g[rows, j].float()
            S_new = S * torch.exp(g)[..., None, None] + u[..., :, None] * k[..., None, :]
            S = torch.where(act, S_new, S)
        if rp.write:
            w = torch.nonzero(live & (cnt > 0), as_tuple=True)[0]
            stored = S[w].to(pool.dtype)
            pool.index_copy_(0, slot[w], stored)
            S = S.clone()
            S[w] = stored.float()
        return S

    @staticmethod
    def _tokens(pool, S, live, tk: Tokens) -> None:
        B, T, H, K = tk.q.shape
        HV = tk.v.shape[2]
        r = HV // H
        qn = l2norm(tk.q.float()).repeat_interleave(r, dim=2) * tk.scale           # [B,T,HV,K]
        kn = l2norm(tk.k.float()).repeat_interleave(r, dim=2)
        g, beta = gdn_gates(tk.a, tk.b, tk.A_log, tk.dt_bias, torch.float32)      # [B,T,HV]
        vv = tk.v.float()
        rows = torch.nonzero(live, as_tuple=True)[0]
        for t in range(T):
            S = S * torch.exp(g[:, t])[..., None, None]
            kS = torch.einsum("nhvk,nhk->nhv", S, kn[:, t])
            u = beta[:, t, :, None] * (vv[:, t] - kS)                            # [B,HV,V]
            S = S + u[..., :, None] * kn[:, t, :, None, :]
            o_t = torch.einsum("nhvk,nhk->nhv", S, qn[:, t])
            tk.o[:, t] = torch.where(live.view(-1, 1, 1), o_t, torch.zeros_like(o_t)).to(tk.o.dtype)
            if tk.inter is not None:
                tk.inter[rows, t] = S[rows].to(tk.inter.dtype)
            if tk.dst is not None:
                d = tk.dst[rows, t].long()
                keep = d >= 0
                pool.index_copy_(0, d[keep], S[rows[keep]].to(pool.dtype))
            if tk.stash is not None:
                st = tk.stash
                srow, pos = st.row.long()[rows], st.base.long()[rows] + t
                st.u[srow, pos] = u[rows].to(st.u.dtype)
                st.k[srow, pos] = kn[rows, t].to(st.k.dtype)
                st.g[srow, pos] = g[rows, t].to(st.g.dtype)

    def scatter_commit(self, pool, indices, inter, accepted) -> None:
        idx = indices.long()
        rows = torch.nonzero(idx >= 0, as_tuple=True)[0]
        step = accepted.long()[rows] - 1
        pool.index_copy_(0, idx[rows], inter[rows, step].to(pool.dtype))
