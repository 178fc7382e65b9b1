"""``puredl.device`` (torch.device's interface), the default device, and ``puredl.accelerator``.

A :class:`device` is a ``str`` ("cpu", "cuda", "cuda:1") with torch's ``.type`` and ``.index``,
so it goes wherever puredl takes a device string and compares equal to ``Tensor.device``.

>>> import puredl as pd
>>> d = pd.device("cuda", 1)
>>> d, d.type, d.index, str(d)
(device(type='cuda', index=1), 'cuda', 1, 'cuda:1')
>>> pd.tensor([1.0]).device == pd.device("cpu")
True
"""

from __future__ import annotations

from typing import Any

from puredl._optional import require

_TYPES = ("cpu", "cuda")


class device(str):  # noqa: N801 - torch's name
    """A device: ``device("cpu")``, ``device("cuda")``, ``device("cuda:0")``, ``device("cuda", 0)``.

    Unlike ``torch.device``, it also equals its string (``device("cpu") == "cpu"``), because
    puredl's ``Tensor.device`` is a string.
    """

    __slots__ = ()

    def __new__(cls, type: Any, index: int | None = None):  # noqa: A002 - torch's argument name
        if isinstance(type, device):
            if index is not None:
                raise RuntimeError("device(device, index): the device already carries its index")
            return type
        if isinstance(type, int) and not isinstance(type, bool) and index is None:
            type, index = "cuda", type  # torch.device(0) is the first CUDA device
        if not isinstance(type, str):
            raise TypeError(f"device(): expected a string such as 'cuda:0', got {type!r}")
        kind, sep, digits = type.strip().partition(":")
        if kind not in _TYPES:
            raise RuntimeError(
                f"device(): unknown device type {kind!r} in {type!r}; puredl has 'cpu' and 'cuda'"
            )
        if sep:
            if index is not None:
                raise RuntimeError(
                    "device(): type (string) must not include an index because index was passed "
                    f"explicitly: {type}"
                )
            if not digits.isdigit():
                raise RuntimeError(f"device(): invalid device string {type!r}: expected 'cuda:N'")
            index = int(digits)
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int):
                raise TypeError(f"device(): index must be an int, got {index!r}")
            if index < 0:
                raise RuntimeError("device(): device index must not be negative")
            if kind == "cpu" and index != 0:
                raise RuntimeError(f"device(): 'cpu' has only index 0, got {index}")
        text = kind if index is None else f"{kind}:{index}"
        return super().__new__(cls, "cpu" if kind == "cpu" else text)

    @property
    def type(self) -> str:  # noqa: A003 - torch's name
        return str.__str__(self).partition(":")[0]  # a plain str: partition may return self

    @property
    def index(self) -> int | None:
        _, sep, digits = str.__str__(self).partition(":")
        return int(digits) if sep else None

    def __repr__(self) -> str:
        if self.index is None:
            return f"device(type={self.type!r})"
        return f"device(type={self.type!r}, index={self.index})"

    def __reduce__(self):
        return (device, (str(self),))


_default_device = device("cpu")


def set_default_device(dev: Any) -> None:
    """Device for tensors made without ``device=`` (``puredl.zeros``, ``puredl.tensor``, ...).

    ``None`` restores "cpu". CUDA needs torch with a visible GPU (checked here, not later).
    """
    global _default_device
    new = device("cpu") if dev is None else device(dev)
    if new.type == "cuda":
        check_cuda(new.index or 0)
    _default_device = new


def get_default_device() -> device:
    """The device that factories use when none is given ("cpu" unless set)."""
    return _default_device


def default_device_or(dev: Any) -> Any:
    """``dev``, or the default device when ``dev`` is None (what factories place on)."""
    if dev is None and _default_device != "cpu":
        return str(_default_device)
    return dev


class DeviceUnavailableError(RuntimeError):
    """A device was asked for that this machine (or this torch build) does not have."""


def check_cuda(index: int) -> None:
    """Raise DeviceUnavailableError saying what to check when ``cuda:index`` cannot be used."""
    torch = require("torch", "torch", "CUDA tensors and torch interop")
    if not torch.cuda.is_available():
        build = torch.__version__
        cpu_only = torch.version.cuda is None
        why = (
            f"this torch ({build}) is a CPU-only build; install a CUDA build of torch"
            if cpu_only
            else f"torch {build} (CUDA {torch.version.cuda}) sees no GPU; check `nvidia-smi`, the NVIDIA "
            "driver and CUDA_VISIBLE_DEVICES"
        )
        raise DeviceUnavailableError(
            f"device 'cuda:{index}' was requested but CUDA is not available: {why}. "
            "`puredl accel info` shows what puredl can see; use device='cpu' to run without a GPU."
        )
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceUnavailableError(
            f"device 'cuda:{index}' was requested but only {count} CUDA device(s) are visible "
            f"(cuda:0..cuda:{count - 1}); check CUDA_VISIBLE_DEVICES"
        )
