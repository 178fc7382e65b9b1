"""repr of tensors against torch's: number formats, alignment, wrapping, summarising, suffixes."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import puredl as pd  # noqa: E402
from oracle import torch  # a stand-in that skips the test using it where torch is not installed
from torch_ref import TORCH_DTYPE, seeds, shapes  # noqa: E402


def _same_repr(p: pd.Tensor, t: torch.Tensor) -> None:
    # puredl names its own dtypes (puredl.float64 where torch says torch.float64): one character
    # longer, so a dtype suffix may wrap onto its own line in one and not the other
    def norm(s: str) -> str:
        return s.replace("torch.", "puredl.").replace(",\n       dtype=", ", dtype=")

    assert norm(repr(p)) == norm(repr(t)), f"\n{p!r}\n{t!r}"


def _values(rng: random.Random, n: int, kind: str) -> list:
    if kind == "ints":
        return [float(rng.randint(-200, 200)) for _ in range(n)]
    if kind == "small":
        return [rng.uniform(-1, 1) for _ in range(n)]
    if kind == "wide":  # magnitudes that force scientific notation
        return [rng.choice([-1, 1]) * 10 ** rng.uniform(-6, 9) for _ in range(n)]
    if kind == "special":
        return [rng.choice([0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, 2.0]) for _ in range(n)]
    return [rng.uniform(-50, 50) for _ in range(n)]


@given(
    shape=shapes(max_dims=3, max_side=5),
    dtype=st.sampled_from([pd.float32, pd.float64]),
    kind=st.sampled_from(["ints", "small", "wide", "special", "mid"]),
    seed=seeds,
)
def test_float_repr_matches_torch(shape, dtype, kind, seed):
    vals = _values(random.Random(seed), math.prod(shape), kind)
    _same_repr(
        pd.tensor(vals, dtype=dtype).reshape(shape),
        torch.tensor(vals, dtype=TORCH_DTYPE[dtype]).reshape(shape),
    )


@given(shape=shapes(max_dims=3, max_side=5), dtype=st.sampled_from([pd.int64, pd.bool]), seed=seeds)
def test_int_and_bool_repr_matches_torch(shape, dtype, seed):
    rng = random.Random(seed)
    vals = [rng.randint(-1000, 1000) for _ in range(math.prod(shape))]
    if dtype is pd.bool:
        vals = [v > 0 for v in vals]
    _same_repr(
        pd.tensor(vals, dtype=dtype).reshape(shape),
        torch.tensor(vals, dtype=TORCH_DTYPE[dtype]).reshape(shape),
    )


@pytest.mark.parametrize("shape", [(2000,), (40, 40), (3, 400), (5, 5, 50), (30,), (1001,)])
def test_long_tensors_wrap_and_summarise_like_torch(shape):
    n = math.prod(shape)
    _same_repr(pd.arange(n).reshape(shape), torch.arange(n).reshape(shape))
    _same_repr(pd.arange(n).reshape(shape) / 3.0, torch.arange(n).reshape(shape) / 3.0)


def test_suffixes_match_torch():
    _same_repr(pd.tensor([1.0, 2.0], requires_grad=True), torch.tensor([1.0, 2.0], requires_grad=True))
    _same_repr(pd.zeros(2, 0), torch.zeros(2, 0))
    _same_repr(pd.zeros(0, dtype=pd.int64), torch.zeros(0, dtype=torch.int64))
    _same_repr(pd.zeros(0, 3, dtype=pd.bool), torch.zeros(0, 3, dtype=torch.bool))
    _same_repr(pd.tensor(2.5, dtype=pd.float64), torch.tensor(2.5, dtype=torch.float64))


def test_long_last_lines_put_suffixes_on_a_new_line_like_torch():
    vals = [123456.5, -0.001, 3.25, 7.0, 1.0]  # one full line of scientific numbers
    p = pd.tensor(vals, requires_grad=True)
    t = torch.tensor(vals, requires_grad=True)
    assert repr(p) == repr(t) and "\n       requires_grad=True" in repr(p)
    p64, t64 = pd.tensor(vals[:4], dtype=pd.float64), torch.tensor(vals[:4], dtype=torch.float64)
    assert repr(p64) == repr(t64).replace("torch.", "puredl.") and "\n       dtype=" in repr(p64)


def test_graph_results_name_their_op():
    x = pd.tensor([1.0, 2.0], requires_grad=True)
    assert repr(x * 2) == "tensor([2., 4.], grad_fn=<MulBackward>)"
    assert repr(x.exp().sum()).endswith("grad_fn=<SumBackward>)")
    assert repr(x.log_softmax(0)).endswith("grad_fn=<SoftmaxBackward>)")
    assert "grad_fn" not in repr((x * 2).detach())
