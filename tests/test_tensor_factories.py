"""Factories and metadata against torch: tensor, zeros/ones/full/empty, random, arange, linspace, eye."""

from __future__ import annotations

import math

import pytest
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import puredl as pd  # noqa: E402
from oracle import torch  # a stand-in that skips the test using it where torch is not installed
from torch_ref import TORCH_DTYPE, assert_close, shapes  # noqa: E402

NESTED = [
    1.5,
    7,
    True,
    [],
    [1, 2, 3],
    [1.0, 2, 3],
    [True, False],
    [True, 2],
    [[1.5, 2.5], [3.5, 4.5]],
    [[[1], [2]], [[3], [4]]],
    [[], []],
    ((1, 2), (3, 4)),
]


@pytest.mark.parametrize("data", NESTED, ids=[repr(d) for d in NESTED])
def test_tensor_infers_shape_and_dtype_like_torch(data):
    p, t = pd.tensor(data), torch.tensor(data)
    assert_close(p, t)
    assert p.ndim == t.ndim and p.numel() == t.numel() and p.stride() == t.stride()
    assert p.dim() == t.dim() and p.size() == tuple(t.size())
    assert p.device == "cpu" and p.is_contiguous()


@pytest.mark.parametrize("dtype", [pd.float32, pd.float64, pd.int64, pd.bool])
def test_tensor_with_an_explicit_dtype_converts_like_torch(dtype):
    data = [[0.0, 1.7, -2.5], [3.0, -0.2, 1e3]]
    assert_close(pd.tensor(data, dtype=dtype), torch.tensor(data, dtype=TORCH_DTYPE[dtype]))
    assert pd.tensor([1, 2], dtype="float64").dtype is pd.float64
    assert pd.tensor([1, 2], dtype=float).dtype is pd.float32


@pytest.mark.parametrize("bad", [[[1, 2], [3]], [[1, 2], 3], [1, [2, 3]], [[[1], [2]], [[3], 4]]])
def test_ragged_input_is_a_value_error(bad):
    with pytest.raises(ValueError, match="ragged"):
        pd.tensor(bad)


def test_unsupported_elements_and_dtypes_are_type_errors():
    with pytest.raises(TypeError, match="str"):
        pd.tensor(["a", "b"])
    with pytest.raises(TypeError, match="unsupported dtype"):
        pd.tensor([1.0], dtype="complex64")
    with pytest.raises(ValueError, match="non-finite"):
        pd.tensor([math.nan], dtype=pd.int64)


@given(shape=shapes(max_dims=3), dtype=st.sampled_from([None, pd.float32, pd.float64, pd.int64, pd.bool]))
def test_constant_factories_match_torch(shape, dtype):
    kw_p = {} if dtype is None else {"dtype": dtype}
    kw_t = {} if dtype is None else {"dtype": TORCH_DTYPE[dtype]}
    for name in ("zeros", "ones"):
        if shape:  # torch.zeros() with no size at all is an error
            assert_close(getattr(pd, name)(*shape, **kw_p), getattr(torch, name)(*shape, **kw_t), what=name)
        assert_close(getattr(pd, name)(shape, **kw_p), getattr(torch, name)(shape, **kw_t), what=name)
    assert pd.empty(shape, **kw_p).shape == tuple(torch.empty(shape, **kw_t).shape)
    assert pd.empty(shape, **kw_p).dtype is (dtype or pd.float32)
    for fill in (2, 2.5, True):
        assert_close(pd.full(shape, fill, **kw_p), torch.full(shape, fill, **kw_t), what=f"full {fill!r}")


def test_like_factories_inherit_shape_and_dtype():
    base_p = pd.tensor([[1, 2, 3]])
    base_t = torch.tensor([[1, 2, 3]])
    for name in ("zeros_like", "ones_like", "empty_like"):
        got = getattr(pd, name)(base_p)
        assert got.shape == (1, 3) and got.dtype is pd.int64
        if name != "empty_like":
            assert_close(got, getattr(torch, name)(base_t))
            assert_close(
                getattr(pd, name)(base_p, dtype=pd.float64), getattr(torch, name)(base_t, dtype=torch.float64)
            )
    assert_close(pd.full_like(base_p, 7), torch.full_like(base_t, 7))
    f = pd.zeros(2, 3, dtype=pd.float64)
    for name in ("rand_like", "randn_like"):
        got = getattr(pd, name)(f)
        assert got.shape == (2, 3) and got.dtype is pd.float64
    got = pd.randint_like(base_p, 5, 9)
    assert got.shape == (1, 3) and got.dtype is pd.int64 and all(5 <= v < 9 for v in got.tolist()[0])
    assert pd.zeros_like(f, requires_grad=True).requires_grad


def test_random_factories_shapes_dtypes_and_ranges():
    pd.manual_seed(0)
    u = pd.rand(200, 50)
    vals = [v for row in u.tolist() for v in row]
    assert u.shape == (200, 50) and u.dtype is pd.float32
    assert all(0.0 <= v < 1.0 for v in vals)
    assert abs(sum(vals) / len(vals) - 0.5) < 0.01
    n = pd.randn(10000, dtype=pd.float64)
    assert n.dtype is pd.float64
    assert abs(n.mean().item()) < 0.05 and abs(n.std().item() - 1.0) < 0.05
    r = pd.randint(3, 7, (1000,))
    assert r.dtype is pd.int64 and set(r.tolist()) == {3, 4, 5, 6}
    assert set(pd.randint(4, size=(500,)).tolist()) == {0, 1, 2, 3}
    assert sorted(pd.randperm(10).tolist()) == list(range(10))
    assert pd.rand(2, 3, requires_grad=True).requires_grad
    assert pd.rand((2, 3)).shape == (2, 3) and pd.randn(()).shape == ()
    with pytest.raises(ValueError, match="high"):
        pd.randint(5, 5, (2,))


def test_manual_seed_makes_every_random_factory_reproducible():
    def draw():
        return [
            pd.rand(3, 4).tolist(),
            pd.randn(5).tolist(),
            pd.randint(0, 100, (6,)).tolist(),
            pd.randperm(8).tolist(),
            pd.rand_like(pd.zeros(2)).tolist(),
            pd.randn_like(pd.zeros(2)).tolist(),
            pd.zeros(3).uniform_(-1, 1).tolist(),
            pd.zeros(3).normal_(0, 2).tolist(),
        ]

    pd.manual_seed(1234)
    first = draw()
    pd.manual_seed(1234)
    assert draw() == first
    pd.manual_seed(4321)
    assert draw() != first


@pytest.mark.parametrize(
    "args",
    [(5,), (2, 9), (2, 9, 3), (10, 0, -3), (0.5, 3.0, 0.5), (1, 2.5, 0.25), (-1.0, 1.0, 0.3), (3, 3), (0,)],
)
def test_arange_matches_torch(args):
    assert_close(pd.arange(*args), torch.arange(*args), what=f"arange{args}")
    assert_close(pd.arange(*args, dtype=pd.float64), torch.arange(*args, dtype=torch.float64))


@given(
    start=st.integers(-20, 20),
    length=st.integers(0, 40),
    step=st.sampled_from([1, 2, 3, -1, -2, 0.1, 0.25, 0.3, -0.7, 1.5]),
    dtype=st.sampled_from([None, pd.float32, pd.float64]),
)
def test_arange_with_random_bounds_matches_torch(start, length, step, dtype):
    end = start + length * step * 0.97
    if isinstance(step, int) and dtype is None:
        end = int(end)
    kw_p, kw_t = ({}, {}) if dtype is None else ({"dtype": dtype}, {"dtype": TORCH_DTYPE[dtype]})
    assert_close(pd.arange(start, end, step, **kw_p), torch.arange(start, end, step, **kw_t))


@given(start=st.floats(-100, 100), end=st.floats(-100, 100), steps=st.integers(0, 30))
def test_linspace_with_random_bounds_matches_torch(start, end, steps):
    assert_close(
        pd.linspace(start, end, steps, dtype=pd.float64),
        torch.linspace(start, end, steps, dtype=torch.float64),
    )
    assert_close(pd.linspace(start, end, steps), torch.linspace(start, end, steps))


def test_tensor_from_tensors_and_scalars_like_torch():
    assert_close(
        pd.tensor([pd.tensor(1.5), pd.tensor(2.0)]), torch.tensor([torch.tensor(1.5), torch.tensor(2.0)])
    )
    assert_close(pd.tensor(pd.tensor([[1, 2]])), torch.tensor([[1, 2]]))
    assert_close(pd.as_tensor([1.0, 2.0], dtype=pd.float64), torch.as_tensor([1.0, 2.0], dtype=torch.float64))


@pytest.mark.parametrize("args", [(0, 1, 5), (-2.0, 3.0, 7), (1, 1, 3), (0, 10, 1), (0, 1, 0), (5, -5, 11)])
def test_linspace_matches_torch(args):
    assert_close(pd.linspace(*args), torch.linspace(*args), what=f"linspace{args}")
    assert_close(pd.linspace(*args, dtype=pd.float64), torch.linspace(*args, dtype=torch.float64))


@pytest.mark.parametrize("args", [(3,), (2, 4), (4, 2), (0,), (1, 1)])
def test_eye_matches_torch(args):
    assert_close(pd.eye(*args), torch.eye(*args))
    assert_close(pd.eye(*args, dtype=pd.int64), torch.eye(*args, dtype=torch.int64))


def test_factory_errors():
    with pytest.raises(ValueError, match="size"):
        pd.zeros(2, -1)
    with pytest.raises(ValueError, match="step"):
        pd.arange(0, 5, 0)
    with pytest.raises(ValueError, match="steps"):
        pd.linspace(0, 1, -1)
    with pytest.raises(RuntimeError, match="floating point"):
        pd.zeros(2, dtype=pd.int64, requires_grad=True)


def test_metadata_matches_torch():
    p, t = pd.zeros(2, 3, 4), torch.zeros(2, 3, 4)
    assert p.shape == tuple(t.shape) and p.stride() == t.stride() and p.stride(1) == t.stride(1)
    assert p.size(-1) == t.size(-1) and p.numel() == t.numel() and p.ndim == t.ndim
    assert pd.numel(p) == 24 and pd.is_tensor(p) and not pd.is_tensor([1])
    assert pd.tensor(2.5).item() == 2.5 and isinstance(pd.tensor(3).item(), int)
    assert isinstance(pd.tensor(True).item(), bool)
    assert pd.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
    assert pd.zeros(2, 0, 3).tolist() == torch.zeros(2, 0, 3).tolist()
    assert pd.tensor([0.1]).tolist() == torch.tensor([0.1]).tolist()  # float32 rounding, as torch
    with pytest.raises(IndexError, match="dimension 3 is out of range"):
        p.size(3)


def test_conversions_between_dtypes_match_torch():
    vals = [-2.7, -0.5, 0.0, 0.4, 1.0, 3.9]
    p, t = pd.tensor(vals, dtype=pd.float64), torch.tensor(vals, dtype=torch.float64)
    assert_close(p.long(), t.long())
    assert_close(p.bool(), t.bool())
    assert_close(p.float(), t.float())
    assert_close(p.to(pd.int64).double(), t.to(torch.int64).double())
    assert_close(p.bool().long(), t.bool().long())
    assert p.to("cpu") is p


def test_view_with_a_dtype_is_refused_rather_than_silently_cast():
    x = pd.tensor([1.5, 2.5])
    with pytest.raises(TypeError, match="use .to\\(dtype\\)"):
        x.view(pd.int64)
