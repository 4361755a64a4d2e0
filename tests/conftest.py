"""Shared pytest fixtures: the CUDA device (GPU tests skip cleanly without one)."""
from __future__ import annotations

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped without one, with the reason)")
    config.addinivalue_line("markers", "browser: needs headless Chromium")


@pytest.fixture
def cuda_device() -> torch.device:
    """The current CUDA device; skips the test (saying why) when there is none."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: GPU test skipped (run with a GPU, see README 'GPU machine')")
    return torch.device("cuda", torch.cuda.current_device())
