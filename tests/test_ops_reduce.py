"""Reductions and softmax against torch: dim (int, tuple, None), keepdim, forward and gradient."""

from __future__ import annotations

import pytest
from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import puredl as pd  # noqa: E402
from oracle import torch  # a stand-in that skips the test using it where torch is not installed
from torch_ref import (  # noqa: E402
    assert_close,
    assert_grads_close,
    backward_both,
    float_dtypes,
    layouts,
    make_pair,
    seeds,
    shapes,
    to_torch,
)


@st.composite
def shape_and_dims(draw, min_side: int = 0):
    """A shape and a ``dim`` argument for it: None, one dim (maybe negative) or a tuple of distinct dims."""
    shape = draw(shapes(0, 4, min_side=min_side))
    nd = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return shape, None
    if kind == "int" or nd == 0:
        return shape, draw(st.integers(-max(nd, 1), max(nd, 1) - 1))
    dims = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
    return shape, tuple(d - nd if draw(st.booleans()) else d for d in dims)


# name -> f(tensor, dim, keepdim), the same code for puredl and torch
REDUCE = {
    "sum": lambda a, d, k: a.sum(d, keepdim=k),
    "mean": lambda a, d, k: a.mean(d, keepdim=k),
    "var": lambda a, d, k: a.var(d, keepdim=k),
    "std": lambda a, d, k: a.std(d, keepdim=k),
    "var_biased": lambda a, d, k: a.var(d, keepdim=k, correction=0),
    "std_unbiased_false": lambda a, d, k: a.std(d, keepdim=k, unbiased=False),
}


@pytest.mark.filterwarnings("ignore:std|var:UserWarning")  # torch warns when degrees of freedom <= 0
@pytest.mark.parametrize("name", sorted(REDUCE))
@given(sd=shape_and_dims(), keepdim=st.booleans(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_reduction_matches_torch(name, sd, keepdim, dtype, layout, seed):
    shape, dim = sd
    if name.startswith("std") and layout == "expanded":
        # constant rows: torch's rounding leaves a tiny spread whose std gradient is noise; see the test below
        layout = "contiguous"
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    out_p, out_t = REDUCE[name](pa, dim, keepdim), REDUCE[name](ta, dim, keepdim)
    assert_close(out_p, out_t, what=f"{name}(dim={dim}, keepdim={keepdim})")
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


@pytest.mark.parametrize("name", ["amax", "amin"])
@given(sd=shape_and_dims(min_side=1), keepdim=st.booleans(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_amax_amin_match_torch_with_ties_sharing_the_gradient(name, sd, keepdim, dtype, layout, seed):
    shape, dim = sd
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    out_p = getattr(pa, name)(dim, keepdim=keepdim)
    out_t = getattr(ta, name)(dim, keepdim=keepdim)
    assert_close(out_p, out_t, what=f"{name}(dim={dim}, keepdim={keepdim})")
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


@given(sd=shape_and_dims(), keepdim=st.booleans(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_prod_matches_torch(sd, keepdim, dtype, layout, seed):
    shape, dim = sd
    if isinstance(dim, tuple):  # torch's prod takes one dim (puredl also takes several)
        dim = dim[0]
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed, low=-1.5, high=1.5)
    out_p = pa.prod(dim, keepdim=keepdim) if dim is not None else pa.prod()
    out_t = ta.prod(dim, keepdim=keepdim) if dim is not None else ta.prod()
    assert_close(out_p, out_t, what=f"prod(dim={dim}, keepdim={keepdim})")
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


def test_prod_gradient_at_zeros_is_torchs():
    # one zero in a row: its gradient is the product of the others; two zeros: all zero
    rows = [[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.0, 2.0, 4.0]]
    a, ta = pd.tensor(rows, requires_grad=True), torch.tensor(rows, requires_grad=True)
    for dim in (1, 0):
        a.grad, ta.grad = None, None
        (a.prod(dim) * pd.tensor([1.0, 2.0, 3.0])).sum().backward()
        (ta.prod(dim) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
        assert a.grad.tolist() == ta.grad.tolist()
    a.grad, ta.grad = None, None
    a.prod().backward()
    ta.prod().backward()
    assert a.grad.tolist() == ta.grad.tolist()


def test_prod_and_amax_dtypes_and_several_dims_match_torch():
    ints, bools = pd.tensor([[1, -2, 3], [4, 5, -6]]), pd.tensor([[True, False], [True, True]])
    for got, want in (
        (ints.prod(), to_torch(ints).prod()),
        (ints.prod(1), to_torch(ints).prod(1)),
        (bools.prod(0), to_torch(bools).prod(0)),
        (ints.amax(0), to_torch(ints).amax(0)),
        (bools.amin(1), to_torch(bools).amin(1)),
        (ints.amax((0, 1), keepdim=True), to_torch(ints).amax((0, 1), keepdim=True)),
        (pd.prod(ints, (0, 1)), to_torch(ints).prod()),
        (ints.sum(dtype=pd.float64), to_torch(ints).sum(dtype=torch.float64)),
    ):
        assert got.dtype.name == str(want.dtype).removeprefix("torch.").replace("bool", "bool")
        assert got.tolist() == want.tolist()
    big = pd.tensor([2**40, 2**40])
    assert big.prod().item() == to_torch(big).prod().item()  # wraps around int64, as torch


def test_amax_amin_of_empty_raise_like_torch():
    e = pd.zeros(2, 0)
    with pytest.raises(IndexError, match="non-zero size"):
        e.amax(1)
    with pytest.raises(RuntimeError, match="empty"):
        e.amin()
    assert e.amax(0).shape == (0,) and e.prod(1).tolist() == [1.0, 1.0] and e.prod(0).shape == (0,)


@pytest.mark.parametrize("dtype", [pd.float32, pd.float64])
def test_std_of_constant_rows_has_zero_gradient_like_torch(dtype):
    a = pd.tensor([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]], dtype=dtype, requires_grad=True)
    ta = to_torch(a, True)
    a.std(1).sum().backward()
    ta.std(1).sum().backward()
    assert_grads_close([a], [ta])
    assert a.grad.tolist()[0] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("fn", ["sum", "mean"])
def test_module_level_reductions(fn):
    pa, ta, _, _ = make_pair((2, 3, 4), pd.float64, "transposed", 3, grad=False)
    assert_close(getattr(pd, fn)(pa), getattr(torch, fn)(ta))
    assert_close(getattr(pd, fn)(pa, 1), getattr(torch, fn)(ta, 1))
    assert_close(getattr(pd, fn)(pa, (0, 2), keepdim=True), getattr(torch, fn)(ta, (0, 2), keepdim=True))
    assert_close(pd.var(pa, 1), torch.var(ta, 1))
    assert_close(pd.std(pa, -1, keepdim=True), torch.std(ta, -1, keepdim=True))


@pytest.mark.parametrize("dtype", [pd.int64, pd.bool])
def test_sum_of_integers_and_bools_is_int64(dtype):
    pa, ta, _, _ = make_pair((3, 4), dtype, "strided", 5, -4, 4, grad=False)
    assert_close(pa.sum(), ta.sum())
    assert_close(pa.sum(1), ta.sum(1))
    assert_close(pa.sum(0, keepdim=True), ta.sum(0, keepdim=True))


@pytest.mark.parametrize("largest", [True, False])
@given(sd=shape_and_dims(min_side=1), keepdim=st.booleans(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_max_min_along_dim_match_torch(largest, sd, keepdim, dtype, layout, seed):
    shape, dim = sd
    assume(not isinstance(dim, tuple))
    layout = (
        "contiguous" if layout == "expanded" else layout
    )  # ties: which index wins is unspecified in torch
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    name = "max" if largest else "min"
    if dim is None:
        out_p, out_t = getattr(pa, name)(), getattr(ta, name)()
        assert_close(out_p, out_t, what=f"{name}()")
    else:
        out_p, out_t = getattr(pa, name)(dim, keepdim=keepdim), getattr(ta, name)(dim, keepdim=keepdim)
        assert_close(out_p.values, out_t.values, what=f"{name}(dim={dim}).values")
        assert_close(out_p.indices, out_t.indices, what=f"{name}(dim={dim}).indices")
        values_p, indices_p = out_p  # unpacks like torch's namedtuple
        assert values_p is out_p.values and indices_p is out_p.indices
        out_p, out_t = out_p.values, out_t.values
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@given(sd=shape_and_dims(min_side=1), keepdim=st.booleans(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_argmax_argmin_match_torch(name, sd, keepdim, dtype, layout, seed):
    shape, dim = sd
    assume(not isinstance(dim, tuple))
    layout = "contiguous" if layout == "expanded" else layout
    pa, ta, _, _ = make_pair(shape, dtype, layout, seed, grad=False)
    assert_close(getattr(pa, name)(dim, keepdim=keepdim), getattr(ta, name)(dim, keepdim=keepdim))
    assert_close(getattr(pd, name)(pa, dim), getattr(torch, name)(ta, dim))


def test_max_of_all_ties_shares_gradient_like_torch():
    a = pd.tensor([[1.0, 3.0], [3.0, 2.0]], requires_grad=True)
    ta = to_torch(a, True)
    a.max().backward()
    ta.max().backward()
    assert_grads_close([a], [ta])
    b = pd.tensor([[1.0, 3.0], [3.0, 2.0]], requires_grad=True)
    tb = to_torch(b, True)
    b.min().backward()
    tb.min().backward()
    assert_grads_close([b], [tb])


def test_max_and_argmax_pick_the_first_of_ties_like_torch():
    a = pd.tensor([[2.0, 5.0, 5.0, 1.0], [7.0, 7.0, 0.0, 7.0]])
    ta = to_torch(a)
    assert_close(a.argmax(1), ta.argmax(1))
    assert_close(a.max(1).indices, ta.max(1).indices)
    assert_close(a.argmax(), ta.argmax())
    assert_close(a.argmin(0), ta.argmin(0))


def test_nan_propagates_through_reductions_like_torch():
    nan = float("nan")
    vals = [[1.0, nan, 3.0], [2.0, 5.0, -1.0], [nan, nan, 0.0]]
    a = pd.tensor(vals, dtype=pd.float64)
    ta = to_torch(a)
    for name, fn in {
        "max": lambda x: x.max(),
        "min": lambda x: x.min(),
        "argmax": lambda x: x.argmax(),
        "argmin": lambda x: x.argmin(),
        "argmax(1)": lambda x: x.argmax(1),
        "argmin(0)": lambda x: x.argmin(0),
        "max(1)": lambda x: x.max(1).values,
        "max(1).indices": lambda x: x.max(1).indices,
        "sum(0)": lambda x: x.sum(0),
        "mean(1)": lambda x: x.mean(1),
        "softmax(1)": lambda x: x.softmax(1),
        "log_softmax(1)": lambda x: x.log_softmax(1),
    }.items():
        assert_close(fn(a), fn(ta), what=name)


def test_reductions_over_empty_dims_match_torch():
    a = pd.zeros(2, 0, 3)
    ta = to_torch(a)
    assert_close(a.sum(), ta.sum())
    assert_close(a.sum(1), ta.sum(1))
    assert_close(a.sum(2), ta.sum(2))
    assert_close(a.mean(1), ta.mean(1))
    assert_close(a.max(2).values, ta.max(2).values)
    with pytest.raises(IndexError, match="zero-size"):
        a.max(1)
    with pytest.raises((ValueError, IndexError, RuntimeError), match="empty"):
        a.max()


def test_reduction_bad_dim_raises_index_error_naming_it():
    a = pd.zeros(2, 3)
    for call in (
        lambda: a.sum(2),
        lambda: a.mean(-3),
        lambda: a.max(5),
        lambda: a.argmax(2),
        lambda: a.var(3),
    ):
        with pytest.raises(IndexError, match=r"dimension -?\d+ is out of range"):
            call()
    with pytest.raises(ValueError, match="more than once"):
        a.sum((1, -1))


def test_mean_of_integers_is_an_error_like_torch():
    with pytest.raises(TypeError, match="floating point"):
        pd.tensor([1, 2, 3]).mean()


SOFTMAX = {
    "softmax": lambda m, a, d: a.softmax(d),
    "log_softmax": lambda m, a, d: a.log_softmax(d),
    "softmax_fn": lambda m, a, d: m.softmax(a, d),
    "log_softmax_fn": lambda m, a, d: m.log_softmax(a, d),
}


@pytest.mark.parametrize("name", sorted(SOFTMAX))
@given(
    sd=shape_and_dims(), dtype=float_dtypes, layout=layouts, scale=st.sampled_from([1.0, 100.0]), seed=seeds
)
def test_softmax_matches_torch(name, sd, dtype, layout, scale, seed):
    shape, dim = sd
    assume(not isinstance(dim, tuple) and dim is not None)
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed, -3 * scale, 3 * scale)
    out_p, out_t = SOFTMAX[name](pd, pa, dim), SOFTMAX[name](torch, ta, dim)
    assert_close(out_p, out_t, what=f"{name}(dim={dim})")
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


@pytest.mark.parametrize("dtype", [pd.float32, pd.float64])
def test_softmax_is_stable_at_large_magnitudes(dtype):
    rows = [[1000.0, 1001.0, 999.0], [-1000.0, -1002.0, -1e4], [1e4, -1e4, 0.0], [0.0, 0.0, 0.0]]
    a = pd.tensor(rows, dtype=dtype, requires_grad=True)
    ta = to_torch(a, True)
    for name in ("softmax", "log_softmax"):
        a.grad, ta.grad = None, None
        out_p, out_t = getattr(a, name)(-1), getattr(ta, name)(-1)
        assert all(v == v and abs(v) != float("inf") for row in out_p.tolist() for v in row), name
        assert_close(out_p, out_t, what=name)
        backward_both(out_p, out_t, 11)
        assert_grads_close([a], [ta])
