"""A GDN state pool like a serving engine's: P slots of ``[HV, V, K]`` per layer, slot 0 reserved.

SGLang's ``MambaPool`` allocates ``size + 1`` slots and FlashInfer's bf16 path redirects index -1
to ``initial_state[0]`` ("a sacrificial null slot, so pool_size = real + 1"); gdnlab does the same:
slot :attr:`StatePool.PADDING_SLOT` is never handed to a request, and padding rows in a batch get
index ``-1``.
"""
from __future__ import annotations

import torch

from .errors import PoolFullError
from .shapes import GDNShape, dtype_from_name

__all__ = ["StatePool", "PoolFullError"]


class StatePool:
    """State slots for up to ``capacity`` concurrent requests (plus the reserved slot 0).

    Args:
        shape: GDN shape (HV, V, K used) or a ``(HV, V, K)`` tuple.
        capacity: request slots (the tensor has ``capacity + 1`` rows).
        dtype: state dtype (``float32`` or ``bfloat16``; defaults to the shape's).
        device: where the tensor lives.
        layers: leading layer dimension; 1 gives ``tensor`` shape ``[P, HV, V, K]``,
            more gives ``[layers, P, HV, V, K]`` (use :meth:`layer`).
    """

    PADDING_SLOT = 0

    def __init__(self, shape: GDNShape | tuple[int, int, int], capacity: int, *,
                 dtype: torch.dtype | str | None = None, device: torch.device | str = "cpu", layers: int = 1) -> None:
        if capacity < 1 or layers < 1:
            raise ValueError(f"capacity and layers must be >= 1, got capacity={capacity}, layers={layers}")
        if isinstance(shape, GDNShape):
            hvk = shape.state_shape
            dtype = shape.state_dtype if dtype is None else dtype
        else:
            hvk = tuple(int(x) for x in shape)
            if len(hvk) != 3:
                raise ValueError(f"shape must be a GDNShape or (HV, V, K), got {shape!r}")
        self.dtype = dtype_from_name(dtype or torch.float32)
        if self.dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"state dtype must be float32 or bfloat16, got {self.dtype}")
        self.capacity = capacity
        self.layers = layers
        lead = (capacity + 1,) if layers == 1 else (layers, capacity + 1)
        self.tensor = torch.zeros(lead + hvk, dtype=self.dtype, device=device)
        self._free: list[int] = list(range(capacity, 0, -1))  # pop() hands out 1, 2, 3, ...

    @property
    def num_slots(self) -> int:
        """Rows in the pool tensor (capacity + 1)."""
        return self.capacity + 1

    @property
    def num_free(self) -> int:
        return len(self._free)

    def layer(self, i: int) -> torch.Tensor:
        """The ``[P, HV, V, K]`` view of layer ``i``."""
        return self.tensor if self.layers == 1 else self.tensor[i]

    def alloc(self, n: int) -> torch.Tensor:
        """Slots for ``n`` new requests (int32, on the pool's device)."""
        if n < 0:
            raise ValueError(f"n must be >= 0 (slots to allocate), got {n!r}")
        if n > len(self._free):
            raise PoolFullError(f"asked for {n} slots, {len(self._free)} of {self.capacity} free")
        got = [self._free.pop() for _ in range(n)]
        return torch.tensor(got, dtype=torch.int32, device=self.tensor.device)

    def free(self, slots: torch.Tensor | list[int]) -> None:
        """Return slots of finished requests (negative entries are ignored)."""
        vals = [int(s) for s in (slots.tolist() if isinstance(slots, torch.Tensor) else slots) if int(s) >= 0]
        held = set(range(1, self.capacity + 1)) - set(self._free)
        bad = [s for s in vals if s not in held]
        if bad:
            raise ValueError(f"cannot free slots {bad}: not currently allocated (slot 0 is reserved)")
        if len(set(vals)) != len(vals):  # freeing one slot twice would hand it to two requests later
            raise ValueError(f"cannot free slots {vals}: a slot is listed twice")
        self._free.extend(sorted(vals, reverse=True))

    def batch_indices(self, slots: torch.Tensor, pad_to: int | None = None) -> torch.Tensor:
        """``slots`` followed by ``-1`` padding rows up to ``pad_to`` (e.g. a CUDA-graph batch size)."""
        n = slots.shape[0]
        if pad_to is None or pad_to == n:
            return slots.to(torch.int32)
        if pad_to < n:
            raise ValueError(f"pad_to={pad_to} is smaller than the {n} live rows")
        pad = torch.full((pad_to - n,), -1, dtype=torch.int32, device=slots.device)
        return torch.cat([slots.to(torch.int32), pad])

    def randomize_(self, seed: int = 0, scale: float = 0.1) -> StatePool:
        """Fill every slot with ``scale * N(0, 1)`` (generated on the CPU, so seeds match across devices)."""
        gen = torch.Generator().manual_seed(seed)
        self.tensor.copy_((torch.randn(self.tensor.shape, generator=gen) * scale).to(self.dtype))
        return self

    def zero_(self) -> StatePool:
        self.tensor.zero_()
        return self

    def __repr__(self) -> str:
        return (f"StatePool(capacity={self.capacity}, layers={self.layers}, shape={tuple(self.tensor.shape)}, "
                f"dtype={self.dtype}, free={self.num_free})")
