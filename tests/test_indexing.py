"""Indexing against torch: basic keys as views, integer-tensor gathers, bool masks, __setitem__, errors."""

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
    float_dtypes,
    from_torch,
    layouts,
    make_pair,
    same_strides,
    seeds,
    shapes,
    to_torch,
)


@st.composite
def basic_key(draw, shape: tuple):
    """A basic index for ``shape``: ints (maybe negative), slices with steps, None, at most one Ellipsis."""
    n_index = draw(st.integers(0, len(shape)))
    parts = []
    for n in shape[:n_index]:
        kind = draw(st.sampled_from(["int", "slice", "full"] if n else ["slice", "full"]))
        if kind == "int":
            parts.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            bound = st.one_of(st.none(), st.integers(-n - 2, n + 2))
            parts.append(slice(draw(bound), draw(bound), draw(st.one_of(st.none(), st.integers(1, 3)))))
        else:
            parts.append(slice(None))
    for _ in range(draw(st.integers(0, 2))):
        parts.insert(draw(st.integers(0, len(parts))), None)
    if draw(st.booleans()):
        # an Ellipsis stands for the dims that the parts after it do not cover
        pos = draw(st.integers(0, len(parts)))
        parts.insert(pos, Ellipsis)
    if len(parts) == 1 and draw(st.booleans()):
        return parts[0]
    return tuple(parts)


@given(shape=shapes(max_dims=4), data=st.data(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_basic_indexing_matches_torch(shape, data, dtype, layout, seed):
    key = data.draw(basic_key(shape))
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    try:
        out_t = ta[key]
    except IndexError:  # an Ellipsis can move an int onto a shorter dim
        with pytest.raises(IndexError, match="out of bounds"):
            pa[key]
        return
    out_p = pa[key]
    assert_close(out_p, out_t, what=f"x[{key!r}]")
    if layout != "expanded":  # an expanded dim's stride is 0 in both, but torch keeps others' as they were
        assert same_strides(out_p, out_t), (out_p.stride(), out_t.stride())
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


def test_basic_indexing_returns_views_that_share_storage():
    a = pd.arange(12.0).reshape(3, 4)
    v = a[1:, ::2]
    v[0, 1] = -1.0
    assert a.tolist()[1] == [4.0, 5.0, -1.0, 7.0]
    a[2, 0] = 100.0
    assert v.tolist() == [[4.0, -1.0], [100.0, 10.0]]


@given(
    shape=shapes(min_dims=1, max_dims=3, min_side=1),
    idx_shape=shapes(max_dims=2, max_side=3),
    dtype=float_dtypes,
    layout=layouts,
    seed=seeds,
)
def test_integer_tensor_gathers_rows_and_accumulates_repeated_rows(shape, idx_shape, dtype, layout, seed):
    n = shape[0]
    rows = torch.randint(-n, n, idx_shape, generator=torch.Generator().manual_seed(seed))
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    out_p, out_t = pa[from_torch(rows)], ta[rows]
    assert_close(out_p, out_t)
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


@given(
    shape=shapes(min_dims=2, max_dims=3, min_side=1),
    idx_shapes=st.sampled_from([((3,), (3,)), ((2, 1), (1, 3)), ((4,), ()), ((), ())]),
    dtype=float_dtypes,
    seed=seeds,
)
def test_integer_tensor_pairs_gather_elements(shape, idx_shapes, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(-shape[0], shape[0], idx_shapes[0], generator=g)
    cols = torch.randint(-shape[1], shape[1], idx_shapes[1], generator=g)
    pa, ta, pl, tl = make_pair(shape, dtype, "transposed", seed)
    out_p, out_t = pa[from_torch(rows), from_torch(cols)], ta[rows, cols]
    assert_close(out_p, out_t)
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])
    # the cross-entropy pattern: one column per row
    r, c = torch.arange(shape[0]), cols.reshape(-1)[:1]
    assert_close(pa[from_torch(r), from_torch(c.expand(shape[0]))], ta[r, c])


def test_index_lists_and_trailing_basic_keys_match_torch():
    pa, ta, pl, tl = make_pair((4, 3, 2), pd.float64, "contiguous", 3)
    assert_close(pa[[0, 2, 2]], ta[[0, 2, 2]])
    assert_close(pa[[3, -1], 1:], ta[[3, -1], 1:])
    idx = torch.tensor([[1, 1], [0, 3]])
    out_p, out_t = pa[from_torch(idx), :, 1], ta[idx, :, 1]
    assert_close(out_p, out_t)
    backward_both(out_p, out_t, 5)
    assert_grads_close([pl], [tl])


@given(shape=shapes(min_dims=1, max_dims=3), mask_dims=st.integers(1, 3), dtype=float_dtypes, seed=seeds)
def test_bool_mask_selects_like_torch(shape, mask_dims, dtype, seed):
    mask_dims = min(mask_dims, len(shape))
    pa, ta, pl, tl = make_pair(shape, dtype, "strided", seed)
    tm = torch.rand(shape[:mask_dims], generator=torch.Generator().manual_seed(seed)) > 0.5
    out_p, out_t = pa[from_torch(tm)], ta[tm]
    assert_close(out_p, out_t)
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])
    assert_close(pa[pa > 0], ta[ta > 0])


@given(shape=shapes(min_dims=1, max_dims=3), data=st.data(), seed=seeds, as_tensor=st.booleans())
def test_setitem_basic_matches_torch(shape, data, seed, as_tensor):
    key = data.draw(basic_key(shape))
    pa, ta, _, _ = make_pair(shape, pd.float64, "contiguous", seed, grad=False)
    try:
        region = tuple(ta[key].shape)
    except IndexError:  # a key torch rejects (an Ellipsis moved an int onto an empty dim)
        with pytest.raises(IndexError, match="out of bounds"):
            pa[key] = 1.0
        return
    if as_tensor:
        # a value that broadcasts to the region: drop leading dims and squash some to 1
        vshape = tuple(
            1 if data.draw(st.booleans()) else n for n in region[data.draw(st.integers(0, len(region))) :]
        )
        tv = torch.randn(vshape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        pa[key], ta[key] = from_torch(tv), tv
    else:
        pa[key] = 2.5
        ta[key] = 2.5
    assert_close(pa, ta, what=f"x[{key!r}] = ...")


def test_setitem_through_a_transposed_view_and_with_casts():
    pa, ta, _, _ = make_pair((3, 4), pd.float32, "contiguous", 1, grad=False)
    pv, tv = pa.t(), ta.t()
    pv[1:3, ::2] = pd.tensor([[1, 2], [3, 4]])
    tv[1:3, ::2] = torch.tensor([[1, 2], [3, 4]])
    assert_close(pa, ta)
    ints = pd.zeros(4, dtype=pd.int64)
    ints[1:] = 2.7
    ti = torch.zeros(4, dtype=torch.int64)
    ti[1:] = 2.7
    assert_close(ints, ti)
    ints[...] = [5, 6, 7, 8]
    assert ints.tolist() == [5, 6, 7, 8]


def test_masked_setitem_and_in_place_helpers_match_torch():
    pa, ta, _, _ = make_pair((3, 4), pd.float64, "contiguous", 2, grad=False)
    pa[pa < 0] = 0.0
    ta[ta < 0] = 0.0
    assert_close(pa, ta)
    pa.add_(1.5).mul_(2.0).sub_(pd.ones(4)).div_(3.0).clamp_(0.5, 1.5)
    ta.add_(1.5).mul_(2.0).sub_(torch.ones(4)).div_(3.0).clamp_(0.5, 1.5)
    assert_close(pa, ta)
    assert_close(pa.zero_(), ta.zero_())
    assert_close(pa.fill_(3.0), ta.fill_(3.0))


def test_setitem_on_a_leaf_that_requires_grad_is_refused():
    a = pd.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        a[0] = 2.0
    with pd.no_grad():
        a[0] = 2.0  # allowed without recording, as in torch (optimizer updates)
    assert a.tolist() == [2.0, 1.0, 1.0]


def test_index_errors_say_which_index_and_dim():
    a = pd.zeros(2, 3)
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 1 with size 3"):
        a[0, 3]
    with pytest.raises(IndexError, match="index -3 is out of bounds for dimension 0 with size 2"):
        a[-3]
    with pytest.raises(IndexError, match="too many indices"):
        a[0, 0, 0]
    with pytest.raises(IndexError, match="single ellipsis"):
        a[..., ...]
    with pytest.raises(IndexError, match="out of bounds for dimension 0 with size 2"):
        a[pd.tensor([0, 2])]
    with pytest.raises(IndexError, match="out of bounds"):
        a[pd.tensor([0, 1]), pd.tensor([1, 3])]
    with pytest.raises(IndexError, match="mask of shape"):
        a[pd.tensor([True, False, True])]
    with pytest.raises(IndexError, match="float32"):
        a[pd.tensor([0.0])]
    with pytest.raises(IndexError, match="unsupported index"):
        a["x"]
    with pytest.raises(ValueError, match="step"):
        a[::-1]
    with pytest.raises(IndexError, match="setitem: assignment takes basic keys"):
        a[pd.tensor([0, 1])] = 1.0
    with pytest.raises(ValueError, match=r"setitem.*\(4,\).*\(3,\)"):
        a[0] = pd.zeros(4)
    with pytest.raises(IndexError, match="too many indices for tensor of dimension 0"):
        pd.tensor(1.0)[0]


def test_iteration_len_and_item_like_torch():
    a = pd.arange(6).reshape(3, 2)
    t = to_torch(a)
    assert len(a) == 3
    assert [r.tolist() for r in a] == [r.tolist() for r in t]
    assert a[1, 1].item() == 3 and isinstance(a[1, 1].item(), int)
    assert int(a[2, 0]) == 4 and float(a[0, 1]) == 1.0
    assert list(range(10))[a[1, 0]] == 2  # __index__
    with pytest.raises(TypeError, match="0-d"):
        len(pd.tensor(1.0))
    with pytest.raises(ValueError, match=r"only one-element tensors.*\(3, 2\)"):
        a.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(a)
