"""What the points of one sweep run share (:class:`MeasureContext`): settings, device, provenance,
the backends and strategies (made once), the state pools (randomised once, reused) and the
strategy checks (run once per group)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..kernels import make_backend
from ..shapes import GDNShape
from .config import SweepConfig

__all__ = ["MeasureContext"]


@dataclass
class MeasureContext:
    """What the points of one run share: settings, device, provenance, backends, pools."""

    cfg: SweepConfig
    device: torch.device
    prov: dict
    peak_gbps: float
    sweep_id: str
    copy_bw_gbps: float = float("nan")
    backends: dict = field(default_factory=dict)
    pools: dict = field(default_factory=dict)
    reference: Any = None
    #: (backend, strategy) -> (strategy object or None, reason)
    strategies: dict = field(default_factory=dict)
    #: step-point group -> :class:`gdnlab.sweep.step.StrategyCheckResult`
    checks: dict = field(default_factory=dict)
    step_pools: dict = field(default_factory=dict)
    #: where progress lines go (the runner writes them above its progress bar)
    log: Callable[[str], None] = field(default=lambda msg: None)

    def backend(self, name: str):
        """The backend ``name``, made once with the engine's options."""
        if name not in self.backends:
            self.backends[name] = make_backend(name, self.cfg.engine, **self.cfg.backend_options.get(name, {}))
        return self.backends[name]

    def pool(self, shape: GDNShape, dtype: torch.dtype) -> torch.Tensor:
        """One randomised ``[pool_slots, HV, V, K]`` pool per (state shape, dtype), reused by every
        call point (decode points keep updating it; the GDN recurrence keeps it bounded)."""
        from ..state import StatePool

        key = (shape.state_shape, dtype)
        if key not in self.pools:
            for k in [k for k in self.pools if k[1] == dtype]:  # one pool per dtype at most: memory
                del self.pools[k]
            self.pools[key] = StatePool(shape.state_shape, self.cfg.capacity, dtype=dtype,
                                        device=self.device).randomize_(self.cfg.seed).tensor
        return self.pools[key]

    def strategy(self, backend: str, name: str):
        """``(strategy, "")`` made once per run, or ``(None, reason)`` when it cannot run here."""
        from ..errors import UnavailableError
        from ..strategies import get_strategy

        key = (backend, name)
        if key not in self.strategies:
            try:
                self.strategies[key] = (get_strategy(name, backend=backend,
                                                     **self.cfg.strategy_options.get(backend, {})), "")
            except (UnavailableError, ValueError, TypeError) as exc:
                self.strategies[key] = (None, str(exc))
        return self.strategies[key]

    def step_pool(self, shape: GDNShape, dtype: torch.dtype, rows: int) -> torch.Tensor:
        """A randomised ``[rows, HV, V, K]`` pool for step points (generated on the device), reused by
        every step point with these rows and dtype; pools of the other dtype are dropped first."""
        key = (shape.state_shape, dtype, rows)
        if key not in self.step_pools:
            for k in [k for k in self.step_pools if k[1] != dtype or k[0] != shape.state_shape]:
                del self.step_pools[k]
            gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed + rows)
            t = torch.randn((rows, *shape.state_shape), generator=gen, device=self.device, dtype=torch.float32)
            pool = (0.1 * t).to(dtype)
            del t
            pool[0] = 0                                             # slot 0: the reserved padding slot
            self.step_pools[key] = pool
        return self.step_pools[key]
