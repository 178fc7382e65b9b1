"""flip, repeat, cumsum, sort/argsort, round (with decimals) and the new_* factories, against torch
(values and gradients; runs under PUREDL_ACCEL=pure|torch|auto like the other op suites)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import puredl as pd
from oracle import torch  # a stand-in that skips the test using it where torch is not installed
from torch_ref import (
    TORCH_DTYPE,
    assert_close,
    assert_grads_close,
    backward_both,
    float_dtypes,
    layouts,
    make_pair,
    seeds,
    shape_and_dim,
    shapes,
    to_torch,
)


@given(shape=shapes(0, 4), dtype=float_dtypes, layout=layouts, seed=seeds, data=st.data())
def test_flip_matches_torch(shape, dtype, layout, seed, data):
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    nd = len(shape)
    dims = data.draw(st.lists(st.integers(0, nd - 1), max_size=nd, unique=True)) if nd else []
    dims = [d - nd if data.draw(st.booleans()) else d for d in dims]
    out_p, out_t = pd.flip(pa, dims), torch.flip(ta, dims)
    assert_close(out_p, out_t, what=f"flip {shape} dims={dims}")
    if dims:
        assert_close(pa.flip(*dims), ta.flip(*dims))
        assert_close(pa.flip(dims), ta.flip(dims))
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


def test_flip_refuses_repeated_dims_and_copies():
    with pytest.raises(RuntimeError, match="duplicates"):
        pd.flip(pd.ones(2, 3), (1, -1))
    assert_close(pd.flip(pd.tensor(3.0), [0]), torch.flip(torch.tensor(3.0), [0]))
    a = pd.tensor([1.0, 2.0])
    b = pd.flip(a, ())
    b[0] = 9.0
    assert a.tolist() == [1.0, 2.0]  # torch's flip always copies


@given(shape=shapes(0, 3, max_side=3), dtype=float_dtypes, layout=layouts, seed=seeds, data=st.data())
def test_repeat_matches_torch(shape, dtype, layout, seed, data):
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    extra = data.draw(st.integers(0, 2))
    reps = tuple(data.draw(st.integers(0, 3)) for _ in range(max(len(shape) + extra, 1)))
    out_p, out_t = pa.repeat(*reps), ta.repeat(*reps)
    assert_close(out_p, out_t, what=f"repeat {shape} by {reps}")
    assert_close(pa.repeat(reps), ta.repeat(reps))
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


def test_repeat_refuses_too_few_sizes():
    with pytest.raises(RuntimeError, match="can not be smaller"):
        pd.ones(2, 3).repeat(2)
    with pytest.raises(RuntimeError, match="can not be smaller"):
        torch.ones(2, 3).repeat(2)


@given(sd=shape_and_dim(0, 4), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_cumsum_matches_torch(sd, dtype, layout, seed):
    shape, dim = sd
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    out_p, out_t = pd.cumsum(pa, dim), torch.cumsum(ta, dim)
    assert_close(out_p, out_t, what=f"cumsum {shape} dim={dim}")
    assert_close(pa.cumsum(dim), ta.cumsum(dim))
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


@given(sd=shape_and_dim(0, 4), dtype=float_dtypes, layout=layouts, seed=seeds, zeros=st.booleans())
def test_cumprod_matches_torch(sd, dtype, layout, seed, zeros):
    shape, dim = sd
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed, low=-1.5, high=1.5)
    if zeros and pa.numel():  # torch's gradient through a zero is its own formula: compare it
        with pd.no_grad(), torch.no_grad():
            pl.view(-1)[0] = 0.0
            tl.view(-1)[0] = 0.0
    out_p, out_t = pd.cumprod(pa, dim), torch.cumprod(ta, dim)
    assert_close(out_p, out_t, what=f"cumprod {shape} dim={dim}")
    assert_close(pa.cumprod(dim), ta.cumprod(dim))
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


def test_cumsum_of_integers_and_bool_is_int64_like_torch():
    for vals, pdt, tdt in (([1, 2, 3], pd.int32, torch.int32), ([True, False, True], pd.bool, torch.bool)):
        assert_close(pd.tensor(vals, dtype=pdt).cumsum(0), torch.tensor(vals, dtype=tdt).cumsum(0))
    assert_close(
        pd.tensor([1, 2, 3]).cumsum(0, dtype=pd.float64),
        torch.tensor([1, 2, 3]).cumsum(0, dtype=torch.float64),
    )


@given(sd=shape_and_dim(0, 3), dtype=float_dtypes, layout=layouts, seed=seeds, descending=st.booleans())
def test_sort_matches_torch(sd, dtype, layout, seed, descending):
    shape, dim = sd
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)  # ties only between expanded copies
    (vp, ip), (vt, it) = pd.sort(pa, dim, descending=descending), torch.sort(ta, dim, descending=descending)
    assert_close(vp, vt, what=f"sort {shape} dim={dim} descending={descending}")
    sp, st_ = (
        pa.sort(dim=dim, descending=descending, stable=True),
        ta.sort(dim=dim, descending=descending, stable=True),
    )
    assert_close(sp.values, st_.values)
    assert_close(sp.indices, st_.indices)  # stable: ties in their original order, in every mode
    if layout != "expanded":
        assert_close(ip, it)
        assert_close(pd.argsort(pa, dim, descending), torch.argsort(ta, dim, descending))
    backward_both(vp, vt, seed)
    assert_grads_close([pl], [tl])


def test_stable_sort_keeps_ties_in_order_and_puts_nan_where_torch_does():
    vals = [2.0, 1.0, 2.0, float("nan"), 1.0, 2.0]
    for descending in (False, True):
        p = pd.tensor(vals).sort(descending=descending, stable=True)
        t = torch.tensor(vals).sort(descending=descending, stable=True)
        assert_close(p.values, t.values)
        assert_close(p.indices, t.indices)
    assert_close(pd.sort(pd.tensor(3.0)).values, torch.sort(torch.tensor(3.0)).values)


@given(shape=shapes(0, 3), dtype=float_dtypes, seed=seeds, decimals=st.integers(-2, 3))
def test_round_matches_torch(shape, dtype, seed, decimals):
    rng = random.Random(seed)
    # halves (ties go to even) and values with few decimals, scaled so every `decimals` has work
    n = 1
    for s in shape:
        n *= s
    vals = [rng.choice([0.5, 1.5, 2.5, -0.5, -2.5, rng.uniform(-300, 300)]) for _ in range(n)]
    pa = pd.tensor(vals, dtype=dtype).reshape(shape).requires_grad_()
    ta = torch.tensor(vals, dtype=to_torch(pd.zeros(1, dtype=dtype)).dtype).reshape(shape).requires_grad_()
    out_p, out_t = pd.round(pa, decimals=decimals), torch.round(ta, decimals=decimals)
    assert_close(out_p, out_t, what=f"round decimals={decimals}")
    assert_close(pa.round(decimals=decimals), ta.round(decimals=decimals))
    backward_both(out_p, out_t, seed)
    assert_grads_close([pa], [ta])


def test_round_halves_to_even_keeps_integers_and_specials():
    vals = [0.5, 1.5, 2.5, -0.5, -1.5, float("inf"), float("-inf"), float("nan")]
    assert_close(pd.round(pd.tensor(vals)), torch.round(torch.tensor(vals)))
    assert_close(pd.tensor([1, -2]).round(), torch.tensor([1, -2]).round())
    assert_close(
        pd.round(pd.tensor([1.25, 1.35]), decimals=1), torch.round(torch.tensor([1.25, 1.35]), decimals=1)
    )


NEW = {
    "new_zeros": lambda t, lib: t.new_zeros(2, 3),
    "new_zeros_tuple": lambda t, lib: t.new_zeros((2,), dtype=lib.int64),
    "new_ones": lambda t, lib: t.new_ones((3, 1)),
    "new_full": lambda t, lib: t.new_full((2, 2), 7),
    "new_full_dtype": lambda t, lib: t.new_full((2,), 1.5, dtype=lib.float64),
    "new_tensor": lambda t, lib: t.new_tensor([1, 2, 3]),
    "new_tensor_int": lambda t, lib: t.new_tensor([[1, 2]], dtype=lib.int64),
    "new_empty_shape": lambda t, lib: t.new_empty(4, 2).zero_(),
}


@pytest.mark.parametrize("name", sorted(NEW))
@pytest.mark.parametrize("dtype", [pd.float32, pd.float64, pd.int64])
def test_new_factories_match_torch(name, dtype):
    p = pd.ones(2, dtype=dtype)
    t = to_torch(p)
    out_p, out_t = NEW[name](p, pd), NEW[name](t, torch)
    assert_close(out_p, out_t, what=name)
    assert out_p.device == p.device and not out_p.requires_grad


def test_new_tensor_copies_and_detaches_and_new_ones_can_require_grad():
    src = pd.tensor([1.0, 2.0], requires_grad=True)
    out = src.new_tensor(src)
    assert not out.requires_grad and out.is_leaf
    with pd.no_grad():
        out[0] = 5.0
    assert src.tolist() == [1.0, 2.0]
    assert pd.zeros(1).new_ones(2, requires_grad=True).requires_grad


@pytest.mark.parametrize("dtype", [pd.float16, pd.bfloat16])
def test_half_results_hold_only_half_values_like_torch(dtype):
    vals = [[0.1, 2.5, -1.7, 3.3], [1e-3, -0.5, 7.9, 0.3]]
    p, t = pd.tensor(vals, dtype=dtype), to_torch(pd.tensor(vals, dtype=dtype))
    for name, f in {
        "sort": lambda x: x.sort(1, descending=True).values,
        "round": lambda x: x.round(),
        "round1": lambda x: x.round(decimals=1),
        "flip": lambda x: x.flip(0, 1),
        "repeat": lambda x: x.repeat(2, 1),
        "cumsum": lambda x: x.cumsum(1),
        "cumprod": lambda x: x.cumprod(1),
        "norm": lambda x: x.norm(dim=1),
    }.items():
        out = f(p)
        assert_close(out, f(t), what=f"{name} {dtype}")
        held = torch.tensor(out.reshape(-1).tolist(), dtype=torch.float32).to(TORCH_DTYPE[dtype]).float()
        assert out.reshape(-1).tolist() == held.tolist(), f"{name}: a value {dtype.name} does not hold"


def test_cumsum_over_a_vocabulary_sized_dimension_matches_torch():
    # top-p sampling runs cumsum over the whole vocabulary: linear work, no n-by-n matrix
    n = 100_000
    vals = [((i * 7919) % 1000) / 1000.0 for i in range(n)]
    p = pd.tensor(vals, requires_grad=True)
    t = torch.tensor(vals, requires_grad=True)
    out_p, out_t = p.cumsum(0), t.cumsum(0)
    assert_close(out_p[-3:], out_t[-3:])
    assert_close(out_p[::997], out_t[::997])
    out_p[::2].sum().backward()
    out_t[::2].sum().backward()
    assert_close(p.grad[:5], t.grad[:5])
    assert_close(p.grad[-5:], t.grad[-5:])
