"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay (torch's rule).

>>> import puredl as pd
>>> from puredl import optim
>>> w = pd.tensor([1.0], requires_grad=True)
>>> opt = optim.SGD([w], lr=0.1, momentum=0.9)
>>> (w * w).sum().backward(); opt.step(); round(w.item(), 6)
0.8
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from puredl.optim import _torch_update
from puredl.optim._flat import new_like, read_values, writable_buffer
from puredl.optim.optimizer import Optimizer


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
        if self.fused is False or not (_sgd_flat(p, state, group) or _torch_update.sgd(p, state, group)):
            _sgd_tensor(p, state, group)


def _sgd_flat(p, state: dict, group: dict) -> bool:
    w = writable_buffer(p)
    g = read_values(p.grad) if w is not None else None
    if g is None:
        return False
    lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
    if group["maximize"]:
        g = [-x for x in g]
    if wd:
        g = [x + wd * v for x, v in zip(g, w)]
    if momentum:
        buf_t = state.get("momentum_buffer")
        buf = writable_buffer(buf_t) if buf_t is not None else None
        if buf_t is None:
            buf_t = state["momentum_buffer"] = new_like(g, p)
            buf = writable_buffer(buf_t)
        elif buf is None:
            return False
        else:
            keep = 1.0 - group["dampening"]
            if keep == 1.0:
                buf[:] = array(buf.typecode, [momentum * b + x for b, x in zip(buf, g)])
            else:
                buf[:] = array(buf.typecode, [momentum * b + keep * x for b, x in zip(buf, g)])
        g = [x + momentum * b for x, b in zip(g, buf)] if group["nesterov"] else buf
    w[:] = array(w.typecode, [v - lr * x for v, x in zip(w, g)])
    return True


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
