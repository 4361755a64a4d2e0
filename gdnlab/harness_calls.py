"""Backend calls on disjoint pool rows: what :func:`gdnlab.instrument.time_calls` captures in one
CUDA graph so that each call reads state that is not in L2 and the per-call time is amortised over
``n`` calls, as the layers of an engine's step run back to back.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import InputError, UnavailableError
from .inputs import make_inputs
from .instrument import resolve_device
from .kernels.base import GDNBackend
from .shapes import GDNShape, dtype_from_name, dtype_name
from .state import StatePool

__all__ = ["disjoint_calls"]


def disjoint_calls(backend: GDNBackend, shape: GDNShape, *, batch: int, draft_tokens: int = 1,
                   state_dtype: torch.dtype | str | None = None, act_dtype: torch.dtype | str = torch.bfloat16,
                   device: torch.device | str | None = None, seed: int = 0,
                   intermediate_dtype: torch.dtype | str | None = None,
                   check: bool = True) -> Callable[[int], list[Callable[[], object]]]:
    """``make_calls(n)`` for :func:`gdnlab.instrument.time_calls`: ``n`` closures of one decode
    (``draft_tokens = 1``) or verify call of ``batch`` rows, call ``j`` on pool rows
    ``1 + j*batch .. (j+1)*batch`` (a pool of ``n*batch + 1`` rows, slot 0 reserved) and, for verify,
    its own ``[B, T, HV, V, K]`` intermediate buffer (dtype: ``intermediate_dtype``, default the
    backend's ``new_intermediate``). The pool is filled by :meth:`StatePool.randomize_`.

    The closures run with ``validate=False`` (capturable); with ``check`` the factory runs one call
    with ``validate=True`` the first time it is used (this is where a JIT compile happens). ``make_calls``
    keeps its last pool alive only while its closures are referenced.
    """
    if not isinstance(batch, int) or batch < 1 or not isinstance(draft_tokens, int) or draft_tokens < 1:
        raise InputError(f"need batch >= 1 and draft_tokens >= 1, got batch={batch!r}, draft_tokens={draft_tokens!r}")
    dev = resolve_device(device)
    sd = dtype_from_name(shape.state_dtype if state_dtype is None else state_dtype)
    op = "decode" if draft_tokens == 1 else "verify"
    allowed = backend.decode_state_dtypes if op == "decode" else backend.verify_state_dtypes
    if sd not in allowed:
        raise UnavailableError(f"state_dtype {dtype_name(sd)} is not supported by {backend.name} {op}; "
                               f"supported: {[dtype_name(d) for d in allowed]}")
    args = make_inputs(shape, batch, draft_tokens, act_dtype=act_dtype, device=dev, seed=seed).args()
    checked = {"done": not check}

    def make_calls(n: int) -> list[Callable[[], object]]:
        if not isinstance(n, int) or n < 1:
            raise InputError(f"make_calls needs n >= 1 calls, got {n!r}")
        pool = StatePool(shape, n * batch, dtype=sd, device=dev).randomize_(seed)
        rows = [torch.arange(1 + j * batch, 1 + (j + 1) * batch, dtype=torch.int32, device=dev) for j in range(n)]
        if op == "decode":
            if not checked["done"]:
                backend.decode(*args, pool.tensor, rows[0], validate=True)
            calls = [lambda ix=ix: backend.decode(*args, pool.tensor, ix, validate=False) for ix in rows]
        else:
            dims = shape.call_dims(batch, draft_tokens, pool.num_slots)
            bufs = [backend.new_intermediate(dims, pool.tensor) if intermediate_dtype is None else
                    torch.zeros((batch, draft_tokens, *shape.state_shape), dtype=dtype_from_name(intermediate_dtype),
                                device=dev) for _ in range(n)]
            if not checked["done"]:
                backend.verify(*args, pool.tensor, rows[0], intermediate=bufs[0], validate=True)
            calls = [lambda ix=ix, bf=bf: backend.verify(*args, pool.tensor, ix, intermediate=bf, validate=False)
                     for ix, bf in zip(rows, bufs)]
        if not checked["done"] and dev.type == "cuda":
            torch.cuda.synchronize(dev)
        checked["done"] = True
        return calls

    return make_calls
