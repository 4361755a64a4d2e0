"""Random inputs for one GDN call (q, k, v, gates), reproducible from a seed.

Values are drawn in float32 on the CPU generator and then moved, so the same seed gives the same
numbers on every device. Gate parameters follow the usual Mamba/GDN initialisation ranges: decay
``A = exp(A_log)`` in [1, 16], ``dt_bias`` the inverse softplus of dt in [1e-3, 1e-1].
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from .shapes import GDNShape, dtype_from_name

__all__ = ["GDNInputs", "make_inputs"]


@dataclass
class GDNInputs:
    """q, k ``[B,T,H,K]``; v ``[B,T,HV,V]``; a, b ``[B,T,HV]`` (activation dtype); A_log, dt_bias ``[HV]`` float32."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    A_log: torch.Tensor
    dt_bias: torch.Tensor

    def args(self) -> tuple[torch.Tensor, ...]:
        """Positional arguments ``(q, k, v, a, b, A_log, dt_bias)`` of a backend call."""
        return tuple(getattr(self, f.name) for f in fields(self))

    def to(self, device: torch.device | str) -> GDNInputs:
        return GDNInputs(*(t.to(device) for t in self.args()))

    def token(self, t: int) -> GDNInputs:
        """The inputs of token ``t`` alone (T = 1), e.g. to replay a verify as decodes."""
        sl = slice(t, t + 1)
        return GDNInputs(self.q[:, sl], self.k[:, sl], self.v[:, sl], self.a[:, sl], self.b[:, sl],
                         self.A_log, self.dt_bias)


def make_inputs(shape: GDNShape, batch: int, tokens: int = 1, *, act_dtype: torch.dtype | str = torch.bfloat16,
                device: torch.device | str = "cpu", seed: int = 0) -> GDNInputs:
    """Random inputs for ``batch`` rows of ``tokens`` tokens each."""
    if batch < 0 or tokens < 1:
        raise ValueError(f"need batch >= 0 and tokens >= 1, got batch={batch}, tokens={tokens}")
    gen = torch.Generator().manual_seed(seed)
    dt = dtype_from_name(act_dtype)
    B, T, H, HV, K, V = batch, tokens, shape.H, shape.HV, shape.K, shape.V

    def randn(*s: int) -> torch.Tensor:
        return torch.randn(*s, generator=gen)

    A_log = torch.log(torch.empty(HV).uniform_(1.0, 16.0, generator=gen))
    dt0 = torch.exp(torch.empty(HV).uniform_(torch.log(torch.tensor(1e-3)).item(),
                                              torch.log(torch.tensor(1e-1)).item(), generator=gen))
    dt_bias = dt0 + torch.log(-torch.expm1(-dt0))  # inverse softplus
    cast = dict(dtype=dt, device=device)
    return GDNInputs(randn(B, T, H, K).to(**cast), randn(B, T, H, K).to(**cast), randn(B, T, HV, V).to(**cast),
                     randn(B, T, HV).to(**cast), randn(B, T, HV).to(**cast),
                     A_log.to(device), dt_bias.to(device))
