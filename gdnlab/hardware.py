"""GPU specifications (peak HBM bandwidth, SM count) and detection of the GPU in use.

Peak numbers are vendor datasheet figures; measured ceilings are lower (an H100 SXM device-to-
device copy moves about 3.0 TB/s here, ~90 % of 3.35 TB/s). Percent-of-peak columns in gdnlab use
the datasheet peak so that numbers compare across tools.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["GPUSpec", "GPU_SPECS", "spec_for", "detect", "sm_string"]


@dataclass(frozen=True)
class GPUSpec:
    """One GPU model.

    Attributes:
        name: canonical name, e.g. ``"H100-SXM"``.
        sm_major, sm_minor: compute capability (9.0 = Hopper, 10.0 = Blackwell B200/GB200).
        sm_count: streaming multiprocessors.
        peak_hbm_gbps: peak HBM bandwidth in GB/s (1 GB = 1e9 bytes).
        hbm_gib: memory size in GiB (marketing GB values converted where the vendor gives GB).
        l2_mb: L2 cache size in MiB (2**20 bytes; vendors say "50 MB" for the H100's 50 MiB).
        source: where the numbers come from.
    """

    name: str
    sm_major: int
    sm_minor: int
    sm_count: int
    peak_hbm_gbps: float
    hbm_gib: float
    l2_mb: float
    source: str

    @property
    def sm(self) -> str:
        """SM version string, e.g. ``"sm90"``."""
        return sm_string(self.sm_major, self.sm_minor)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["sm"] = self.sm
        return d


GPU_SPECS: dict[str, GPUSpec] = {
    "H100-SXM": GPUSpec("H100-SXM", 9, 0, 132, 3350.0, 80.0, 50.0,
                        "NVIDIA H100 Tensor Core GPU datasheet (SXM5: 80 GB HBM3, 3.35 TB/s); "
                        "132 SMs and 50 MB L2 read off the lent H100 (torch, 2026-11-13)"),
    "H100-PCIe": GPUSpec("H100-PCIe", 9, 0, 114, 2000.0, 80.0, 50.0,
                         "NVIDIA H100 datasheet (PCIe: 80 GB HBM2e, 2.0 TB/s, 114 SMs)"),
    "H100-NVL": GPUSpec("H100-NVL", 9, 0, 132, 3900.0, 94.0, 50.0,
                        "NVIDIA H100 datasheet (NVL: 94 GB HBM3, 3.9 TB/s)"),
    "H200": GPUSpec("H200", 9, 0, 132, 4800.0, 141.0, 60.0,
                    "NVIDIA H200 datasheet (141 GB HBM3e, 4.8 TB/s); 132 SMs, 60 MB L2 read off a lent H200"),
    "B200": GPUSpec("B200", 10, 0, 148, 8000.0, 180.0, 126.0,
                    "NVIDIA DGX B200 / HGX B200 datasheet (8 TB/s HBM3e per GPU); flashinfer PR #3147 "
                    "quotes '6.57 TB/s = 82% of B200 peak DRAM'; 148 SMs"),
    "GB200": GPUSpec("GB200", 10, 0, 148, 8000.0, 186.0, 126.0,
                     "NVIDIA GB200 NVL72 datasheet (per Blackwell GPU: up to 186 GB HBM3e, 8 TB/s); 148 SMs"),
}

_MATCH = [("GB200", "GB200"), ("B200", "B200"), ("H200", "H200"), ("H100 NVL", "H100-NVL"),
          ("H100 PCIE", "H100-PCIe"), ("H100", "H100-SXM")]


def spec_for(name: str) -> GPUSpec:
    """Spec for a canonical name (``"H100-SXM"``) or a device name (``"NVIDIA H100 80GB HBM3"``).

    Raises ``ValueError`` naming the known GPUs when nothing matches.
    """
    if name in GPU_SPECS:
        return GPU_SPECS[name]
    up = str(name).upper()
    for key, canon in _MATCH:
        if key in up:
            return GPU_SPECS[canon]
    raise ValueError(f"unknown GPU {name!r}; known: {', '.join(GPU_SPECS)}")


def sm_string(major: int, minor: int) -> str:
    """``(9, 0)`` -> ``"sm90"``."""
    return f"sm{major}{minor}"


def detect(device: int | None = None) -> GPUSpec | None:
    """Spec of the current CUDA device, or ``None`` without CUDA.

    An unknown GPU gets a spec with its real name, SM count and compute capability, and
    ``peak_hbm_gbps = nan`` (so percent-of-peak is not invented).
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return None
    if not torch.cuda.is_available():
        return None
    idx = torch.cuda.current_device() if device is None else device
    props = torch.cuda.get_device_properties(idx)
    try:
        base = spec_for(props.name)
    except ValueError:
        return GPUSpec(props.name, props.major, props.minor, props.multi_processor_count, float("nan"),
                       props.total_memory / 2**30, getattr(props, "L2_cache_size", 0) / 2**20,
                       "torch.cuda.get_device_properties (not in gdnlab's table: no peak bandwidth)")
    return GPUSpec(base.name, props.major, props.minor, props.multi_processor_count, base.peak_hbm_gbps,
                   props.total_memory / 2**30, getattr(props, "L2_cache_size", 0) / 2**20 or base.l2_mb,
                   base.source)
