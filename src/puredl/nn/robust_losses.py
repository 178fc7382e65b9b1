"""Smooth L1 and Huber losses (``F.smooth_l1_loss``, ``F.huber_loss`` and their modules).

Both are quadratic near zero and linear beyond a threshold; composed from ``where`` and
``abs`` so their gradients come from the op table.

>>> import puredl as pd
>>> from puredl.nn import functional as F
>>> F.smooth_l1_loss(pd.tensor([0.5, 3.0]), pd.tensor([0.0, 0.0]), reduction="none").tolist()
[0.125, 2.5]
"""

from __future__ import annotations

from puredl import ops
from puredl.nn.module import Module
from puredl.tensor import Tensor


def _checked(name: str, input: Tensor, target: Tensor, reduction: str) -> Tensor:  # noqa: A002
    from puredl.nn import functional as F

    F._check_reduction(reduction)
    F._check_same_shape(name, input, target)
    return input - target


def smooth_l1_loss(
    input: Tensor,
    target: Tensor,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    beta: float = 1.0,  # noqa: A002
) -> Tensor:
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (``d = input - target``)."""
    from puredl.nn import functional as F

    reduction = _legacy_reduction(size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    d = _checked("smooth_l1_loss", input, target, reduction)
    a = d.abs()
    if beta == 0:
        return F._reduce(a, reduction)  # torch: plain L1 (the quadratic branch would divide by 0)
    return F._reduce(ops.where(a < beta, d * d * (0.5 / beta), a - 0.5 * beta), reduction)


def huber_loss(
    input: Tensor,
    target: Tensor,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: Tensor | None = None,  # noqa: A002
) -> Tensor:
    """``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)``; ``weight`` scales each term."""
    from puredl.nn import functional as F

    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    d = _checked("huber_loss", input, target, reduction)
    a = d.abs()
    loss = ops.where(a < delta, d * d * 0.5, (a - 0.5 * delta) * delta)
    if weight is not None:
        loss = loss * weight
    return F._reduce(loss, reduction)


def _legacy_reduction(size_average, reduce, reduction: str) -> str:
    """torch's deprecated ``size_average``/``reduce`` flags, mapped onto ``reduction``."""
    if size_average is None and reduce is None:
        return reduction
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


class SmoothL1Loss(Module):
    """``nn.SmoothL1Loss(reduction="mean", beta=1.0)``: see :func:`smooth_l1_loss`."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__()
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(Module):
    """``nn.HuberLoss(reduction="mean", delta=1.0)``: see :func:`huber_loss`."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__()
        self.reduction = reduction
        self.delta = delta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return huber_loss(input, target, reduction=self.reduction, delta=self.delta)
