"""Dtype promotion and Python operators against torch: tensor-tensor, tensor-scalar, 0-d tensors."""

from __future__ import annotations

import itertools

import pytest

import puredl as pd  # noqa: E402
from oracle import torch  # a stand-in that skips the test using it where torch is not installed
from torch_ref import TORCH_DTYPE, assert_close, to_torch  # noqa: E402

DTYPES = [pd.bool, pd.int64, pd.float32, pd.float64]
SAMPLE = {
    pd.bool: [True, False, True],
    pd.int64: [3, -2, 5],
    pd.float32: [1.5, -2.0, 0.25],
    pd.float64: [2.5, 4.0, -1.5],
}

# binary ops that torch allows on every pair of these dtypes (sub and neg refuse bools)
BINARY = {
    "add": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "maximum": lambda a, b: a.maximum(b),
    "minimum": lambda a, b: a.minimum(b),
    "eq": lambda a, b: a == b,
    "lt": lambda a, b: a < b,
    "ge": lambda a, b: a >= b,
}


def _pair(dtype, ndim: int):
    vals = SAMPLE[dtype] if ndim else SAMPLE[dtype][0]
    return pd.tensor(vals, dtype=dtype), torch.tensor(vals, dtype=TORCH_DTYPE[dtype])


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("da,db", list(itertools.product(DTYPES, DTYPES)))
@pytest.mark.parametrize("ndims", [(1, 1), (1, 0), (0, 1), (0, 0)])
def test_tensor_tensor_promotion_matches_torch(name, da, db, ndims):
    pa, ta = _pair(da, ndims[0])
    pb, tb = _pair(db, ndims[1])
    fn = BINARY[name]
    if name == "div" and db is pd.bool:
        pb, tb = pd.ones_like(pb), torch.ones_like(tb)  # no division by False
    assert_close(fn(pa, pb), fn(ta, tb), what=f"{da.name}[{ndims[0]}d] {name} {db.name}[{ndims[1]}d]")


@pytest.mark.parametrize("op", ["add", "sub", "rsub", "mul", "div", "rdiv", "pow", "rpow", "gt", "maximum"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scalar", [2, 2.5, True, -3])
def test_tensor_scalar_promotion_matches_torch(op, dtype, scalar):
    fns = {
        "add": lambda a: a + scalar,
        "sub": lambda a: a - scalar,
        "rsub": lambda a: scalar - a,
        "mul": lambda a: a * scalar,
        "div": lambda a: a / scalar,
        "rdiv": lambda a: scalar / a,
        "pow": lambda a: a**scalar,
        "rpow": lambda a: scalar**a,
        "gt": lambda a: a > scalar,
        "maximum": lambda a: a.clamp(min=scalar),
    }
    vals = [1, 2, 3] if dtype is not pd.bool else [True, True, True]
    pa, ta = pd.tensor(vals, dtype=dtype), torch.tensor(vals, dtype=TORCH_DTYPE[dtype])
    try:
        expected = fns[op](ta)
    except NotImplementedError:  # torch lacks a kernel for this dtype (bool pow, bool clamp): no reference
        return
    except RuntimeError:  # torch refuses (bool subtraction, negative int powers): so must puredl
        with pytest.raises((RuntimeError, TypeError, ValueError)):
            fns[op](pa)
        return
    assert_close(fns[op](pa), expected, what=f"{dtype.name} {op} {scalar!r}")


def test_logical_operators_on_bool_tensors_match_torch():
    pa, ta = pd.tensor([True, False, True, False]), torch.tensor([True, False, True, False])
    pb, tb = pd.tensor([True, True, False, False]), torch.tensor([True, True, False, False])
    assert_close(pa & pb, ta & tb)
    assert_close(pa | pb, ta | tb)
    assert_close(~pa, ~ta)
    for s in (True, False):
        assert_close(pa | s, ta | s, what=f"| {s}")
        assert_close(pa & s, ta & s, what=f"& {s}")
        assert_close(s | pa, s | ta, what=f"{s} |")
    assert_close(pd.logical_and(pa, pb), torch.logical_and(ta, tb))
    assert_close(pd.logical_or(pa, pb), torch.logical_or(ta, tb))
    assert_close(pd.logical_not(pa), torch.logical_not(ta))


def test_float64_default_dtype_applies_to_factories_and_scalars(float64_default):
    assert pd.tensor([1.0]).dtype is pd.float64
    assert pd.zeros(2).dtype is pd.float64 and pd.rand(2).dtype is pd.float64
    assert (pd.tensor([1, 2]) / 2).dtype is pd.float64
    assert (pd.tensor([1, 2]) * 0.5).dtype is pd.float64
    assert repr(pd.tensor([1.0])) == "tensor([1.])"


def test_python_operators_cover_the_op_set():
    a = pd.tensor([[1.0, -2.0], [3.0, 0.5]], requires_grad=True)
    b = pd.tensor([0.5, 4.0])
    ta, tb = to_torch(a, True), to_torch(b)
    exprs = [
        lambda x, y: x + y,
        lambda x, y: x - y,
        lambda x, y: x * y,
        lambda x, y: x / y,
        lambda x, y: abs(x) ** y,
        lambda x, y: x @ y,
        lambda x, y: -x,
        lambda x, y: +x,
        lambda x, y: abs(x),
        lambda x, y: 1 - x,
        lambda x, y: 2 / y,
        lambda x, y: 2**y,
        lambda x, y: (x > y) & (x < 2),
        lambda x, y: (x <= y) | (x == 3),
        lambda x, y: ~(x != y),
    ]
    for i, f in enumerate(exprs):
        out_p, out_t = f(a, b), f(ta, tb)
        assert_close(out_p, out_t, what=f"expression {i}")
        if out_t.requires_grad:
            a.grad, ta.grad = None, None
            out_p.sum().backward()
            out_t.sum().backward()
            assert_close(a.grad, ta.grad, what=f"grad of expression {i}")


def test_unsupported_operands_are_type_errors():
    a = pd.ones(2)
    with pytest.raises(TypeError):
        a + "x"
    with pytest.raises(TypeError):
        a * [1, 2]
    with pytest.raises(TypeError):
        None - a


def test_shape_mismatch_errors_name_the_op_and_both_shapes():
    a, b = pd.zeros(2, 3), pd.zeros(4, 3)
    for name, fn in {
        "add": lambda: a + b,
        "sub": lambda: a - b,
        "mul": lambda: a * b,
        "div": lambda: a / b,
        "pow": lambda: a**b,
        "maximum": lambda: pd.maximum(a, b),
        "eq": lambda: a == b,
        "where": lambda: pd.where(a > 0, a, b),
    }.items():
        with pytest.raises(ValueError) as err:
            fn()
        msg = str(err.value)
        assert name in msg and "(2, 3)" in msg and "(4, 3)" in msg, msg
