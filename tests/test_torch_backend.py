"""The torch backend's kernels against the pure backend's, kernel by kernel, on the same storage.

Each case builds pure arrays (contiguous, transposed, sliced, broadcast), runs the pure kernel
and the torch kernel on a zero-copy view of the same memory, and compares values, shapes and
dtypes. The op suites (test_ops_*.py) check both against torch itself through the public API.
"""

from __future__ import annotations

import math
from array import array

import pytest

torch = pytest.importorskip("torch")

import puredl as pd  # noqa: E402
from puredl.backends import pure as P  # noqa: E402
from puredl.backends import torch as T  # noqa: E402

F32, F64, I64, BOOL = pd.float32, pd.float64, pd.int64, pd.bool


def arr(values, shape, dtype=F32) -> P.PureArray:
    return P.from_values(list(values), tuple(shape), dtype)


def both(a: P.PureArray):
    """The same storage as a pure array and as a torch view."""
    return a, T.from_pure(a)


def check(pure_out, torch_out, tol: float = 1e-6) -> None:
    if isinstance(pure_out, tuple):
        assert isinstance(torch_out, tuple) and len(pure_out) == len(torch_out)
        for p, t in zip(pure_out, torch_out):
            check(p, t, tol)
        return
    assert isinstance(torch_out, torch.Tensor)
    assert tuple(torch_out.shape) == pure_out.shape
    assert T.dtype_of(torch_out) is pure_out.dtype, (T.dtype_of(torch_out), pure_out.dtype)
    got, want = list(T.to_array(torch_out)), list(P.to_array(pure_out))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, float) and math.isnan(w):
            assert math.isnan(g)
        else:
            assert g == pytest.approx(w, rel=tol, abs=tol), (got, want)


def layouts():
    """(name, pure array of shape (3, 4)) in several memory layouts."""
    base = arr([(i * 7 % 11) - 5.0 for i in range(12)], (3, 4))
    t = P.permute(arr([(i * 5 % 13) - 6.0 for i in range(12)], (4, 3)), (1, 0))
    big = arr([float(i) - 10.0 for i in range(40)], (5, 8))
    sliced = P.getitem(big, ((1, 4, 1), (0, 8, 2)))  # rows 1..3, every other column
    return [("contiguous", base), ("transposed", t), ("sliced", sliced)]


# --------------------------------------------------------------------------- storage crossing


def test_from_pure_shares_memory_both_ways():
    a = arr([1.0, 2.0, 3.0, 4.0], (2, 2))
    t = T.from_pure(a)
    t[0, 1] = 20.0
    assert a.buf[1] == 20.0
    a.buf[3] = 40.0
    assert t[1, 1].item() == 40.0


@pytest.mark.parametrize("name,a", layouts())
def test_from_pure_views_any_layout(name, a):
    t = T.from_pure(a)
    assert t.tolist() == P.tolist(a)
    assert t.data_ptr() >= torch.frombuffer(a.buf, dtype=torch.float32).data_ptr()  # a view, not a copy


@pytest.mark.parametrize("dtype", list(T.TORCH_DTYPE), ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(2, 3), (6,)])
def test_round_trip_every_dtype(dtype, shape):
    vals = [1, 0, 1, 1, 0, 1] if dtype is BOOL else [3, -2, 7, 0, 5, -1]
    if dtype is pd.uint8:
        vals = [abs(v) for v in vals]
    a = arr(vals, shape, dtype)
    t = T.from_pure(a)
    assert t.dtype is T.TORCH_DTYPE[dtype] and tuple(t.shape) == shape
    assert t.tolist() == P.tolist(a)
    # a view of the buffer, except the half floats (their float32 storage is converted)
    assert T.shares_memory(a) == (t.data_ptr() == torch.frombuffer(a.buf, dtype=t.dtype).data_ptr())
    back = T.to_pure(t)
    assert back.dtype is dtype and back.shape == shape and P.tolist(back) == P.tolist(a)


def test_from_pure_of_a_1d_prefix_and_an_offset_row():
    a = arr([float(i) for i in range(12)], (3, 4))
    assert T.from_pure(P.PureArray(a.buf, (5,))).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # row-major, shorter
    row = P.getitem(a, (1,))  # offset 4, row-major
    assert T.from_pure(row).tolist() == [4.0, 5.0, 6.0, 7.0]


def test_empty_and_zero_d():
    e = arr([], (0, 3))
    assert tuple(T.from_pure(e).shape) == (0, 3)
    assert list(T.to_array(torch.empty(0, 3))) == []
    s = arr([2.5], ())
    assert T.from_pure(s).shape == () and T.item(T.from_pure(s)) == 2.5


def test_to_array_large_uses_one_copy_and_is_exact():
    t = torch.arange(10000, dtype=torch.float64) / 7
    out = T.to_array(t)
    assert out.typecode == "d" and len(out) == 10000 and out[9999] == t[9999].item()


def test_to_array_of_noncontiguous_is_row_major():
    t = torch.arange(6, dtype=torch.int64).reshape(2, 3).t()
    assert list(T.to_array(t)) == [0, 3, 1, 4, 2, 5]


# --------------------------------------------------------------------------- kernels vs pure

BINARY_OPS = ["add", "sub", "mul", "div", "maximum", "minimum", "pow"]
COMPARE_OPS = ["eq", "ne", "lt", "le", "gt", "ge"]


@pytest.mark.parametrize("name,a", layouts())
@pytest.mark.parametrize("op", BINARY_OPS + COMPARE_OPS)
def test_binary_matches_pure(name, a, op):
    b = arr([0.5 + (i % 5) for i in range(4)], (4,))  # broadcast along rows
    if op == "pow":
        a = P.unary("abs", a)
    dtype = BOOL if op in COMPARE_OPS else F32
    pa, ta = both(a)
    pb, tb_ = both(b)
    check(P.binary(op, pa, pb, dtype), T.binary(op, ta, tb_, dtype))


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "lt", "eq"])
@pytest.mark.parametrize("reverse", [False, True])
def test_binary_scalar_matches_pure(op, reverse):
    a = arr([0.5, 1.0, 2.0, 3.0, 1.5, 2.5], (2, 3))
    dtype = BOOL if op in ("lt", "eq") else F32
    pa, ta = both(a)
    check(P.binary_scalar(op, pa, 2.0, reverse, dtype), T.binary_scalar(op, ta, 2.0, reverse, dtype))


@pytest.mark.parametrize("op", ["logical_and", "logical_or", "lt", "ge", "eq"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("scalar", [True, False, 2.5, 2])
def test_scalar_comparisons_and_logic_keep_the_scalar(op, reverse, scalar):
    a = arr([1, 2, 3, 0], (4,), I64)
    check(
        P.binary_scalar(op, a, scalar, reverse, BOOL),
        T.binary_scalar(op, T.from_pure(a), scalar, reverse, BOOL),
    )


def test_int64_arithmetic_and_logical_ops():
    a = arr([1, -2, 3, 4], (4,), I64)
    b = arr([2, 2, -1, 0], (4,), I64)
    for op in ("add", "sub", "mul", "maximum"):
        check(P.binary(op, a, b, I64), T.binary(op, T.from_pure(a), T.from_pure(b), I64))
    x, y = arr([1, 0, 1, 0], (4,), BOOL), arr([1, 1, 0, 0], (4,), BOOL)
    for op in ("logical_and", "logical_or"):
        check(P.binary(op, x, y, BOOL), T.binary(op, T.from_pure(x), T.from_pure(y), BOOL))


def test_int_pow_negative_exponent_is_the_same_valueerror():
    a, b = arr([2, 3], (2,), I64), arr([1, -1], (2,), I64)
    with pytest.raises(ValueError, match="negative integer powers"):
        P.binary("pow", a, b, I64)
    with pytest.raises(ValueError, match="negative integer powers"):
        T.binary("pow", T.from_pure(a), T.from_pure(b), I64)


UNARY_OPS = ["neg", "exp", "abs", "sigmoid", "tanh", "gelu", "erf", "sin", "cos", "relu", "sign"]


@pytest.mark.parametrize("name,a", layouts())
@pytest.mark.parametrize("op", UNARY_OPS)
def test_unary_matches_pure(name, a, op):
    pa, ta = both(a)
    check(P.unary(op, pa), T.unary(op, ta))


@pytest.mark.parametrize("op", ["log", "sqrt"])
def test_unary_positive_domain(op):
    a = arr([0.25, 1.0, 4.0, 9.0], (2, 2))
    check(P.unary(op, a), T.unary(op, T.from_pure(a)))


def test_unary_special_values_follow_ieee():
    a = arr([0.0, -1.0, math.inf, 1000.0], (4,))
    for op in ("log", "sqrt", "exp"):
        check(P.unary(op, a), T.unary(op, T.from_pure(a)))


def test_clamp_where_matches_pure():
    a = arr([-2.0, -0.5, 0.0, 0.5, 2.0, 3.0], (2, 3))
    ta = T.from_pure(a)
    for lo, hi in ((-1.0, 1.0), (0.0, None), (None, 0.5)):
        check(P.clamp(a, lo, hi), T.clamp(ta, lo, hi))
    cond = arr([1, 0, 1], (3,), BOOL)
    b = arr([9.0], (1,), F64)
    check(P.where(cond, a, b, F64), T.where(T.from_pure(cond), ta, T.from_pure(b), F64))


@pytest.mark.parametrize(
    "sa,sb",
    [((3, 4), (4, 5)), ((2, 3, 4), (4, 2)), ((1, 3, 4), (2, 4, 3)), ((5, 1), (1, 6))],
)
def test_matmul_matches_pure(sa, sb):
    a = arr([((i * 3) % 7) - 3.0 for i in range(P.numel(sa))], sa, F64)
    b = arr([((i * 5) % 9) - 4.0 for i in range(P.numel(sb))], sb, F64)
    check(P.matmul(a, b, F64), T.matmul(T.from_pure(a), T.from_pure(b), F64), tol=1e-12)


def test_matmul_misaligned_is_the_same_valueerror():
    a, b = arr([1.0] * 6, (2, 3)), arr([1.0] * 6, (2, 3))
    with pytest.raises(ValueError, match="not aligned"):
        T.matmul(T.from_pure(a), T.from_pure(b), F32)


@pytest.mark.parametrize("name,a", layouts())
def test_reductions_match_pure(name, a):
    pa, ta = both(a)
    for dims, keep in (((0,), False), ((1,), True), ((0, 1), False), ((0, 1), True)):
        check(P.reduce_sum(pa, dims, keep, F32), T.reduce_sum(ta, dims, keep, F32), tol=1e-5)
    for dim in (0, 1):
        for largest in (True, False):
            check(P.max_dim(pa, dim, True, largest), T.max_dim(ta, dim, True, largest))
    for largest in (True, False):
        check(P.argmax_all(pa, largest), T.argmax_all(ta, largest))
    for op in ("mean", "prod", "amax", "amin"):
        for dims, keep in (((0,), False), ((1,), True), ((0, 1), False), ((0, 1), True)):
            check(P.reduce(op, pa, dims, keep, F32), T.reduce(op, ta, dims, keep, F32), tol=1e-5)
    for dim in (0, 1):
        for log in (False, True):
            check(P.softmax(pa, dim, log), T.softmax(ta, dim, log), tol=1e-5)


def test_reduce_sum_of_0d_and_no_dims():
    s = arr([3.0], ())
    check(P.reduce_sum(s, (), False, F32), T.reduce_sum(T.from_pure(s), (), False, F32))
    a = arr([1.0, 2.0], (2,))
    out = T.reduce_sum(T.from_pure(a), (), False, F32)
    assert out.tolist() == [1.0, 2.0] and out.data_ptr() != T.from_pure(a).data_ptr()


def test_reductions_reject_empty_inputs_like_pure():
    e = T.from_pure(arr([], (2, 0)))
    with pytest.raises(IndexError, match="zero-size"):
        T.max_dim(e, 1, False, True)
    for op in ("amax", "amin"):
        with pytest.raises(RuntimeError, match="empty"):
            T.reduce(op, e, (0, 1), False, F32)
        with pytest.raises(RuntimeError, match="empty"):
            P.reduce(op, arr([], (2, 0)), (0, 1), False, F32)
        with pytest.raises(IndexError, match="non-zero size"):
            P.reduce(op, arr([], (2, 0)), (1,), False, F32)
    with pytest.raises(ValueError, match="empty"):
        T.argmax_all(e, True)


def test_max_dim_ties_pick_the_first_index():
    a = arr([1.0, 3.0, 3.0, 0.0, 0.0, 0.0], (2, 3))
    check(P.max_dim(a, 1, False, True), T.max_dim(T.from_pure(a), 1, False, True))
    check(P.max_dim(a, 1, False, False), T.max_dim(T.from_pure(a), 1, False, False))


def test_cat_index_select_index_add_match_pure():
    a = arr([float(i) for i in range(6)], (3, 2))
    b = arr([10, 11], (1, 2), I64)
    check(P.cat(0, F32, a, b), T.cat(0, F32, T.from_pure(a), T.from_pure(b)))
    idx = arr([2, -1, 0, 0], (2, 2), I64)
    check(P.index_select0(a, idx), T.index_select0(T.from_pure(a), T.from_pure(idx)))
    src = arr([1.0] * 8, (2, 2, 2))
    check(P.index_add0((3, 2), idx, src), T.index_add0((3, 2), T.from_pure(idx), T.from_pure(src)))


def test_index_select_out_of_bounds_is_an_indexerror():
    a = T.from_pure(arr([1.0, 2.0, 3.0], (3,)))
    for bad in (3, -4):
        with pytest.raises(IndexError, match="out of bounds"):
            T.index_select0(a, torch.tensor([bad]))


# --------------------------------------------------------------------------- views, indexing, casts


def test_views_and_getitem_match_pure():
    a = arr([float(i) for i in range(24)], (2, 3, 4))
    ta = T.from_pure(a)
    check(P.permute(a, (2, 0, 1)), T.permute(ta, (2, 0, 1)))
    check(P.reshape(a, (6, 4)), T.reshape(ta, (6, 4)))
    check(
        P.expand(arr([1.0, 2.0], (2, 1)), (3, 2, 4)),
        T.expand(T.from_pure(arr([1.0, 2.0], (2, 1))), (3, 2, 4)),
    )
    key = (1, (0, 3, 2), None, (1, 4, 1))
    check(P.getitem(a, key), T.getitem(ta, key))
    assert T.view(T.permute(ta, (2, 0, 1)), (24,)) is None  # not viewable: caller copies
    assert T.view(ta, (4, 6)) is not None


def test_setitem_writes_scalars_tensors_and_pure_arrays():
    a = torch.zeros(2, 3)
    T.setitem(a, (0,), 5.0)
    T.setitem(a, (1, (0, 2, 1)), torch.tensor([1.0, 2.0]))
    T.setitem(a, (1, (2, 3, 1)), arr([7.0], (1,)))
    assert a.tolist() == [[5.0, 5.0, 5.0], [1.0, 2.0, 7.0]]
    i = torch.zeros(2, dtype=torch.int64)
    T.setitem(i, ((0, 2, 1),), 3.9)  # a float into int64 storage truncates, as the pure backend does
    assert i.tolist() == [3, 3]


def test_setitem_overlapping_source_is_copied_first():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    T.setitem(a, ((1, 4, 1),), a[0:3])
    p = arr([1.0, 2.0, 3.0, 4.0], (4,))
    P.setitem(p, ((1, 4, 1),), P.getitem(p, ((0, 3, 1),)))
    assert a.tolist() == P.tolist(p) == [1.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("src,dst", [(F32, I64), (F64, F32), (I64, BOOL), (BOOL, F32), (F32, F32)])
def test_cast_matches_pure(src, dst):
    a = arr([1.7, -2.2, 0.0, 3.0] if src.is_floating_point else [1, 0, 3, 0], (4,), src)
    check(P.cast(a, dst), T.cast(T.from_pure(a), dst))


def test_creation_and_metadata():
    assert T.full((2, 2), 3, I64).tolist() == [[3, 3], [3, 3]]
    t = T.from_values(array("d", [1.0, 2.0]), (2,), F64)
    assert T.dtype_of(t) is F64 and T.tolist(t) == [1.0, 2.0] and T.device(t) == "cpu"
    assert T.clone(t).data_ptr() != t.data_ptr()
    assert T.contiguous(t.expand(2, 2)).is_contiguous()


def test_device_backends_are_cached_and_cpu_is_the_module():
    assert T.device_backend("cpu") is T
    assert T.backend_for(torch.zeros(1)) is T
    meta = T.device_backend("meta")
    assert T.device_backend("meta") is meta and meta.NAME == "torch" and meta.DEVICE == "meta"
    assert tuple(meta.full((2,), 1.0, F32).shape) == (2,) and meta.full((2,), 1.0, F32).device.type == "meta"


# layout helpers of the pure backend, not kernels: the torch backend has no use for them
PURE_HELPERS = {
    "broadcast_shapes",
    "broadcast_values",
    "contiguous_strides",
    "is_contiguous",
    "numel",
    "values",
}


def test_every_pure_kernel_exists_on_torch_and_on_device_backends():
    import inspect

    kernels = {
        name
        for name, fn in vars(P).items()
        if inspect.isfunction(fn) and fn.__module__ == P.__name__ and not name.startswith("_")
    } - PURE_HELPERS
    assert not {k for k in kernels if not callable(getattr(T, k, None))}
    meta = T.device_backend("meta")  # a CUDA device's backend is the same kind of object
    assert not {k for k in kernels if not callable(getattr(meta, k, None))}


def test_fused_kernels_match_pure():
    x = arr([0.5, -1.0, 2.0, 0.0, 3.0, -2.0], (2, 3), F64)
    w = arr([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3), F64)
    b = arr([0.25, -0.5], (2,), F64)
    for pa, ta in (both(x), both(P.permute(arr(range(6), (3, 2), F64), (1, 0)))):
        got = T.to_array(T.linear(ta, T.from_pure(w), T.from_pure(b), F64))
        assert list(got) == pytest.approx(list(P.to_array(P.linear(pa, w, b, F64))))
    target = arr([2, -100], (2,), I64)
    weight = arr([1.0, 2.0, 0.5], (3,), F64)
    for red in ("mean", "sum", "none"):
        lp, lt = (
            P.nll_loss(x, target, weight, -100, 0.1, red, True),
            T.nll_loss(T.from_pure(x), T.from_pure(target), T.from_pure(weight), -100, 0.1, red, True),
        )
        assert list(T.to_array(lt[0])) == pytest.approx(list(P.to_array(lp[0])))
        if red == "mean":  # the divisor; only the mean uses it (torch leaves it 0 otherwise)
            assert float(lt[2]) == lp[2] == 0.5
        g = arr([1.5] * (2 if red == "none" else 1), (2,) if red == "none" else (), F64)
        gp = P.nll_loss_backward(g, lp[1], target, weight, -100, 0.1, red, lp[2], True)
        gt = T.nll_loss_backward(
            T.from_pure(g), lt[1], T.from_pure(target), T.from_pure(weight), -100, 0.1, red, lt[2], True
        )
        assert list(T.to_array(gt)) == pytest.approx(list(P.to_array(gp)))
    a, g = arr([1.0, -1.0, 0.0, math.nan], (4,), F64), arr([2.0, 3.0, 4.0, 5.0], (4,), F64)
    assert (
        T.relu_backward(T.from_pure(g), T.from_pure(a)).tolist()
        == P.tolist(P.relu_backward(g, a))
        == [2.0, 0.0, 0.0, 5.0]
    )
