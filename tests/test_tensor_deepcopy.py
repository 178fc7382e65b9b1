"""copy.deepcopy of tensors, Parameters, modules, state dicts and optimizers, against torch:
what is copied, what stays shared within one deepcopy, what is refused, and that a deep-copied
model trains on its own with torch's numbers."""

from __future__ import annotations

import copy

import pytest

import puredl as pd
from oracle import torch  # a stand-in that skips the test using it where torch is not installed
from torch_ref import TORCH_DTYPE, assert_close, to_torch


@pytest.mark.parametrize(
    "dtype", [pd.float32, pd.float64, pd.float16, pd.bfloat16, pd.int8, pd.int64, pd.bool]
)
def test_deepcopy_copies_data_dtype_and_device(dtype):
    a = pd.tensor([1, 0, 1], dtype=dtype)
    b = copy.deepcopy(a)
    assert b is not a and b.dtype is dtype and b.device == a.device and b.tolist() == a.tolist()
    with pd.no_grad():
        b[0] = 0
    assert a.tolist()[0] == (True if dtype is pd.bool else 1)  # the storage is a copy
    assert_close(b, copy.deepcopy(to_torch(a)).index_fill_(0, torch.tensor([0]), 0))
    assert b.dtype is dtype  # a float16 / int8 buffer keeps its tag


def test_deepcopy_keeps_requires_grad_and_copies_grad():
    a = pd.tensor([1.0, 2.0], requires_grad=True)
    (a * a).sum().backward()
    b = copy.deepcopy(a)
    assert b.requires_grad and b.is_leaf and b.grad is not a.grad
    assert b.grad.tolist() == [2.0, 4.0]
    b.grad.zero_()
    assert a.grad.tolist() == [2.0, 4.0]
    ta = torch.tensor([1.0, 2.0], requires_grad=True)
    (ta * ta).sum().backward()
    assert_close(copy.deepcopy(a).grad, copy.deepcopy(ta).grad)


def test_deepcopy_of_a_non_leaf_is_refused_as_torch_refuses_it():
    y = pd.ones(2, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(y)
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(torch.ones(2, requires_grad=True) * 2)
    with pd.no_grad():  # no history: copied like any tensor, as torch
        z = pd.ones(2, requires_grad=True) * 2
    assert copy.deepcopy(z).tolist() == [2.0, 2.0]


def test_views_in_one_deepcopy_share_their_copied_storage():
    base = pd.arange(6, dtype=pd.float32).reshape(2, 3)
    row, t = base[1], base.t()
    base2, row2, t2 = copy.deepcopy([base, row, t])
    tb = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    tb2, trow2, tt2 = copy.deepcopy([tb, tb[1], tb.t()])
    base2[1, 2] = 50.0
    tb2[1, 2] = 50.0
    assert_close(row2, trow2)
    assert_close(t2, tt2)
    assert base.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    row2.add_(1.0)  # and the other way: one version counter, one storage
    tb2[1].add_(1.0)
    assert_close(base2, tb2)
    assert base2._version == row2._version


def test_parameter_stays_parameter_and_same_object_stays_one_copy():
    p = pd.nn.Parameter(pd.ones(2))
    p2, q2 = copy.deepcopy([p, p])
    assert type(p2) is pd.nn.Parameter and p2.requires_grad and p2 is q2 and p2 is not p


def _mlp(lib):
    lib.manual_seed(0)
    return lib.nn.Sequential(lib.nn.Linear(3, 4), lib.nn.Tanh(), lib.nn.Linear(4, 1))


def _same_weights(pd_model, torch_model):
    with torch.no_grad():
        for (_name, tp), p in zip(torch_model.named_parameters(), pd_model.parameters()):
            tp.copy_(torch.tensor(p.tolist(), dtype=TORCH_DTYPE[p.dtype]))


def test_deepcopied_model_trains_independently_and_matches_torch():
    pm, tm = _mlp(pd), _mlp(torch)
    _same_weights(pm, tm)
    best_p, best_t = copy.deepcopy(pm.state_dict()), copy.deepcopy(tm.state_dict())
    pc, tc = copy.deepcopy(pm), copy.deepcopy(tm)
    po, to = pd.optim.SGD(pc.parameters(), lr=0.1), torch.optim.SGD(tc.parameters(), lr=0.1)
    xs = [[0.1, -0.2, 0.3], [1.0, 0.5, -0.5]]
    x, tx = pd.tensor(xs), torch.tensor(xs)
    for _ in range(3):
        po.zero_grad()
        to.zero_grad()
        lp, lt = (pc(x) ** 2).mean(), (tc(tx) ** 2).mean()
        lp.backward()
        lt.backward()
        po.step()
        to.step()
        assert_close(lp, lt)
    for (name, p), (_, tp) in zip(pc.named_parameters(), tc.named_parameters()):
        assert type(p) is pd.nn.Parameter
        assert_close(p, tp, what=name)
    for (name, p), v, tv in zip(pm.named_parameters(), best_p.values(), best_t.values()):
        assert p.tolist() == v.tolist() and p.grad is None, name  # the original did not move
        assert_close(v, tv, what=name)
    pm.load_state_dict(best_p)
    assert_close(pm(x), tm(tx))


def test_deepcopy_of_an_optimizer_copies_its_state():
    w = pd.nn.Parameter(pd.tensor([1.0, -1.0]))
    opt = pd.optim.Adam([w], lr=0.1)
    (w * w).sum().backward()
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    opt.step()
    first = next(iter(saved["state"].values()))
    now = next(iter(opt.state_dict()["state"].values()))
    moments = [k for k, v in first.items() if isinstance(v, pd.Tensor) and v.numel() == 2]
    assert moments and any(first[k].tolist() != now[k].tolist() for k in moments)


def test_deepcopy_of_torch_storage_keeps_views_shared():
    a = pd.from_torch(torch.arange(6.0).reshape(2, 3))
    a2, row2 = copy.deepcopy([a, a[1]])
    with pd.no_grad():
        a2[1, 0] = 50.0
    assert row2.tolist() == [50.0, 4.0, 5.0] and a.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert a2.device == a.device
