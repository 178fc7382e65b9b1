"""Whether torch (and CUDA) can run ops, and the torch backend once it is loaded.

Loading the torch backend imports torch; it happens on first need (TORCH or AUTO mode, a device
move, torch interop), never at ``import puredl``. Modules that keep a fast copy of the backend
register with :func:`on_torch_loaded`.
"""

from __future__ import annotations

from collections.abc import Callable

from puredl._optional import available, require

_tb = None  # puredl.backends.torch once loaded (it is the CPU torch backend)
_on_load: list[Callable] = []  # called with the backend module when it is loaded


def on_torch_loaded(fn: Callable) -> None:
    """Call ``fn(backend)`` when the torch backend loads (at once when it already has)."""
    _on_load.append(fn)
    if _tb is not None:
        fn(_tb)


def torch_available() -> bool:
    """True when torch can be imported (without importing it)."""
    return _tb is not None or available("torch")


def torch_backend():
    """The torch backend module (imports torch on first use; clear error when it is missing)."""
    global _tb
    if _tb is None:
        require("torch", "torch", "the torch backend")
        from puredl.backends import torch as tb

        _tb = tb
        for fn in _on_load:
            fn(tb)
    return _tb


def torch_version() -> str | None:
    if not torch_available():
        return None
    return torch_backend().torch.__version__


def cuda_available() -> bool:
    """True when torch is installed and sees at least one CUDA device."""
    return torch_available() and bool(torch_backend().torch.cuda.is_available())
