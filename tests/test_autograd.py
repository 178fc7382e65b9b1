"""Autograd against torch: grad state, accumulation, retain_graph, no_grad, deep graphs, no cycles."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

import puredl as pd  # noqa: E402
from oracle import torch  # a stand-in that skips the test using it where torch is not installed
from puredl.autograd import gradcheck  # noqa: E402
from torch_ref import assert_close, assert_grads_close, make_pair, to_torch  # noqa: E402


def test_requires_grad_flows_to_results_and_leaves_are_leaves():
    x = pd.tensor([1.0, 2.0], requires_grad=True)
    c = pd.tensor([3.0, 4.0])
    y = x * c
    assert x.requires_grad and x.is_leaf and x.grad_fn is None
    assert y.requires_grad and not y.is_leaf and y.grad_fn is not None
    assert not (c * 2).requires_grad and (c * 2).grad_fn is None
    assert not (x > 1).requires_grad  # comparisons are not differentiable
    assert not x.argmax().requires_grad


def test_grad_accumulates_across_backward_calls_like_torch():
    x = pd.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
    tx = to_torch(x, True)
    for _ in range(3):
        (x * x).sum().backward()
        (tx * tx).sum().backward()
    assert_grads_close([x], [tx])
    assert_close(x.grad, 6 * to_torch(x))
    x.grad = None
    (x.exp()).sum().backward()
    assert_close(x.grad, to_torch(x).exp())


def test_backward_with_an_explicit_gradient_like_torch():
    pa, ta, pl, tl = make_pair((2, 3), pd.float64, "transposed", 1)
    g = [[1.0, -1.0, 2.0], [0.5, 0.0, 3.0]]
    (pa.sigmoid() * 3).backward(gradient=pd.tensor(g, dtype=pd.float64))
    (ta.sigmoid() * 3).backward(gradient=torch.tensor(g, dtype=torch.float64))
    assert_grads_close([pl], [tl])


def test_each_leaf_owns_a_contiguous_grad():
    x, y = pd.ones(2, 3, requires_grad=True), pd.ones(2, 3, requires_grad=True)
    (x + y).sum().backward()  # the same broadcast upstream gradient reaches both leaves
    assert x.grad.is_contiguous() and x.grad.stride() == (3, 1)
    x.grad.mul_(3.0)  # in place, as optimizers and clip_grad_norm_ do
    assert y.grad.tolist() == [[1.0] * 3] * 2
    seed = pd.tensor([1.0, 2.0])
    z = pd.zeros(2, requires_grad=True)
    z.backward(seed)
    z.grad.zero_()
    assert seed.tolist() == [1.0, 2.0]
    h = z * 1.0
    h.retain_grad()
    (h + 0.0).backward(seed)
    h.grad.zero_()
    assert seed.tolist() == [1.0, 2.0] and z.grad.tolist() == [1.0, 2.0]


def test_backward_argument_errors():
    x = pd.ones(2, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar outputs"):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"gradient shape \(2,\) does not match tensor shape \(2, 2\)"):
        (x * 2).backward(pd.ones(2))
    with pytest.raises(RuntimeError, match="does not require grad"):
        pd.ones(2).sum().backward()


def test_second_backward_needs_retain_graph_like_torch():
    x = pd.tensor([1.0, 2.0, 3.0], requires_grad=True)
    tx = to_torch(x, True)
    y, ty = (x.exp() * x).sum(), (tx.exp() * tx).sum()
    y.backward(retain_graph=True)
    ty.backward(retain_graph=True)
    y.backward()  # the retained graph runs again and accumulates
    ty.backward()
    assert_grads_close([x], [tx])
    with pytest.raises(RuntimeError, match="backward through the graph a second time.*retain_graph=True"):
        y.backward()
    with pytest.raises(RuntimeError):
        ty.backward()


def test_backward_through_a_leaf_itself_and_through_casts():
    x = pd.tensor([1.0, 2.0], requires_grad=True)
    x.backward(pd.tensor([3.0, 4.0]))
    assert x.grad.tolist() == [3.0, 4.0]
    y = pd.tensor([0.5, 1.5], requires_grad=True)
    ty = to_torch(y, True)
    (y.double() ** 2).sum().backward()
    (ty.double() ** 2).sum().backward()
    assert_grads_close([y], [ty])
    assert y.grad.dtype is pd.float32


def test_detach_shares_storage_and_stops_gradients():
    x = pd.tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    with pd.no_grad():
        d[0] = 10.0  # same storage, as in torch
    assert x.tolist() == [10.0, 2.0]
    y = x * x.detach()
    y.sum().backward()
    assert x.grad.tolist() == [10.0, 2.0]  # only the non-detached factor contributes


def test_requires_grad_underscore():
    x = pd.tensor([1.0, 2.0])
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad_(False)
    assert not x.requires_grad
    with pytest.raises(RuntimeError, match="floating point"):
        pd.tensor([1, 2]).requires_grad_()
    y = pd.tensor([1.0], requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)


def test_retain_grad_keeps_an_intermediate_gradient():
    x = pd.tensor([1.0, 2.0], requires_grad=True)
    tx = to_torch(x, True)
    h, th = x * 3, tx * 3
    h.retain_grad()
    th.retain_grad()
    (h * h).sum().backward()
    (th * th).sum().backward()
    assert_close(h.grad, th.grad)


def test_no_grad_and_enable_grad_as_context_managers():
    x = pd.tensor([1.0], requires_grad=True)
    assert pd.is_grad_enabled()
    with pd.no_grad():
        assert not pd.is_grad_enabled()
        y = x * 2
        with pd.enable_grad():
            z = x * 2
        w = x * 2
    assert pd.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None and not w.requires_grad
    assert z.requires_grad and z.grad_fn is not None
    with pd.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    with pytest.raises(ZeroDivisionError):
        with pd.no_grad():
            raise ZeroDivisionError
    assert pd.is_grad_enabled()  # restored after an exception


def test_no_grad_and_enable_grad_as_decorators():
    x = pd.tensor([1.0], requires_grad=True)

    @pd.no_grad()
    def frozen(t):
        """Doubles t."""
        return t * 2

    @pd.enable_grad()
    def tracked(t):
        return t * 2

    assert not frozen(x).requires_grad
    assert frozen.__name__ == "frozen" and frozen.__doc__ == "Doubles t."
    with pd.no_grad():
        assert tracked(x).requires_grad
        assert not (x * 2).requires_grad
    assert pd.is_grad_enabled()


def test_a_chain_of_10000_ops_backpropagates_without_recursion():
    limit = sys.getrecursionlimit()
    x = pd.tensor([1.0, -0.5], dtype=pd.float64, requires_grad=True)
    y = x
    for i in range(10_000):
        y = y * 1.0001 if i % 2 else y + 0.001
    y.sum().backward()
    assert sys.getrecursionlimit() == limit
    expected = 1.0001**5000
    assert all(abs(g - expected) < 1e-9 * expected for g in x.grad.tolist())


def test_the_graph_is_freed_after_backward():
    x = pd.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2  # kept alive only by the graph once the name is gone
    ref = weakref.ref(h)
    loss = (h.exp() * h).sum()
    del h
    gc.collect()
    assert ref() is not None  # the graph holds it for backward
    loss.backward()
    assert ref() is None  # backward dropped it (no gc needed: no cycles)
    kept = x * 2
    ref2 = weakref.ref(kept)
    loss2 = (kept.exp()).sum()
    del kept
    loss2.backward(retain_graph=True)
    assert ref2() is not None  # retained for a second pass
    del loss2
    assert ref2() is None


def _training_step(w1, b1, w2, xs, labels, lr=0.1):
    hidden = (xs @ w1 + b1).relu()
    logits = hidden @ w2
    loss = -logits.log_softmax(-1)[pd.arange(xs.shape[0]), labels].mean()
    loss = loss + 1e-3 * (w1 * w1).sum() + (logits.softmax(-1).max(-1).values * 0).sum()
    loss.backward()
    with pd.no_grad():
        for p in (w1, b1, w2):
            p.sub_(p.grad * lr)
            p.grad = None
    return loss.item()


def test_a_training_step_leaves_no_reference_cycles():
    pd.manual_seed(0)
    w1 = pd.randn(4, 8, requires_grad=True)
    b1 = pd.zeros(8, requires_grad=True)
    w2 = pd.randn(8, 3, requires_grad=True)
    xs, labels = pd.randn(16, 4), pd.randint(0, 3, (16,))
    _training_step(w1, b1, w2, xs, labels)  # warm up lazy imports and caches
    was_enabled = gc.isenabled()
    gc.disable()
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # unreachable objects are kept in gc.garbage for inspection
    try:
        for _ in range(3):
            _training_step(w1, b1, w2, xs, labels)
        gc.collect()
        leaked = [type(o).__module__ + "." + type(o).__qualname__ for o in gc.garbage]
        ours = [name for name in leaked if name.startswith("puredl")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()
    assert ours == [], f"puredl objects in reference cycles: {sorted(set(ours))}"


def test_training_step_gradients_match_torch():
    pd.manual_seed(1)
    params = [
        pd.randn(4, 8, dtype=pd.float64),
        pd.randn(8, dtype=pd.float64),
        pd.randn(8, 3, dtype=pd.float64),
    ]
    params = [p.requires_grad_() for p in params]
    tparams = [to_torch(p, True) for p in params]
    xs, labels = pd.randn(16, 4, dtype=pd.float64), pd.randint(0, 3, (16,))
    txs, tlabels = to_torch(xs), to_torch(labels)

    def loss_of(m, w1, b1, w2, x, y):
        logits = (x @ w1 + b1).tanh() @ w2
        return -logits.log_softmax(-1)[m.arange(x.shape[0]), y].mean()

    loss = loss_of(pd, *params, xs, labels)
    tloss = loss_of(torch, *tparams, txs, tlabels)
    assert_close(loss, tloss)
    loss.backward()
    tloss.backward()
    assert_grads_close(params, tparams)


def test_shared_subexpressions_accumulate_like_torch():
    pa, ta, pl, tl = make_pair((3, 2), pd.float64, "contiguous", 4)
    h, th = pa.tanh(), ta.tanh()
    out_p = (h * h + h.exp() - h.sum(0) * h).mean()
    out_t = (th * th + th.exp() - th.sum(0) * th).mean()
    out_p.backward()
    out_t.backward()
    assert_grads_close([pl], [tl])


GRADCHECK = {
    "tanh": (lambda a: a.tanh(), [(3, 2)]),
    "sigmoid*exp": (lambda a: a.sigmoid() * a.exp(), [(4,)]),
    "matmul": (lambda a, b: a @ b, [(2, 3), (3, 4)]),
    "broadcast div": (lambda a, b: a / (b * b + 1), [(2, 3), (3,)]),
    "pow": (lambda a, b: (a * a + 1) ** b, [(2, 2), (2, 2)]),
    "softmax": (lambda a: a.softmax(1) * a, [(2, 3)]),
    "log_softmax": (lambda a: a.log_softmax(0), [(3, 2)]),
    "var/std": (lambda a: a.var(1) + a.std(0).sum(), [(3, 4)]),
    "max/min": (lambda a: a.max(1).values + a.min(), [(3, 4)]),
    "gelu": (lambda a: a.gelu(), [(5,)]),
    "gather": (lambda a: a[pd.tensor([0, 2, 0])] * a[1], [(3, 2)]),
    "cat/stack": (
        lambda a, b: pd.cat([a, b], 1) * pd.stack([a, b], 0).sum(0).sum(1, keepdim=True),
        [(2, 2), (2, 2)],
    ),
    "where/clamp": (lambda a: pd.where(a > 0, a.clamp(max=0.8), a * a), [(6,)]),
    "views": (lambda a: a.t().reshape(-1)[1::2].unsqueeze(0).expand(3, 3), [(2, 3)]),
}


@pytest.mark.parametrize("name", sorted(GRADCHECK))
def test_gradcheck_passes_on_ops(name):
    fn, shapes = GRADCHECK[name]
    pd.manual_seed(7)
    inputs = [(pd.rand(*s, dtype=pd.float64) * 2 - 1 + 0.05).requires_grad_() for s in shapes]
    assert gradcheck(fn, inputs)


def test_gradcheck_catches_a_wrong_gradient():
    x = pd.tensor([0.5, -1.5, 2.0], dtype=pd.float64, requires_grad=True)
    # x * x.detach() has true derivative 2x, but autograd sees only one factor: x
    with pytest.raises(AssertionError, match="gradcheck: input 0"):
        gradcheck(lambda t: t * t.detach(), [x])
    assert gradcheck(lambda t: t * t.detach(), [x], raise_exception=False) is False
