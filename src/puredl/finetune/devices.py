"""Device choice, clear errors for a missing GPU and for out-of-memory, and the rank-0 hook.

>>> is_main_process()
True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from puredl._optional import require
from puredl.finetune.errors import DeviceError, OutOfMemoryError

PRECISIONS = ("fp32", "bf16")  # training.precision: float32 compute, or bfloat16 autocast


def resolve_device(device: str) -> str:
    """Check ``device`` ("cpu", "cuda", "cuda:N", "auto") against this machine; return a torch device string.

    >>> resolve_device("cpu")
    'cpu'
    """
    torch = require("torch", "llm", "fine-tuning")
    text = device.strip().lower()
    if text == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if text == "cuda" or text.startswith("cuda:"):
        index_text = text.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise DeviceError(f"device {device!r}: expected cuda:N with N a GPU number, e.g. cuda:0")
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} was requested but torch sees no CUDA GPU (torch {torch.__version__}, "
                f'CUDA build: {torch.version.cuda or "no"}). Use --device cpu (or training.device: "cpu"), '
                "or install a CUDA build of torch on a machine with an NVIDIA driver."
            )
        count = torch.cuda.device_count()
        if int(index_text) >= count:
            raise DeviceError(
                f"device {device!r}: this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})"
            )
        return f"cuda:{int(index_text)}"
    raise DeviceError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")


def is_main_process() -> bool:
    """True on the process that writes files (rank 0 under torch.distributed; always True otherwise)."""
    if os.environ.get("RANK", "0") not in ("", "0"):
        return False
    try:
        import torch.distributed as dist  # only when torch is already there

        return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    except ImportError:
        return True


OOM_HINT = (
    "out of memory on {device} during {what} (batch_size={batch_size}, max_length={max_length}). Try:\n"
    "  training:\n"
    "    batch_size: {half}          # smaller batches\n"
    "    grad_accum: {accum}          # same effective batch ({effective}) through gradient accumulation\n"
    "    gradient_checkpointing: true  # recompute activations instead of storing them\n"
    "  or a smaller max_length / lora_r, or fewer target_modules (the embedding LoRA is the largest)."
)


@contextlib.contextmanager
def oom_guard(device: str, what: str, batch_size: int, max_length: int, grad_accum: int) -> Iterator[None]:
    """Turn a CUDA (or CPU allocator) out-of-memory error into ``OutOfMemoryError`` with the seed's hints."""
    torch = require("torch", "llm", "fine-tuning")
    try:
        yield
    except torch.OutOfMemoryError as exc:
        raise _oom(device, what, batch_size, max_length, grad_accum) from exc
    except RuntimeError as exc:
        if "out of memory" not in str(exc).lower() and "can't allocate memory" not in str(exc).lower():
            raise
        raise _oom(device, what, batch_size, max_length, grad_accum) from exc


def _oom(device: str, what: str, batch_size: int, max_length: int, grad_accum: int) -> OutOfMemoryError:
    torch = require("torch", "llm", "fine-tuning")
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    half = max(1, batch_size // 2)
    accum = grad_accum * max(1, batch_size // half)
    return OutOfMemoryError(
        OOM_HINT.format(
            device=device,
            what=what,
            batch_size=batch_size,
            max_length=max_length,
            half=half,
            accum=accum,
            effective=batch_size * grad_accum,
        )
    )


def describe_device(device: str) -> str:
    """A short human description ("cpu (2 threads)", "cuda:0 NVIDIA H100 80GB HBM3")."""
    torch = require("torch", "llm", "fine-tuning")
    if device.startswith("cuda"):
        return f"{device} {torch.cuda.get_device_name(torch.device(device))}"
    return f"cpu ({torch.get_num_threads()} threads)"


def amp_dtype(precision: str) -> Any:
    """The autocast dtype of a ``training.precision`` value: bfloat16 for ``bf16``, None for ``fp32``.

    >>> amp_dtype("fp32") is None
    True
    """
    if precision not in PRECISIONS:
        raise ValueError(f"training.precision must be one of {PRECISIONS}, got {precision!r}")
    return require("torch", "llm", "fine-tuning").bfloat16 if precision == "bf16" else None


def autocast(device: str, dtype: Any) -> Any:
    """Autocast to ``dtype`` on the device's type (CUDA or CPU); a no-op context for None or float32.

    Parameters stay in their own dtype (the LoRA master weights in float32); only the
    forward and backward compute runs in ``dtype``.
    """
    torch = require("torch", "llm", "fine-tuning")
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=dtype)
