"""gdnlab's Triton kernels for the verify strategies: one flexible recurrent kernel and a commit scatter.

Imported only by :mod:`gdnlab.strategies.triton` when a kernel is launched, so importing the backend
module never needs Triton. Work split as in :mod:`gdnlab.kernels._triton_gdn`: the grid is
``(V-blocks, B*HV)`` flattened to one axis, each program owns a ``[BV, BK]`` tile of one (row, value
head)'s ``[V, K]`` state (K contiguous, the pool's layout) and walks its tokens in a loop; all
arithmetic is float32; pool/buffer offsets are int64. The per-token maths is
:func:`gdnlab.kernels._triton_gdn.gdn_token`, the one the decode / verify kernel runs, and the kernels
are wrapped by :func:`gdnlab.kernels._triton_gdn.jit_kernels`.

``_strategy_recurrent`` implements :meth:`gdnlab.strategies.ops.RecurrentOps.recurrent`; constexpr
flags keep each variant lean:

* ``REPLAY``: replay ``count[i]`` stashed steps ``S = exp(g) S + u k^T`` from entry row ``row[i]``;
  ``REPLAY_WRITE``: store the replayed state into ``pool[src[i]]`` (rows with ``count > 0``) and
  continue from the stored (rounded) value.
* ``TOKENS``: the T new tokens (gates, L2 norm, delta rule, ``o = S q``), with ``STORE_INTER``
  (batch-scoped ``inter[i, t]``), ``STORE_SLOTS`` (pool slot ``dst[i, t]``) and ``STASH`` (``u`` by
  every V-tile program, ``k`` and ``g`` by the first V-tile program of the row and head only).
  Without ``TOKENS`` a row with ``count == 0`` loads nothing (a fold launch skips rows that need none).

Masks are comparisons of blocks against per-row bounds (``o_v < v_end`` with ``v_end = 0`` for a
padding row), never ``block & scalar``: Triton's interpreter stores that as int32, which Triton
3.9's masked loads/stores reject. Scalars (``g``) are stored from lane 0 of a block for the same reason.

``_scatter_commit``: ``pool[indices[i]] = inter[i, accepted[i]-1]`` for live rows in one launch with
no host sync (what SGLang's ``fused_mamba_state_scatter_with_mask`` does for the full cache).
"""
import triton
import triton.language as tl

from ..kernels._triton_gdn import gate_constants, gdn_token, jit_kernels, program_tile, state_offsets

__all__ = ["get_kernels", "TRITON_VERSION"]

TRITON_VERSION: str = triton.__version__


# ---------------------------------------------------------------------------------------- device functions
def _replay(b_s, ru_ptr, rk_ptr, rg_ptr, rrow_ptr, i_n, i_hv, o_v, o_k, cnt, mask_v, mask_k,
            s_run, s_rul, s_ruh, s_rkn, s_rkl, s_rkh, s_rgn, s_rgl):
    """``cnt`` stashed steps ``S = exp(g) S + u k^T`` on the float32 tile ``b_s`` ``[BV, BK]``, read
    from entry row ``rrow[i_n]`` of the stash ``u`` ``[n, L, HV, V]``, ``k`` ``[n, L, HV, K]``, ``g``
    ``[n, L, HV]``."""
    rrow = tl.maximum(tl.load(rrow_ptr + i_n).to(tl.int64), 0)
    p_ru = ru_ptr + rrow * s_run + i_hv * s_ruh + o_v
    p_rk = rk_ptr + rrow * s_rkn + i_hv * s_rkh + o_k
    p_rg = rg_ptr + rrow * s_rgn + i_hv
    for j in range(cnt):
        b_u = tl.load(p_ru + j * s_rul, mask=mask_v, other=0.0).to(tl.float32)
        b_kr = tl.load(p_rk + j * s_rkl, mask=mask_k, other=0.0).to(tl.float32)
        b_g = tl.load(p_rg + j * s_rgl).to(tl.float32)
        b_s = b_s * tl.exp(b_g) + b_u[:, None] * b_kr[None, :]
    return b_s


def _stash_pointers(wu_ptr, wk_ptr, wg_ptr, wrow_ptr, wbase_ptr, i_n, i_v, i_hv, o_v, o_k, live,
                    s_wun, s_wuh, s_wkn, s_wkh, s_wgn, K: tl.constexpr):
    """Where this program stashes its tokens' ``(u, k, g)``: ``(p_wu, p_wk, p_wg, wbase, mask_wk,
    mask_wg)`` — entry row ``wrow[i_n]`` from position ``wbase[i_n]``; ``k`` and ``g`` by the first
    V-tile program only (``g`` from lane 0 of a block)."""
    wrow = tl.maximum(tl.load(wrow_ptr + i_n).to(tl.int64), 0)
    wbase = tl.load(wbase_ptr + i_n).to(tl.int64)
    p_wu = wu_ptr + wrow * s_wun + i_hv * s_wuh + o_v
    p_wk = wk_ptr + wrow * s_wkn + i_hv * s_wkh + o_k
    p_wg = wg_ptr + wrow * s_wgn + i_hv + o_k * 0
    k_end = tl.where(i_v == 0, tl.where(live, K, 0), 0)        # k, g: first V-tile only
    g_end = tl.where(i_v == 0, tl.where(live, 1, 0), 0)
    mask_wk = o_k < k_end
    mask_wg = o_k < g_end
    return p_wu, p_wk, p_wg, wbase, mask_wk, mask_wg


def _stash_token(p_wu, p_wk, p_wg, pos, b_u, b_k, b_g, mask_v, mask_wk, mask_wg, s_wul, s_wkl, s_wgl,
                 BK: tl.constexpr):
    """Store one token's ``u`` ``[BV]``, ``k`` ``[BK]`` and ``g`` (scalar) at stash position ``pos``."""
    tl.store(p_wu + pos * s_wul, b_u.to(p_wu.dtype.element_ty), mask=mask_v)
    tl.store(p_wk + pos * s_wkl, b_k.to(p_wk.dtype.element_ty), mask=mask_wk)
    b_gv = tl.zeros([BK], dtype=tl.float32) + b_g
    tl.store(p_wg + pos * s_wgl, b_gv.to(p_wg.dtype.element_ty), mask=mask_wg)


def _store_slot(pool_ptr, dst_ptr, n64, t, b_s, v_end, i_hv, o_v, o_k, mask_k, s_db, s_dt, s_pp, s_ph, s_pv):
    """Store the tile ``b_s`` after token ``t`` into pool slot ``dst[n64, t]`` (none when negative)."""
    d = tl.load(dst_ptr + n64 * s_db + t * s_dt).to(tl.int64)
    d_end = tl.where(d >= 0, v_end, 0)
    d_off = state_offsets(tl.maximum(d, 0), i_hv, o_v, o_k, s_pp, s_ph, s_pv)
    tl.store(pool_ptr + d_off, b_s.to(pool_ptr.dtype.element_ty), mask=(o_v[:, None] < d_end) & mask_k[None, :])


# ---------------------------------------------------------------------------------------- kernels
def _strategy_recurrent(
    pool_ptr, src_ptr,
    ru_ptr, rk_ptr, rg_ptr, rrow_ptr, rcnt_ptr,
    q_ptr, k_ptr, v_ptr, a_ptr, b_ptr, A_log_ptr, dt_bias_ptr, o_ptr,
    inter_ptr, dst_ptr,
    wu_ptr, wk_ptr, wg_ptr, wrow_ptr, wbase_ptr,
    T, scale,
    s_run, s_rul, s_ruh, s_rkn, s_rkl, s_rkh, s_rgn, s_rgl,
    s_qb, s_qt, s_qh, s_qk,
    s_kb, s_kt, s_kh, s_kk,
    s_vb, s_vt, s_vh, s_vv,
    s_ab, s_at, s_ah,
    s_bb, s_bt, s_bh,
    s_pp, s_ph, s_pv,
    s_ob, s_ot, s_oh,
    s_ib, s_it, s_ih, s_iv,
    s_db, s_dt,
    s_wun, s_wul, s_wuh, s_wkn, s_wkl, s_wkh, s_wgn, s_wgl,
    H: tl.constexpr, HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr,
    REPLAY: tl.constexpr, REPLAY_WRITE: tl.constexpr, TOKENS: tl.constexpr,
    STORE_INTER: tl.constexpr, STORE_SLOTS: tl.constexpr, STASH: tl.constexpr,
):
    i_v, i_n, i_hv, i_h, o_k, o_v = program_tile(NV, HV, H, BK, BV)
    n64 = i_n.to(tl.int64)
    mask_k = o_k < K

    slot = tl.load(src_ptr + i_n).to(tl.int64)
    live = slot >= 0
    slot = tl.maximum(slot, 0)
    v_end = tl.where(live, V, 0)     # V rows this program may touch: 0 for a padding row
    cnt = 0
    if REPLAY:
        cnt = tl.where(live, tl.load(rcnt_ptr + i_n).to(tl.int32), 0)
        if not TOKENS:
            v_end = tl.where(cnt > 0, v_end, 0)
    mask_v = o_v < v_end
    mask_s = mask_v[:, None] & mask_k[None, :]

    s_off = state_offsets(slot, i_hv, o_v, o_k, s_pp, s_ph, s_pv)
    b_s = tl.load(pool_ptr + s_off, mask=mask_s, other=0.0).to(tl.float32)

    if REPLAY:
        b_s = _replay(b_s, ru_ptr, rk_ptr, rg_ptr, rrow_ptr, i_n, i_hv, o_v, o_k, cnt, mask_v, mask_k,
                      s_run, s_rul, s_ruh, s_rkn, s_rkl, s_rkh, s_rgn, s_rgl)
        if REPLAY_WRITE:
            w_end = tl.where(cnt > 0, v_end, 0)
            mask_w = (o_v[:, None] < w_end) & mask_k[None, :]
            b_st = b_s.to(pool_ptr.dtype.element_ty)
            tl.store(pool_ptr + s_off, b_st, mask=mask_w)
            b_s = b_st.to(tl.float32)

    if TOKENS:
        neg_A, dt_b = gate_constants(A_log_ptr, dt_bias_ptr, i_hv)
        p_q = q_ptr + n64 * s_qb + i_h * s_qh + o_k * s_qk
        p_k = k_ptr + n64 * s_kb + i_h * s_kh + o_k * s_kk
        p_v = v_ptr + n64 * s_vb + i_hv * s_vh + o_v * s_vv
        p_a = a_ptr + n64 * s_ab + i_hv * s_ah
        p_b = b_ptr + n64 * s_bb + i_hv * s_bh
        p_o = o_ptr + n64 * s_ob + i_hv * s_oh + o_v
        mask_vo = o_v < V
        if STORE_INTER:
            i_off = state_offsets(n64, i_hv, o_v, o_k, s_ib, s_ih, s_iv)
        if STASH:
            p_wu, p_wk, p_wg, wbase, mask_wk, mask_wg = _stash_pointers(
                wu_ptr, wk_ptr, wg_ptr, wrow_ptr, wbase_ptr, i_n, i_v, i_hv, o_v, o_k, live,
                s_wun, s_wuh, s_wkn, s_wkh, s_wgn, K)
        for t in range(T):
            b_s, b_o, b_k, b_u, b_g = gdn_token(b_s, p_q + t * s_qt, p_k + t * s_kt, p_v + t * s_vt,
                                                p_a + t * s_at, p_b + t * s_bt, mask_k, mask_vo, neg_A, dt_b, scale)
            b_o = tl.where(mask_v, b_o, 0.0)
            tl.store(p_o + t * s_ot, b_o.to(o_ptr.dtype.element_ty), mask=mask_vo)
            if STORE_INTER:
                tl.store(inter_ptr + i_off + t * s_it, b_s.to(inter_ptr.dtype.element_ty), mask=mask_s)
            if STORE_SLOTS:
                _store_slot(pool_ptr, dst_ptr, n64, t, b_s, v_end, i_hv, o_v, o_k, mask_k, s_db, s_dt,
                            s_pp, s_ph, s_pv)
            if STASH:
                _stash_token(p_wu, p_wk, p_wg, wbase + t, b_u, b_k, b_g, mask_v, mask_wk, mask_wg,
                             s_wul, s_wkl, s_wgl, BK)


def _scatter_commit(
    pool_ptr, idx_ptr, inter_ptr, acc_ptr,
    s_pp, s_ph, s_pv, s_ib, s_it, s_ih, s_iv,
    HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr,
):
    i_v, i_n, i_hv, i_h, o_k, o_v = program_tile(NV, HV, 1, BK, BV)
    slot = tl.load(idx_ptr + i_n).to(tl.int64)
    v_end = tl.where(slot >= 0, V, 0)
    step = tl.maximum(tl.load(acc_ptr + i_n).to(tl.int64) - 1, 0)
    mask = (o_v[:, None] < v_end) & (o_k[None, :] < K)
    src = (i_n.to(tl.int64) * s_ib + step * s_it + i_hv * s_ih + o_v[:, None].to(tl.int64) * s_iv + o_k[None, :])
    x = tl.load(inter_ptr + src, mask=mask, other=0.0)
    dst = state_offsets(tl.maximum(slot, 0), i_hv, o_v, o_k, s_pp, s_ph, s_pv)
    tl.store(pool_ptr + dst, x.to(pool_ptr.dtype.element_ty), mask=mask)


#: device functions of this module's kernels (wrapped with them by :func:`jit_kernels`)
_DEVICE_FUNCTIONS = (_replay, _stash_pointers, _stash_token, _store_slot)


def get_kernels(interpret: bool | None = None) -> tuple:
    """``(recurrent, scatter_commit)`` wrapped by ``triton.jit`` for the current mode (compiled, or
    the CPU interpreter under ``TRITON_INTERPRET=1``): :func:`gdnlab.kernels._triton_gdn.jit_kernels`."""
    return jit_kernels((_strategy_recurrent, _scatter_commit), interpret, _DEVICE_FUNCTIONS)
