"""Optimizer steps on torch storage: the same bits as torch.optim, one fused kernel per parameter.

Parameters live on torch (``from_torch``) or on pure storage with gradients on torch (how a
model built in PURE mode trains in TORCH mode); both are updated in place by torch's own rule,
one ``sgd_update``/``adam_update`` kernel per parameter that accel counts and logs.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import puredl as pd  # noqa: E402
from puredl import accel, optim  # noqa: E402

SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
    dict(lr=0.1, momentum=0.5, maximize=True),
]
ADAM_CASES = [
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.02, weight_decay=0.05, betas=(0.8, 0.95))),
    ("AdamW", dict(lr=0.01, amsgrad=True, maximize=True)),
]


def _run(make_pd, make_torch, storage: str, steps: int = 8):
    """Step both optimizers on the same start values and gradients; return their parameters."""
    gen = torch.Generator().manual_seed(0)
    starts = [torch.randn(5, 3, generator=gen), torch.randn(3, generator=gen)]
    grads = [[torch.randn(t.shape, generator=gen) for t in starts] for _ in range(steps)]
    t_params = [s.clone().requires_grad_() for s in starts]
    if storage == "torch":
        p_params = [pd.from_torch(s.clone()).requires_grad_() for s in starts]
    else:  # pure storage (built in PURE mode), gradients arriving from torch
        p_params = [pd.tensor(s.tolist()).requires_grad_() for s in starts]
    opt_t, opt_p = make_torch(t_params), make_pd(p_params)
    calls = []
    accel.reset_stats()
    for gs in grads:
        for tp, pp, g in zip(t_params, p_params, gs):
            tp.grad = g.clone()
            pp.grad = pd.from_torch(g.clone())
        opt_t.step()
        before = accel.get_stats().total()
        opt_p.step()
        calls.append(accel.get_stats().total() - before)
    # one fused kernel per parameter, no puredl op beside it, on torch
    assert calls == [len(p_params)] * steps, "the update ran puredl ops instead of torch's in-place update"
    (op,) = [name for name in accel.get_stats().per_op if name in ("sgd", "adam", "adamw")]
    assert accel.get_stats().op(op) == (0, steps * len(p_params), 0)
    return p_params, t_params


def _assert_same_bits(p_params, t_params):
    for pp, tp in zip(p_params, t_params):
        assert torch.equal(pp.to_torch(), tp.detach()), (pp.to_torch() - tp.detach()).abs().max()


@pytest.mark.parametrize("storage", ["torch", "pure"])
@pytest.mark.parametrize("kwargs", SGD_CASES)
def test_sgd_on_torch_storage_is_torch_bit_for_bit(kwargs, storage):
    p, t = _run(
        lambda ps: optim.SGD(ps, **kwargs),
        lambda ts: torch.optim.SGD(ts, foreach=False, **kwargs),
        storage,
    )
    _assert_same_bits(p, t)


@pytest.mark.parametrize("storage", ["torch", "pure"])
@pytest.mark.parametrize("name,kwargs", ADAM_CASES)
def test_adam_on_torch_storage_is_torch_bit_for_bit(name, kwargs, storage):
    p, t = _run(
        lambda ps: getattr(optim, name)(ps, **kwargs),
        lambda ts: getattr(torch.optim, name)(ts, foreach=False, **kwargs),
        storage,
    )
    _assert_same_bits(p, t)


def test_pure_storage_is_updated_in_place_through_the_view():
    w = pd.tensor([1.0, 2.0], requires_grad=True)
    buf = w._impl.buf
    w.grad = pd.from_torch(torch.tensor([1.0, -1.0]))
    optim.SGD([w], lr=0.5).step()
    assert w._impl.buf is buf and w.tolist() == [0.5, 2.5]


def test_fused_false_and_other_backends_take_the_tensor_path():
    w = pd.from_torch(torch.tensor([1.0, 2.0])).requires_grad_()
    w.grad = pd.from_torch(torch.tensor([1.0, 1.0]))
    before = accel.get_stats().total()
    optim.SGD([w], lr=0.1, momentum=0.9, fused=False).step()
    assert accel.get_stats().total() > before  # tensor ops, as asked
    assert w.tolist() == pytest.approx([0.9, 1.9])
    pure_only = pd.tensor([1.0], requires_grad=True)
    pure_only.grad = pd.tensor([2.0])
    accel.reset_stats()
    optim.SGD([pure_only], lr=0.1).step()
    assert accel.get_stats().op("sgd") == (1, 0, 0)  # pure storage: the pure kernel
    assert pure_only.tolist() == pytest.approx([0.8])


def _sgd_twice(param_on: str, buf_dtype, fused):
    """Two SGD-momentum steps of a parameter whose momentum buffer is float16/bfloat16 pure storage
    (a loaded state), the gradients arriving from torch; returns the parameter and the buffer."""
    start = [1.0, -2.0, 0.5]
    tdtype = torch.float16 if buf_dtype is pd.float16 else torch.bfloat16
    w = pd.from_torch(torch.tensor(start, dtype=tdtype)) if param_on == "torch" else pd.tensor(start)
    w.requires_grad_()
    opt = optim.SGD([w], lr=0.1, momentum=0.9, fused=fused)
    opt.state[w] = {"momentum_buffer": pd.tensor([0.25, 0.5, -1.0], dtype=buf_dtype)}
    for g in ([1.0, 0.5, -0.25], [0.5, -1.0, 2.0]):
        w.grad = pd.from_torch(torch.tensor(g, dtype=torch.float32 if w.dtype is pd.float32 else tdtype))
        opt.step()
    return w.tolist(), opt.state[w]["momentum_buffer"].tolist()


@pytest.mark.parametrize("param_on", ["torch", "pure"])
@pytest.mark.parametrize("buf_dtype", [pd.float16, pd.bfloat16])
def test_a_narrow_pure_buffer_torch_cannot_view_is_not_updated_in_a_copy(param_on, buf_dtype):
    """torch can write no view of float16/bfloat16 pure storage: the fused update must not write a
    copy of the buffer (the momentum would be lost); the tensor path's numbers are the reference."""
    fused = _sgd_twice(param_on, buf_dtype, fused=None)
    tensor_ops = _sgd_twice(param_on, buf_dtype, fused=False)
    assert fused == tensor_ops
    assert fused[1] != [0.25, 0.5, -1.0]  # the buffer did move


def test_a_narrow_pure_parameter_with_torch_gradients_follows_torch():
    """bfloat16 pure parameters (and their momentum) round as torch's bfloat16 update does."""
    start, grads = [1.0, -2.0, 0.5], ([1.0, 0.5, -0.25], [0.5, -1.0, 2.0], [0.125, 0.25, 1.0])
    w = pd.tensor(start, dtype=pd.bfloat16, requires_grad=True)
    tw = torch.tensor(start, dtype=torch.bfloat16, requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    topt = torch.optim.SGD([tw], lr=0.1, momentum=0.9, foreach=False)
    for g in grads:
        w.grad = pd.from_torch(torch.tensor(g, dtype=torch.bfloat16))
        tw.grad = torch.tensor(g, dtype=torch.bfloat16)
        opt.step()
        topt.step()
    assert w._be is not None and w.dtype is pd.bfloat16
    assert w.tolist() == pytest.approx(tw.detach().float().tolist(), rel=2**-7)


def test_a_declined_fused_update_is_not_counted():
    """(A strided parameter has no flat buffer: the pure kernel declined, yet the statistics
    counted one sgd call on top of the tensor ops that did the update.)"""
    w = pd.tensor([[1.0, 2.0], [3.0, 4.0]]).t().detach().requires_grad_()
    w.grad = pd.ones(2, 2)
    with accel.using("pure"):
        accel.reset_stats()
        optim.SGD([w], lr=0.5).step()
        stats = accel.get_stats()
    assert "sgd" not in stats.per_op and stats.total() == sum(sum(row) for row in stats.per_op.values())
    assert stats.total() > 0  # the tensor ops that ran instead
    assert w.tolist() == [[0.5, 2.5], [1.5, 3.5]]
