"""``full_cache`` on FlashInfer (:mod:`gdnlab.strategies.flashinfer`)."""
from __future__ import annotations

from ...kernels.base import KernelPath
from ..full_cache import FullCache
from ._common import _FlashInferStrategy


class FlashInferFullCache(_FlashInferStrategy, FullCache):
    """``full_cache`` on FlashInfer: verify is :meth:`FlashInferBackend.verify` (batch-scoped
    intermediate in the pool's dtype, as FlashInfer asserts); commit is the ops' fused scatter."""

    constraints = "state float32 or bfloat16; T >= 2"

    def _allocate(self, pool, max_batch, T):
        self._check_alloc(pool, T)
        return super()._allocate(pool, max_batch, T)

    def _verify(self, q, k, v, a, b, A_log, dt_bias, pool, indices, scratch, scale, dims, o):
        self._prepare(q, pool, dims)
        out, _ = self.fi.verify(q, k, v, a, b, A_log, dt_bias, pool, indices, scale,
                                intermediate=scratch.intermediate, validate=False)
        o.copy_(out)  # FlashInferBackend zeroes padding rows' outputs
        fp = self.fi.last_path
        self.last_path = KernelPath("verify", fp.kernel, fp.arch, {"strategy": self.name, **fp.detail})

    def _commit(self, pool, indices, scratch, accepted):
        self.ops.scatter_commit(pool, indices, scratch.intermediate, accepted)
        kernel = getattr(self.ops, "scatter_kernel", "") or type(self.ops).__name__
        self.last_path = KernelPath("commit", kernel, self.last_path.arch, {"strategy": self.name})
