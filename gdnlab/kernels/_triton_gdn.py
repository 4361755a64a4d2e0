"""gdnlab's own Triton kernel for GDN decode and MTP verify on a state pool (SGLang semantics), the
per-token GDN maths every gdnlab Triton kernel shares, and the one cache of ``triton.jit`` wrappers.

Imported only when a Triton call is made (by :mod:`gdnlab.kernels.triton` and
:mod:`gdnlab.strategies._triton_kernels`), so importing the backend modules never needs Triton.
Written for gdnlab after reading how SGLang's ``fused_sigmoid_gating_delta_rule_update`` and fla's
``fused_recurrent_gated_delta_rule`` organise the work (one program per state tile, gates fused,
tokens walked in a loop); the code is our own.

**Shared device functions** (inlined into the kernels that call them):

* :func:`gdn_token`: one token of the gated delta rule on a ``[BV, BK]`` state tile — L2 norm of
  q (times ``scale``) and k, gates ``g = -exp(A_log) * softplus(a + dt_bias)`` (beta 1, threshold 20)
  and ``beta = sigmoid(b)``, decay ``S = exp(g) S``, delta rule ``u = beta (v - S k)``,
  ``S = S + u k^T`` and output ``o = S q``. All float32; L2-norm epsilon 1e-6.
* :func:`program_tile` (which (V-block, row, value head) a program owns), :func:`gate_constants`,
  :func:`state_offsets` (int64 offsets of a state tile in a ``[rows, HV, V, K]`` tensor).

**The decode / verify kernel** ``_gdn_fused_recurrent`` (the name traces show), two modes
(compile-time flags):

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
talk to each other. q/k/v/a/b/A_log/dt_bias may be bf16/fp16/fp32.

A negative ``indices[i]`` marks a padding row: no state is loaded or stored (masked), and its outputs
are written as zeros. Pool and intermediate offsets are computed in int64 (a 1 MiB-per-slot fp32
pool passes 2**31 elements at slot 8192; FlashInfer issue #3230 was this overflow).

**Wrapping** (:func:`jit_kernels`): Triton decides between compiling and its CPU interpreter when a
function is wrapped by ``triton.jit``, and a kernel finds the device functions it calls through its
module's globals — which must be wrapped in the same mode. So kernels and device functions are kept
as plain functions and wrapped on first use, once per mode: each kernel and device function gets a
copy of its module's globals in which every device function is its wrapper of that mode.
"""
import types
from collections.abc import Callable

import triton
import triton.language as tl

from ._triton_interpret import interpret_enabled

__all__ = ["get_kernel", "jit_kernels", "launch", "gdn_token", "program_tile", "gate_constants", "state_offsets",
           "interpret_enabled", "TRITON_VERSION"]

TRITON_VERSION: str = triton.__version__


# ---------------------------------------------------------------------------------------- device functions
def program_tile(NV: tl.constexpr, HV: tl.constexpr, H: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """This program's tile: ``(i_v, i_n, i_hv, i_h, o_k, o_v)`` — V-block ``i_v`` (fastest), batch row
    ``i_n``, value head ``i_hv``, its q/k head ``i_h`` (GVA: consecutive value heads share one), the K
    columns ``o_k`` ``[BK]`` and V rows ``o_v`` ``[BV]`` of the tile."""
    pid = tl.program_id(0)
    i_v = pid % NV
    i_nh = pid // NV
    i_n = i_nh // HV
    i_hv = i_nh % HV
    i_h = i_hv // (HV // H)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    return i_v, i_n, i_hv, i_h, o_k, o_v


def gate_constants(A_log_ptr, dt_bias_ptr, i_hv):
    """``(-exp(A_log[i_hv]), dt_bias[i_hv])`` in float32: value head ``i_hv``'s gate constants."""
    neg_A = -tl.exp(tl.load(A_log_ptr + i_hv).to(tl.float32))
    dt_b = tl.load(dt_bias_ptr + i_hv).to(tl.float32)
    return neg_A, dt_b


def state_offsets(row, i_hv, o_v, o_k, s_row, s_head, s_v):
    """int64 offsets ``[BV, BK]`` of rows ``o_v``, columns ``o_k`` of ``x[row, i_hv]`` in a
    ``[rows, HV, V, K]`` tensor with strides ``(s_row, s_head, s_v, 1)`` (``row`` int64)."""
    return row * s_row + i_hv * s_head + o_v[:, None].to(tl.int64) * s_v + o_k[None, :]


def gdn_token(b_s, p_q, p_k, p_v, p_a, p_b, mask_k, mask_v, neg_A, dt_b, scale):
    """One token of the gated delta rule on the float32 state tile ``b_s`` ``[BV, BK]``.

    ``p_q``/``p_k`` point at the token's K columns of this row's q/k head, ``p_v`` at its V rows of
    the value head, ``p_a``/``p_b`` at its gate logits (masked loads give 0). Returns
    ``(S, o, k, u, g)``: the new tile, the output ``o = S q`` ``[BV]``, the L2-normalised key ``[BK]``,
    the delta-rule update ``u = beta (v - exp(g) S_old k)`` ``[BV]`` and the log-decay ``g`` (scalar),
    so ``S = exp(g) S_old + u k^T``.
    """
    b_q = tl.load(p_q, mask=mask_k, other=0.0).to(tl.float32)
    b_k = tl.load(p_k, mask=mask_k, other=0.0).to(tl.float32)
    b_v = tl.load(p_v, mask=mask_v, other=0.0).to(tl.float32)
    b_a = tl.load(p_a).to(tl.float32)
    b_b = tl.load(p_b).to(tl.float32)
    # L2 norm (fp32) and scale
    b_q = b_q * tl.rsqrt(tl.sum(b_q * b_q, axis=0) + 1e-6) * scale
    b_k = b_k * tl.rsqrt(tl.sum(b_k * b_k, axis=0) + 1e-6)
    # gates: g = -exp(A_log) * softplus(a + dt_bias) (beta 1, threshold 20); beta = sigmoid(b)
    x = b_a + dt_b
    softplus_x = tl.where(x <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))), x)
    b_g = neg_A * softplus_x
    beta = 1.0 / (1.0 + tl.exp(-b_b))
    # S = exp(g) S; u = beta (v - S k); S = S + u k^T; o = S q
    b_s = b_s * tl.exp(b_g)
    kS = tl.sum(b_s * b_k[None, :], axis=1)
    b_u = beta * (b_v - kS)
    b_s = b_s + b_u[:, None] * b_k[None, :]
    b_o = tl.sum(b_s * b_q[None, :], axis=1)
    return b_s, b_o, b_k, b_u, b_g


#: the device functions kernels call (wrapped per mode by :func:`jit_kernels`)
DEVICE_FUNCTIONS: tuple[Callable, ...] = (program_tile, gate_constants, state_offsets, gdn_token)


# ---------------------------------------------------------------------------------------- kernel
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
    i_v, i_n, i_hv, i_h, o_k, o_v = program_tile(NV, HV, H, BK, BV)
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

    s_off = state_offsets(slot, i_hv, o_v, o_k, s_pp, s_ph, s_pv)     # tile of pool[slot, i_hv]
    b_s = tl.load(pool_ptr + s_off, mask=mask_s, other=0.0).to(tl.float32)
    neg_A, dt_b = gate_constants(A_log_ptr, dt_bias_ptr, i_hv)

    n64 = i_n.to(tl.int64)
    p_q = q_ptr + n64 * s_qb + i_h * s_qh + o_k * s_qk
    p_k = k_ptr + n64 * s_kb + i_h * s_kh + o_k * s_kk
    p_v = v_ptr + n64 * s_vb + i_hv * s_vh + o_v * s_vv
    p_a = a_ptr + n64 * s_ab + i_hv * s_ah
    p_b = b_ptr + n64 * s_bb + i_hv * s_bh
    p_o = o_ptr + n64 * s_ob + i_hv * s_oh + o_v
    i_off = state_offsets(n64, i_hv, o_v, o_k, s_ib, s_ih, s_iv)      # tile of intermediate[i_n, :, i_hv]

    for t in range(T):
        b_s, b_o, b_k, b_u, b_g = gdn_token(b_s, p_q + t * s_qt, p_k + t * s_kt, p_v + t * s_vt, p_a + t * s_at,
                                            p_b + t * s_bt, mask_k, mask_v, neg_A, dt_b, scale)
        b_o = tl.where(live, b_o, 0.0)
        tl.store(p_o + t * s_ot, b_o.to(o_ptr.dtype.element_ty), mask=mask_v)
        if STORE_INTERMEDIATE:
            tl.store(inter_ptr + i_off + t * s_it, b_s.to(inter_ptr.dtype.element_ty), mask=mask_s)

    if WRITE_POOL:
        tl.store(pool_ptr + s_off, b_s.to(pool_ptr.dtype.element_ty), mask=mask_s)


# ---------------------------------------------------------------------------------------- wrapping
#: (mode, kernels + their own device functions) -> wrapped kernels
_JITTED: dict[tuple[bool, tuple[Callable, ...]], tuple] = {}


def _wrap(fns: tuple[Callable, ...], device_functions: tuple[Callable, ...]) -> tuple:
    """``fns`` wrapped by ``triton.jit`` in the current mode, each a copy (same code, name and source)
    whose globals — one copy per module — name the device functions' wrappers of that mode."""
    spaces: dict[int, tuple[dict, dict]] = {}            # id(module globals) -> (module globals, copy)

    def rebound(fn: Callable) -> Callable:
        _, glb = spaces.setdefault(id(fn.__globals__), (fn.__globals__, dict(fn.__globals__)))
        copy = types.FunctionType(fn.__code__, glb, fn.__name__, fn.__defaults__, fn.__closure__)
        # the signature's annotations too: Triton reads ``tl.constexpr`` parameters from them, and a
        # compiled kernel (unlike the interpreter) cannot take tl.arange(0, BK) of a runtime BK
        copy.__qualname__, copy.__doc__, copy.__module__ = fn.__qualname__, fn.__doc__, fn.__module__
        copy.__annotations__, copy.__kwdefaults__ = dict(fn.__annotations__), fn.__kwdefaults__
        return copy

    wrapped = {id(f): triton.jit(rebound(f)) for f in device_functions}
    out = tuple(triton.jit(rebound(f)) for f in fns)
    for orig, glb in spaces.values():                    # looked up when a kernel compiles or runs
        glb.update({name: wrapped[id(val)] for name, val in orig.items() if id(val) in wrapped})
    return out


def jit_kernels(kernels: tuple[Callable, ...], interpret: bool | None = None,
                device_functions: tuple[Callable, ...] = ()) -> tuple:
    """``kernels`` (plain functions) wrapped by ``triton.jit`` for the current mode (compiled, or
    Triton's CPU interpreter when ``TRITON_INTERPRET=1``), with the device functions they call
    (:data:`DEVICE_FUNCTIONS` and ``device_functions``) wrapped in the same mode; wrapped on first use
    and cached per (mode, kernels), so setting the variable after ``import triton`` still takes
    effect. A kernel keeps its name (what traces show)."""
    mode = interpret_enabled() if interpret is None else bool(interpret)
    key = (mode, tuple(kernels) + tuple(device_functions))
    jitted = _JITTED.get(key)
    if jitted is None:
        if mode != interpret_enabled():
            raise RuntimeError("jit_kernels(interpret=...) must match TRITON_INTERPRET at wrap time")
        jitted = _wrap(tuple(kernels), (*DEVICE_FUNCTIONS, *device_functions))
        _JITTED[key] = jitted
    return jitted


def get_kernel(interpret: bool | None = None):
    """The decode / verify kernel wrapped for the current mode (:func:`jit_kernels`)."""
    return jit_kernels((_gdn_fused_recurrent,), interpret)[0]


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
