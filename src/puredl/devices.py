"""Devices ("cpu", "cuda:N") and interop with torch tensors.

A tensor on "cpu" lives on the pure backend or on torch's CPU backend (both are "cpu"; ops mix
them freely). A tensor on "cuda:N" is torch-backed. ``Tensor.to(device)`` records an autograd
node whose backward moves the gradient back; ``from_torch``/``to_torch`` share memory where the
dtype allows.

>>> import puredl as pd
>>> pd.tensor([1.0, 2.0]).to("cpu").device
'cpu'
"""

from __future__ import annotations

from puredl._optional import require
from puredl.autograd import Function
from puredl.placement import DeviceUnavailableError, check_cuda  # noqa: F401 - devices' public names


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
    from puredl.ops import _record
    from puredl.tensor import _wrap

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


def to_torch(t):
    """``t``'s data as a ``torch.Tensor``, sharing memory (a zero-copy view of pure storage).

    The result is detached from puredl's autograd; writes through it are seen by ``t``.
    """
    from puredl import accel
    from puredl.backends import pure as _pure

    tb = accel.torch_backend()
    return tb.from_pure(t._impl) if t._be is _pure else t._impl


def from_torch(t):
    """A puredl tensor over a ``torch.Tensor``'s memory (CPU or CUDA), without copying.

    float32/float64/int64/int32/int16/uint8/bool share memory; float16/bfloat16 become float32
    and int8 int16 (a copy). Gradients are not carried over: the result is a leaf.

    >>> import torch, puredl as pd
    >>> x = pd.from_torch(torch.ones(2)); x.tolist()
    [1.0, 1.0]
    """
    from puredl import accel
    from puredl.tensor import _wrap

    tb = accel.torch_backend()
    torch = tb.torch
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"from_torch: expected a torch.Tensor, got {type(t).__name__}")
    t = t.detach()
    if t.dtype in tb.WIDENED:
        t = t.to(tb.WIDENED[t.dtype])
    elif t.dtype not in tb.PUREDL_DTYPE:
        raise TypeError(
            f"from_torch: dtype {t.dtype} is not supported "
            "(puredl has float32, float64, int64, int32, int16, uint8, bool)"
        )
    return _wrap(t, tb.backend_for(t))
