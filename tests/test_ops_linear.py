"""The fused linear op (x @ W.T + b as one node) against torch.nn.functional.linear: forward and
gradients of input, weight and bias over random leading dims, sizes 0 and 1, layouts and dtypes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import puredl as pd  # noqa: E402
from oracle import torch  # a stand-in that skips the test using it where torch is not installed
from puredl import ops  # noqa: E402
from puredl.nn import functional as F  # noqa: E402
from torch_ref import (  # noqa: E402
    assert_close,
    assert_grads_close,
    backward_both,
    float_dtypes,
    layouts,
    make_pair,
    seeds,
    shapes,
)


@settings(max_examples=80, deadline=None)
@given(
    lead=shapes(0, 3, 0, 3),
    k=st.integers(0, 6),
    o=st.integers(0, 5),
    bias=st.booleans(),
    dtype=float_dtypes,
    lx=layouts,
    lw=layouts,
    seed=seeds,
)
def test_linear_matches_torch(lead, k, o, bias, dtype, lx, lw, seed):
    x, xt, xl, xtl = make_pair(lead + (k,), dtype, lx, seed)
    w, wt, wl, wtl = make_pair((o, k), dtype, lw, seed + 1)
    b = bt = bl = btl = None
    if bias:
        b, bt, bl, btl = make_pair((o,), dtype, "contiguous", seed + 2)
    out = F.linear(x, w, b)
    ref = torch.nn.functional.linear(xt, wt, bt)
    assert_close(out, ref)
    assert out.grad_fn.name == "Linear"
    backward_both(out, ref, seed + 3)
    leaves = [xl, wl] + ([bl] if bias else [])
    assert_grads_close(leaves, [xtl, wtl] + ([btl] if bias else []))


def test_linear_promotes_dtypes_and_returns_grads_in_each_dtype():
    x = pd.randn(3, 4, dtype=pd.float32, requires_grad=True)
    w = pd.randn(2, 4, dtype=pd.float64, requires_grad=True)
    b = pd.zeros(2, dtype=pd.float32, requires_grad=True)
    out = ops.linear(x, w, b)
    assert out.dtype is pd.float64
    out.sum().backward()
    assert (x.grad.dtype, w.grad.dtype, b.grad.dtype) == (pd.float32, pd.float64, pd.float32)


def test_linear_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"linear: input \(2, 3\) has 3 features, weight \(4, 5\) expects 5"):
        F.linear(pd.zeros(2, 3), pd.zeros(4, 5))
    with pytest.raises(TypeError, match="linear: input, weight and bias must be Tensors"):
        F.linear([1.0], pd.zeros(1, 1))
