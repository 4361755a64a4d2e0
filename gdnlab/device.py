"""The device gdnlab runs on: whether CUDA is usable here, and a ``device`` argument as a ``torch.device``.

* :func:`cuda_available` — whether a CUDA device can be used (a broken driver counts as none).
* :func:`resolve_device` — ``None`` / ``"cpu"`` / ``"cuda[:N]"`` as a ``torch.device`` (CUDA with an
  index), with a one-line :class:`~gdnlab.errors.InputError` or :class:`~gdnlab.errors.UnavailableError`.

:mod:`gdnlab.instrument` re-exports both.
"""
from __future__ import annotations

import torch

__all__ = ["cuda_available", "resolve_device"]


def cuda_available() -> bool:
    """Whether a CUDA device can be used here."""
    try:
        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - a broken driver counts as no CUDA
        return False


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a ``torch.device`` with an index for CUDA (default: the current CUDA device, else
    CPU). Raises :class:`~gdnlab.errors.InputError` for anything but cpu/cuda and
    :class:`~gdnlab.errors.UnavailableError` for CUDA on a machine without it (or without that index)."""
    from .errors import InputError, UnavailableError

    if device is None:
        return torch.device("cuda", torch.cuda.current_device()) if cuda_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise InputError(f"device={device!r}: expected 'cpu' or 'cuda[:N]'")
    if dev.type == "cuda" and not cuda_available():
        raise UnavailableError(f"device={device!r}: no CUDA device is available here")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise UnavailableError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", torch.cuda.current_device()) if dev.type == "cuda" and dev.index is None else dev
