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
from array import array
from collections.abc import Iterable

from puredl import ops
from puredl.optim import _torch_update
from puredl.optim._flat import read_values, writable_buffer
from puredl.optim.optimizer import Optimizer
from puredl.optim.sgd import _check


class Adam(Optimizer):
    """Adam: ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``, ``p -= lr m_hat / (sqrt(v_hat) + eps)``.

    ``weight_decay`` adds ``wd * p`` to the gradient (L2, as torch's Adam); ``amsgrad`` keeps the
    running maximum of ``v``. ``fused`` works as in :class:`SGD`.
    """

    decoupled = False

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
        if self.fused is False or not (self._flat(p, state, group) or self._torch(p, state, group)):
            self._tensor(p, state, group)

    def _coefficients(self, state: dict, group: dict) -> tuple[float, float]:
        b1, b2 = group["betas"]
        step = state["step"]
        step_size = group["lr"] / (1.0 - b1**step)
        return step_size, math.sqrt(1.0 - b2**step)

    def _flat(self, p, state: dict, group: dict) -> bool:
        w = writable_buffer(p)
        g = read_values(p.grad) if w is not None else None
        m, v = writable_buffer(state["exp_avg"]), writable_buffer(state["exp_avg_sq"])
        vmax = writable_buffer(state["max_exp_avg_sq"]) if group["amsgrad"] else None
        if g is None or m is None or v is None or (group["amsgrad"] and vmax is None):
            return False
        b1, b2 = group["betas"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        if group["maximize"]:
            g = [-x for x in g]
        if wd:
            if self.decoupled:
                keep = 1.0 - lr * wd
                w[:] = array(w.typecode, [x * keep for x in w])
            else:
                g = [x + wd * y for x, y in zip(g, w)]
        tc = w.typecode
        a1, a2 = 1.0 - b1, 1.0 - b2
        m[:] = array(tc, [mi + a1 * (gi - mi) for mi, gi in zip(m, g)])  # torch's lerp
        v[:] = array(tc, [vi * b2 + a2 * gi * gi for vi, gi in zip(v, g)])
        if vmax is not None:
            vmax[:] = array(tc, [a if a >= b else b for a, b in zip(vmax, v)])
            v = vmax
        step_size, bc2_sqrt = self._coefficients(state, group)
        sqrt = math.sqrt
        w[:] = array(tc, [x - step_size * mi / (sqrt(vi) / bc2_sqrt + eps) for x, mi, vi in zip(w, m, v)])
        return True

    def _torch(self, p, state: dict, group: dict) -> bool:
        step_size, bc2_sqrt = self._coefficients(state, group)
        return _torch_update.adam(p, state, group, self.decoupled, step_size, bc2_sqrt)

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
