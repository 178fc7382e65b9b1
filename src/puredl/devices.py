"""Devices ("cpu", "cuda:N") and interop with torch tensors.

A tensor on "cpu" lives on the pure backend or on torch's CPU backend (both are "cpu"; ops mix
them freely). A tensor on "cuda:N" is torch-backed. ``Tensor.to(device)`` records an autograd
node whose backward moves the gradient back (``ToDevice``: an op, above ``puredl.ops``);
``from_torch``/``to_torch`` (torch interop, in ``puredl.creation``) share memory where the
dtype allows.

>>> import puredl as pd
>>> pd.tensor([1.0, 2.0]).to("cpu").device
'cpu'
"""

from __future__ import annotations

from puredl._optional import require
from puredl.autograd import Function
from puredl.creation import from_torch, to_torch  # noqa: F401 - devices' public names
from puredl.ops import _record
from puredl.placement import DeviceUnavailableError, check_cuda  # noqa: F401 - devices' public names
from puredl.tensor import _wrap


def parse_device(device: str) -> tuple[str, int | None]:
    """'cpu' -> ('cpu', None); 'cuda' -> ('cuda', 0); 'cuda:1' -> ('cuda', 1)."""
    s = str(device).strip().lower()
    if s == "cpu":
        return "cpu", None
    if s == "cuda":
        return "cuda", 0
    if s.startswith("cuda:") and s[5:].isdigit():
        return "cuda", int(s[5:])
    raise ValueError(f"invalid device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")


def canonical(device: str) -> str:
    """'cuda' -> 'cuda:0', 'CPU' -> 'cpu'."""
    kind, index = parse_device(device)
    return "cpu" if kind == "cpu" else f"cuda:{index}"


def _torch():
    return require("torch", "torch", "CUDA tensors and torch interop")


def list_devices() -> list[str]:
    """Every device puredl can put a tensor on: always "cpu", plus "cuda:N" for each visible GPU."""
    from puredl import accel

    devices = ["cpu"]
    if accel.cuda_available():
        devices += [f"cuda:{i}" for i in range(accel.torch_backend().torch.cuda.device_count())]
    return devices


class ToDevice(Function):
    """A device move; the gradient moves back to where the input lived."""

    __slots__ = ("src",)

    def backward(self, g):
        return (move(g, self.src),)


def _moved_impl(t, target: str):
    """(impl, backend) of ``t``'s data on ``target`` (a canonical device name), through accel's door."""
    from puredl import accel

    return accel.move(t, target)


def move(t, device: str):
    """``t`` on ``device`` (the same tensor when it is already there), recorded for autograd."""
    target = canonical(device)
    src = t.device
    if target == src:
        return t
    if target != "cpu":
        check_cuda(int(target.split(":")[1]))
    impl, be = _moved_impl(t, target)
    node = ToDevice()
    node.src = src
    return _record(node, (t,), _wrap(impl, be))
