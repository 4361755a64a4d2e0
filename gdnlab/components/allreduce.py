"""Projected tensor-parallel all-reduce time (one GPU cannot measure it): ``status = "projected"``.

Model: ``t = latency_us + bytes / algbw`` with NCCL's bus-bandwidth convention for all-reduce,
``busbw = algbw * 2 (n - 1) / n`` (NVIDIA/nccl-tests ``doc/PERFORMANCE.md``, "AllReduce"), so
``algbw = busbw * n / (2 (n - 1))``.

Defaults (assumptions, stated with every row):

* ``busbw_gbps = 450``: the per-direction NVLink 4 bandwidth of an H100/H200 SXM GPU (900 GB/s
  bidirectional, NVIDIA H200 datasheet); nccl-tests ``all_reduce_perf`` on NVSwitch H100 nodes
  reports large-message bus bandwidths of this order (~450-480 GB/s). Small decode messages reach
  far less of it, which the latency term covers.
* ``latency_us = 8``: the fixed cost of one small intra-node all-reduce (NCCL LL protocol or an
  engine's custom one-shot all-reduce); an assumption to be replaced by a measurement on a lent
  multi-GPU machine.

Per decoder layer a TP engine all-reduces twice (after the mixer's output projection and after the
MoE block) a message of ``N * hidden * 2`` bytes (bf16) for ``N`` tokens.
"""
from __future__ import annotations

import pandas as pd

__all__ = ["allreduce_us", "allreduce_frame", "DEFAULT_BUSBW_GBPS", "DEFAULT_LATENCY_US", "SOURCE"]

DEFAULT_BUSBW_GBPS = 450.0
DEFAULT_LATENCY_US = 8.0
SOURCE = ("projected: t = latency + bytes / algbw, algbw = busbw * n / (2 (n-1)) (NVIDIA/nccl-tests "
          "doc/PERFORMANCE.md); busbw 450 GB/s = NVLink 4 per direction (H100/H200 SXM); latency assumed")


def allreduce_us(message_bytes: float, n_gpus: int, *, busbw_gbps: float = DEFAULT_BUSBW_GBPS,
                 latency_us: float = DEFAULT_LATENCY_US) -> float:
    """Projected time (µs) of one all-reduce of ``message_bytes`` bytes over ``n_gpus`` GPUs (0 for one GPU)."""
    if n_gpus < 1 or message_bytes < 0 or busbw_gbps <= 0 or latency_us < 0:
        raise ValueError(f"need n_gpus >= 1, bytes >= 0, busbw > 0, latency >= 0; got {n_gpus}, {message_bytes}, "
                         f"{busbw_gbps}, {latency_us}")
    if n_gpus == 1:
        return 0.0
    algbw = busbw_gbps * 1e9 * n_gpus / (2 * (n_gpus - 1))       # bytes per second
    return latency_us + message_bytes / algbw * 1e6


def allreduce_frame(preset: str, hidden: int, tp: int, batches, draft_tokens: int, *, num_layers: int,
                    act_bytes: int = 2, busbw_gbps: float = DEFAULT_BUSBW_GBPS,
                    latency_us: float = DEFAULT_LATENCY_US) -> pd.DataFrame:
    """Projected all-reduce per step: one row per mode and B with ``message_bytes``, ``allreduce_us``
    (one all-reduce), ``per_layer_us`` (two per decoder layer) and ``step_us`` (``num_layers`` layers)."""
    rows = []
    for mode, T in (("decode", 1), ("mtp", draft_tokens)):
        for B in batches:
            msg = B * T * hidden * act_bytes
            one = allreduce_us(msg, tp, busbw_gbps=busbw_gbps, latency_us=latency_us)
            rows.append({"preset": preset, "mode": mode, "batch": B, "tokens": B * T, "tp": tp,
                         "message_bytes": msg, "allreduce_us": one, "per_layer_us": 2 * one,
                         "step_us": 2 * one * num_layers, "num_layers": num_layers, "busbw_gbps": busbw_gbps,
                         "latency_us": latency_us, "status": "projected", "source": SOURCE})
    return pd.DataFrame(rows)
