"""The ``sglang_flashinfer`` verify strategy: SGLang 0.5.23's FlashInfer MTP verify
(``FlashInferGDNKernel.target_verify``) committed by SGLang's Triton scatter — ``full_cache`` as
SGLang runs it with ``--linear-attn-decode-backend flashinfer`` (float32 state on SM90, bf16 on
SM100; see :mod:`gdnlab.kernels.sglang_rule`). Needs CUDA; see :mod:`gdnlab.strategies.sglang`."""
from __future__ import annotations

import torch

from ...kernels.base import KernelPath
from ...kernels.sglang import SGLangFlashInferBackend
from ...shapes import dtype_from_name
from ..base import VerifyStrategy
from ..full_cache import FullCache
from . import KernelFullCache

__all__ = ["STRATEGIES", "availability", "BACKEND", "SGLangFlashInferFullCache"]

BACKEND = "sglang_flashinfer"


def availability() -> tuple[bool, str]:
    return SGLangFlashInferBackend.availability()


class SGLangFlashInferFullCache(KernelFullCache, FullCache):
    """``full_cache`` on SGLang's FlashInfer kernel. Options: ``contract_padding``."""

    backend = BACKEND

    def __init__(self, ops=None, intermediate_dtype=None, contract_padding: bool = True) -> None:
        super().__init__(ops, intermediate_dtype)
        self.kern = SGLangFlashInferBackend(contract_padding=contract_padding)
        self.last_path = KernelPath()

    @classmethod
    def supports(cls, state_dtype=None, T=None, batch=None, sm=None, *, HV=None, K=None, V=None, act_dtype=None):
        """SGLang's FlashInfer verify: SM90 with a float32 state, SM100 with a bf16 state."""
        ok, why = super().supports(state_dtype, T, batch, sm, HV=HV, K=K, V=V, act_dtype=act_dtype)
        if not ok or sm is None or state_dtype is None:
            return ok, why
        s = str(sm).lower().removeprefix("sm") if not isinstance(sm, tuple) else f"{sm[0]}{sm[1]}"
        major = int(s[:-1]) if s[:-1].isdigit() else 0
        want = {9: torch.float32, 10: torch.bfloat16}.get(major)
        if want is None:
            return False, f"SGLang's FlashInfer verify runs on SM90 and SM100 only, not sm{s}"
        if dtype_from_name(state_dtype) != want:
            return False, f"SGLang's FlashInfer verify on sm{s} needs a {str(want).removeprefix('torch.')} state"
        return True, "ok"

    def scratch_slots_for(self, state_dtype) -> tuple[int, ...]:
        return (0,) if dtype_from_name(state_dtype) == torch.bfloat16 else ()


STRATEGIES: dict[str, type[VerifyStrategy]] = {SGLangFlashInferFullCache.name: SGLangFlashInferFullCache}
