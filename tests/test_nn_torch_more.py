"""Smooth L1 / Huber losses, Unflatten, one_hot and scaled_dot_product_attention against torch."""

from __future__ import annotations

import math
import random

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import puredl as pd  # noqa: E402
import torch_ref as tr  # noqa: E402
from puredl import nn  # noqa: E402
from puredl.nn import functional as F  # noqa: E402

TF = torch.nn.functional


def _pair(shape, dtype, seed, low=-3.0, high=3.0):
    x, t, _, _ = tr.make_pair(shape, dtype, "contiguous", seed, low, high)
    return x, t


@settings(deadline=None)
@given(
    shape=tr.shapes(1, 3, 1, 4),
    dtype=tr.float_dtypes,
    reduction=st.sampled_from(["mean", "sum", "none"]),
    beta=st.sampled_from([0.0, 0.5, 1.0, 2.5]),
    seed=tr.seeds,
)
def test_smooth_l1_loss_matches_torch(shape, dtype, reduction, beta, seed):
    x, xt = _pair(shape, dtype, seed)
    y, yt = _pair(shape, dtype, seed + 1)
    out = F.smooth_l1_loss(x, y, reduction=reduction, beta=beta)
    ref = TF.smooth_l1_loss(xt, yt, reduction=reduction, beta=beta)
    tr.assert_close(out, ref)
    tr.backward_both(out, ref, seed)
    tr.assert_grads_close([x, y], [xt, yt])


@settings(deadline=None)
@given(
    shape=tr.shapes(1, 3, 1, 4),
    dtype=tr.float_dtypes,
    reduction=st.sampled_from(["mean", "sum", "none"]),
    delta=st.sampled_from([0.3, 1.0, 2.0]),
    seed=tr.seeds,
)
def test_huber_loss_matches_torch(shape, dtype, reduction, delta, seed):
    x, xt = _pair(shape, dtype, seed)
    y, yt = _pair(shape, dtype, seed + 1)
    out = F.huber_loss(x, y, reduction=reduction, delta=delta)
    ref = TF.huber_loss(xt, yt, reduction=reduction, delta=delta)
    tr.assert_close(out, ref)
    tr.backward_both(out, ref, seed)
    tr.assert_grads_close([x, y], [xt, yt])


def test_loss_modules_and_bad_arguments_match_torch():
    x, xt = _pair((4, 3), pd.float64, 1)
    y, yt = _pair((4, 3), pd.float64, 2)
    tr.assert_close(nn.SmoothL1Loss(beta=0.5)(x, y), torch.nn.SmoothL1Loss(beta=0.5)(xt, yt))
    tr.assert_close(
        nn.HuberLoss(reduction="sum", delta=2.0)(x, y), torch.nn.HuberLoss(reduction="sum", delta=2.0)(xt, yt)
    )
    tr.assert_close(nn.SmoothL1Loss(reduce=False)(x, y), torch.nn.SmoothL1Loss(reduce=False)(xt, yt))
    with pytest.raises(RuntimeError):
        TF.smooth_l1_loss(xt, yt, beta=-1.0)
    with pytest.raises(RuntimeError, match="negative values for beta"):
        F.smooth_l1_loss(x, y, beta=-1.0)
    with pytest.raises(RuntimeError):
        TF.huber_loss(xt, yt, delta=0.0)
    with pytest.raises(RuntimeError, match="non-positive values for delta"):
        F.huber_loss(x, y, delta=0.0)


@pytest.mark.parametrize(
    "dim, sizes, shape", [(1, (2, 5), (3, 10)), (-1, (2, -1), (3, 4, 6)), (0, (1, 3), (3,))]
)
def test_unflatten_matches_torch(dim, sizes, shape):
    x, xt = _pair(shape, pd.float64, 3)
    out, ref = nn.Unflatten(dim, sizes)(x), torch.nn.Unflatten(dim, sizes)(xt)
    tr.assert_close(out, ref)
    tr.backward_both(out, ref, 4)
    tr.assert_grads_close([x], [xt])
    assert repr(nn.Unflatten(dim, sizes)) == repr(torch.nn.Unflatten(dim, sizes))
    with pytest.raises(RuntimeError):
        torch.nn.Unflatten(dim, (7, 7))(xt)
    with pytest.raises(RuntimeError, match="don't multiply up"):
        nn.Unflatten(dim, (7, 7))(x)


@st.composite
def attention_case(draw):
    lead = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    length, source = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    e, ev = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return lead, length, source, e, ev


@settings(deadline=None)
@given(
    case=attention_case(),
    dtype=tr.float_dtypes,
    mask=st.sampled_from(["none", "causal", "bool", "float"]),
    scale=st.sampled_from([None, 0.3]),
    seed=tr.seeds,
)
def test_scaled_dot_product_attention_matches_torch(case, dtype, mask, scale, seed):
    lead, length, source, e, ev = case
    q, qt = _pair(lead + (length, e), dtype, seed)
    k, kt = _pair(lead + (source, e), dtype, seed + 1)
    v, vt = _pair(lead + (source, ev), dtype, seed + 2)
    kwargs, tkwargs = {}, {}
    if mask == "causal":
        kwargs = tkwargs = {"is_causal": True}
    elif mask == "bool":
        rng = random.Random(seed)
        rows = [[rng.random() < 0.6 for _ in range(source)] for _ in range(length)]
        for r in rows:
            r[0] = True  # a fully masked row is NaN in one library and 0 in some torch kernels
        kwargs, tkwargs = {"attn_mask": pd.tensor(rows)}, {"attn_mask": torch.tensor(rows)}
    elif mask == "float":
        m, mt = _pair((length, source), dtype, seed + 3, -1.0, 1.0)
        kwargs, tkwargs = {"attn_mask": m.detach()}, {"attn_mask": mt.detach()}
    out = F.scaled_dot_product_attention(q, k, v, scale=scale, **kwargs)
    ref = TF.scaled_dot_product_attention(qt, kt, vt, scale=scale, **tkwargs)
    tr.assert_close(out, ref)
    tr.backward_both(out, ref, seed)
    tr.assert_grads_close([q, k, v], [qt, kt, vt])


def test_attention_options_and_errors_match_torch():
    q, qt = _pair((2, 4, 3, 5), pd.float64, 1)
    k, kt = _pair((2, 2, 3, 5), pd.float64, 2)
    v, vt = _pair((2, 2, 3, 5), pd.float64, 3)
    out = F.scaled_dot_product_attention(q, k, v, enable_gqa=True, is_causal=True)
    ref = TF.scaled_dot_product_attention(qt, kt, vt, enable_gqa=True, is_causal=True)
    tr.assert_close(out, ref)
    m, mt = pd.ones(3, 3, dtype=pd.bool), torch.ones(3, 3, dtype=torch.bool)
    with pytest.raises(RuntimeError):
        TF.scaled_dot_product_attention(qt[0], qt[0], qt[0], attn_mask=mt, is_causal=True)
    with pytest.raises(RuntimeError, match="attn_mask should not be set"):
        F.scaled_dot_product_attention(q[0], q[0], q[0], attn_mask=m, is_causal=True)
    # dropout_p=1 drops every weight in both libraries
    zero = F.scaled_dot_product_attention(q, q, q, dropout_p=1.0)
    assert (
        zero.abs().sum().item()
        == TF.scaled_dot_product_attention(qt, qt, qt, dropout_p=1.0).abs().sum().item()
        == 0
    )


def test_attention_dropout_keeps_the_expectation():
    pd.manual_seed(0)
    q = pd.zeros(1, 1, 8)  # uniform attention weights 1/S
    k = pd.zeros(1, 400, 8)
    v = pd.ones(1, 400, 1)
    outs = [F.scaled_dot_product_attention(q, k, v, dropout_p=0.3).item() for _ in range(20)]
    mean = sum(outs) / len(outs)
    assert abs(mean - 1.0) < 0.05, mean  # inverted dropout: E[out] equals the no-dropout value
    assert any(abs(o - 1.0) > 1e-6 for o in outs)
    assert math.isclose(F.scaled_dot_product_attention(q, k, v).item(), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("shape, classes", [((5,), -1), ((2, 3), 6), ((0,), 4), ((), 3)])
def test_one_hot_matches_torch(shape, classes):
    import math as _m

    rng = random.Random(11)
    n = _m.prod(shape)
    top = classes if classes > 0 else 4
    vals = [rng.randrange(top) for _ in range(n)]
    mine = F.one_hot(pd.tensor(vals, dtype=pd.int64).reshape(shape), classes)
    theirs = TF.one_hot(torch.tensor(vals, dtype=torch.int64).reshape(shape), classes)
    assert (
        mine.dtype is pd.int64
        and mine.tolist() == theirs.tolist()
        and tuple(mine.shape) == tuple(theirs.shape)
    )


def test_one_hot_errors_match_torch():
    for bad in (torch.tensor([1.0]), torch.tensor([-1]), torch.tensor([5])):
        with pytest.raises(RuntimeError):
            TF.one_hot(bad, 3)
        with pytest.raises(RuntimeError):
            F.one_hot(tr.from_torch(bad), 3)
