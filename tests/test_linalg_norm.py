"""Vector norms (torch.norm, Tensor.norm, linalg.norm, linalg.vector_norm) against torch: p, dim,
keepdim, values and gradients, the zero vector's gradient; runs under PUREDL_ACCEL=pure|torch|auto."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import puredl as pd
from oracle import torch  # a stand-in that skips the test using it where torch is not installed
from torch_ref import (
    assert_close,
    assert_grads_close,
    backward_both,
    float_dtypes,
    layouts,
    make_pair,
    seeds,
    shapes,
)

ORDS = st.sampled_from([2, 1, math.inf, -math.inf, 0, 3, 0.5, 2.5])


@st.composite
def shape_and_dims(draw):
    shape = draw(shapes(0, 3, min_side=1))
    nd = len(shape)
    if nd == 0 or draw(st.booleans()):
        return shape, None
    dims = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
    dims = [d - nd if draw(st.booleans()) else d for d in dims]
    return shape, dims[0] if len(dims) == 1 and draw(st.booleans()) else tuple(dims)


@given(sd=shape_and_dims(), ord_=ORDS, keepdim=st.booleans(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_vector_norm_matches_torch(sd, ord_, keepdim, dtype, layout, seed):
    shape, dim = sd
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    out_p = pd.linalg.vector_norm(pa, ord_, dim, keepdim)
    out_t = torch.linalg.vector_norm(ta, ord_, dim, keepdim)
    assert_close(out_p, out_t, what=f"vector_norm ord={ord_} dim={dim} keepdim={keepdim} {shape}")
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


@given(sd=shape_and_dims(), p=st.sampled_from(["fro", 2, 1, math.inf, 3]), keepdim=st.booleans(), seed=seeds)
def test_norm_and_tensor_norm_match_torch(sd, p, keepdim, seed):
    shape, dim = sd
    if p == "fro" and dim is not None and not isinstance(dim, int) and len(dim) > 2:
        dim = dim[:2]  # torch's 'fro' takes at most two dims
    pa, ta, pl, tl = make_pair(shape, pd.float64, "contiguous", seed)
    out_p, out_t = pa.norm(p, dim, keepdim), ta.norm(p, dim, keepdim)
    assert_close(out_p, out_t, what=f"norm p={p} dim={dim}")
    assert_close(pd.norm(pa, p=p, dim=dim, keepdim=keepdim), torch.norm(ta, p=p, dim=dim, keepdim=keepdim))
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


@pytest.mark.parametrize("ord_", [None, 2, 1, math.inf, 3, 0.5])
def test_linalg_norm_of_vectors_and_the_zero_vector_gradient(ord_):
    vals = [[0.0, 0.0, 0.0], [3.0, 0.0, -4.0]]
    pa, ta = pd.tensor(vals, requires_grad=True), torch.tensor(vals, requires_grad=True)
    out_p, out_t = pd.linalg.norm(pa, ord_, dim=1), torch.linalg.norm(ta, ord_, dim=1)
    assert_close(out_p, out_t)
    out_p.sum().backward()
    out_t.sum().backward()
    assert_close(pa.grad, ta.grad)  # zero (not NaN) where the norm is zero, as torch
    assert_close(pd.linalg.norm(pa[1], ord_), torch.linalg.norm(ta[1], ord_))


def test_norm_refuses_what_torch_refuses_or_puredl_lacks():
    assert_close(pd.linalg.norm(pd.ones(2, 3), "fro"), torch.linalg.norm(torch.ones(2, 3), "fro"))
    with pytest.raises(RuntimeError, match="floating point"):
        pd.linalg.vector_norm(pd.tensor([1, 2]))
    with pytest.raises(RuntimeError, match="floating point"):
        torch.linalg.vector_norm(torch.tensor([1, 2]))
    for lib in (pd, torch):
        with pytest.raises(RuntimeError, match="dimension is empty"):
            lib.linalg.vector_norm(lib.ones(2, 0), math.inf, dim=1)
    assert_close(
        pd.linalg.vector_norm(pd.ones(2, 0), 2, dim=1), torch.linalg.vector_norm(torch.ones(2, 0), 2, dim=1)
    )
    with pytest.raises(NotImplementedError, match="matrix norm"):
        pd.linalg.norm(pd.ones(2, 3), 2)
    with pytest.raises(NotImplementedError, match="nuc"):
        pd.linalg.norm(pd.ones(2, 3), "nuc")
    with pytest.raises(RuntimeError, match="floating point"):
        pd.linalg.vector_norm(pd.tensor([3, 4]), dtype=pd.float64)
    with pytest.raises(RuntimeError, match="floating point"):
        torch.linalg.vector_norm(torch.tensor([3, 4]), dtype=torch.float64)
    assert_close(
        pd.linalg.vector_norm(pd.tensor([3.0, 4.0]), dtype=pd.float64),
        torch.linalg.vector_norm(torch.tensor([3.0, 4.0]), dtype=torch.float64),
    )
