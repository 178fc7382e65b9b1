"""Optimizers and schedules against PyTorch: same weights and data give the same losses step by step."""

from __future__ import annotations

import math
import random

import pytest

from oracle import HAVE_TORCH, torch  # a stand-in that skips the test using it where torch is not installed

if HAVE_TORCH:
    torch.set_num_threads(1)  # tiny tensors: extra threads only add contention on a busy CPU

import puredl as pd  # noqa: E402
import torch_ref as tr  # noqa: E402
from puredl import nn, optim  # noqa: E402


def mlp_pair(seed: int, sizes=(3, 8, 8, 2), act="tanh"):
    """The same float64 MLP in both libraries (torch's init, copied into puredl)."""
    torch.manual_seed(seed)
    t_layers, p_layers = [], []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        t_layers.append(torch.nn.Linear(a, b, dtype=torch.float64))
        p_layers.append(nn.Linear(a, b, dtype=pd.float64))
        if i < len(sizes) - 2:
            t_layers.append(torch.nn.Tanh() if act == "tanh" else torch.nn.ReLU())
            p_layers.append(nn.Tanh() if act == "tanh" else nn.ReLU())
    tm, pm = torch.nn.Sequential(*t_layers), nn.Sequential(*p_layers)
    pm.load_state_dict({k: tr.from_torch(v.detach()) for k, v in tm.state_dict().items()})
    return pm, tm


def data_pair(seed: int, n=16, d=3, classes=2):
    rng = random.Random(seed)
    x = [[rng.uniform(-2, 2) for _ in range(d)] for _ in range(n)]
    y = [rng.randrange(classes) for _ in range(n)]
    return (
        pd.tensor(x, dtype=pd.float64),
        pd.tensor(y),
        torch.tensor(x, dtype=torch.float64),
        torch.tensor(y),
    )


def run_both(make_opts, steps=20, seed=0, loss="ce", closure_sched=None):
    pm, tm = mlp_pair(seed)
    x, y, xt, yt = data_pair(seed + 1)
    popt, topt = make_opts(pm, tm)
    p_losses, t_losses = [], []
    for _ in range(steps):
        popt.zero_grad()
        lp = nn.CrossEntropyLoss()(pm(x), y)
        lp.backward()
        popt.step()
        topt.zero_grad()
        lt = torch.nn.CrossEntropyLoss()(tm(xt), yt)
        lt.backward()
        topt.step()
        p_losses.append(lp.item())
        t_losses.append(lt.item())
    return p_losses, t_losses, pm, tm


def assert_rel(a: list, b: list, rel=1e-6, what="loss"):
    for i, (u, v) in enumerate(zip(a, b)):
        assert abs(u - v) <= rel * max(abs(v), 1e-12), f"{what} {i}: puredl {u!r} vs torch {v!r}"


def assert_same_weights(pm, tm, rel=1e-6):
    for (k, p), (_, t) in zip(pm.state_dict().items(), tm.state_dict().items()):
        for u, v in zip(p.reshape(-1).tolist(), t.reshape(-1).tolist()):
            assert abs(u - v) <= rel * max(abs(v), 1e-3), f"{k}: {u!r} vs {v!r}"


@pytest.mark.parametrize("fused", [None, False])
def test_sgd_momentum_20_steps_match_torch(fused):
    p_l, t_l, pm, tm = run_both(
        lambda pm, tm: (
            optim.SGD(pm.parameters(), lr=0.1, momentum=0.9, fused=fused),
            torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9),
        )
    )
    assert_rel(p_l, t_l)
    assert_same_weights(pm, tm)
    assert p_l[-1] < p_l[0]  # it trained


@pytest.mark.parametrize("fused", [None, False])
def test_adam_20_steps_match_torch(fused):
    p_l, t_l, pm, tm = run_both(
        lambda pm, tm: (
            optim.Adam(pm.parameters(), lr=0.01, fused=fused),
            torch.optim.Adam(tm.parameters(), lr=0.01),
        )
    )
    assert_rel(p_l, t_l)
    assert_same_weights(pm, tm)
    assert p_l[-1] < p_l[0]


SGD_VARIANTS = [
    dict(lr=0.05),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.8, dampening=0.3),
    dict(lr=0.05, momentum=0.9, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, maximize=True),
]


@pytest.mark.parametrize("kwargs", SGD_VARIANTS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("fused", [None, False])
def test_sgd_variants_match_torch(kwargs, fused):
    p_l, t_l, pm, tm = run_both(
        lambda pm, tm: (
            optim.SGD(pm.parameters(), fused=fused, **kwargs),
            torch.optim.SGD(tm.parameters(), **kwargs),
        ),
        steps=10,
    )
    assert_rel(p_l, t_l)
    assert_same_weights(pm, tm)


ADAM_VARIANTS = [
    ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
    ("Adam", dict(lr=0.02, weight_decay=0.1)),
    ("Adam", dict(lr=0.02, amsgrad=True)),
    ("AdamW", dict(lr=0.02)),
    ("AdamW", dict(lr=0.02, weight_decay=0.3, amsgrad=True)),
]


@pytest.mark.parametrize("name,kwargs", ADAM_VARIANTS, ids=lambda v: str(v))
@pytest.mark.parametrize("fused", [None, False])
def test_adam_variants_match_torch(name, kwargs, fused):
    p_l, t_l, pm, tm = run_both(
        lambda pm, tm: (
            getattr(optim, name)(pm.parameters(), fused=fused, **kwargs),
            getattr(torch.optim, name)(tm.parameters(), **kwargs),
        ),
        steps=10,
    )
    assert_rel(p_l, t_l)
    assert_same_weights(pm, tm)


def test_param_groups_with_their_own_lr_match_torch():
    def make(pm, tm):
        p_groups = [{"params": pm[0].parameters(), "lr": 0.2}, {"params": list(pm.parameters())[2:]}]
        t_groups = [{"params": tm[0].parameters(), "lr": 0.2}, {"params": list(tm.parameters())[2:]}]
        return optim.SGD(p_groups, lr=0.01, momentum=0.5), torch.optim.SGD(t_groups, lr=0.01, momentum=0.5)

    p_l, t_l, pm, tm = run_both(make, steps=5)
    assert_rel(p_l, t_l)


def test_float32_training_tracks_torch_closely():
    torch.manual_seed(3)
    tm = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    pm = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    pm.load_state_dict({k: tr.from_torch(v.detach()) for k, v in tm.state_dict().items()})
    x, y, xt, yt = data_pair(4)
    x, xt = x.float(), xt.float()
    popt, topt = optim.Adam(pm.parameters(), lr=0.01), torch.optim.Adam(tm.parameters(), lr=0.01)
    for _ in range(20):
        popt.zero_grad()
        lp = nn.CrossEntropyLoss()(pm(x), y)
        lp.backward()
        popt.step()
        topt.zero_grad()
        lt = torch.nn.CrossEntropyLoss()(tm(xt), yt)
        lt.backward()
        topt.step()
    assert abs(lp.item() - lt.item()) <= 1e-4 * abs(lt.item())


def test_zero_grad_and_steps_skip_params_without_grad():
    a = pd.tensor([1.0, 2.0], requires_grad=True)
    b = pd.tensor([3.0], requires_grad=True)
    opt = optim.Adam([a, b], lr=0.1)
    (a * a).sum().backward()
    opt.step()
    assert b.tolist() == [3.0] and b not in opt.state
    opt.zero_grad()
    assert a.grad is None
    (a * a).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert a.grad.tolist() == [0.0, 0.0]


def test_optimizer_argument_errors():
    w = pd.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(w, lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([w], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([w], betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [w]}, {"params": [w]}], lr=0.1)
    with pytest.raises(ValueError, match="not a leaf"):
        optim.SGD([w * 2], lr=0.1)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_state_dict_round_trip_continues_identically(name, fixed_placement):
    kwargs = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.05)
    pm, _ = mlp_pair(5)
    x, y, _, _ = data_pair(6)

    def step(model, opt):
        opt.zero_grad()
        loss = nn.CrossEntropyLoss()(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    opt = getattr(optim, name)(pm.parameters(), **kwargs)
    for _ in range(3):
        step(pm, opt)
    saved_model = {k: v.clone() for k, v in pm.state_dict().items()}
    saved_opt = opt.state_dict()
    saved_opt = {
        "state": {
            i: {k: v.clone() if isinstance(v, pd.Tensor) else v for k, v in s.items()}
            for i, s in saved_opt["state"].items()
        },
        "param_groups": saved_opt["param_groups"],
    }
    expected = [step(pm, opt) for _ in range(3)]

    pm2, _ = mlp_pair(99)
    pm2.load_state_dict(saved_model)
    opt2 = getattr(optim, name)(pm2.parameters(), lr=1.0)
    opt2.load_state_dict(saved_opt)
    assert opt2.param_groups[0]["lr"] == 0.05
    assert [step(pm2, opt2) for _ in range(3)] == expected

    with pytest.raises(ValueError, match="parameter groups"):
        opt2.load_state_dict({"state": {}, "param_groups": []})


def _lrs(sched, opt, steps):
    out = []
    for _ in range(steps):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr()[0])
    return out


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("StepLR", dict(step_size=3, gamma=0.5)),
        ("ExponentialLR", dict(gamma=0.9)),
        ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
        ("MultiStepLR", dict(milestones=[2, 5], gamma=0.1)),
    ],
)
def test_schedulers_match_torch(name, kwargs):
    p = pd.zeros(1, requires_grad=True)
    t = torch.zeros(1, requires_grad=True)
    popt, topt = optim.SGD([p], lr=0.3), torch.optim.SGD([t], lr=0.3)
    ps = getattr(optim.lr_scheduler, name)(popt, **kwargs)
    ts = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    ours, theirs = _lrs(ps, popt, 12), _lrs(ts, topt, 12)
    for a, b in zip(ours, theirs):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
    assert popt.param_groups[0]["lr"] == ours[-1]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    pm, tm = mlp_pair(7)
    x, y, xt, yt = data_pair(8)
    nn.CrossEntropyLoss()(pm(x), y).backward()
    torch.nn.CrossEntropyLoss()(tm(xt), yt).backward()
    ours = optim.clip_grad_norm_(pm.parameters(), max_norm, norm_type)
    theirs = torch.nn.utils.clip_grad_norm_(tm.parameters(), max_norm, norm_type)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-9)
    tr.assert_grads_close(list(pm.parameters()), list(tm.parameters()))


def test_clip_grad_norm_nonfinite_error_and_value_clip():
    w = pd.tensor([1.0, 2.0], requires_grad=True)
    (w * math.inf).sum().backward()
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([w], 1.0, error_if_nonfinite=True)
    v = pd.tensor([1.0, -3.0, 0.5], requires_grad=True)
    (v * pd.tensor([4.0, 4.0, 0.1])).sum().backward()
    nn.utils.clip_grad_value_([v], 1.0)
    assert v.grad.tolist() == pytest.approx([1.0, 1.0, 0.1])
