"""Catch code that a CUDA graph cannot capture, on any device (the CPU included).

A strategy's ``verify`` / ``commit`` / ``fold`` run inside one captured CUDA graph per step
(:meth:`gdnlab.workload.DecodeWorkload.enable_cuda_graph`). Capture fails, or the graph silently
replays stale values, when that code

* reads a device value on the host: ``.item()``, ``int(t)``, ``bool(t)``, ``.tolist()``, ``.cpu()``,
  ``.numpy()``, ``torch.equal`` (a device sync);
* sizes a tensor by data: ``nonzero``, boolean-mask indexing ``x[mask]`` / ``x[mask] = v``,
  ``masked_select``, ``unique``, ``bincount``, ``repeat_interleave`` without ``output_size``;
* copies host memory to the device: ``torch.tensor(data, device=...)``, ``x.to("cuda")`` of a
  host tensor, or a scalar assigned through a tensor index, ``x[idx] = 0`` (PyTorch builds the
  value on the host and copies it: "Cannot copy between CPU and CUDA tensors during CUDA graph
  capture unless the CPU tensor is pinned"; ``x.index_fill_(0, idx, 0)`` does the same on the device).

:func:`forbid_host_sync` raises :class:`HostSyncError` at the first such operation run inside it. It
watches the ATen operations (a :class:`torch.utils._python_dispatch.TorchDispatchMode`) and the few
tensor methods that do not dispatch on a CPU tensor (``cpu``, ``tolist``, ``numpy``), so a CPU test
catches what would break the capture on a GPU. Calls that stand in for a GPU kernel launch (PyTorch
or interpreted kernels that read their arguments on the host) run under :func:`allow_host_sync`, or
are wrapped with :func:`opaque`::

    with forbid_host_sync():
        o = strategy.verify(..., validate=False)
        strategy.commit(pool, indices, scratch, accepted, validate=False)

:func:`check_capturable` runs a few speculative steps of a strategy that way.
"""
from __future__ import annotations

import contextlib
import functools
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import HostSyncError

__all__ = ["HostSyncError", "forbid_host_sync", "allow_host_sync", "opaque", "check_capturable"]


#: ATen ops that read a value back to the host or size their output by the data
_SYNC_OPS: dict[str, str] = {
    "_local_scalar_dense": "reads a device value on the host (.item(), int(t), bool(t), float(t))",
    "equal": "torch.equal returns a host bool (a device sync)",
    "nonzero": "nonzero sizes its output by the data (a device sync)",
    "masked_select": "masked_select sizes its output by the data (a device sync)",
    "_unique": "unique sizes its output by the data (a device sync)",
    "_unique2": "unique sizes its output by the data (a device sync)",
    "unique_dim": "unique sizes its output by the data (a device sync)",
    "unique_consecutive": "unique_consecutive sizes its output by the data (a device sync)",
    "bincount": "bincount sizes its output by the data (a device sync)",
}
#: ATen ops that copy one tensor's values into another (a host tensor among them is a host->device copy)
_COPY_OPS = frozenset({"copy_", "_to_copy", "index_put_", "index_put", "_index_put_impl_", "index_copy_",
                       "index_copy", "index_add_", "index_add", "scatter_", "scatter", "scatter_add_",
                       "scatter_add", "masked_scatter_", "masked_scatter", "put_", "put"})
#: ops whose tensor-list argument holds indices (a boolean one is a data-dependent mask)
_INDEX_OPS = frozenset({"index", "index_put_", "index_put", "_index_put_impl_"})


def _tensors(obj: Any) -> list[torch.Tensor]:
    """Every tensor in ``obj`` (nested lists, tuples and dict values)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for x in obj for t in _tensors(x)]
    if isinstance(obj, dict):
        return _tensors(list(obj.values()))
    return []


class _Guard(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.paused = 0
        self._host_values: deque[torch.Tensor] = deque(maxlen=16)   # 0-dim tensors lifted from Python values

    def check(self, what: str, why: str) -> None:
        if not self.paused:
            raise HostSyncError(f"{what}: {why}; not capturable in a CUDA graph")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.paused:
            self._inspect(func, args, kwargs)
        out = func(*args, **kwargs)
        if not self.paused and func.overloadpacket.__name__ == "lift_fresh" and isinstance(out, torch.Tensor):
            self._host_values.append(out)
        return out

    def _inspect(self, func, args, kwargs) -> None:
        name = func.overloadpacket.__name__
        if name in _SYNC_OPS:
            self.check(f"aten.{name}", _SYNC_OPS[name])
        if (name == "repeat_interleave" and func._overloadname in ("Tensor", "self_Tensor")
                and kwargs.get("output_size") is None):
            self.check("aten.repeat_interleave", "without output_size it sizes its output by the data")
        if name == "lift_fresh" and isinstance(args[0], torch.Tensor) and args[0].dim():
            self.check("torch.tensor()/torch.as_tensor() of host data",
                       "the values are built on the host and copied to the device")
        if name in _INDEX_OPS and len(args) > 1 and isinstance(args[1], (list, tuple)):
            if any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1]):
                self.check(f"aten.{name} with a boolean mask (x[mask])", "it sizes the selection by the data")
        if name in _COPY_OPS:
            leaves = _tensors([args, kwargs])
            if any(t is h for t in leaves for h in self._host_values):
                self.check(f"aten.{name} of a Python scalar (x[idx] = 0 and the like)",
                           "the scalar is put in a host tensor and copied to the device; use index_fill_, "
                           "masked_fill_ or torch.where")
            dev = kwargs.get("device")
            if len({t.device.type for t in leaves}) > 1 or (name == "_to_copy" and dev is not None and leaves
                                          and torch.device(dev).type != leaves[0].device.type):
                self.check(f"aten.{name} between devices", "a host<->device copy")


_ACTIVE: list[_Guard] = []
_METHODS = ("cpu", "tolist", "numpy")


def _watched(name: str, original: Callable) -> Callable:
    @functools.wraps(original)
    def method(self, *args, **kwargs):
        if _ACTIVE:
            _ACTIVE[-1].check(f"Tensor.{name}()", "reads device values on the host (a device sync)")
        return original(self, *args, **kwargs)
    return method


@contextlib.contextmanager
def forbid_host_sync() -> Iterator[None]:
    """Raise :class:`HostSyncError` at the first operation inside that a CUDA graph cannot capture
    (module docstring). Nests; :func:`allow_host_sync` pauses the innermost guard."""
    guard = _Guard()
    originals = {m: getattr(torch.Tensor, m) for m in _METHODS} if not _ACTIVE else {}
    for m, fn in originals.items():
        setattr(torch.Tensor, m, _watched(m, fn))
    _ACTIVE.append(guard)
    try:
        with guard:
            yield
    finally:
        _ACTIVE.pop()
        for m, fn in originals.items():
            setattr(torch.Tensor, m, fn)


@contextlib.contextmanager
def allow_host_sync() -> Iterator[None]:
    """Run the body unchecked (a stand-in for a GPU kernel launch); no-op outside :func:`forbid_host_sync`."""
    guard = _ACTIVE[-1] if _ACTIVE else None
    if guard is not None:
        guard.paused += 1
    try:
        yield
    finally:
        if guard is not None:
            guard.paused -= 1


def opaque(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run under :func:`allow_host_sync`: for fakes and interpreters standing in for a kernel."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        with allow_host_sync():
            return fn(*args, **kwargs)
    return call


def check_capturable(strategy, shape, *, batch: int, T: int, state_dtype: torch.dtype, steps: int = 3,
                     device: torch.device | str = "cpu", seed: int = 0) -> None:
    """Run ``steps`` speculative steps of ``strategy`` (a :class:`~gdnlab.strategies.base.VerifyStrategy`)
    on ``batch + 1`` requests of ``shape`` (a :class:`~gdnlab.shapes.GDNShape`): ``verify`` + ``commit``
    with ``validate=False`` on ``batch`` rows of ``T`` tokens (rows reordered, padding rows, one dropped
    verify), then ``fold()`` and ``fold(force=True)`` over every request (more rows than
    ``max_batch``), each call inside :func:`forbid_host_sync`. Raises :class:`HostSyncError` at the
    first operation a CUDA graph cannot capture; inputs are built outside the guard. Kernels that
    read their arguments on the host (PyTorch stand-ins, interpreters) must run under :func:`opaque`."""
    from ..inputs import make_inputs

    device = torch.device(device)
    n_req = batch + 1
    P = 1 + n_req * strategy.slots_per_request(T)
    gen = torch.Generator().manual_seed(seed)
    pool = (0.1 * torch.randn((P, *shape.state_shape), generator=gen)).to(state_dtype).to(device)
    pool[0] = 0
    scratch = strategy.allocate(pool, max_batch=batch, T=T)
    gates = make_inputs(shape, 1, 1, device=device, seed=seed + 1)
    slots = torch.arange(1, n_req + 1, dtype=torch.int32)
    for step in range(steps):
        order = slots[torch.randperm(n_req, generator=gen)][:batch].clone()
        order[torch.rand(batch, generator=gen) < 0.3] = -1
        idx = order.to(device)
        accepted = torch.randint(1, T + 1, (batch,), generator=gen, dtype=torch.int32).to(device)
        inp = make_inputs(shape, batch, T, device=device, seed=seed * 1000 + step)
        inp.A_log, inp.dt_bias = gates.A_log, gates.dt_bias
        with forbid_host_sync():
            if step == 1:
                strategy.verify(*inp.args(), pool, idx, scratch, validate=False)   # dropped: no commit
            strategy.verify(*inp.args(), pool, idx, scratch, validate=False)
            strategy.commit(pool, idx, scratch, accepted, validate=False)
    every = slots.to(device)
    with forbid_host_sync():
        strategy.fold(pool, every, scratch)
        strategy.fold(pool, every, scratch, force=True)
