"""Device memory of one GPU serving the model, and the largest concurrency a verify setup fits.

One GPU holds (bytes; ``R`` running requests, ``L`` GDN layers, ``T`` draft tokens):

* **weights**: :meth:`~gdnlab.model.served.ServedModel.weight_gb_per_gpu` (target + MTP module,
  embedding, lm_head) in the weights dtype of the served model;
* **GDN state pool + verify scratch**: ``L x`` the strategy's :meth:`memory_formula`
  (:func:`gdnlab.strategies.registry.strategy_memory_bytes`: slot 0 plus
  :meth:`slots_per_request` rows per request, plus its scratch at a batch of ``R`` rows) in the state
  dtype; plain decode keeps ``1 + R`` rows and no scratch. The conv state (``3 x (2 H K + HV V)``
  values per request and layer, about 2 % of a float32 state) is not counted;
* **KV cache**: ``R x (full-attention layers + MTP layers) x`` the KV bytes per token and layer
  (:attr:`~gdnlab.model.served.ServedModel.kv_bytes_per_token_layer`: K and V, KV heads per GPU x
  head dim x KV dtype) ``x (context + T)`` tokens;
* **runtime reserve** (activations, CUDA graphs, NCCL): SGLang 0.5.23's own estimate,
  :func:`sglang_reserve_bytes`.

:func:`max_concurrency` finds the largest ``R`` whose sum fits the GPU's memory
(:attr:`gdnlab.hardware.GPUSpec.hbm_gib`) and names what limits it. Sizes in bytes; GiB = 2**30 B,
GB = 1e9 B, MB in SGLang's heuristic = 2**20 B.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import InputError
from ..hardware import GPUSpec
from ..shapes import dtype_name
from .served import ServedModel

__all__ = ["MemoryNeed", "Capacity", "sglang_reserve_bytes", "memory_need", "max_concurrency",
           "SGLANG_RESERVE_SOURCE", "NO_SPECULATION"]

#: the strategy name of plain decode (no speculation, no scratch)
NO_SPECULATION = "decode"
GIB = float(2**30)
SGLANG_RESERVE_SOURCE = (
    "sgl-project/sglang v0.5.23 python/sglang/srt/arg_groups/memory_hook.py handle_gpu_memory_settings: "
    "chunked_prefill_size and decode CUDA-graph max_bs by GPU memory (L89-L170), reserved_mem = 512 + "
    "1.5 x max(chunked_prefill_size, 2048) + tp x pp / 8 x 1024 + 2 x max_bs MB, at least 10 x 1024 MB on a GPU "
    "over 60 GB (L309-L315)")


def _sglang_defaults(gpu_mem_mb: float, tp: int) -> tuple[int, int]:
    """SGLang 0.5.23's default ``(chunked_prefill_size, decode CUDA-graph max_bs)`` for a GPU of
    ``gpu_mem_mb`` MB (memory_hook.py L89-L170)."""
    if gpu_mem_mb < 20 * 1024:
        return 2048, 8
    if gpu_mem_mb < 35 * 1024:
        return 4096, 48 if tp < 4 else 160
    if gpu_mem_mb < 60 * 1024:
        return 4096, 32 if tp < 4 else 160
    if gpu_mem_mb < 160 * 1024:
        return 8192, 256 if tp < 4 else 512
    return 16384, 512


def sglang_reserve_bytes(gpu: GPUSpec, *, tp: int, max_running_requests: int | None = None,
                         chunked_prefill_size: int | None = None, pp: int = 1) -> int:
    """Memory SGLang 0.5.23 leaves outside weights and caches (activations, CUDA graphs, NCCL):
    its ``reserved_mem`` heuristic (:data:`SGLANG_RESERVE_SOURCE`), in bytes. ``max_running_requests``
    caps the decode CUDA-graph batch as SGLang does; the prefill CUDA-graph term (8 MB per captured
    size, when prefill graphs are on) is not counted."""
    mem_mb = gpu.hbm_gib * 1024.0
    chunk, max_bs = _sglang_defaults(mem_mb, tp)
    chunk = chunked_prefill_size or chunk
    if max_running_requests is not None:
        max_bs = min(max_bs, max(int(max_running_requests), 1))
    mb = 512 + max(chunk, 2048) * 1.5 + tp * pp / 8 * 1024 + 2 * max_bs
    if mem_mb > 60 * 1024:
        mb = max(mb, 10 * 1024)
    return int(mb * 2**20)


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes one GPU needs for ``requests`` running requests (see the module docstring)."""

    requests: int
    weights: float
    reserve: float
    gdn_pool: float
    gdn_scratch: float
    kv_cache: float
    capacity: float

    @property
    def total(self) -> float:
        return self.weights + self.reserve + self.gdn_pool + self.gdn_scratch + self.kv_cache

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity

    def gib(self) -> dict[str, float]:
        """Every part in GiB, ``total`` included."""
        d = {k: v / GIB for k, v in asdict(self).items() if k != "requests"}
        d["total"] = self.total / GIB
        return d


@dataclass(frozen=True)
class Capacity:
    """The largest concurrency a setup fits on a GPU.

    Attributes:
        requests: running requests that fit (0: not even one).
        limited_by: what fills the memory at that point, in words.
        need: the bytes at ``requests`` (or at one request when none fits).
    """

    requests: int
    limited_by: str
    need: MemoryNeed


def _gdn_bytes(model: ServedModel, strategy: str, state_dtype: str, T: int, requests: int) -> tuple[float, float]:
    """``(pool, scratch)`` bytes of the GDN layers for ``requests`` running requests."""
    shape = model.gdn
    L = shape.num_gdn_layers
    S = shape.state_bytes(state_dtype)
    if requests <= 0:
        return float(L * S), 0.0
    if strategy == NO_SPECULATION:
        return float(L * (1 + requests) * S), 0.0
    from ..strategies.registry import strategy_class

    cls = strategy_class(strategy)
    pool = (1 + requests * cls.slots_per_request(T)) * S
    total = cls.memory_formula(shape, requests, requests, T, state_dtype=state_dtype)
    return float(L * pool), float(L * (total - pool))


def memory_need(model: ServedModel, gpu: GPUSpec, strategy: str, state_dtype: str, draft_tokens: int,
                requests: int, ctx_tokens: float, *, reserve_bytes: float | None = None) -> MemoryNeed:
    """Bytes for ``requests`` running requests of ``ctx_tokens`` context each with ``strategy``
    (:data:`NO_SPECULATION` = plain decode, ``draft_tokens`` ignored) at ``state_dtype`` and T =
    ``draft_tokens``. ``reserve_bytes`` overrides :func:`sglang_reserve_bytes`."""
    if requests < 0 or not ctx_tokens >= 0:
        raise InputError(f"requests must be >= 0 and ctx_tokens >= 0, got {requests}, {ctx_tokens}")
    T = 1 if strategy == NO_SPECULATION else int(draft_tokens)
    sd = dtype_name(state_dtype)
    pool, scratch = _gdn_bytes(model, strategy, sd, T, requests)
    kv_layers = model.num_full_attn_layers + model.mtp_layers
    kv = requests * kv_layers * model.kv_bytes_per_token_layer * (float(ctx_tokens) + T)
    reserve = sglang_reserve_bytes(gpu, tp=model.tp, max_running_requests=max(requests, 1)) \
        if reserve_bytes is None else float(reserve_bytes)
    return MemoryNeed(int(requests), model.weight_gb_per_gpu() * 1e9, float(reserve), pool, scratch, kv,
                      gpu.hbm_gib * GIB)


def _limit(need: MemoryNeed, one: MemoryNeed, fixed: MemoryNeed) -> str:
    """What fills the memory: the fixed part when not one request fits, else the largest per-request part."""
    if need.requests == 0:
        per = one.total - one.weights - one.reserve
        return (f"weights {one.weights / GIB:.1f} GiB + runtime reserve {one.reserve / GIB:.1f} GiB + one request "
                f"{per / GIB:.2f} GiB exceed the GPU's {one.capacity / GIB:.0f} GiB")
    gdn = one.gdn_pool + one.gdn_scratch - fixed.gdn_pool
    kv = one.kv_cache
    part = "GDN state pool + verify scratch" if gdn >= kv else "KV cache"
    return (f"{part} ({max(gdn, kv) / 2**20:.0f} MiB per request; GDN {gdn / 2**20:.0f}, KV {kv / 2**20:.0f}) "
            f"after weights {need.weights / GIB:.1f} GiB and runtime reserve {need.reserve / GIB:.1f} GiB")


def max_concurrency(model: ServedModel, gpu: GPUSpec, strategy: str, state_dtype: str, draft_tokens: int,
                    ctx_tokens: float, *, limit: int = 1 << 16, reserve_bytes: float | None = None) -> Capacity:
    """The largest number of running requests (<= ``limit``) whose :func:`memory_need` fits ``gpu``."""
    def need(r: int) -> MemoryNeed:
        return memory_need(model, gpu, strategy, state_dtype, draft_tokens, r, ctx_tokens,
                           reserve_bytes=reserve_bytes)

    lo, hi = 0, int(limit)
    if need(hi).fits:
        return Capacity(hi, f"not limited up to {hi} requests", need(hi))
    while hi - lo > 1:                      # need(lo) fits or lo == 0; need(hi) does not
        mid = (lo + hi) // 2
        if need(mid).fits:
            lo = mid
        else:
            hi = mid
    at = need(lo) if lo else need(1)
    return Capacity(lo, _limit(need(lo), need(1), need(0)), at)
