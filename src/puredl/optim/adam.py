"""Adam and AdamW (decoupled weight decay), with torch's update rule and bias corrections.

>>> import puredl as pd
>>> from puredl import optim
>>> w = pd.tensor([1.0], requires_grad=True)
>>> opt = optim.Adam([w], lr=0.1)
>>> (w * w).sum().backward(); opt.step(); round(w.item(), 6)
0.9
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from puredl import accel, ops
from puredl.optim.optimizer import Optimizer
from puredl.optim.sgd import _check
from puredl.tensor import bump_version


class Adam(Optimizer):
    """Adam: ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``, ``p -= lr m_hat / (sqrt(v_hat) + eps)``.

    ``weight_decay`` adds ``wd * p`` to the gradient (L2, as torch's Adam); ``amsgrad`` keeps the
    running maximum of ``v``. ``fused`` works as in :class:`SGD`.
    """

    decoupled = False
    _op = "adam"  # the op name in accel's statistics and log

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check("learning rate", lr)
        _check("epsilon", eps)
        _check("weight_decay", weight_decay)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Invalid betas {betas!r}: need two values in [0, 1)")
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize
        )
        super().__init__(params, defaults)
        self.fused = fused

    def _init_state(self, p, group: dict) -> dict:
        return _init_state(p, group["amsgrad"])

    def _update(self, p, state: dict, group: dict) -> None:
        state["step"] += 1
        if self.fused is False or not self._fused(p, state, group):
            self._tensor(p, state, group)

    def _coefficients(self, state: dict, group: dict) -> tuple[float, float]:
        b1, b2 = group["betas"]
        step = state["step"]
        step_size = group["lr"] / (1.0 - b1**step)
        return step_size, math.sqrt(1.0 - b2**step)

    def _fused(self, p, state: dict, group: dict) -> bool:
        """One backend kernel (``adam_update``, chosen by accel where ``p`` lives) updates ``p``
        and its moments in place; False when the kernel declines these buffers."""
        b1, b2 = group["betas"]
        step_size, bc2_sqrt = self._coefficients(state, group)
        args = (group["lr"], b1, b2, group["eps"], group["weight_decay"], self.decoupled, group["maximize"])
        args += (step_size, bc2_sqrt)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if group["amsgrad"]:
            vmax = state["max_exp_avg_sq"]
            written = (p, m, v, vmax)
            done = accel.run_inplace(self._op, (p, p.grad, m, v, vmax), "adam_update", (), *args)
        else:
            written = (p, m, v)
            done = accel.run_inplace(self._op, (p, p.grad, m, v), "adam_update", (), None, *args)
        if done:
            for t in written:
                bump_version(t)
        return done

    def _tensor(self, p, state: dict, group: dict) -> None:
        b1, b2 = group["betas"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        g = -p.grad if group["maximize"] else p.grad
        if wd:
            if self.decoupled:
                p.copy_(p * (1.0 - lr * wd))
            else:
                g = g + p * wd
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.copy_(m + (g - m) * (1.0 - b1))
        v.copy_(v * b2 + g * g * (1.0 - b2))
        if group["amsgrad"]:
            vmax = state["max_exp_avg_sq"]
            vmax.copy_(ops.maximum(vmax, v))
            v = vmax
        step_size, bc2_sqrt = self._coefficients(state, group)
        p.copy_(p - m * step_size / (v.sqrt() / bc2_sqrt + eps))


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` before the Adam step."""

    decoupled = True
    _op = "adamw"

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, fused=fused)


def _init_state(p, amsgrad: bool) -> dict:
    from puredl.creation import zeros_like

    state = {"step": 0, "exp_avg": zeros_like(p), "exp_avg_sq": zeros_like(p)}
    if amsgrad:
        state["max_exp_avg_sq"] = zeros_like(p)
    return state
