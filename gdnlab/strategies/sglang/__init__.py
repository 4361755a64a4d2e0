"""SGLang 0.5.23's own verify strategies (backends ``sglang_triton`` and ``sglang_flashinfer``).

SGLang runs two verify strategies for GDN layers (which one a flag set selects:
:func:`gdnlab.kernels.sglang_rule.sglang_gdn_kernels`):

=============  =================  ======================================================================
strategy       backend            SGLang's calls (sglang 0.5.23)
=============  =================  ======================================================================
full_cache     sglang_triton      verify ``TritonGDNKernel.target_verify`` into the batch-scoped
                                  ``intermediate_ssm``; commit ``fused_mamba_state_scatter_with_mask``
                                  (:class:`gdnlab.kernels.sglang.SGLangTritonBackend`)
full_cache     sglang_flashinfer  verify ``FlashInferGDNKernel.target_verify``; commit as above
replay_ring    sglang_triton      ``--enable-linear-replayssm-spec``: verify
                                  ``gdn_replayssm_spec_decode(launch_mode="verify")``; commit
                                  ``commit_gdn_replayssm_spec`` (cursors) + ``commit_gdn_replayssm_circular``
                                  (folds the rows whose ring is full into the checkpoint)
                                  (``sglang/kernels/ops/attention/linear/gdn_replayssm_spec_decode.py``,
                                  called from ``gdn_backend.py`` L1441-L1527 and
                                  ``sglang/srt/speculative/spec_utils.py`` L1082-L1145)
=============  =================  ======================================================================

Each class's ``verify`` returns the engine kernel's own output tensor (no copy into a
gdnlab-allocated one); ``contract_padding`` (default ``True``) as in :mod:`gdnlab.kernels.sglang`.
"""
from __future__ import annotations

import torch

from ..base import StepPlan, VerifyStrategy
from ..ops import RecurrentOps, TorchOps

__all__ = ["EngineOps", "KernelOutputVerify"]


class EngineOps(RecurrentOps):
    """The primitive of an engine backend: the engine's kernels are called by the strategy classes
    themselves; :meth:`recurrent` (used only by the base class to materialise states for
    inspection) is the PyTorch one, :meth:`scatter_commit` SGLang's scatter."""

    name = "engine"

    def __init__(self) -> None:
        self._torch = TorchOps()

    def recurrent(self, pool, src, *, replay=None, tokens=None) -> None:
        self._torch.recurrent(pool, src, replay=replay, tokens=tokens)

    def scatter_commit(self, pool, indices, inter, accepted) -> None:
        from ...kernels.sglang import sglang_scatter_commit
        sglang_scatter_commit(pool, indices, inter, accepted)


class KernelOutputVerify(VerifyStrategy):
    """``verify`` returns the tensor the engine kernel allocated (``_verify_out``), as the engine
    uses it, instead of copying it into one allocated by the base class."""

    make_ops = EngineOps

    def verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale: float | None = None, *,
               validate: bool = True, plan: StepPlan | None = None) -> torch.Tensor:
        """As :meth:`VerifyStrategy.verify`; ``o [B, T, HV, V]`` is the engine kernel's output (a view)."""
        dims, scale = self._check_verify(q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, validate)
        with self._planned(plan, scratch):
            return self._verify_out(q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims)

    def _verify_out(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims) -> torch.Tensor:
        raise NotImplementedError

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o) -> None:
        o.copy_(self._verify_out(q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims))


class KernelFullCache(KernelOutputVerify):
    """SGLang's full_cache through an engine kernel object ``self.kern`` (its ``_verify`` writes every
    token's state into the scratch's intermediate buffer) and SGLang's masked scatter as the commit."""

    kern = None     # the engine kernel, set by the subclass's constructor

    def _verify_out(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims):
        inter = scratch.intermediate[:dims.B]
        o = self.kern._verify(q, k, v, a, b, A_log, dt_bias, pool, indices, scale, dims, inter)
        self.last_path = self.kern.last_path
        return o

    def _commit(self, pool, indices, scratch, accepted):
        from ...kernels.base import KernelPath, _arch
        from ...kernels.sglang import sglang_scatter_commit

        how = sglang_scatter_commit(pool, indices, scratch.intermediate[:indices.shape[0]], accepted)
        self.last_path = KernelPath("commit", "fused_mamba_state_scatter_with_mask", _arch(pool.device),
                                    {"launch": how, "strategy": self.name})
