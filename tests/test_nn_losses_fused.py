"""The fused NLL / cross-entropy op against torch: random shapes, layouts, targets, weights, ignored
rows, label smoothing and reductions; forward values and gradients, and one node per loss."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import puredl as pd  # noqa: E402
from puredl.nn import functional as F  # noqa: E402
from torch_ref import (  # noqa: E402
    assert_close,
    assert_grads_close,
    backward_both,
    float_dtypes,
    layouts,
    make_pair,
    seeds,
)

IGNORE = -100


def targets(n: int, c: int, seed: int, ignore_share: float):
    rng = random.Random(seed)
    vals = [IGNORE if rng.random() < ignore_share else rng.randrange(c) for _ in range(n)]
    return pd.tensor(vals, dtype=pd.int64), torch.tensor(vals, dtype=torch.int64)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 7),
    c=st.integers(1, 6),
    dtype=float_dtypes,
    layout=layouts,
    weighted=st.booleans(),
    ignore_share=st.sampled_from([0.0, 0.3, 1.0]),
    smoothing=st.sampled_from([0.0, 0.25, 1.0]),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    seed=seeds,
)
def test_cross_entropy_matches_torch(n, c, dtype, layout, weighted, ignore_share, smoothing, reduction, seed):
    x, xt, xl, xtl = make_pair((n, c), dtype, layout, seed)
    y, yt = targets(n, c, seed + 1, ignore_share)
    w = wt = None
    if weighted:
        w, wt, _, _ = make_pair((c,), dtype, "contiguous", seed + 2, 0.1, 2.0, grad=False)
    out = F.cross_entropy(x, y, weight=w, reduction=reduction, label_smoothing=smoothing)
    ref = torch.nn.functional.cross_entropy(xt, yt, weight=wt, reduction=reduction, label_smoothing=smoothing)
    assert_close(out, ref, what=f"{reduction} w={weighted} eps={smoothing}")
    assert out.grad_fn.name == "NLLLoss"  # one fused node, not the dozen ops it replaces
    backward_both(out, ref, seed + 3)
    assert_grads_close([xl], [xtl])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 6),
    c=st.integers(1, 5),
    dtype=float_dtypes,
    weighted=st.booleans(),
    ignore_share=st.sampled_from([0.0, 0.4]),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    seed=seeds,
)
def test_nll_loss_matches_torch(n, c, dtype, weighted, ignore_share, reduction, seed):
    x, xt, _, _ = make_pair((n, c), dtype, "contiguous", seed)
    y, yt = targets(n, c, seed + 1, ignore_share)
    w = wt = None
    if weighted:
        w, wt, _, _ = make_pair((c,), dtype, "contiguous", seed + 2, 0.1, 2.0, grad=False)
    out = F.nll_loss(x, y, weight=w, reduction=reduction)
    ref = torch.nn.functional.nll_loss(xt, yt, weight=wt, reduction=reduction)
    assert_close(out, ref)
    backward_both(out, ref, seed + 3)
    assert_grads_close([x], [xt])


def test_cross_entropy_of_extra_dims_and_one_row_match_torch():
    x, xt, _, _ = make_pair((2, 4, 3, 2), pd.float64, "contiguous", 5)  # (N, C, d1, d2)
    vals = [[[0, 3], [1, IGNORE], [2, 2]], [[3, 0], [1, 1], [IGNORE, 2]]]
    y, yt = pd.tensor(vals), torch.tensor(vals)
    for reduction in ("mean", "sum", "none"):
        xi, xti = x.detach().requires_grad_(), xt.detach().requires_grad_()
        out = F.cross_entropy(xi, y, reduction=reduction, label_smoothing=0.1)
        ref = torch.nn.functional.cross_entropy(xti, yt, reduction=reduction, label_smoothing=0.1)
        assert_close(out, ref, what=reduction)
        backward_both(out, ref, 6)
        assert_grads_close([xi], [xti])
    v, vt, _, _ = make_pair((5,), pd.float32, "contiguous", 7)  # (C,) input, 0-d target
    out = F.cross_entropy(v, pd.tensor(3))
    ref = torch.nn.functional.cross_entropy(vt, torch.tensor(3))
    assert_close(out, ref)
    backward_both(out, ref, 8)
    assert_grads_close([v], [vt])


def test_extreme_logits_stay_finite_like_torch():
    vals = [[1000.0, -1000.0, 0.0], [-1e4, -1e4, -1e4]]
    x, xt = pd.tensor(vals, requires_grad=True), torch.tensor(vals, requires_grad=True)
    out = F.cross_entropy(x, pd.tensor([1, 2]))
    ref = torch.nn.functional.cross_entropy(xt, torch.tensor([1, 2]))
    assert_close(out, ref)
    out.backward()
    ref.backward()
    assert_grads_close([x], [xt])


@pytest.mark.parametrize("bad", [3, -1])
def test_out_of_range_target_names_the_value(bad):
    x = pd.randn(2, 3, requires_grad=True)
    with pytest.raises(IndexError, match=rf"cross_entropy: target {bad} is out of bounds for 3 classes"):
        F.cross_entropy(x, pd.tensor([0, bad]))
    with pytest.raises(IndexError, match=rf"nll_loss: target {bad} is out of bounds for 3 classes"):
        F.nll_loss(x, pd.tensor([bad, 0]))


def test_weight_of_the_wrong_length_is_a_clear_error():
    with pytest.raises(ValueError, match=r"weight has shape \(2,\), expected \(3,\) for 3 classes"):
        F.cross_entropy(pd.randn(2, 3), pd.tensor([0, 1]), weight=pd.tensor([1.0, 2.0]))


@pytest.mark.parametrize("forward_mode,backward_mode", [("pure", "torch"), ("torch", "pure")])
def test_backward_on_the_other_backend_moves_the_mean_divisor(forward_mode, backward_mode):
    from puredl import accel

    x, xt, _, _ = make_pair((4, 3), pd.float64, "contiguous", 11)
    y, yt = targets(4, 3, 12, 0.3)
    w, wt, _, _ = make_pair((3,), pd.float64, "contiguous", 13, 0.1, 2.0, grad=False)
    with accel.using(forward_mode):
        out = F.cross_entropy(x, y, weight=w, label_smoothing=0.2)
    ref = torch.nn.functional.cross_entropy(xt, yt, weight=wt, label_smoothing=0.2)
    with accel.using(backward_mode):
        out.backward()
    ref.backward()
    assert_close(out, ref)
    assert_grads_close([x], [xt])


def test_auto_falls_back_to_pure_when_the_torch_loss_kernel_fails(monkeypatch):
    from puredl import accel
    from puredl.backends import torch as T

    class Broken:
        def __getattr__(self, name):
            if name.startswith("nll_loss"):
                raise RuntimeError(f"simulated failure of aten.{name}")
            return getattr(torch.ops.aten, name)

    monkeypatch.setattr(T, "_aten", Broken())
    monkeypatch.setattr(accel.dispatch, "_fallback_logged", set())
    x, xt, _, _ = make_pair((5, 4), pd.float32, "contiguous", 21)
    y, yt = targets(5, 4, 22, 0.2)
    with accel.using("auto", {"activation": 0}):
        before = accel.get_stats().fallback_count
        out = F.cross_entropy(x, y, label_smoothing=0.1)
        out.backward()
        assert accel.get_stats().fallback_count - before == 2  # the forward and the backward kernel
    ref = torch.nn.functional.cross_entropy(xt, yt, label_smoothing=0.1)
    ref.backward()
    assert_close(out, ref)
    assert_grads_close([x], [xt])
