"""Pure matmul against correctly rounded sums (math.fsum), no torch needed: runs on every Python.

The pure kernel's inner loop differs by Python version (``math.sumprod`` on 3.12+, ``sum(map(mul))``
before), so this suite is the oracle where torch is not installed (CI's extra Pythons). Bound: a
dot product of k terms accumulated in double is within (k + 1) * 2**-52 * sum(|a| * |b|) of the
correctly rounded one; float32 results round that double once more.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import puredl as pd
from puredl import accel

sides = st.integers(0, 9)
seeds = st.integers(0, 2**31 - 1)
layouts = st.sampled_from(["contiguous", "transposed", "strided"])
dtypes = st.sampled_from([pd.float32, pd.float64])


@pytest.fixture(autouse=True)
def _pure_only():
    """These tests are about the pure kernels: other backends are covered by the torch suites."""
    accel.set_acceleration("pure")


def _matrix(rows: int, cols: int, rng: random.Random, dtype, layout: str, integers: bool = False):
    """A (rows, cols) leaf tensor laid out as asked, and its values as nested lists (as stored)."""

    def draw(n):
        return [float(rng.randint(-50, 50)) if integers else rng.uniform(-3, 3) for _ in range(n)]

    if layout == "transposed":
        leaf = pd.tensor(draw(rows * cols), dtype=dtype).reshape(cols, rows).requires_grad_(True)
        view = leaf.T
    elif layout == "strided":
        leaf = pd.tensor(draw(rows * cols * 2), dtype=dtype).reshape(rows, 2 * cols).requires_grad_(True)
        view = leaf[:, ::2]
    else:
        leaf = pd.tensor(draw(rows * cols), dtype=dtype).reshape(rows, cols).requires_grad_(True)
        view = leaf
    return view, view.tolist()


def _reference(a: list, b: list, m: int, k: int, n: int) -> tuple[list, list]:
    """Correctly rounded a @ b and the scale sum(|a| * |b|) of each entry."""
    ref = [[math.fsum(a[i][p] * b[p][j] for p in range(k)) for j in range(n)] for i in range(m)]
    scale = [[math.fsum(abs(a[i][p] * b[p][j]) for p in range(k)) for j in range(n)] for i in range(m)]
    return ref, scale


def _assert_close_to_reference(got: list, ref: list, scale: list, k: int, dtype, what: str) -> None:
    for i, (grow, rrow, srow) in enumerate(zip(got, ref, scale)):
        for j, (g, r, s) in enumerate(zip(grow, rrow, srow)):
            tol = (k + 1) * 2.0**-52 * s
            if dtype is pd.float32:
                tol = 2 * tol + 2.0**-24 * abs(r) * 1.0001  # one more rounding, to float32
            assert abs(g - r) <= tol, f"{what}[{i}][{j}]: {g!r} != {r!r} (tolerance {tol:.3g})"


def _transpose(x: list) -> list:
    return [list(col) for col in zip(*x)]


@given(m=sides, k=sides, n=sides, dtype=dtypes, la=layouts, lb=layouts, seed=seeds)
def test_matmul_and_its_gradients_match_correctly_rounded_sums(m, k, n, dtype, la, lb, seed):
    rng = random.Random(seed)
    torch_matmuls = accel.get_stats().op("matmul").torch  # the counts cover the whole session
    a, av = _matrix(m, k, rng, dtype, la)
    b, bv = _matrix(k, n, rng, dtype, lb)
    out = a @ b
    assert out.shape == (m, n) and out.dtype is dtype
    ref, scale = _reference(av, bv, m, k, n)
    _assert_close_to_reference(out.tolist(), ref, scale, k, dtype, f"({m}x{k} {la}) @ ({k}x{n} {lb})")

    g = pd.tensor([rng.uniform(-2, 2) for _ in range(m * n)], dtype=dtype).reshape(m, n)
    a.retain_grad()
    b.retain_grad()
    out.backward(g)
    gv = g.tolist()
    # d(a @ b)/da = g @ b.T and d/db = a.T @ g, each a sum over the other operand's free dimension
    ref_a, scale_a = _reference(gv, _transpose(bv), m, n, k)
    _assert_close_to_reference(a.grad.tolist(), ref_a, scale_a, n, dtype, "grad of a")
    ref_b, scale_b = _reference(_transpose(av), gv, k, m, n)
    _assert_close_to_reference(b.grad.tolist(), ref_b, scale_b, m, dtype, "grad of b")
    assert accel.get_stats().op("matmul").torch == torch_matmuls


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 17, 64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
def test_integer_valued_matmul_is_exact_on_every_inner_loop(k, layout):
    # sums of integers below 2**53 are exact in any order: every Python's loop must give the same bits
    rng = random.Random(k)
    a, av = _matrix(7, k, rng, pd.float64, layout, integers=True)
    b, bv = _matrix(k, 6, rng, pd.float64, "contiguous", integers=True)
    exact = [[sum(int(av[i][p]) * int(bv[p][j]) for p in range(k)) for j in range(6)] for i in range(7)]
    assert (a @ b).tolist() == exact
    ai = pd.tensor([[int(x) for x in row] for row in av], dtype=pd.int64)
    bi = pd.tensor([[int(x) for x in row] for row in bv], dtype=pd.int64)
    got = (ai @ bi).tolist()
    assert got == exact and all(type(x) is int for row in got for x in row)


@given(batch=st.integers(1, 3), m=sides, k=sides, n=sides, dtype=dtypes, seed=seeds)
def test_batched_and_broadcast_matmul_match_each_matrix_product(batch, m, k, n, dtype, seed):
    rng = random.Random(seed)
    a = pd.tensor([rng.uniform(-3, 3) for _ in range(batch * m * k)], dtype=dtype).reshape(batch, m, k)
    b = pd.tensor([rng.uniform(-3, 3) for _ in range(k * n)], dtype=dtype).reshape(1, k, n)
    out = (a @ b).tolist()  # b's batch dimension of 1 broadcasts against a's
    bv = b.tolist()[0]
    for i, av in enumerate(a.tolist()):
        ref, scale = _reference(av, bv, m, k, n)
        _assert_close_to_reference(out[i], ref, scale, k, dtype, f"batch {i}")
