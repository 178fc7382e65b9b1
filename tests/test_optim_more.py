"""RMSprop, Adagrad and Adadelta against torch.optim: 20 float64 steps, every option."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import puredl as pd  # noqa: E402
from puredl import optim  # noqa: E402
from test_optim import assert_rel, assert_same_weights, run_both  # noqa: E402

VARIANTS = [
    ("RMSprop", {}),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.005, centered=True, momentum=0.5, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, maximize=True)),
    ("Adagrad", {}),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, initial_accumulator_value=0.5, eps=1e-6)),
    ("Adagrad", dict(lr=0.1, maximize=True)),
    ("Adadelta", {}),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4)),
    ("Adadelta", dict(lr=1.0, weight_decay=0.1)),
    ("Adadelta", dict(maximize=True)),
]


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=lambda v: str(v))
def test_20_steps_match_torch(name, kwargs):
    p_l, t_l, pm, tm = run_both(
        lambda pm, tm: (
            getattr(optim, name)(pm.parameters(), **kwargs),
            getattr(torch.optim, name)(tm.parameters(), **kwargs),
        )
    )
    assert_rel(p_l, t_l, rel=1e-9)
    assert_same_weights(pm, tm, rel=1e-9)
    if not kwargs.get("maximize"):
        assert p_l[-1] < p_l[0]


@pytest.mark.parametrize("name", ["RMSprop", "Adagrad", "Adadelta"])
def test_defaults_match_torch(name):
    w = pd.zeros(1, requires_grad=True)
    mine = getattr(optim, name)([w]).defaults
    theirs = getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)]).defaults
    assert {k: theirs[k] for k in mine} == mine


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("RMSprop", dict(lr=-1.0)),
        ("RMSprop", dict(alpha=-0.1)),
        ("RMSprop", dict(momentum=-0.1)),
        ("RMSprop", dict(eps=-1.0)),
        ("Adagrad", dict(lr_decay=-1.0)),
        ("Adagrad", dict(initial_accumulator_value=-1.0)),
        ("Adagrad", dict(weight_decay=-1.0)),
        ("Adadelta", dict(rho=1.5)),
        ("Adadelta", dict(lr=-1.0)),
    ],
)
def test_bad_hyperparameters_raise_value_error_like_torch(name, kwargs):
    with pytest.raises(ValueError):
        getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError):
        getattr(optim, name)([pd.zeros(1, requires_grad=True)], **kwargs)


@pytest.mark.parametrize("name", ["RMSprop", "Adagrad", "Adadelta"])
def test_state_dict_round_trip_continues_identically(name, tmp_path, fixed_placement):
    def fresh():
        return run_both(
            lambda pm, tm: (
                getattr(optim, name)(pm.parameters(), lr=0.05),
                getattr(torch.optim, name)(tm.parameters(), lr=0.05),
            ),
            steps=0,
        )

    _, _, pm, _ = fresh()
    opt = getattr(optim, name)(pm.parameters(), lr=0.05)
    x = pd.randn(4, 3, dtype=pd.float64)
    for _ in range(3):
        opt.zero_grad()
        pm(x).pow(2).mean().backward()
        opt.step()
    pd.save({"model": pm.state_dict(), "opt": opt.state_dict()}, tmp_path / "c")
    ck = pd.load(tmp_path / "c")
    _, _, pm2, _ = fresh()
    pm2.load_state_dict(ck["model"])
    opt2 = getattr(optim, name)(pm2.parameters(), lr=0.05)
    opt2.load_state_dict(ck["opt"])
    for m, o in ((pm, opt), (pm2, opt2)):
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()
    assert [p.tolist() for p in pm.parameters()] == [p.tolist() for p in pm2.parameters()]
