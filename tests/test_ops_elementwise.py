"""Elementwise ops against torch: forward and gradient, broadcasting, strided, empty and size-1 inputs."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import puredl as pd  # noqa: E402
from torch_ref import (  # noqa: E402
    assert_close,
    assert_grads_close,
    backward_both,
    broadcastable_shapes,
    float_dtypes,
    layouts,
    make_pair,
    seeds,
    shapes,
    to_torch,
)

# name -> (f(module, a, b), value range of a, value range of b); module is puredl or torch
BINARY = {
    "add": (lambda m, a, b: a + b, (-3, 3), (-3, 3)),
    "sub": (lambda m, a, b: a - b, (-3, 3), (-3, 3)),
    "mul": (lambda m, a, b: a * b, (-3, 3), (-3, 3)),
    "div": (lambda m, a, b: a / b, (-3, 3), (0.5, 3)),
    "pow": (lambda m, a, b: a**b, (0.5, 2), (-2, 2)),
    "add_fn": (lambda m, a, b: m.add(a, b), (-3, 3), (-3, 3)),
    "sub_fn": (lambda m, a, b: m.sub(a, b), (-3, 3), (-3, 3)),
    "mul_fn": (lambda m, a, b: m.mul(a, b), (-3, 3), (-3, 3)),
    "div_fn": (lambda m, a, b: m.div(a, b), (-3, 3), (-3, -0.5)),
    "pow_fn": (lambda m, a, b: m.pow(a, b), (0.5, 2), (-2, 2)),
    "maximum": (lambda m, a, b: m.maximum(a, b), (-3, 3), (-3, 3)),
    "minimum": (lambda m, a, b: m.minimum(a, b), (-3, 3), (-3, 3)),
}

COMPARE = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}

# name -> (f(module, a), value range)
UNARY = {
    "neg": (lambda m, a: -a, (-3, 3)),
    "neg_fn": (lambda m, a: m.neg(a), (-3, 3)),
    "exp": (lambda m, a: a.exp(), (-3, 3)),
    "log": (lambda m, a: a.log(), (0.1, 3)),
    "sqrt": (lambda m, a: a.sqrt(), (0.1, 3)),
    "abs": (lambda m, a: a.abs(), (-3, 3)),
    "abs_op": (lambda m, a: abs(a), (-3, 3)),
    "sign": (lambda m, a: a.sign(), (-3, 3)),
    "round": (lambda m, a: a.round(), (-3, 3)),
    "round_fn": (lambda m, a: m.round(a), (-3, 3)),
    "relu": (lambda m, a: a.relu(), (-3, 3)),
    "sigmoid": (lambda m, a: a.sigmoid(), (-6, 6)),
    "tanh": (lambda m, a: a.tanh(), (-4, 4)),
    "gelu": (lambda m, a: m.nn.functional.gelu(a) if m is torch else a.gelu(), (-4, 4)),
    "exp_fn": (lambda m, a: m.exp(a), (-3, 3)),
    "log_fn": (lambda m, a: m.log(a), (0.1, 3)),
    "sqrt_fn": (lambda m, a: m.sqrt(a), (0.1, 3)),
    "abs_fn": (lambda m, a: m.abs(a), (-3, 3)),
    "relu_fn": (lambda m, a: m.relu(a), (-3, 3)),
    "sigmoid_fn": (lambda m, a: m.sigmoid(a), (-6, 6)),
    "tanh_fn": (lambda m, a: m.tanh(a), (-4, 4)),
    "sin": (lambda m, a: m.sin(a), (-4, 4)),
    "cos": (lambda m, a: a.cos(), (-4, 4)),
    "erf": (lambda m, a: m.erf(a), (-3, 3)),
    "clamp_both": (lambda m, a: a.clamp(-1.0, 1.5), (-3, 3)),
    "clamp_min": (lambda m, a: a.clamp(min=-0.5), (-3, 3)),
    "clamp_max": (lambda m, a: a.clamp(max=0.25), (-3, 3)),
    "clamp_fn": (lambda m, a: m.clamp(a, -2.0, 2.0), (-3, 3)),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(shapes=broadcastable_shapes(2), dtype=float_dtypes, la=layouts, lb=layouts, seed=seeds)
def test_binary_matches_torch(name, shapes, dtype, la, lb, seed):
    fn, ra, rb = BINARY[name]
    pa, ta, pla, tla = make_pair(shapes[0], dtype, la, seed, *ra)
    pb, tb, plb, tlb = make_pair(shapes[1], dtype, lb, seed + 1, *rb)
    out_p, out_t = fn(pd, pa, pb), fn(torch, ta, tb)
    assert_close(out_p, out_t, what=name)
    backward_both(out_p, out_t, seed)
    assert_grads_close([pla, plb], [tla, tlb])


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=shapes(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_unary_matches_torch(name, shape, dtype, layout, seed):
    fn, (lo, hi) = UNARY[name]
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed, lo, hi)
    out_p, out_t = fn(pd, pa), fn(torch, ta)
    assert_close(out_p, out_t, what=name)
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


@pytest.mark.parametrize("name", sorted(COMPARE))
@given(
    shapes=broadcastable_shapes(2),
    dtype=st.sampled_from([pd.float32, pd.float64, pd.int64]),
    la=layouts,
    lb=layouts,
    seed=seeds,
)
def test_compare_matches_torch(name, shapes, dtype, la, lb, seed):
    # small integer values so that ties (eq, le, ge) actually happen
    pa, ta, _, _ = make_pair(shapes[0], dtype, la, seed, -2, 2, grad=False)
    pb, tb, _, _ = make_pair(shapes[1], dtype, lb, seed + 1, -2, 2, grad=False)
    if dtype.is_floating_point:
        pa, ta = (pa * 2).long() / 2, (ta * 2).long() / 2  # halves: exact in both dtypes, ties likely
        pb, tb = (pb * 2).long() / 2, (tb * 2).long() / 2
    fn = COMPARE[name]
    assert_close(fn(pa, pb), fn(ta, tb), what=name)
    method = getattr(pa, name)
    assert_close(method(pb), getattr(ta, name)(tb), what=f"Tensor.{name}")
    assert_close(getattr(pd, name)(pa, pb), getattr(torch, name)(ta, tb), what=f"puredl.{name}")


SCALAR_OPS = {
    "add": lambda a, s: a + s,
    "radd": lambda a, s: s + a,
    "sub": lambda a, s: a - s,
    "rsub": lambda a, s: s - a,
    "mul": lambda a, s: a * s,
    "rmul": lambda a, s: s * a,
    "div": lambda a, s: a / s,
    "rdiv": lambda a, s: s / a,
    "pow": lambda a, s: a**s,
    "rpow": lambda a, s: s**a,
    "maximum": lambda a, s: a.clamp(min=s),
    "gt": lambda a, s: a > s,
    "le": lambda a, s: a <= s,
    "eq": lambda a, s: a == s,
}


@pytest.mark.parametrize("name", sorted(SCALAR_OPS))
@given(
    shape=shapes(),
    dtype=float_dtypes,
    layout=layouts,
    scalar=st.sampled_from([2, 3, -1, 0.5, 1.5, -2.25, 2.0]),
    seed=seeds,
)
def test_scalar_operand_matches_torch(name, shape, dtype, layout, scalar, seed):
    fn = SCALAR_OPS[name]
    lo, hi = (0.25, 3) if name in ("pow", "rdiv") else (-3, 3)
    if name == "rpow":
        scalar = abs(scalar)  # a negative base to a fractional power is NaN in both; keep it real
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed, lo, hi)
    out_p, out_t = fn(pa, scalar), fn(ta, scalar)
    assert_close(out_p, out_t, what=f"{name} {scalar!r}")
    if out_t.requires_grad:
        backward_both(out_p, out_t, seed)
        assert_grads_close([pl], [tl])


@given(
    shape=shapes(max_dims=3), dtype=float_dtypes, exponent=st.sampled_from([2, 3, -1, 0, 1, 2.0]), seed=seeds
)
def test_pow_negative_base_integer_exponent(shape, dtype, exponent, seed):
    pa, ta, pl, tl = make_pair(shape, dtype, "contiguous", seed, -3, -0.5)
    out_p, out_t = pa**exponent, ta**exponent
    assert_close(out_p, out_t)
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


def test_pow_gradients_at_zero_follow_torch():
    a = pd.tensor([0.0, 0.0, 0.0, 2.0, 3.0], dtype=pd.float64, requires_grad=True)
    b = pd.tensor([2.0, 0.0, 0.5, 0.0, -1.0], dtype=pd.float64, requires_grad=True)
    ta, tb = to_torch(a, True), to_torch(b, True)
    (a**b).sum().backward()
    (ta**tb).sum().backward()
    assert_grads_close([a, b], [ta, tb])


@given(shapes=broadcastable_shapes(3), dtype=float_dtypes, seed=seeds, layout=layouts)
def test_where_matches_torch(shapes, dtype, seed, layout):
    pc, tc, _, _ = make_pair(shapes[0], pd.float64, layout, seed, grad=False)
    pc, tc = pc > 0, tc > 0
    pa, ta, pla, tla = make_pair(shapes[1], dtype, layout, seed + 1)
    pb, tb, plb, tlb = make_pair(shapes[2], dtype, "contiguous", seed + 2)
    out_p, out_t = pd.where(pc, pa, pb), torch.where(tc, ta, tb)
    assert_close(out_p, out_t)
    backward_both(out_p, out_t, seed)
    assert_grads_close([pla, plb], [tla, tlb])


@given(shape=shapes(), dtype=float_dtypes, scalar=st.sampled_from([0.0, -1.5, 2]), seed=seeds)
def test_where_with_scalar_branches(shape, dtype, scalar, seed):
    pa, ta, pl, tl = make_pair(shape, dtype, "contiguous", seed)
    out_p, out_t = pd.where(pa > 0, pa, scalar), torch.where(ta > 0, ta, scalar)
    assert_close(out_p, out_t)
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])
    assert_close(pd.where(pa > 0, scalar, pa), torch.where(ta > 0, scalar, ta))


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum_ties_share_gradient(op):
    a = pd.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = pd.tensor([1.0, 5.0, 3.0], requires_grad=True)
    ta, tb = to_torch(a, True), to_torch(b, True)
    getattr(pd, op)(a, b).sum().backward()
    getattr(torch, op)(ta, tb).sum().backward()
    assert_grads_close([a, b], [ta, tb])


def test_clamp_gradient_at_the_bounds_matches_torch():
    a = pd.tensor([-1.0, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    ta = to_torch(a, True)
    a.clamp(0.0, 1.0).sum().backward()
    ta.clamp(0.0, 1.0).sum().backward()
    assert_grads_close([a], [ta])


@pytest.mark.parametrize("dtype", [pd.float32, pd.float64])
def test_activations_stable_at_large_magnitudes(dtype):
    vals = [-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0]
    a = pd.tensor(vals, dtype=dtype, requires_grad=True)
    ta = to_torch(a, True)
    for name in ("sigmoid", "tanh", "relu"):
        a.grad, ta.grad = None, None
        out_p, out_t = getattr(a, name)(), getattr(ta, name)()
        assert_close(out_p, out_t, what=name)
        out_p.sum().backward()
        out_t.sum().backward()
        assert_grads_close([a], [ta])
    big = pd.tensor([1000.0, -1000.0], dtype=dtype)
    assert_close(big.gelu(), torch.nn.functional.gelu(to_torch(big)))


def test_special_values_match_torch():
    vals = [0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, 800.0]
    a = pd.tensor(vals, dtype=pd.float64)
    ta = to_torch(a)
    for name in ("exp", "log", "sqrt", "abs", "sigmoid", "tanh", "relu", "neg", "sign", "round"):
        assert_close(getattr(a, name)(), getattr(ta, name)(), what=name)
    for name in ("abs", "relu", "sigmoid", "tanh", "exp"):  # gradients at NaN and 0
        x = pd.tensor([math.nan, 0.0, -1.0, 2.0], dtype=pd.float64, requires_grad=True)
        tx = to_torch(x, True)
        getattr(x, name)().sum().backward()
        getattr(tx, name)().sum().backward()
        assert_grads_close([x], [tx])
    z = pd.tensor([1.0, -1.0, 0.0, 2.0], dtype=pd.float64)
    zero = pd.zeros(4, dtype=pd.float64)
    assert_close(z / zero, to_torch(z) / to_torch(zero), what="x / 0")
    assert_close(z / 0.0, to_torch(z) / 0.0, what="x / 0.0")
    base = pd.tensor([0.0, -2.0, 2.0, 1e300], dtype=pd.float64)
    for e in (-1.0, 0.5, 2.0):
        assert_close(base**e, to_torch(base) ** e, what=f"pow {e}")


@pytest.mark.parametrize("dtype", [pd.int64, pd.bool])
def test_integer_and_bool_elementwise_match_torch(dtype):
    pa, ta, _, _ = make_pair((3, 4), dtype, "transposed", 7, -5, 5, grad=False)
    pb, tb, _, _ = make_pair((4,), dtype, "contiguous", 8, 1, 5, grad=False)
    ops = [
        lambda a, b: a + b,
        lambda a, b: a * b,
        lambda a, b: pd.maximum(a, b) if isinstance(a, pd.Tensor) else torch.maximum(a, b),
    ]
    if dtype is pd.int64:
        ops += [
            lambda a, b: a - b,
            lambda a, b: a / b,
            lambda a, b: a**2,
            lambda a, b: -a,
            lambda a, b: abs(a),
        ]
        ops += [
            lambda a, b: a.relu(),
            lambda a, b: a.clamp(-1, 2),
            lambda a, b: a.sum(),
            lambda a, b: a.sum(0),
        ]
        ops += [lambda a, b: a.exp(), lambda a, b: a.sqrt(), lambda a, b: a.sigmoid()]
    for i, f in enumerate(ops):
        assert_close(f(pa, pb), f(ta, tb), what=f"op {i}")
