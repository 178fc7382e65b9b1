"""``cuda.manual_seed`` / ``manual_seed_all``: seed the CUDA random generators torch keeps.

puredl draws its random numbers on the CPU (``puredl.manual_seed``), whatever the device, so
these only matter for torch code running beside puredl: they forward to torch when torch is
already imported and do nothing otherwise (as torch does on a machine without a GPU).

>>> from puredl import cuda
>>> cuda.manual_seed_all(0)
"""

from __future__ import annotations

import sys


def _int_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"manual_seed: expected an int seed, got {seed!r}")
    return seed


def manual_seed(seed: int) -> None:
    """Seed the current CUDA device's generator (a no-op unless torch is loaded)."""
    seed = _int_seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "cuda"):
        torch.cuda.manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    """Seed every CUDA device's generator (a no-op unless torch is loaded)."""
    seed = _int_seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "cuda"):
        torch.cuda.manual_seed_all(seed)
