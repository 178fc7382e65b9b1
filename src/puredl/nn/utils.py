"""Gradient utilities: ``clip_grad_norm_``, ``clip_grad_value_``, parameters <-> one flat vector.

>>> import puredl as pd
>>> from puredl.nn.utils import clip_grad_norm_
>>> w = pd.tensor([3.0, 4.0], requires_grad=True)
>>> (w * w).sum().backward()             # grad = [6, 8], norm 10
>>> round(clip_grad_norm_([w], max_norm=1.0).item(), 4), [round(g, 4) for g in w.grad.tolist()]
(10.0, [0.6, 0.8])
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from puredl import autograd
from puredl.tensor import Tensor


def _grads(parameters: Iterable[Tensor] | Tensor) -> list[Tensor]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p for p in params if p.grad is not None]


def _norm_of(values, norm_type: float) -> float:
    if norm_type == math.inf:
        return max((abs(x) for x in values), default=0.0)
    if norm_type == 2.0:
        return math.sqrt(math.fsum(x * x for x in values))
    return math.fsum(abs(x) ** norm_type for x in values) ** (1.0 / norm_type)


def clip_grad_norm_(
    parameters: Iterable[Tensor] | Tensor,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    """Scale all gradients together so that their joint ``norm_type``-norm is at most ``max_norm``.

    Returns the norm before clipping (a 0-d tensor). Like torch, gradients are multiplied by
    ``min(1, max_norm / (norm + 1e-6))``.
    """
    from puredl.creation import tensor

    norm_type = float(norm_type)
    params = _grads(parameters)
    if not params:
        return tensor(0.0)
    per_param = [_norm_of(p.grad.reshape(-1).tolist(), norm_type) for p in params]
    total = _norm_of(per_param, norm_type) if norm_type != math.inf else max(per_param)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite ({total}), "
            "so it cannot be clipped. Set error_if_nonfinite=False to disable this error."
        )
    coef = min(1.0, float(max_norm) / (total + 1e-6))
    if coef < 1.0 or not math.isfinite(total):
        with autograd.no_grad():
            for p in params:
                # a new tensor: several leaves can share one gradient tensor object
                p.grad = p.grad * coef
    return tensor(total, dtype=params[0].grad.dtype)


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float) -> None:
    """Clamp every gradient element into [-clip_value, clip_value]."""
    c = float(clip_value)
    with autograd.no_grad():
        for p in _grads(parameters):
            p.grad = p.grad.clamp(-c, c)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and joined into one 1-D tensor (a copy)."""
    from puredl.ops import cat

    return cat([p.detach().reshape(-1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of ``vec`` into the parameters (the inverse of parameters_to_vector)."""
    params = list(parameters)
    total = sum(p.numel() for p in params)
    if vec.ndim != 1 or vec.numel() != total:
        raise ValueError(
            f"vector_to_parameters: expected a 1-D tensor of {total} elements, got shape {tuple(vec.shape)}"
        )
    start = 0
    with autograd.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(vec[start : start + n].reshape(p.shape))
            start += n


__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters"]
