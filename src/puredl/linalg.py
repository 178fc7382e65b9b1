"""Vector norms, as ``torch.linalg.vector_norm``, ``torch.linalg.norm`` and ``torch.norm``.

The inf, -inf, 0 and 1 norms are reductions composed from the tables (``amax(abs(x))``, ...),
so their gradients come with them. Any other ``p`` (2 included) is one ``VectorNorm`` node whose
gradient is torch's: zero where the norm is zero (``sqrt`` composed would give NaN there).
Matrix norms other than Frobenius (which is the 2-norm of the elements) are not implemented.
"""

from __future__ import annotations

import math

from puredl import autograd
from puredl import dtypes as dt
from puredl.autograd import Function
from puredl.ops import _record, amax, amin, cast, reduce_sum, unary, where
from puredl.shapes import normalize_dims
from puredl.tensor import Tensor


class VectorNorm(Function):
    """The gradient of ``sum(|x|**p) ** (1/p)`` over ``dims``, as torch writes it."""

    __slots__ = ("p", "dims", "keepdim", "out")

    def backward(self, g):
        (x,) = self.inputs
        p, out = self.p, self.out
        if not self.keepdim:
            for d in sorted(self.dims):
                g, out = g.unsqueeze(d), out.unsqueeze(d)
        sgn, mag = unary("sign", x), unary("abs", x)
        if p < 1.0:
            scaled = sgn * where(x == 0, 0.0, mag ** (p - 1.0))
            return (scaled * g * out ** (1.0 - p),)
        scale = where(out == 0, 0.0, g / out ** (p - 1.0))
        return ((x if p == 2.0 else sgn * mag ** (p - 1.0)) * scale,)


def _float_input(x: Tensor, dtype, name: str) -> Tensor:
    if not x.dtype.is_floating_point:  # checked before dtype= applies, as torch
        raise RuntimeError(
            f"{name}: Expected a floating point or complex tensor as input. Got {x.dtype.name}"
        )
    return x if dtype is None else cast(x, dt.as_dtype(dtype))


def vector_norm(x: Tensor, ord: float = 2, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:  # noqa: A002
    """The ``ord``-norm of the elements over ``dim`` (every dimension when None)."""
    x = _float_input(x, dtype, "linalg.vector_norm")
    if isinstance(ord, str) or isinstance(ord, bool):
        raise RuntimeError(f"linalg.vector_norm: ord must be a number, got {ord!r}")
    p = float(ord)
    if dim is None or x.ndim == 0:
        dims = tuple(range(x.ndim))
    else:
        dims = normalize_dims(dim, x.ndim, "linalg.vector_norm")
    reduce_dims = dims or None
    empty = [d for d in dims if x.shape[d] == 0]
    if abs(p) == math.inf and empty:
        raise RuntimeError(
            f"linalg.vector_norm cannot compute the {ord} norm on the dimension {empty[0]} "
            "because this dimension is empty and the operation does not have an identity"
        )
    if p == math.inf:
        return amax(unary("abs", x), reduce_dims, keepdim)
    if p == -math.inf:
        return amin(unary("abs", x), reduce_dims, keepdim)
    if p == 0.0:
        # |sign(x)| counts the non-zeros and carries torch's zero gradient
        return reduce_sum(unary("abs", unary("sign", x)), reduce_dims, keepdim)
    if p == 1.0:
        return reduce_sum(unary("abs", x), reduce_dims, keepdim)
    with autograd.no_grad():
        mag = unary("abs", x)
        powered = mag * mag if p == 2.0 else mag**p
        total = reduce_sum(powered, reduce_dims, keepdim)
        out = unary("sqrt", total) if p == 2.0 else total ** (1.0 / p)
    node = VectorNorm()
    node.p, node.dims, node.keepdim, node.out = p, dims, keepdim, out
    return _record(node, (x,), out.detach(), (x,))


def norm(A: Tensor, ord=None, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:  # noqa: N803
    """``torch.linalg.norm``: vector norms, and the Frobenius norm of matrices."""
    if ord is None or ord == "fro":
        if ord == "fro" and dim is None and A.ndim != 2:
            raise RuntimeError(f"linalg.norm: 'fro' without dim needs a 2-D input, got shape {A.shape}")
        return vector_norm(A, 2, dim, keepdim, dtype=dtype)
    if isinstance(ord, str):
        raise NotImplementedError(f"linalg.norm: matrix norm ord={ord!r} is not implemented in puredl")
    n_dims = A.ndim if dim is None else (1 if isinstance(dim, int) else len(dim))
    if n_dims != 1:
        raise NotImplementedError(
            f"linalg.norm: matrix norms (ord={ord!r} over 2 dimensions) are not implemented in puredl; "
            "use linalg.vector_norm"
        )
    return vector_norm(A, ord, dim, keepdim, dtype=dtype)


def tensor_norm(input: Tensor, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Tensor:  # noqa: A002
    """``torch.norm`` / ``Tensor.norm``: ``p`` ('fro' is 2) over ``dim`` (every dimension when None)."""
    if p == "fro" or p is None:
        return vector_norm(input, 2, dim, keepdim, dtype=dtype)
    if isinstance(p, str):
        raise NotImplementedError(f"norm: p={p!r} is not implemented in puredl")
    return vector_norm(input, p, dim, keepdim, dtype=dtype)


Tensor.norm = tensor_norm
