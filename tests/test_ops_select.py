"""tril, triu, masked_fill(_), topk, multinomial, mm, matmul keywords and mixed advanced indexing,
against torch (values and gradients; runs under PUREDL_ACCEL=pure|torch|auto like the other op suites)."""

from __future__ import annotations

import math
import random

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import puredl as pd  # noqa: E402
from torch_ref import (  # noqa: E402
    assert_close,
    assert_grads_close,
    backward_both,
    float_dtypes,
    layouts,
    make_pair,
    seeds,
    shapes,
    to_torch,
)


@given(shape=shapes(2, 4), dtype=float_dtypes, layout=layouts, seed=seeds, diagonal=st.integers(-4, 4))
def test_tril_triu_match_torch(shape, dtype, layout, seed, diagonal):
    for name in ("tril", "triu"):
        pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
        out_p, out_t = getattr(pd, name)(pa, diagonal=diagonal), getattr(torch, name)(ta, diagonal=diagonal)
        assert_close(out_p, out_t, what=f"{name} {shape} diagonal={diagonal}")
        assert_close(getattr(pa, name)(diagonal), getattr(ta, name)(diagonal))
        backward_both(out_p, out_t, seed)
        assert_grads_close([pl], [tl])


def test_tril_keeps_dtype_and_refuses_1d():
    assert_close(pd.tril(pd.ones(3, 3, dtype=pd.int64)), torch.tril(torch.ones(3, 3, dtype=torch.int64)))
    assert_close(pd.triu(pd.ones(2, 3, dtype=pd.bool)), torch.triu(torch.ones(2, 3, dtype=torch.bool)))
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        pd.tril(pd.ones(3))


@given(shape=shapes(1, 4), dtype=float_dtypes, layout=layouts, seed=seeds, data=st.data())
def test_masked_fill_matches_torch(shape, dtype, layout, seed, data):
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    mask_shape = shape[data.draw(st.integers(0, len(shape))) :]
    mask_shape = tuple(1 if data.draw(st.booleans()) else n for n in mask_shape)
    r = random.Random(seed)
    bits = [r.random() < 0.5 for _ in range(math.prod(mask_shape))]
    pm, tm = (
        pd.tensor(bits, dtype=pd.bool).reshape(mask_shape),
        torch.tensor(bits, dtype=torch.bool).reshape(mask_shape),
    )
    value = data.draw(st.sampled_from([0.0, -1.5, float("-inf"), 3]))
    out_p, out_t = pa.masked_fill(pm, value), ta.masked_fill(tm, value)
    assert_close(out_p, out_t, what=f"masked_fill {shape} mask {mask_shape}")
    assert_close(pd.masked_fill(pa, pm, value), torch.masked_fill(ta, tm, value))
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


def test_masked_fill_in_place_bumps_version_and_keeps_gradients():
    a, ta = pd.tensor([1.0, 2.0, 3.0], requires_grad=True), torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b, tb = a * 2.0, ta * 2.0
    out = b.masked_fill_(b > 3.0, 0.5)
    tb.masked_fill_(tb > 3.0, 0.5)
    assert out is b
    assert_close(b, tb)
    (b * b).sum().backward()
    (tb * tb).sum().backward()
    assert_close(a.grad, ta.grad)
    with pytest.raises(RuntimeError, match="boolean"):
        pd.ones(2).masked_fill(pd.tensor([1, 0]), 0.0)
    with pytest.raises(RuntimeError, match="leaf"):
        pd.ones(2, requires_grad=True).masked_fill_(pd.tensor([True, False]), 0.0)


@given(shape=shapes(1, 3, min_side=1), dtype=float_dtypes, layout=layouts, seed=seeds, data=st.data())
def test_topk_matches_torch(shape, dtype, layout, seed, data):
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)  # ties only between expanded copies
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    k = data.draw(st.integers(0, shape[dim]))
    largest = data.draw(st.booleans())
    (vp, ip), (vt, it) = pd.topk(pa, k, dim, largest), torch.topk(ta, k, dim, largest)
    assert_close(vp, vt, what=f"topk {shape} k={k} dim={dim} largest={largest}")
    # among ties torch picks any; the indices must point at the values (an expanded tie shares one leaf)
    assert_close(
        pd.tensor(torch.gather(ta, dim, to_torch(ip)).reshape(-1).tolist(), dtype=dtype).reshape(vp.shape),
        vt,
    )
    if layout != "expanded":
        assert_close(ip, it)
    assert_close(pa.topk(k, dim=dim, largest=largest).values, vt)
    backward_both(vp, vt, seed)
    assert_grads_close([pl], [tl])


def test_topk_refuses_too_large_k():
    with pytest.raises(RuntimeError, match="out of range"):
        pd.topk(pd.ones(3), 4)


def test_multinomial_is_reproducible_and_follows_the_weights():
    probs = pd.tensor([[0.0, 0.25, 0.75], [1.0, 0.0, 0.0]])
    g1, g2 = pd.Generator().manual_seed(3), pd.Generator().manual_seed(3)
    a = pd.multinomial(probs, 200, replacement=True, generator=g1)
    b = probs.multinomial(200, replacement=True, generator=g2)
    assert a.dtype is pd.int64 and a.shape == (2, 200) and a.tolist() == b.tolist()
    first = a[0].tolist()
    assert 0 not in first and 100 < first.count(2) < 190  # 150 expected; never a zero-weight category
    assert set(a[1].tolist()) == {0}
    pd.manual_seed(5)
    c = pd.multinomial(pd.tensor([1.0, 2.0, 3.0, 4.0]), 4)  # without replacement: a permutation
    assert sorted(c.tolist()) == [0, 1, 2, 3] and c.shape == (4,)
    pd.manual_seed(5)
    assert pd.multinomial(pd.tensor([1.0, 2.0, 3.0, 4.0]), 4).tolist() == c.tolist()
    # fewer positive weights than samples: torch fills with the zero-weight categories in order
    assert pd.multinomial(pd.tensor([0.0, 0.0, 1.0]), 3).tolist() == [2, 0, 1]
    assert torch.multinomial(torch.tensor([0.0, 0.0, 1.0]), 3).tolist() == [2, 0, 1]


def test_multinomial_refuses_what_torch_refuses():
    for args, match in [
        ((pd.tensor([0.5, 0.5]), 3), "without replacement"),
        ((pd.tensor([-1.0, 2.0]), 1), "element < 0"),
        ((pd.ones(2, 2, 2), 1), "1 or 2 dim"),
    ]:
        with pytest.raises(RuntimeError, match=match):
            pd.multinomial(*args)
        with pytest.raises(RuntimeError):
            torch.multinomial(torch.tensor(args[0].tolist()), args[1])


@given(n=st.integers(1, 4), k=st.integers(1, 4), m=st.integers(1, 4), dtype=float_dtypes, seed=seeds)
def test_mm_and_matmul_keywords_match_torch(n, k, m, dtype, seed):
    pa, ta, pl, tl = make_pair((n, k), dtype, "contiguous", seed)
    pb, tb, plb, tlb = make_pair((k, m), dtype, "transposed", seed + 1)
    out_p, out_t = pa.mm(pb), ta.mm(tb)
    assert_close(out_p, out_t)
    assert_close(pd.mm(pa, pb), torch.mm(ta, tb))
    assert_close(pd.matmul(input=pa, other=pb), torch.matmul(input=ta, other=tb))
    assert_close(pa.matmul(other=pb), ta.matmul(other=tb))
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl, plb], [tl, tlb])
    with pytest.raises(RuntimeError, match="matrix"):
        pd.mm(pa.reshape(-1), pb)


KEYS = [
    (slice(None), [-1]),
    (range(2), [0, 2]),
    (slice(None), [0, 2], slice(1, 3)),
    (0, slice(None), [1, 3]),
    (slice(None), slice(None), [[0], [3]], [1, 2, 4]),
    (Ellipsis, [1, -1]),
    (slice(None), [0, 1], 2, [1, 3]),
    (1, [0, 2], slice(None), 0),
    ([1, 0], slice(None), [3, 3]),
]


@pytest.mark.parametrize("key", KEYS, ids=[str(k) for k in KEYS])
@given(dtype=float_dtypes, layout=layouts, seed=seeds)
def test_mixed_advanced_indexing_matches_torch(key, dtype, layout, seed):
    pa, ta, pl, tl = make_pair((2, 3, 4, 5), dtype, layout, seed)
    tkey = tuple(list(k) if isinstance(k, range) else k for k in key)
    out_p, out_t = pa[key], ta[tkey]
    assert_close(out_p, out_t, what=f"x[{key}]")
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


def test_index_with_range_and_tensor_like_makemore():
    probs, tprobs = (
        pd.tensor([[0.1, 0.9], [0.6, 0.4], [0.3, 0.7]]),
        torch.tensor([[0.1, 0.9], [0.6, 0.4], [0.3, 0.7]]),
    )
    ys = [1, 0, 1]
    assert_close(probs[pd.arange(3), pd.tensor(ys)], tprobs[torch.arange(3), torch.tensor(ys)])
    assert_close(probs[range(3), ys], tprobs[list(range(3)), ys])


def test_sum_and_mean_accept_numpys_keepdims_as_torch_does():
    a, ta = pd.tensor([[1.0, 2.0], [3.0, 5.0]]), torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    assert_close(a.sum(1, keepdims=True), ta.sum(1, keepdims=True))
    assert_close(a.mean(0, keepdims=True), ta.mean(0, keepdims=True))


def test_nelement_is_numel():
    assert pd.ones(2, 3).nelement() == torch.ones(2, 3).nelement() == 6


def test_topk_over_an_empty_dimension_matches_torch():
    # the pure kernel once stepped through rows of length 0 (range step 0)
    (vp, ip), (vt, it) = pd.topk(pd.ones(2, 0), 0, dim=1), torch.topk(torch.ones(2, 0), 0, dim=1)
    assert_close(vp, vt)
    assert_close(ip, it)
