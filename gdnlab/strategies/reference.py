"""The ``reference`` backend of every strategy: the strategy logic on :class:`TorchOps` (PyTorch,
CPU or GPU, float32 arithmetic). It is the oracle for the other backends' strategies and is itself
tested against :class:`gdnlab.kernels.reference.ReferenceBackend` decoding token by token."""
from __future__ import annotations

import torch

from .base import VerifyStrategy
from .ops import TorchOps
from .registry import STRATEGY_CLASSES

__all__ = ["STRATEGIES", "availability", "BACKEND"]

BACKEND = "reference"


def availability() -> tuple[bool, str]:
    dev = "CUDA and CPU" if torch.cuda.is_available() else "CPU"
    return True, f"pure PyTorch {torch.__version__}, runs on {dev}"


def _bind(cls: type[VerifyStrategy]) -> type[VerifyStrategy]:
    return type(f"Reference{cls.__name__}", (cls,), {"backend": BACKEND, "make_ops": TorchOps,
                                                    "__doc__": f"{cls.__doc__}\n\nBackend: PyTorch reference."})


STRATEGIES: dict[str, type[VerifyStrategy]] = {c.name: _bind(c) for c in STRATEGY_CLASSES}
