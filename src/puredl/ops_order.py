"""Ops that reorder, repeat or accumulate elements along dimensions: ``flip``, ``repeat``, ``sort``,
``cumsum``, ``cumprod``, and ``round`` with ``decimals=``.

``flip`` picks rows in reverse with ``index_select``, ``repeat`` is ``expand`` plus ``reshape``,
``cumprod`` one product per step, ``round(decimals=d)`` scales, rounds and scales back as torch's
kernel does: composed, their gradients come with them. ``cumsum`` has one kernel per backend and a
node whose gradient is a reversed ``cumsum``; ``sort`` has one kernel per backend (``sort``:
stable on the pure backend always, torch's own sort on torch) and shares ``topk``'s node.
"""

from __future__ import annotations

from puredl import accel
from puredl import dtypes as dt
from puredl.autograd import Function
from puredl.ops import REDUCTION, _numel, _record, cast, index_select0, normalize_dim, stack, unary
from puredl.ops_select import TopK
from puredl.tensor import Tensor, ValuesIndices, _wrap


def _dims_arg(dims, name: str) -> tuple:
    if isinstance(dims, int):
        return (dims,)
    if not isinstance(dims, (tuple, list)):
        raise TypeError(f"{name}: dims must be an int or a tuple of ints, got {type(dims).__name__}")
    return tuple(dims)


def flip(input: Tensor, dims) -> Tensor:  # noqa: A002
    """``input`` with the order of elements reversed along each of ``dims`` (a copy, as torch's)."""
    from puredl.creation import arange

    wanted = _dims_arg(dims, "flip")
    ds = tuple(normalize_dim(d, max(input.ndim, 1), "flip") for d in wanted)
    if len(set(ds)) != len(ds):
        raise RuntimeError(f"flip: dims has duplicates, original flip dims={list(wanted)}")
    out = input
    if input.ndim == 0:
        return input.clone()
    for d in ds:
        n = out.shape[d]
        backwards = arange(n - 1, -1, -1, dtype=dt.int64, device=out.device)
        out = index_select0(out.transpose(0, d), backwards).transpose(0, d)
    return out if ds else input.clone()


def repeat(input: Tensor, *sizes) -> Tensor:  # noqa: A002
    """``input`` tiled ``sizes[i]`` times along dimension ``i`` (leading new dimensions as needed)."""
    reps = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else tuple(sizes)
    if not reps:
        raise TypeError('repeat() missing 1 required positional argument: "repeats"')
    if any(not isinstance(r, int) or isinstance(r, bool) for r in reps):
        raise TypeError(f"repeat(): sizes must be ints, got {reps}")
    if len(reps) < input.ndim:
        raise RuntimeError(
            "Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor"
        )
    if any(r < 0 for r in reps):
        raise RuntimeError(f"Trying to create tensor with negative dimension: repeat sizes {list(reps)}")
    shape = (1,) * (len(reps) - input.ndim) + input.shape
    spread = tuple(x for s in shape for x in (1, s))  # (1, s0, 1, s1, ...): a new axis before each
    tiled = tuple(x for r, s in zip(reps, shape) for x in (r, s))
    out = input.reshape(spread).expand(tiled)
    return out.reshape(tuple(r * s for r, s in zip(reps, shape)))


class CumSum(Function):
    """The gradient of running sums: running sums of the gradient from the far end."""

    __slots__ = ("dim",)

    def backward(self, g):
        return (flip(cumsum(flip(g, self.dim), self.dim), self.dim),)


def cumsum(input: Tensor, dim: int, *, dtype=None) -> Tensor:  # noqa: A002
    """Running sums along ``dim`` (integers and bool sum into int64, as torch's)."""
    d = normalize_dim(dim, max(input.ndim, 1), "cumsum")
    if dtype is not None:
        a = cast(input, dt.as_dtype(dtype))
    elif input.dtype.is_floating_point:
        a = input
    else:
        a = cast(input, dt.int64)
    if a.ndim == 0:
        return a.clone()
    be, out = accel.run("cumsum", REDUCTION, _numel(a.shape), (a,), "cumsum", (), d)
    node = CumSum()
    node.dim = d
    return _record(node, (a,), _wrap(out, be))


def cumprod(input: Tensor, dim: int, *, dtype=None) -> Tensor:  # noqa: A002
    """Running products along ``dim`` (integers and bool into int64, as torch's): one product per
    step, so the gradient (zeros included) is the chain rule's, as torch's."""
    d = normalize_dim(dim, max(input.ndim, 1), "cumprod")
    if dtype is not None:
        a = cast(input, dt.as_dtype(dtype))
    elif input.dtype.is_floating_point:
        a = input
    else:
        a = cast(input, dt.int64)
    if a.ndim == 0 or a.shape[d] == 0:
        return a.clone()
    lead = (slice(None),) * d
    running = [a[lead + (0,)]]
    for i in range(1, a.shape[d]):
        running.append(running[-1] * a[lead + (i,)])
    return stack(running, d)


def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> ValuesIndices:  # noqa: A002
    """Values along ``dim`` in order and the int64 indices they came from (ties keep their order
    when ``stable``; the pure backend's sort is always stable)."""
    a = input.reshape(1) if input.ndim == 0 else input
    d = normalize_dim(dim, a.ndim, "sort")
    be, (vals, idx) = accel.run(
        "sort", REDUCTION, _numel(a.shape), (a,), "sort", (), d, bool(descending), bool(stable)
    )
    node = TopK()
    node.dim, node.saved = d, (idx, be)
    values, indices = _record(node, (a,), _wrap(vals, be)), _wrap(idx, be)
    if input.ndim == 0:
        values, indices = values.reshape(()), indices.reshape(())
    return ValuesIndices(values, indices)


def argsort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:  # noqa: A002
    """The int64 indices that sort ``input`` along ``dim``."""
    return sort(input, dim, descending, stable).indices


def round(input: Tensor, *, decimals: int = 0) -> Tensor:  # noqa: A001, A002
    """Each element rounded to ``decimals`` decimal places, halves to even (torch.round)."""
    if decimals == 0:
        return unary("round", input)
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"\"round_decimals\" not implemented for '{input.dtype.name}'")
    if decimals > 0:
        scale = 10.0**decimals
        return unary("round", input * scale) / scale
    scale = 10.0 ** (-decimals)
    return unary("round", input / scale) * scale


# Tensor methods (torch's names)


def _flip_method(self: Tensor, *dims, **kwargs) -> Tensor:
    if "dims" in kwargs:
        return flip(self, kwargs.pop("dims"), **kwargs)
    return flip(self, dims[0] if len(dims) == 1 else dims)


Tensor.flip = _flip_method
Tensor.cumprod = lambda self, dim, *, dtype=None: cumprod(self, dim, dtype=dtype)
Tensor.repeat = repeat
Tensor.cumsum = lambda self, dim, *, dtype=None: cumsum(self, dim, dtype=dtype)
Tensor.sort = lambda self, dim=-1, descending=False, stable=False: sort(self, dim, descending, stable)
Tensor.argsort = lambda self, dim=-1, descending=False, stable=False: argsort(self, dim, descending, stable)
Tensor.round = lambda self, *, decimals=0: round(self, decimals=decimals)
