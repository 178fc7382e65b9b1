"""Adadelta with torch's options (rho, eps, weight decay, maximize) and update order.

>>> import puredl as pd
>>> from puredl import optim
>>> w = pd.tensor([1.0], requires_grad=True)
>>> opt = optim.Adadelta([w])
>>> (w * w).sum().backward(); opt.step(); round(w.item(), 5)
0.99684
"""

from __future__ import annotations

from collections.abc import Iterable

from puredl.optim.optimizer import Optimizer
from puredl.optim.sgd import _check


class Adadelta(Optimizer):
    """``v = rho v + (1-rho) g^2``; ``d = sqrt(u + eps) / sqrt(v + eps) g``;
    ``u = rho u + (1-rho) d^2``; ``p -= lr d`` (torch's rule)."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check("learning rate", lr)
        _check("epsilon", eps)
        _check("weight_decay", weight_decay)
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho!r} (must be in [0, 1])")
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _init_state(self, p, group: dict) -> dict:
        from puredl.creation import zeros_like

        return {"step": 0, "square_avg": zeros_like(p), "acc_delta": zeros_like(p)}

    def _update(self, p, state: dict, group: dict) -> None:
        rho, eps = group["rho"], group["eps"]
        state["step"] += 1
        g = -p.grad if group["maximize"] else p.grad
        if group["weight_decay"]:
            g = g + p * group["weight_decay"]
        sq, acc = state["square_avg"], state["acc_delta"]
        sq.copy_(sq * rho + g * g * (1.0 - rho))
        delta = (acc + eps).sqrt() / (sq + eps).sqrt() * g
        acc.copy_(acc * rho + delta * delta * (1.0 - rho))
        p.copy_(p - delta * group["lr"])
