"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay (torch's rule).

>>> import puredl as pd
>>> from puredl import optim
>>> w = pd.tensor([1.0], requires_grad=True)
>>> opt = optim.SGD([w], lr=0.1, momentum=0.9)
>>> (w * w).sum().backward(); opt.step(); round(w.item(), 6)
0.8
"""

from __future__ import annotations

from collections.abc import Iterable

from puredl import accel
from puredl.creation import zeros_like
from puredl.optim.optimizer import Optimizer
from puredl.tensor import bump_version


def _check(name: str, value: float, low: float = 0.0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise ValueError(f"Invalid {name} value: {value!r} (must be a number >= {low})")


class SGD(Optimizer):
    """SGD: ``buf = momentum * buf + (1 - dampening) * g``, ``p -= lr * buf`` (or Nesterov).

    ``g`` includes ``weight_decay * p``. ``fused=None`` updates pure-tier tensors through their
    flat storage and torch-backed ones with torch's in-place update (both fast), anything else
    with tensor ops; ``fused=False`` forces tensor ops.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check("learning rate", lr)
        _check("momentum", momentum)
        _check("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)
        self.fused = fused

    def _update(self, p, state: dict, group: dict) -> None:
        if self.fused is False or not _sgd_fused(p, state, group):
            _sgd_tensor(p, state, group)


def _sgd_fused(p, state: dict, group: dict) -> bool:
    """One backend kernel (``sgd_update``, chosen by accel where ``p`` lives) updates ``p`` and its
    momentum buffer in place; False when the kernel declines these buffers."""
    momentum = group["momentum"]
    grad = p._grad
    args = (
        group["lr"],
        momentum,
        group["dampening"],
        group["weight_decay"],
        group["nesterov"],
        group["maximize"],
    )
    if not momentum:
        done = accel.run_inplace("sgd", (p, grad), "sgd_update", (), None, *args, False)
        if done:
            bump_version(p)
        return done
    buf = state.get("momentum_buffer")
    first = buf is None
    if first:  # torch's first step: the buffer takes the gradient
        buf = zeros_like(p)
    done = accel.run_inplace("sgd", (p, grad, buf), "sgd_update", (), *args, first)
    if done:
        state["momentum_buffer"] = buf
        bump_version(p)
        bump_version(buf)
    return done


def _sgd_tensor(p, state: dict, group: dict) -> None:
    lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
    g = -p.grad if group["maximize"] else p.grad
    if wd:
        g = g + p * wd
    if momentum:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = g.detach().clone()
        else:
            buf.copy_(buf * momentum + g * (1.0 - group["dampening"]))
        g = g + buf * momentum if group["nesterov"] else buf
    p.copy_(p - g * lr)
