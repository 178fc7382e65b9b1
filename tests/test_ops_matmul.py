"""matmul against torch: 1-D, 2-D, batched and broadcast batch dims, strided inputs, forward and gradient."""

from __future__ import annotations

import pytest
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import puredl as pd  # noqa: E402
from oracle import torch  # a stand-in that skips the test using it where torch is not installed
from torch_ref import (  # noqa: E402
    assert_close,
    assert_grads_close,
    backward_both,
    broadcastable_shapes,
    float_dtypes,
    layouts,
    make_pair,
    seeds,
)

sides = st.integers(0, 4)


@st.composite
def matmul_shapes(draw):
    """Operand shapes that torch.matmul accepts: any mix of 1-D, 2-D and batched (broadcast) operands."""
    m, k, n = draw(sides), draw(sides), draw(sides)
    kind_a, kind_b = (
        draw(st.sampled_from(["1d", "2d", "batched"])),
        draw(st.sampled_from(["1d", "2d", "batched"])),
    )
    batch_a, batch_b = draw(broadcastable_shapes(2, max_dims=3, max_side=3))
    a = (k,) if kind_a == "1d" else (m, k) if kind_a == "2d" else batch_a + (m, k)
    b = (k,) if kind_b == "1d" else (k, n) if kind_b == "2d" else batch_b + (k, n)
    return a, b


@given(shapes=matmul_shapes(), dtype=float_dtypes, la=layouts, lb=layouts, seed=seeds)
def test_matmul_matches_torch(shapes, dtype, la, lb, seed):
    pa, ta, pla, tla = make_pair(shapes[0], dtype, la, seed)
    pb, tb, plb, tlb = make_pair(shapes[1], dtype, lb, seed + 1)
    out_p, out_t = pa @ pb, ta @ tb
    assert_close(out_p, out_t, what=f"{shapes[0]} @ {shapes[1]}")
    assert_close(pd.matmul(pa, pb), torch.matmul(ta, tb))
    assert_close(pa.matmul(pb), ta.matmul(tb))
    backward_both(out_p, out_t, seed)
    assert_grads_close([pla, plb], [tla, tlb])


def test_matmul_of_integers_and_mixed_dtypes_matches_torch():
    a = pd.tensor([[1, 2], [3, 4]])
    b = pd.tensor([[5, -6], [7, 8]])
    ta, tb = torch.tensor(a.tolist()), torch.tensor(b.tolist())
    assert_close(a @ b, ta @ tb)
    af = pd.tensor([[0.5, 1.5]], dtype=pd.float64)
    assert_close(af @ b.double(), torch.tensor(af.tolist(), dtype=torch.float64) @ tb.double())


def test_matmul_shape_errors_name_the_op_and_both_shapes():
    cases = [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3, 4), (5, 4, 2)), ((4,), (3, 2))]
    for sa, sb in cases:
        with pytest.raises(ValueError) as err:
            pd.zeros(*sa) @ pd.zeros(*sb)
        msg = str(err.value)
        assert "matmul" in msg and str(sa) in msg and str(sb) in msg, msg
    with pytest.raises(ValueError, match="matmul"):
        pd.zeros(()) @ pd.zeros(3)
    with pytest.raises(TypeError, match="matmul"):
        pd.matmul(pd.zeros(2, 2), [[1.0, 0.0], [0.0, 1.0]])


@pytest.mark.parametrize("dtype", [pd.float32, pd.float64])
def test_larger_matmul_accumulates_accurately(dtype):
    pa, ta, _, _ = make_pair((3, 17, 40), dtype, "transposed", 1)
    pb, tb, _, _ = make_pair((40, 23), dtype, "strided", 2)
    # a float64 reference: puredl sums in double, torch's float32 matmul rounds as it goes
    ref = (ta.double() @ tb.double()).to(ta.dtype)
    assert_close(pa @ pb, ref, rtol=1e-5 if dtype is pd.float32 else 1e-12, atol=1e-6)
