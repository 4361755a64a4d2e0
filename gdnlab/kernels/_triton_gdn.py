"""gdnlab's own Triton kernel for GDN decode and MTP verify on a state pool (SGLang semantics).

Imported only by :mod:`gdnlab.kernels.triton` when a Triton call is made, so importing the backend
module never needs Triton. Written for gdnlab after reading how SGLang's
``fused_sigmoid_gating_delta_rule_update`` and fla's ``fused_recurrent_gated_delta_rule`` organise
the work (one program per state tile, gates fused, tokens walked in a loop); the code is our own.

One kernel family, two modes (compile-time flags):

* decode (``WRITE_POOL``): load ``pool[indices[i]]``, run the token(s), store the state back into
  the same pool row in the pool's dtype.
* verify (``STORE_INTERMEDIATE``): load ``pool[indices[i]]``, store the state after every token to
  ``intermediate[i, t]`` (row ``i`` = batch row, *not* the pool slot) in the buffer's dtype; the pool
  is not written.

Work split: the grid is ``(V-blocks, B*HV)`` flattened to one axis (V-block fastest, so the programs
of one (row, value head) are neighbours and share their q/k/v loads in L2; one axis because CUDA
limits grid y/z to 65535). Each program owns a ``[BV, BK]`` tile of one (row, value head)'s state
``[V, K]`` — K contiguous in memory, exactly the pool's ``[P, HV, V, K]`` layout, so loads and stores
are row-contiguous. Every reduction (``S k``, ``S q``) runs over K inside the tile, so programs never
talk to each other. All arithmetic is float32; q/k/v/a/b/A_log/dt_bias may be bf16/fp16/fp32.

A negative ``indices[i]`` marks a padding row: no state is loaded or stored (masked), and its outputs
are written as zeros. Constants (inlined as literals): L2-norm epsilon 1e-6, softplus threshold 20.
Pool and intermediate offsets are computed in int64 (a 1 MiB-per-slot fp32
pool passes 2**31 elements at slot 8192; FlashInfer issue #3230 was this overflow).
"""
import triton
import triton.language as tl

from ._triton_interpret import interpret_enabled

__all__ = ["get_kernel", "interpret_enabled", "TRITON_VERSION"]

TRITON_VERSION: str = triton.__version__


def _gdn_fused_recurrent(
    q_ptr, k_ptr, v_ptr, a_ptr, b_ptr, A_log_ptr, dt_bias_ptr,
    pool_ptr, idx_ptr, o_ptr, inter_ptr,
    T, scale,
    s_qb, s_qt, s_qh, s_qk,
    s_kb, s_kt, s_kh, s_kk,
    s_vb, s_vt, s_vh, s_vv,
    s_ab, s_at, s_ah,
    s_bb, s_bt, s_bh,
    s_pp, s_ph, s_pv,
    s_ob, s_ot, s_oh,
    s_ib, s_it, s_ih, s_iv,
    H: tl.constexpr, HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr,
    WRITE_POOL: tl.constexpr, STORE_INTERMEDIATE: tl.constexpr,
):
    pid = tl.program_id(0)
    i_v = pid % NV
    i_nh = pid // NV
    i_n = i_nh // HV
    i_hv = i_nh % HV
    i_h = i_hv // (HV // H)          # GVA: consecutive value heads share one q/k head

    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    mask_k = o_k < K
    mask_v = o_v < V

    slot = tl.load(idx_ptr + i_n).to(tl.int64)
    live = slot >= 0
    slot = tl.maximum(slot, 0)       # keep addresses in range for padding rows (all accesses masked)
    # Every mask is a comparison of a block (tl.int1 data), never a block combined with the scalar
    # `live`: Triton's interpreter stores `block & scalar` as int32, which Triton 3.9's masked
    # load/store reject ("mask has unsupported dtype"). A padding row gets an empty V range instead.
    v_end = tl.where(live, V, 0)
    mask_s = (o_v[:, None] < v_end) & mask_k[None, :]

    # state tile [BV, BK] of pool[slot, i_hv, o_v, o_k]
    s_off = slot * s_pp + i_hv * s_ph + o_v[:, None].to(tl.int64) * s_pv + o_k[None, :]
    b_s = tl.load(pool_ptr + s_off, mask=mask_s, other=0.0).to(tl.float32)

    # per value head gate constants
    neg_A = -tl.exp(tl.load(A_log_ptr + i_hv).to(tl.float32))
    dt_b = tl.load(dt_bias_ptr + i_hv).to(tl.float32)

    n64 = i_n.to(tl.int64)
    p_q = q_ptr + n64 * s_qb + i_h * s_qh + o_k * s_qk
    p_k = k_ptr + n64 * s_kb + i_h * s_kh + o_k * s_kk
    p_v = v_ptr + n64 * s_vb + i_hv * s_vh + o_v * s_vv
    p_a = a_ptr + n64 * s_ab + i_hv * s_ah
    p_b = b_ptr + n64 * s_bb + i_hv * s_bh
    p_o = o_ptr + n64 * s_ob + i_hv * s_oh + o_v
    i_off = n64 * s_ib + i_hv * s_ih + o_v[:, None].to(tl.int64) * s_iv + o_k[None, :]

    for t in range(T):
        b_q = tl.load(p_q + t * s_qt, mask=mask_k, other=0.0).to(tl.float32)
        b_k = tl.load(p_k + t * s_kt, mask=mask_k, other=0.0).to(tl.float32)
        b_v = tl.load(p_v + t * s_vt, mask=mask_v, other=0.0).to(tl.float32)
        b_a = tl.load(p_a + t * s_at).to(tl.float32)
        b_b = tl.load(p_b + t * s_bt).to(tl.float32)

        # L2 norm (fp32) and scale
        b_q = b_q * tl.rsqrt(tl.sum(b_q * b_q, axis=0) + 1e-6) * scale
        b_k = b_k * tl.rsqrt(tl.sum(b_k * b_k, axis=0) + 1e-6)

        # gates: g = -exp(A_log) * softplus(a + dt_bias) (beta 1, threshold 20); beta = sigmoid(b)
        x = b_a + dt_b
        softplus_x = tl.where(x <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))), x)
        decay = tl.exp(neg_A * softplus_x)
        beta = 1.0 / (1.0 + tl.exp(-b_b))

        # S = exp(g) S; u = beta (v - S k); S = S + u k^T; o = S q
        b_s = b_s * decay
        kS = tl.sum(b_s * b_k[None, :], axis=1)
        u = beta * (b_v - kS)
        b_s = b_s + u[:, None] * b_k[None, :]
        b_o = tl.sum(b_s * b_q[None, :], axis=1)                     # [BV]
        b_o = tl.where(live, b_o, 0.0)
        tl.store(p_o + t * s_ot, b_o.to(o_ptr.dtype.element_ty), mask=mask_v)

        if STORE_INTERMEDIATE:
            tl.store(inter_ptr + i_off + t * s_it, b_s.to(inter_ptr.dtype.element_ty), mask=mask_s)

    if WRITE_POOL:
        tl.store(pool_ptr + s_off, b_s.to(pool_ptr.dtype.element_ty), mask=mask_s)


_KERNELS: dict[bool, object] = {}


def get_kernel(interpret: bool | None = None):
    """The kernel wrapped by ``triton.jit`` for the current mode (compiled, or Triton's CPU
    interpreter when ``TRITON_INTERPRET=1``); wrapped on first use and cached per mode, so setting
    the variable after ``import triton`` still takes effect."""
    mode = interpret_enabled() if interpret is None else bool(interpret)
    kern = _KERNELS.get(mode)
    if kern is None:
        if mode != interpret_enabled():
            raise RuntimeError("get_kernel(interpret=...) must match TRITON_INTERPRET at wrap time")
        kern = triton.jit(_gdn_fused_recurrent)
        _KERNELS[mode] = kern
    return kern


def launch(q, k, v, a, b, A_log, dt_bias, pool, indices, o, intermediate, scale: float,
           *, H: int, HV: int, K: int, V: int, BV: int, num_warps: int, num_stages: int,
           write_pool: bool, interpret: bool) -> int:
    """Launch one decode (``write_pool``) or verify (``intermediate`` given) call; returns the grid size.

    All tensors are already checked by :mod:`gdnlab.kernels.validation`; ``o`` is ``[B,T,HV,V]``.
    """
    B, T = q.shape[0], q.shape[1]
    BK = triton.next_power_of_2(K)
    NV = triton.cdiv(V, BV)
    grid = NV * B * HV
    if grid == 0:
        return 0
    store_inter = intermediate is not None
    inter = intermediate if store_inter else o          # dummy pointer, never dereferenced
    si = intermediate.stride()[:4] if store_inter else (0, 0, 0, 0)
    kern = get_kernel(interpret)
    kern[(grid,)](
        q, k, v, a, b, A_log, dt_bias, pool, indices, o, inter,
        T, scale,
        *q.stride(), *k.stride(), *v.stride(), *a.stride(), *b.stride(),
        *pool.stride()[:3], *o.stride()[:3], *si,
        H=H, HV=HV, K=K, V=V, BK=BK, BV=BV, NV=NV,
        WRITE_POOL=write_pool, STORE_INTERMEDIATE=store_inter,
        num_warps=num_warps, num_stages=num_stages,
    )
    return grid
