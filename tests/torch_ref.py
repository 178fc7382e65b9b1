"""Helpers for comparing puredl with PyTorch: conversion, dtype-aware closeness, hypothesis strategies.

Values cross between the libraries through ``tolist()`` only, so the comparisons hold whichever
backend (pure, torch, auto) ran the op. Where torch is not installed, ``torch`` here is the
stand-in from ``oracle.py``: a test that uses it (or these helpers) skips and says why.
"""

from __future__ import annotations

import math
import random

from hypothesis import strategies as st

import puredl as pd
from oracle import HAVE_TORCH, MissingTable, torch

if HAVE_TORCH:
    TORCH_DTYPE = {
        pd.float32: torch.float32,
        pd.float64: torch.float64,
        pd.float16: torch.float16,
        pd.bfloat16: torch.bfloat16,
        pd.int64: torch.int64,
        pd.int32: torch.int32,
        pd.int16: torch.int16,
        pd.int8: torch.int8,
        pd.uint8: torch.uint8,
        pd.bool: torch.bool,
    }
    PD_DTYPE = {v: k for k, v in TORCH_DTYPE.items()}
else:
    TORCH_DTYPE = PD_DTYPE = MissingTable()
FLOATS = (pd.float32, pd.float64)

# float32 work in puredl is done in double and rounded once, torch works in float32: allow a few ulps
TOLERANCE = {pd.float32: (2e-5, 1e-5), pd.float64: (1e-9, 1e-11)}  # (rtol, atol)
# the half floats: one unit in the last place (2**-10 and 2**-7 relative), where torch's float32
# result and puredl's double one round to neighbouring half values
TOLERANCE[pd.float16] = (2**-10, 2**-11)
TOLERANCE[pd.bfloat16] = (2**-7, 2**-8)


# --------------------------------------------------------------------------- conversion


def _flat(v) -> list:
    if isinstance(v, list):
        out = []
        for x in v:
            out.extend(_flat(x))
        return out
    return [v]


def to_torch(t: pd.Tensor, requires_grad: bool = False) -> torch.Tensor:
    """A torch tensor with the same shape, dtype and values (a fresh leaf)."""
    out = torch.tensor(_flat(t.tolist()), dtype=TORCH_DTYPE[t.dtype]).reshape(t.shape)
    return out.requires_grad_(requires_grad)


def from_torch(t: torch.Tensor, requires_grad: bool = False) -> pd.Tensor:
    """A puredl tensor with the same shape, dtype and values (a fresh leaf)."""
    flat = t.detach().reshape(-1).tolist()
    out = pd.tensor(flat, dtype=PD_DTYPE[t.dtype]).reshape(tuple(t.shape)).detach()
    return out.requires_grad_(requires_grad)


# --------------------------------------------------------------------------- comparison


def assert_close(got, expected, rtol: float | None = None, atol: float | None = None, what: str = "") -> None:
    """``got`` (puredl) equals ``expected`` (torch): same shape, same dtype, values within tolerance.

    Tolerances default by dtype; NaNs must match NaNs, infinities must match exactly.
    """
    label = f"{what}: " if what else ""
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, pd.Tensor), f"{label}expected a Tensor, got {type(got).__name__}"
        assert got.shape == tuple(expected.shape), (
            f"{label}shape {got.shape} != torch's {tuple(expected.shape)}"
        )
        assert got.dtype is PD_DTYPE[expected.dtype], f"{label}dtype {got.dtype} != torch's {expected.dtype}"
        dtype = got.dtype
        got_v, exp_v = _flat(got.tolist()), _flat(expected.detach().tolist())
    else:
        dtype = pd.float64
        got_v, exp_v = _flat(got), _flat(expected)
    assert len(got_v) == len(exp_v), f"{label}{len(got_v)} values != {len(exp_v)}"
    d_rtol, d_atol = TOLERANCE.get(dtype, (0.0, 0.0))
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    scale = max((abs(x) for x in exp_v if isinstance(x, float) and math.isfinite(x)), default=1.0)
    for i, (g, e) in enumerate(zip(got_v, exp_v)):
        if isinstance(e, float) and math.isnan(e):
            assert isinstance(g, float) and math.isnan(g), f"{label}element {i}: {g} != nan"
        elif isinstance(e, float) and math.isinf(e):
            assert g == e, f"{label}element {i}: {g} != {e}"
        elif isinstance(e, bool) or isinstance(e, int):
            assert g == e and type(g) is type(e), f"{label}element {i}: {g!r} != {e!r}"
        else:
            # atol is relative to the largest magnitude: sums and products of big values round at that scale
            tol = atol * max(1.0, scale) + rtol * abs(e)
            assert abs(g - e) <= tol, f"{label}element {i}: {g!r} != {e!r} (tolerance {tol:.3g})"


def same_strides(got: pd.Tensor, expected: torch.Tensor) -> bool:
    """Views agree on layout: equal strides on every dim longer than 1 (others address nothing)."""
    if got.numel() == 0:
        return True
    pairs = zip(got.shape, got.stride(), expected.stride())
    return all(st_g == st_e for n, st_g, st_e in pairs if n > 1)


def assert_grads_close(pd_leaves, torch_leaves, rtol=None, atol=None) -> None:
    """Gradients of matching leaves agree; a leaf torch gave no gradient must have none or zeros."""
    for i, (p, t) in enumerate(zip(pd_leaves, torch_leaves)):
        if t.grad is None:
            assert p.grad is None or all(v == 0 for v in _flat(p.grad.tolist())), f"grad {i}: expected none"
            continue
        if p.grad is None and t.grad.numel() == 0:
            continue  # an empty gradient carries nothing (puredl's cat leaves empty 1-D inputs out)
        assert p.grad is not None, f"grad {i}: puredl computed no gradient, torch did"
        assert_close(p.grad, t.grad, rtol, atol, what=f"grad of input {i}")


# --------------------------------------------------------------------------- building matching inputs


def random_values(rng: random.Random, n: int, dtype: pd.DType, low: float = -3.0, high: float = 3.0) -> list:
    if dtype is pd.bool:
        return [rng.random() < 0.5 for _ in range(n)]
    if dtype is pd.int64:
        return [rng.randint(int(low), int(high)) for _ in range(n)]
    return [rng.uniform(low, high) for _ in range(n)]


LAYOUTS = ("contiguous", "transposed", "strided", "expanded")


def make_pair(shape: tuple, dtype: pd.DType, layout: str, seed: int, low=-3.0, high=3.0, grad=True):
    """Matching inputs in both libraries, laid out as ``layout`` says.

    Returns ``(pd_input, torch_input, pd_leaf, torch_leaf)``: the input is a view of the leaf
    (transposed, sliced with a step, or expanded from size-1 dims) so gradients flow through the
    view back to the leaf.
    """
    rng = random.Random(seed)
    shape = tuple(shape)
    nd = len(shape)
    if layout == "transposed" and nd >= 2:
        base = shape[:-2] + (shape[-1], shape[-2])
    elif layout == "strided" and nd >= 1:
        base = shape[:-1] + (2 * shape[-1],)
    elif layout == "expanded" and nd >= 1:
        picks = [i for i in range(nd) if rng.random() < 0.5] or [0]
        base = tuple(1 if i in picks else n for i, n in enumerate(shape))
    else:
        layout, base = "contiguous", shape
    vals = random_values(rng, math.prod(base), dtype, low, high)
    req = grad and dtype.is_floating_point
    pl = pd.tensor(vals, dtype=dtype).reshape(base).detach().requires_grad_(req)
    tl = torch.tensor(vals, dtype=TORCH_DTYPE[dtype]).reshape(base).detach().requires_grad_(req)
    if layout == "transposed":
        pi, ti = pl.transpose(-1, -2), tl.transpose(-1, -2)
    elif layout == "strided":
        pi, ti = pl[..., ::2], tl[..., ::2]
    elif layout == "expanded":
        pi, ti = pl.expand(shape), tl.expand(shape)
    else:
        pi, ti = pl, tl
    return pi, ti, pl, tl


def random_grad(shape: tuple, dtype: pd.DType, seed: int):
    """A random upstream gradient in both libraries."""
    vals = random_values(random.Random(seed ^ 0x5EED), math.prod(shape), dtype)
    return (
        pd.tensor(vals, dtype=dtype).reshape(tuple(shape)),
        torch.tensor(vals, dtype=TORCH_DTYPE[dtype]).reshape(tuple(shape)),
    )


def backward_both(pd_out: pd.Tensor, torch_out: torch.Tensor, seed: int) -> None:
    """Backpropagate the same random upstream gradient through both outputs."""
    gp, gt = random_grad(pd_out.shape, pd_out.dtype, seed)
    pd_out.backward(gp)
    torch_out.backward(gt)


# --------------------------------------------------------------------------- hypothesis strategies

seeds = st.integers(0, 2**31 - 1)
float_dtypes = st.sampled_from(FLOATS)
layouts = st.sampled_from(LAYOUTS)


def shapes(min_dims: int = 0, max_dims: int = 4, min_side: int = 0, max_side: int = 4):
    """Tensor shapes with small sides, size-1 and (when ``min_side`` is 0) size-0 dimensions included."""
    side = st.integers(min_side, max_side)
    return st.lists(side, min_size=min_dims, max_size=max_dims).map(tuple)


@st.composite
def broadcastable_shapes(
    draw, n: int = 2, min_dims: int = 0, max_dims: int = 4, min_side: int = 0, max_side: int = 4
):
    """``n`` shapes that broadcast together: each drops leading dims of a common shape or sets dims to 1."""
    full = draw(shapes(min_dims, max_dims, min_side, max_side))
    out = []
    for _ in range(n):
        keep = draw(st.integers(min(min_dims, len(full)), len(full)))
        tail = full[len(full) - keep :]
        ones = draw(st.lists(st.booleans(), min_size=len(tail), max_size=len(tail)))
        out.append(tuple(1 if o else s for s, o in zip(tail, ones)))
    return tuple(out)


@st.composite
def shape_and_dim(draw, min_dims: int = 1, max_dims: int = 4, min_side: int = 0, max_side: int = 4):
    """A shape and a valid dimension of it (possibly negative)."""
    shape = draw(shapes(min_dims, max_dims, min_side, max_side))
    nd = max(len(shape), 1)
    return shape, draw(st.integers(-nd, nd - 1))
