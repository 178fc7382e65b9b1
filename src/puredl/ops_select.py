"""Masking and selection ops, composed from the op tables (their gradients come from ``where`` and
``matmul``): ``tril``, ``triu``, ``masked_fill``, ``topk`` (one kernel per backend), ``multinomial``,
``mm``.

``multinomial`` draws with Python's ``random.Random`` (the global generator that ``manual_seed``
seeds, or ``generator=``), so a seed gives the same draws in every mode; they are not torch's draws.
"""

from __future__ import annotations

from puredl import accel
from puredl import dtypes as dt
from puredl.autograd import Function
from puredl.ops import REDUCTION, _numel, _record, cast, matmul, normalize_dim, where
from puredl.tensor import Tensor, ValuesIndices, _wrap


def _triangle_keep(a: Tensor, diagonal: int, lower: bool, name: str) -> Tensor:
    from puredl.creation import arange

    if a.ndim < 2:
        raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions, got shape {a.shape}")
    n, m = a.shape[-2:]
    offset = arange(m, device=a.device) - arange(n, device=a.device).reshape(n, 1)  # column - row
    return offset <= diagonal if lower else offset >= diagonal


def _zero_like_scalar(a: Tensor) -> Tensor:
    from puredl.creation import scalar_tensor

    return scalar_tensor(False if a.dtype is dt.bool_ else 0, a.dtype, like=a)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    """The lower triangle of the last two dimensions (on and below ``diagonal``), zeros elsewhere."""
    return where(_triangle_keep(input, diagonal, True, "tril"), input, _zero_like_scalar(input))


def triu(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    """The upper triangle of the last two dimensions (on and above ``diagonal``), zeros elsewhere."""
    return where(_triangle_keep(input, diagonal, False, "triu"), input, _zero_like_scalar(input))


def _fill_value(input: Tensor, value, name: str) -> Tensor:
    from puredl.creation import scalar_tensor

    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"{name} only supports a 0-dimensional value tensor, got shape {value.shape}")
        return cast(value, input.dtype)
    if not isinstance(value, (int, float, bool)):
        raise TypeError(f"{name}: value must be a number or a 0-d tensor, got {type(value).__name__}")
    return scalar_tensor(value, input.dtype, like=input)


def _check_mask(input: Tensor, mask: Tensor, name: str) -> None:
    from puredl.shapes import broadcast_shapes

    if not isinstance(mask, Tensor) or mask.dtype is not dt.bool_:
        got = mask.dtype.name if isinstance(mask, Tensor) else type(mask).__name__
        raise RuntimeError(f"{name} only supports boolean masks, but got mask with dtype {got}")
    if broadcast_shapes(name, input.shape, mask.shape) != input.shape:
        raise RuntimeError(
            f"{name}: mask of shape {mask.shape} cannot be broadcast to the input's shape {input.shape}"
        )


def masked_fill(input: Tensor, mask: Tensor, value) -> Tensor:  # noqa: A002
    """``input`` with ``value`` where the bool ``mask`` (broadcast to ``input``) is true."""
    _check_mask(input, mask, "masked_fill")
    return where(mask, _fill_value(input, value, "masked_fill"), input)


def masked_fill_(input: Tensor, mask: Tensor, value) -> Tensor:  # noqa: A002
    """In-place ``masked_fill`` (bumps the version; recorded when autograd is watching)."""
    from puredl import inplace

    _check_mask(input, mask, "masked_fill_")
    fill = _fill_value(input, value, "masked_fill_")
    return inplace.update(input, lambda old, m, v: where(m, v, old), mask, fill)


class TopK(Function):
    """The gradient of the picked values goes back to where they were picked from."""

    __slots__ = ("dim",)

    def backward(self, g):
        from puredl.creation import arange

        (a,) = self.inputs
        idx = _wrap(*self.saved)
        d, n = self.dim, a.shape[self.dim]
        g, idx = g.transpose(d, -1), idx.transpose(d, -1)  # (..., k)
        onehot = cast(idx.unsqueeze(-1) == arange(n, device=g.device), g.dtype)  # (..., k, n)
        return (matmul(g.unsqueeze(-2), onehot).squeeze(-2).transpose(d, -1),)


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> ValuesIndices:  # noqa: A002
    """The ``k`` largest (or smallest) elements along ``dim`` and their int64 indices, in order."""
    a = input.reshape(1) if input.ndim == 0 else input
    d = normalize_dim(dim, a.ndim, "topk")
    if not 0 <= k <= a.shape[d]:
        raise RuntimeError(
            f"topk: selected index k={k} out of range for dimension {dim} of size {a.shape[d]}"
        )
    be, (vals, idx) = accel.run("topk", REDUCTION, _numel(a.shape), (a,), "topk", (), k, d, largest, sorted)
    node = TopK()
    node.dim, node.saved = d, (idx, be)
    values, indices = _record(node, (a,), _wrap(vals, be)), _wrap(idx, be)
    if input.ndim == 0:
        values, indices = values.reshape(()), indices.reshape(())
    return ValuesIndices(values, indices)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *, generator=None) -> Tensor:  # noqa: A002
    """Category indices drawn from each row of non-negative weights ``input`` (1-D or 2-D), int64.

    Draws come from Python's Mersenne Twister (``generator`` or the one ``manual_seed`` seeds).
    """
    from puredl.creation import tensor
    from puredl.random import default_generator

    if input.ndim not in (1, 2):
        raise RuntimeError(f"multinomial: prob_dist must be 1 or 2 dim, got shape {input.shape}")
    if not input.dtype.is_floating_point:
        raise RuntimeError(
            f"multinomial only supports floating-point dtypes for input, got {input.dtype.name}"
        )
    n = input.shape[-1]
    if num_samples <= 0:
        raise RuntimeError(f"multinomial: cannot sample n_sample <= 0 samples, got {num_samples}")
    if not replacement and num_samples > n:
        raise RuntimeError(
            "multinomial: cannot sample n_sample > prob_dist.size(-1) samples without replacement"
        )
    rng = generator if generator is not None else default_generator
    rows = input.detach().reshape(-1, n).tolist()
    out = []
    for row in rows:
        if any(w < 0 or w != w or w == float("inf") for w in row):
            raise RuntimeError("multinomial: probability tensor contains either `inf`, `nan` or element < 0")
        if not sum(row) > 0:
            raise RuntimeError("multinomial: invalid multinomial distribution (sum of probabilities <= 0)")
        if replacement:
            out.append(rng.choices(range(n), weights=row, k=num_samples))
            continue
        weights, picks = list(row), []
        for _ in range(num_samples):  # draw one, remove it, renormalize
            if sum(weights) > 0:
                j = rng.choices(range(n), weights=weights, k=1)[0]
            else:  # no weight left: torch then takes the zero-weight categories in order
                j = next(i for i in range(n) if i not in picks)
            picks.append(j)
            weights[j] = 0.0
        out.append(picks)
    result = tensor(out, dtype=dt.int64, device=input.device)
    return result.reshape(num_samples) if input.ndim == 1 else result


def mm(input: Tensor, mat2: Tensor) -> Tensor:  # noqa: A002
    """The product of two matrices (both 2-D; no broadcasting, as torch.mm)."""
    if input.ndim != 2:
        raise RuntimeError(f"mm: self must be a matrix, got shape {input.shape}")
    if mat2.ndim != 2:
        raise RuntimeError(f"mm: mat2 must be a matrix, got shape {mat2.shape}")
    return matmul(input, mat2)


# Tensor methods (torch's names)
for _fn in (tril, triu, masked_fill, masked_fill_, topk, mm):
    setattr(Tensor, _fn.__name__, _fn)
Tensor.multinomial = lambda self, num_samples, replacement=False, *, generator=None: multinomial(
    self, num_samples, replacement, generator=generator
)
