"""puredl.autograd.Function, the public custom-function API, against torch.autograd.Function."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import puredl as pd  # noqa: E402
import torch_ref as tr  # noqa: E402


def _both(make):
    """The same Function class body built on each library."""
    return make(pd), make(torch)


def _exp_fn(lib):
    class MyExp(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale=1.0):
            y = (x * scale).exp()
            ctx.save_for_backward(y)
            ctx.scale = scale
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * y * ctx.scale, None

    return MyExp


def _legendre_fn(lib):  # the official tutorial's shape: P3(x) = (5x^3 - 3x) / 2
    class LegendrePolynomial3(lib.autograd.Function):
        @staticmethod
        def forward(ctx, input):  # noqa: A002
            ctx.save_for_backward(input)
            return 0.5 * (5 * input**3 - 3 * input)

        @staticmethod
        def backward(ctx, grad_output):
            (input,) = ctx.saved_tensors  # noqa: A001
            return grad_output * 1.5 * (5 * input**2 - 1)

    return LegendrePolynomial3


@pytest.mark.parametrize("make, extra", [(_exp_fn, (0.5,)), (_legendre_fn, ())])
def test_forward_and_backward_match_torch(make, extra):
    mine, theirs = _both(make)
    x, xt, _, _ = tr.make_pair((3, 4), pd.float64, "contiguous", 1, -1.0, 1.0)
    out, ref = mine.apply(x, *extra), theirs.apply(xt, *extra)
    tr.assert_close(out, ref)
    assert out.requires_grad and out.grad_fn is not None
    tr.backward_both(out, ref, 2)
    tr.assert_grads_close([x], [xt])


def test_composes_with_ordinary_ops_and_a_training_step():
    mine, theirs = _both(_legendre_fn)
    a, at, _, _ = tr.make_pair((5,), pd.float64, "contiguous", 3)
    w, wt, _, _ = tr.make_pair((5,), pd.float64, "contiguous", 4)
    loss = (mine.apply(a * w) + w).pow(2).sum()
    ref = (theirs.apply(at * wt) + wt).pow(2).sum()
    loss.backward()
    ref.backward()
    tr.assert_close(loss, ref)
    tr.assert_grads_close([a, w], [at, wt])


def _needs_fn(lib, seen):
    class Mul(lib.autograd.Function):
        @staticmethod
        def forward(ctx, a, b, k):
            seen.append(ctx.needs_input_grad)
            ctx.save_for_backward(a, b)
            return a * b * k

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return (
                g * b * 2 if ctx.needs_input_grad[0] else None,
                g * a * 2 if ctx.needs_input_grad[1] else None,
                None,
            )

    return Mul


def test_needs_input_grad_matches_torch():
    seen_p, seen_t = [], []
    mine, theirs = _needs_fn(pd, seen_p), _needs_fn(torch, seen_t)
    a, at = pd.tensor([1.0, 2.0], requires_grad=True), torch.tensor([1.0, 2.0], requires_grad=True)
    b, bt = pd.tensor([3.0, 4.0]), torch.tensor([3.0, 4.0])
    mine.apply(a, b, 2).sum().backward()
    theirs.apply(at, bt, 2).sum().backward()
    assert seen_p == seen_t == [(True, False, False)]
    assert a.grad.tolist() == at.grad.tolist()


def _two_outputs(lib):
    class SinCos(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin(), x.cos()

        @staticmethod
        def backward(ctx, gs, gc):
            (x,) = ctx.saved_tensors
            return gs * x.cos() - gc * x.sin()

    return SinCos


def test_several_outputs_each_carry_their_gradient():
    mine, theirs = _both(_two_outputs)
    x, xt, _, _ = tr.make_pair((2, 3), pd.float64, "contiguous", 5)
    s, c = mine.apply(x)
    st, ct = theirs.apply(xt)
    tr.assert_close(s, st)
    tr.assert_close(c, ct)
    (s * 3 + c * c).sum().backward()
    (st * 3 + ct * ct).sum().backward()
    tr.assert_grads_close([x], [xt])
    x2, xt2, _, _ = tr.make_pair((2, 3), pd.float64, "contiguous", 6)
    mine.apply(x2)[1].sum().backward()  # only one output used: the other's gradient is zeros
    theirs.apply(xt2)[1].sum().backward()
    tr.assert_grads_close([x2], [xt2])


def test_no_graph_without_grad_and_under_no_grad():
    mine = _exp_fn(pd)
    assert not mine.apply(pd.ones(2)).requires_grad
    with pd.no_grad():
        assert not mine.apply(pd.ones(2, requires_grad=True)).requires_grad


def test_wrong_number_of_gradients_raises_like_torch():
    def make(lib):
        class Bad(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x, y):
                return x * y

            @staticmethod
            def backward(ctx, g):
                return (g,)

        return Bad

    mine, theirs = _both(make)
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        theirs.apply(torch.ones(2, requires_grad=True), torch.ones(2)).sum().backward()
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        mine.apply(pd.ones(2, requires_grad=True), pd.ones(2)).sum().backward()


def test_identity_forward_does_not_turn_the_input_into_a_non_leaf():
    class Same(pd.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = pd.ones(2, requires_grad=True)
    y = Same.apply(x)
    assert x.is_leaf and not y.is_leaf
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]


def test_setup_context_style_matches_torch():
    def make(lib):
        class Square(lib.autograd.Function):
            @staticmethod
            def forward(x):
                return x * x

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(inputs[0])

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return 2 * x * g

        return Square

    mine, theirs = _both(make)
    x, xt = pd.tensor([1.5, -2.0], requires_grad=True), torch.tensor([1.5, -2.0], requires_grad=True)
    mine.apply(x).sum().backward()
    theirs.apply(xt).sum().backward()
    assert x.grad.tolist() == xt.grad.tolist()


def test_saving_a_non_tensor_is_refused_like_torch():
    def make(lib):
        class Saver(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x, 3)
                return x

            @staticmethod
            def backward(ctx, g):
                return g

        return Saver

    mine, theirs = _both(make)
    with pytest.raises(TypeError):
        theirs.apply(torch.ones(1, requires_grad=True))
    with pytest.raises(TypeError, match="save_for_backward can only save"):
        mine.apply(pd.ones(1, requires_grad=True))


def test_gradcheck_passes_on_a_custom_function():
    mine = _legendre_fn(pd)
    x = pd.tensor([0.3, -0.7, 1.1], dtype=pd.float64, requires_grad=True)
    assert pd.autograd.gradcheck(mine.apply, [x])


def test_non_differentiable_outputs_match_torch():
    def make(lib):
        class ArgmaxAndMax(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                idx = x.argmax(dim=-1)
                ctx.mark_non_differentiable(idx)
                ctx.save_for_backward(x, idx)
                return x.max(dim=-1).values, idx

            @staticmethod
            def backward(ctx, g, g_idx):
                x, idx = ctx.saved_tensors
                onehot = lib.nn.functional.one_hot(idx, x.shape[-1]).to(x.dtype)
                return onehot * g.unsqueeze(-1)

        class OnlyIndex(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.argmax(dim=-1)

            @staticmethod
            def backward(ctx, g):
                return None

        return ArgmaxAndMax, OnlyIndex

    (mine, mine_idx), (theirs, theirs_idx) = _both(make)
    x, xt, _, _ = tr.make_pair((3, 4), pd.float64, "contiguous", 9)
    (v, i), (vt, it) = mine.apply(x), theirs.apply(xt)
    assert i.tolist() == it.tolist() and i.requires_grad == it.requires_grad == False  # noqa: E712
    tr.assert_close(v, vt)
    (v * 2).sum().backward()
    (vt * 2).sum().backward()
    tr.assert_grads_close([x], [xt])
    assert mine_idx.apply(x).tolist() == theirs_idx.apply(xt).tolist()
    assert not mine_idx.apply(x).requires_grad and not theirs_idx.apply(xt).requires_grad
