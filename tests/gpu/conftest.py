"""GPU tests: every test here is marked `gpu` and skipped unless a usable CUDA GPU is present."""

from __future__ import annotations

import pytest

from puredl import cuda


@pytest.fixture(autouse=True)
def _require_gpu():
    if not cuda.is_available():
        pytest.skip("no usable CUDA GPU (see `puredl cuda info`)")


@pytest.fixture
def torch_cuda():
    """torch with CUDA on this machine, or skip."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here (CPU build)")
    return torch
