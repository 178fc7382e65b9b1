"""Adagrad with torch's options (lr_decay, weight decay, initial accumulator, maximize).

>>> import puredl as pd
>>> from puredl import optim
>>> w = pd.tensor([1.0], requires_grad=True)
>>> opt = optim.Adagrad([w], lr=0.1)
>>> (w * w).sum().backward(); opt.step(); round(w.item(), 4)
0.9
"""

from __future__ import annotations

from collections.abc import Iterable

from puredl.optim.optimizer import Optimizer
from puredl.optim.sgd import _check


class Adagrad(Optimizer):
    """``sum += g^2``; ``p -= lr / (1 + (step-1) lr_decay) * g / (sqrt(sum) + eps)`` (torch's rule)."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check("learning rate", lr)
        _check("lr_decay", lr_decay)
        _check("weight_decay", weight_decay)
        _check("initial_accumulator_value", initial_accumulator_value)
        _check("epsilon", eps)
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _init_state(self, p, group: dict) -> dict:
        from puredl.creation import full_like

        return {"step": 0, "sum": full_like(p, group["initial_accumulator_value"])}

    def _update(self, p, state: dict, group: dict) -> None:
        state["step"] += 1
        g = -p.grad if group["maximize"] else p.grad
        if group["weight_decay"]:
            g = g + p * group["weight_decay"]
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        acc = state["sum"]
        acc.copy_(acc + g * g)
        p.copy_(p - g / (acc.sqrt() + group["eps"]) * clr)
