"""``puredl.accelerator``: torch.accelerator's questions, answered for puredl's CUDA tensors.

puredl's only accelerator is CUDA through torch (``Tensor.to("cuda")``), so these ask torch,
importing it only when called; without torch or a GPU they say there is none.

>>> from puredl import accelerator
>>> accelerator.is_available() in (True, False)
True
"""

from __future__ import annotations

from puredl.placement import device


def is_available() -> bool:
    """True when tensors can be moved to a CUDA device (torch installed, GPU visible)."""
    from puredl import accel

    try:
        return accel.cuda_available()
    except Exception:  # a broken torch install means no accelerator, as torch itself would say
        return False


def current_accelerator(check_available: bool = False) -> device | None:
    """``device("cuda")`` when CUDA can be used, else None (torch returns None without one)."""
    return device("cuda") if is_available() else None


def device_count() -> int:
    """Number of CUDA devices torch sees (0 without torch or a GPU)."""
    if not is_available():
        return 0
    from puredl import accel

    return int(accel.torch_backend().torch.cuda.device_count())


__all__ = ["current_accelerator", "device_count", "is_available"]
