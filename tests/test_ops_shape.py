"""Shape ops against torch: reshape/view/flatten/squeeze/unsqueeze/transpose/permute/T/expand, cat, stack."""

from __future__ import annotations

import math

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
    same_strides,
    seeds,
    shapes,
    to_torch,
)


@st.composite
def reshape_target(draw, shape: tuple):
    """A shape with the same number of elements: factors regrouped, 1s inserted, maybe one -1."""
    n = math.prod(shape)
    if n == 0:
        target = list(draw(st.permutations(shape)))
    else:
        factors = []
        for s in shape:
            f, p = s, 2
            while f > 1:
                while f % p == 0:
                    factors.append(p)
                    f //= p
                p += 1
        factors = draw(st.permutations(factors))
        target, cur = [], 1
        for f in factors:
            cur *= f
            if draw(st.booleans()):
                target.append(cur)
                cur = 1
        if cur != 1 or not target:
            target.append(cur)
    for _ in range(draw(st.integers(0, 2))):
        target.insert(draw(st.integers(0, len(target))), 1)
    if n and target and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return tuple(target)


@given(data=st.data(), shape=shapes(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_reshape_matches_torch(data, shape, dtype, layout, seed):
    target = data.draw(reshape_target(shape))
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    out_p, out_t = pa.reshape(target), ta.reshape(target)
    assert_close(out_p, out_t, what=f"reshape {shape} -> {target}")
    assert_close(pd.reshape(pa, target), torch.reshape(ta, target))
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


@given(data=st.data(), shape=shapes(), layout=layouts, seed=seeds)
def test_view_succeeds_where_torch_does_and_shares_storage(data, shape, layout, seed):
    target = data.draw(reshape_target(shape))
    pa, ta, _, _ = make_pair(shape, pd.float64, layout, seed, grad=False)
    try:
        expected = ta.view(target)
    except RuntimeError:
        with pytest.raises(RuntimeError, match="view"):
            pa.view(target)
        return
    got = pa.view(target)
    assert_close(got, expected)
    if got.numel():
        got.reshape(-1)[0] = 123.0  # writes through the view reach the viewed tensor
        expected.reshape(-1)[0] = 123.0
        assert_close(pa, ta)


@given(shape=shapes(), dtype=float_dtypes, layout=layouts, seed=seeds, data=st.data())
def test_flatten_squeeze_unsqueeze_match_torch(shape, dtype, layout, seed, data):
    nd = max(len(shape), 1)
    start = data.draw(st.integers(-nd, nd - 1))
    end = data.draw(st.integers(-nd, nd - 1))
    assume((start % nd) <= (end % nd))
    dim = data.draw(st.integers(-nd, nd - 1))
    udim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    calls = {
        "flatten": lambda a: a.flatten(),
        "flatten_range": lambda a: a.flatten(start, end),
        "squeeze": lambda a: a.squeeze(),
        "squeeze_dim": lambda a: a.squeeze(dim),
        "unsqueeze": lambda a: a.unsqueeze(udim),
    }
    for name, fn in calls.items():
        pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
        out_p, out_t = fn(pa), fn(ta)
        assert_close(out_p, out_t, what=name)
        backward_both(out_p, out_t, seed)
        assert_grads_close([pl], [tl])


def test_squeeze_with_a_tuple_and_module_functions():
    pa, ta, _, _ = make_pair((1, 3, 1, 2), pd.float32, "contiguous", 0, grad=False)
    assert_close(pa.squeeze((0, 2)), ta.squeeze((0, 2)))
    assert_close(pd.squeeze(pa, -2), torch.squeeze(ta, -2))
    assert_close(pd.unsqueeze(pa, 4), torch.unsqueeze(ta, 4))
    assert_close(pd.flatten(pa, 1), torch.flatten(ta, 1))
    assert_close(pd.transpose(pa, 0, 3), torch.transpose(ta, 0, 3))
    assert_close(pd.permute(pa, (3, 1, 0, 2)), torch.permute(ta, (3, 1, 0, 2)))


@given(shape=shapes(min_dims=1), dtype=float_dtypes, layout=layouts, seed=seeds, data=st.data())
def test_transpose_permute_t_match_torch(shape, dtype, layout, seed, data):
    nd = len(shape)
    d0, d1 = data.draw(st.integers(-nd, nd - 1)), data.draw(st.integers(-nd, nd - 1))
    perm = tuple(data.draw(st.permutations(range(nd))))
    calls = {
        "transpose": lambda a: a.transpose(d0, d1),
        "permute": lambda a: a.permute(perm),
        "permute_varargs": lambda a: a.permute(*perm),
        "T": lambda a: a.mT if nd >= 2 else a,
        "contiguous": lambda a: a.transpose(0, -1).contiguous(),
    }
    if nd <= 2:
        calls["t"] = lambda a: a.t()
    if nd == 2:  # torch deprecates .T on other ranks (it reverses all dims, as puredl does)
        calls["T_prop"] = lambda a: a.T
    for name, fn in calls.items():
        pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
        out_p, out_t = fn(pa), fn(ta)
        assert_close(out_p, out_t, what=name)
        assert layout == "expanded" or same_strides(out_p, out_t), (name, out_p.stride(), out_t.stride())
        backward_both(out_p, out_t, seed)
        assert_grads_close([pl], [tl])


def test_transposed_view_strides_match_torch():
    a = pd.arange(24).reshape(2, 3, 4)
    t = torch.arange(24).reshape(2, 3, 4)
    for fn in (lambda x: x.transpose(0, 2), lambda x: x.permute(1, 2, 0), lambda x: x[:, ::2, 1:]):
        assert fn(a).stride() == fn(t).stride()
        assert fn(a).is_contiguous() == fn(t).is_contiguous()
    assert a.contiguous().is_contiguous()
    assert_close(a.T, t.permute(2, 1, 0))
    assert a.transpose(0, 1).contiguous().stride() == t.transpose(0, 1).contiguous().stride()


@st.composite
def expand_case(draw):
    shape = draw(shapes(max_dims=3, max_side=3))
    lead = tuple(draw(st.lists(st.integers(0, 3), max_size=2)))
    target = lead + tuple(
        draw(st.integers(0, 3)) if n == 1 else (n if draw(st.booleans()) else -1) for n in shape
    )
    return shape, target


@given(case=expand_case(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_expand_matches_torch(case, dtype, layout, seed):
    shape, target = case
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    out_p, out_t = pa.expand(target), ta.expand(target)
    assert_close(out_p, out_t, what=f"expand {shape} -> {target}")
    if target:  # torch's expand(*()) is a TypeError
        assert_close(pa.expand(*target), ta.expand(*target))
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


@st.composite
def cat_case(draw):
    base = list(draw(shapes(min_dims=1, max_dims=3, max_side=3)))
    dim = draw(st.integers(-len(base), len(base) - 1))
    out = []
    for _ in range(draw(st.integers(1, 4))):
        s = list(base)
        s[dim] = draw(st.integers(0, 3))
        out.append(tuple(s))
    return out, dim


@given(case=cat_case(), dtype=float_dtypes, data=st.data(), seed=seeds)
def test_cat_matches_torch(case, dtype, data, seed):
    shapes_, dim = case
    pairs = [make_pair(s, dtype, data.draw(layouts), seed + i) for i, s in enumerate(shapes_)]
    out_p = pd.cat([p[0] for p in pairs], dim)
    out_t = torch.cat([p[1] for p in pairs], dim)
    assert_close(out_p, out_t)
    backward_both(out_p, out_t, seed)
    assert_grads_close([p[2] for p in pairs], [p[3] for p in pairs])


@given(
    shape=shapes(max_dims=3, max_side=3), n=st.integers(1, 3), dtype=float_dtypes, data=st.data(), seed=seeds
)
def test_stack_matches_torch(shape, n, dtype, data, seed):
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    pairs = [make_pair(shape, dtype, data.draw(layouts), seed + i) for i in range(n)]
    out_p = pd.stack([p[0] for p in pairs], dim)
    out_t = torch.stack([p[1] for p in pairs], dim)
    assert_close(out_p, out_t)
    backward_both(out_p, out_t, seed)
    assert_grads_close([p[2] for p in pairs], [p[3] for p in pairs])


def test_cat_promotes_dtypes_and_skips_empty_1d_like_torch():
    a, b = pd.tensor([[1, 2]]), pd.tensor([[0.5, 1.5]], dtype=pd.float64)
    assert_close(pd.cat([a, b]), torch.cat([to_torch(a), to_torch(b)]))
    e = pd.zeros(0)
    assert_close(pd.cat([e, pd.ones(2, 2)]), torch.cat([to_torch(e), torch.ones(2, 2)]))


def test_shape_op_errors():
    a = pd.zeros(2, 3)
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\)"):
        a.reshape(4, 2)
    with pytest.raises(ValueError, match="only one dimension can be -1"):
        a.reshape(-1, -1)
    with pytest.raises(RuntimeError, match="view"):
        a.t().view(6)
    with pytest.raises(ValueError, match=r"expand.*\(2, 3\)"):
        a.expand(2, 4)
    with pytest.raises(ValueError, match="permutation"):
        a.permute(0, 0)
    with pytest.raises(IndexError, match="dimension 2 is out of range"):
        a.transpose(0, 2)
    with pytest.raises(IndexError, match="dimension 3 is out of range"):
        a.unsqueeze(3)
    with pytest.raises(ValueError, match=r"cat.*\(2, 3\).*\(2, 4\)"):
        pd.cat([a, pd.zeros(2, 4)])
    with pytest.raises(ValueError, match=r"stack.*\(2, 3\).*\(3, 2\)"):
        pd.stack([a, pd.zeros(3, 2)])
    with pytest.raises(ValueError, match="non-empty"):
        pd.cat([])
