"""int32, int16 and uint8 against torch: promotion, wrap-around, casts, indexing, sums, round trips."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import puredl as pd  # noqa: E402
from torch_ref import TORCH_DTYPE, assert_close, shapes  # noqa: E402

SMALL_INTS = [pd.int32, pd.int16, pd.uint8]
RANGE = {pd.int32: (-(2**31), 2**31 - 1), pd.int16: (-(2**15), 2**15 - 1), pd.uint8: (0, 255)}
OTHERS = [pd.bool, pd.uint8, pd.int16, pd.int32, pd.int64, pd.float32, pd.float64]


def _both(vals, dtype):
    return pd.tensor(vals, dtype=dtype), torch.tensor(vals, dtype=TORCH_DTYPE[dtype])


def _values(dtype, n: int):
    lo, hi = RANGE[dtype]
    return st.lists(st.integers(lo, hi), min_size=n, max_size=n)


def test_names_and_storage():
    assert (pd.int32.itemsize, pd.int16.itemsize, pd.uint8.itemsize) == (4, 2, 1)
    as_dtype = pd.dtypes.as_dtype
    assert pd.int is pd.int32 and as_dtype("int") is pd.int32 and as_dtype(torch.int32) is pd.int32
    assert pd.short is pd.int16 and as_dtype(torch.uint8) is pd.uint8
    for d in SMALL_INTS:
        assert pd.zeros(2, dtype=d).dtype is d
        assert not d.is_floating_point


def test_conversion_methods():
    pa, ta = _both([1.7, -1.7, 300.0], pd.float32)
    assert_close(pa.int(), ta.int())
    assert_close(pa.short(), ta.short())
    assert_close(pa.long().byte(), ta.long().byte())  # float -> uint8 out of range is undefined in C
    for d, name in ((pd.int32, "IntTensor"), (pd.int16, "ShortTensor"), (pd.uint8, "ByteTensor")):
        x, t = _both([1, 2], d)
        assert x.type() == t.type() == f"torch.{name}"
        assert isinstance(x, getattr(pd, name)) and not isinstance(x, pd.LongTensor)
        assert_close(getattr(pd, name)([3, 4]), getattr(torch, name)([3, 4]))


@pytest.mark.parametrize("a", SMALL_INTS)
@pytest.mark.parametrize("b", OTHERS)
@pytest.mark.parametrize("op", ["add", "mul", "div", "lt", "maximum"])
def test_promotion_matches_torch(a, b, op):
    fn = {
        "add": lambda x, y: x + y,
        "mul": lambda x, y: x * y,
        "div": lambda x, y: x / y,
        "lt": lambda x, y: x < y,
        "maximum": lambda x, y: x.maximum(y),
    }[op]
    pa, ta = _both([3, 1, 2], a)
    pb, tb = _both([2, 1, 1] if b is not pd.bool else [True, True, True], b)
    assert_close(fn(pa, pb), fn(ta, tb))
    assert_close(fn(pb, pa), fn(tb, ta))
    # a 0-d tensor of the same category does not widen a dimensioned one (int32 vector + int64 scalar)
    assert_close(fn(pa, pb[0]), fn(ta, tb[0]))


@pytest.mark.parametrize("d", SMALL_INTS)
@pytest.mark.parametrize("scalar", [2, 2.5, True])
def test_python_scalars_keep_the_dtype(d, scalar):
    pa, ta = _both([3, 1, 2], d)
    assert_close(pa + scalar, ta + scalar)
    assert_close(pa * scalar, ta * scalar)
    assert_close(
        scalar - pa if not isinstance(scalar, bool) else pa - 1,
        scalar - ta if not isinstance(scalar, bool) else ta - 1,
    )


@pytest.mark.parametrize("d", SMALL_INTS)
@given(data=st.data())
def test_arithmetic_wraps_like_torch(d, data):
    n = data.draw(st.integers(1, 6))
    xs, ys = data.draw(_values(d, n)), data.draw(_values(d, n))
    pa, ta = _both(xs, d)
    pb, tb = _both(ys, d)
    assert_close(pa + pb, ta + tb)
    assert_close(pa - pb, ta - tb)
    assert_close(pa * pb, ta * tb)
    assert_close(pa / pb, ta / tb)
    assert_close(pa.sum(), ta.sum())  # int64, no wrap
    if d is not pd.uint8:  # torch's neg of uint8 is defined, but abs/neg of unsigned is rarely meant
        assert_close(-pa, -ta)


@pytest.mark.parametrize("d", SMALL_INTS)
@given(shape=shapes(max_dims=3), data=st.data())
def test_sum_is_int64_and_casts_round_trip(d, shape, data):
    n = 1
    for s in shape:
        n *= s
    xs = data.draw(_values(d, n))
    pa = pd.tensor(xs, dtype=d).reshape(shape)
    ta = torch.tensor(xs, dtype=TORCH_DTYPE[d]).reshape(shape)
    assert_close(pa.sum(), ta.sum())
    if len(shape):
        assert_close(pa.sum(0), ta.sum(0))
    assert_close(pa.to(pd.float64), ta.to(torch.float64))
    assert_close(pa.to(pd.int64).to(d), ta)


@pytest.mark.parametrize("d", SMALL_INTS)
@given(xs=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=8))
def test_float_to_int_truncates_and_wraps(d, xs):
    pa, ta = pd.tensor(xs, dtype=pd.float64), torch.tensor(xs, dtype=torch.float64)
    # float -> narrow int out of range is undefined in C (torch differs by platform): go through int64
    assert_close(pa.to(pd.int64).to(d), ta.to(torch.int64).to(TORCH_DTYPE[d]))
    if d is pd.int32:
        assert_close(pa.to(d), ta.to(torch.int32))


@pytest.mark.parametrize("d", SMALL_INTS)
@given(data=st.data())
def test_matmul_wraps_like_torch(d, data):
    m, k, n = data.draw(st.integers(1, 3)), data.draw(st.integers(0, 6)), data.draw(st.integers(1, 3))
    pa, ta = _both([data.draw(_values(d, k)) for _ in range(m)], d)
    pb, tb = _both([data.draw(_values(d, n)) for _ in range(k)], d)
    if k == 0:
        pa, ta, pb, tb = pa.reshape(m, 0), ta.reshape(m, 0), pb.reshape(0, n), tb.reshape(0, n)
    assert_close(pa @ pb, ta @ tb)
    assert_close(pa.unsqueeze(0).expand(2, m, k) @ pb, ta.unsqueeze(0).expand(2, m, k) @ tb)
    big, tbig = _both([[RANGE[d][1]] * 6], d)  # six products at the top of the range overflow int64 too
    assert_close(big @ big.T, tbig @ tbig.T)


def test_overflow_at_the_edges():
    for d in SMALL_INTS:
        lo, hi = RANGE[d]
        pa, ta = _both([hi, lo], d)
        assert_close(pa + 1, ta + 1)
        assert_close(pa - 1, ta - 1)
        assert_close(pa * 3, ta * 3)


@pytest.mark.parametrize("d", SMALL_INTS)
def test_tensor_constructor_refuses_out_of_range_like_torch(d):
    lo, hi = RANGE[d]
    with pytest.raises(RuntimeError):
        torch.tensor([hi + 1], dtype=TORCH_DTYPE[d])
    with pytest.raises((OverflowError, RuntimeError)):
        pd.tensor([hi + 1], dtype=d)


def test_int32_index_tensors():
    pa, ta = _both([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], pd.float32)
    pi, ti = _both([2, 0, 2], pd.int32)
    assert_close(pa[pi], ta[ti])
    assert_close(pa[pi, pi[:1].expand(3) - 2], ta[ti, ti[:1].expand(3) - 2])
    with pytest.raises(IndexError, match="int16"):
        pa[pd.tensor([0], dtype=pd.int16)]


def test_embedding_takes_int32_indices():
    weight = [[0.5, -1.0], [2.0, 3.0], [4.0, -0.25]]
    pw, tw = _both(weight, pd.float32)
    pi, ti = _both([[2, 0], [1, 1]], pd.int32)
    assert_close(pd.nn.functional.embedding(pi, pw), torch.nn.functional.embedding(ti, tw))
    with pytest.raises(TypeError, match="int16"):
        pd.nn.functional.embedding(pd.tensor([0], dtype=pd.int16), pw)
    with pytest.raises(RuntimeError):
        torch.nn.functional.embedding(torch.tensor([0], dtype=torch.int16), tw)


def test_inplace_count_table():
    n = pd.zeros((3, 3), dtype=pd.int32)
    t = torch.zeros((3, 3), dtype=torch.int32)
    for i, j in [(0, 1), (0, 1), (2, 0)]:
        n[i, j] += 1
        t[i, j] += 1
    assert_close(n, t)
    assert_close(
        (n + 1).float() / (n + 1).sum(1, keepdim=True), (t + 1).float() / (t + 1).sum(1, keepdim=True)
    )


@pytest.mark.parametrize("d", SMALL_INTS)
def test_torch_round_trip_shares_memory(d):
    x = pd.tensor([1, 2, 3], dtype=d)
    t = x.to_torch()
    assert t.dtype is TORCH_DTYPE[d]
    back = pd.from_torch(torch.tensor([4, 5], dtype=TORCH_DTYPE[d]))
    assert back.dtype is d and back.tolist() == [4, 5]
    if x._be.NAME == "pure":
        t[0] = 9
        assert x.tolist()[0] == 9  # zero-copy view of the array buffer


def test_int8_from_torch_keeps_int8():
    x = pd.from_torch(torch.tensor([-128, 127], dtype=torch.int8))
    assert x.dtype is pd.int8 and x.tolist() == [-128, 127]
    assert x.to_torch().dtype is torch.int8


@pytest.mark.parametrize("d", SMALL_INTS)
def test_numpy_round_trip(d):
    np = pytest.importorskip("numpy")
    a = np.array([1, 2, 3], dtype=d.name)
    x = pd.from_numpy(a)
    assert x.dtype is d and x.tolist() == [1, 2, 3]
    assert x.numpy().dtype == a.dtype


@pytest.mark.parametrize("d", [pd.int32, pd.int64, pd.int16, pd.uint8])
@given(data=st.data())
def test_floor_divide_matches_torch(d, data):
    lo, hi = RANGE.get(d, (-(2**40), 2**40))
    n = data.draw(st.integers(1, 6))
    xs = data.draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))
    ys = data.draw(st.lists(st.integers(lo, hi).filter(bool), min_size=n, max_size=n))
    pa, ta = _both(xs, d)
    pb, tb = _both(ys, d)
    assert_close(pa // pb, ta // tb)
    assert_close(pa // 3, ta // 3)
    assert_close(pa // 2.5, ta // 2.5)  # a Python float makes the result float32
    assert_close(7 // pb, 7 // tb)


@given(xs=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=6), y=st.floats(-100, 100))
def test_floor_divide_float64_matches_torch(xs, y):
    pa, ta = _both(xs, pd.float64)
    assert_close(pa // y, ta // y)
    assert_close(pa // pd.tensor(y, dtype=pd.float64), ta // torch.tensor(y, dtype=torch.float64))


def test_floor_divide_by_zero_and_grad_as_torch():
    assert_close(pd.tensor([5.0, -5.0, 0.0]) // 0.0, torch.tensor([5.0, -5.0, 0.0]) // 0.0)
    with pytest.raises(RuntimeError):
        torch.tensor([1]) // 0
    with pytest.raises((ZeroDivisionError, RuntimeError)):
        pd.tensor([1]) // 0
    x = pd.tensor([1.5, -2.5], requires_grad=True)
    y = x // 2
    assert y.requires_grad
    with pytest.raises(RuntimeError, match="floor_divide"):
        y.sum().backward()
    with pytest.raises(TypeError, match="bool"):
        pd.tensor([True]) // pd.tensor([True])
