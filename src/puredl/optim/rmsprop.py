"""RMSprop with torch's options (momentum, centered, weight decay, maximize) and update order.

>>> import puredl as pd
>>> from puredl import optim
>>> w = pd.tensor([1.0], requires_grad=True)
>>> opt = optim.RMSprop([w], lr=0.01)
>>> (w * w).sum().backward(); opt.step(); round(w.item(), 4)
0.9
"""

from __future__ import annotations

from collections.abc import Iterable

from puredl.optim.optimizer import Optimizer
from puredl.optim.sgd import _check


class RMSprop(Optimizer):
    """``v = alpha v + (1-alpha) g^2``; ``p -= lr g / (sqrt(v) + eps)`` (torch's rule).

    ``centered`` divides by the estimated variance ``sqrt(v - mean(g)^2)`` instead;
    ``momentum`` keeps ``buf = momentum buf + g / (...)`` and steps by ``lr buf``.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check("learning rate", lr)
        _check("epsilon", eps)
        _check("momentum", momentum)
        _check("weight_decay", weight_decay)
        _check("alpha", alpha)
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _init_state(self, p, group: dict) -> dict:
        from puredl.creation import zeros_like

        state = {"step": 0, "square_avg": zeros_like(p)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = zeros_like(p)
        if group["centered"]:
            state["grad_avg"] = zeros_like(p)
        return state

    def _update(self, p, state: dict, group: dict) -> None:
        alpha, eps, lr = group["alpha"], group["eps"], group["lr"]
        state["step"] += 1
        g = -p.grad if group["maximize"] else p.grad
        if group["weight_decay"]:
            g = g + p * group["weight_decay"]
        sq = state["square_avg"]
        sq.copy_(sq * alpha + g * g * (1.0 - alpha))
        if group["centered"]:
            ga = state["grad_avg"]
            ga.copy_(ga + (g - ga) * (1.0 - alpha))
            avg = (sq - ga * ga).sqrt() + eps
        else:
            avg = sq.sqrt() + eps
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf.copy_(buf * group["momentum"] + g / avg)
            p.copy_(p - buf * lr)
        else:
            p.copy_(p - g / avg * lr)
