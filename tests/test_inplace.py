"""In-place changes as torch makes them: augmented assignment, version counters, recorded history.

Each scenario is written once against the shared API and run on torch and on puredl; the results
(values, gradients, versions, the errors raised) must agree.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import puredl as pd  # noqa: E402
from puredl import creation  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def run_both(scenario):
    """``scenario(lib)`` on torch and on puredl: (result, error message or None) for each."""
    out = []
    for lib in (torch, pd):
        try:
            out.append((scenario(lib), None))
        except RuntimeError as exc:
            out.append((None, str(exc)))
    return out


def as_lists(*tensors):
    return [None if t is None else t.tolist() for t in tensors]


# ----------------------------------------------------------------------------- augmented assignment


@pytest.mark.parametrize("op", ["+=", "-=", "*=", "/=", "**="])
def test_augmented_assignment_updates_a_leaf_in_place_under_no_grad(op):
    def scenario(lib):
        w = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        (w * w).sum().backward()
        same = w
        with lib.no_grad():
            exec(f"w {op} 0.5 * w.grad + 1.0")
        return w is same, w.requires_grad, w.is_leaf, w._version, w.tolist()

    (ref, _), (got, err) = run_both(scenario)
    assert err is None and got[:4] == ref[:4] and got[0] is True
    assert got[4] == pytest.approx(ref[4], rel=1e-6)


def test_manual_sgd_loop_trains_the_original_parameters_like_torch():
    def scenario(lib):
        w = lib.tensor([0.5, -1.0], requires_grad=True)
        x = lib.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        y = lib.tensor([1.0, 2.0, 3.0])
        params = [w]
        for _ in range(5):
            loss = ((x @ w - y) ** 2).mean()
            loss.backward()
            with lib.no_grad():
                w -= 0.01 * w.grad
                w.grad.zero_()
        return params[0].tolist(), loss.item()

    (ref, _), (got, err) = run_both(scenario)
    assert err is None
    assert got[0] == pytest.approx(ref[0], rel=1e-5) and got[1] == pytest.approx(ref[1], rel=1e-5)


def test_augmented_assignment_on_a_view_changes_the_base():
    def scenario(lib):
        base = lib.zeros(2, 3)
        row = base[1]
        row += 2.0
        row *= lib.tensor([1.0, 2.0, 3.0])
        base[0, 1:] -= 1.0
        return as_lists(base), base._version, row._version

    (ref, _), (got, err) = run_both(scenario)
    assert err is None and got == ref


def test_augmented_assignment_on_a_leaf_that_requires_grad_raises_like_torch():
    def leaf(lib):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        w += 1.0

    def view_of_leaf(lib):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        v = w[:1]
        v *= 2.0

    for scenario in (leaf, view_of_leaf):
        (_, ref_err), (_, err) = run_both(scenario)
        assert ref_err is not None and err == ref_err


def test_matmul_assignment_rebinds_as_in_torch():
    def scenario(lib):
        a = lib.tensor([[1.0, 2.0], [3.0, 4.0]])
        keep = a
        a @= lib.tensor([[0.0, 1.0], [1.0, 0.0]])
        return a is keep, as_lists(keep, a)

    (ref, _), (got, err) = run_both(scenario)
    assert err is None and got == ref


def test_in_place_results_must_fit_the_tensor_like_torch():
    def int_plus_float(lib):
        i = lib.tensor([1, 2])
        i += 0.5

    def broadcast_grows(lib):
        t = lib.ones(3)
        t.add_(lib.ones(2, 3))

    def bool_plus_int(lib):
        b = lib.zeros(3, dtype=lib.bool)
        b.add_(1)

    for scenario in (int_plus_float, broadcast_grows, bool_plus_int):
        (_, ref_err), (_, err) = run_both(scenario)
        assert ref_err is not None and err is not None
        assert err.split(":")[0] in ref_err or err in ref_err

    def float_plus_bool(lib):
        f = lib.ones(3)
        f += lib.tensor([True, False, True])
        return f.tolist()

    (ref, _), (got, err) = run_both(float_plus_bool)
    assert err is None and got == ref


# ----------------------------------------------------------------------------- recorded in-place changes


def test_setitem_on_a_non_leaf_is_recorded_in_the_graph():
    def scenario(lib):
        a = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        b = a * 1.0
        b[0] = 0
        b.sum().backward()
        return as_lists(a.grad, b)

    (ref, _), (got, err) = run_both(scenario)
    assert err is None and got == ref == [[0.0, 1.0, 1.0], [0.0, 2.0, 3.0]]


def test_in_place_ops_on_non_leaves_give_torchs_gradients():
    def scenario(lib):
        a = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        w = lib.tensor([0.5, -1.0, 2.0], requires_grad=True)
        b = a * 2.0
        b += a  # 3a
        b.mul_(w)  # 3aw
        b[1:] *= w[1:]  # through a view: 3a w^2 on the tail
        b.div_(2.0)
        b.clamp_(min=-2.0)
        c = b.exp().sum() + b.pow(2).sum()
        c.backward()
        return as_lists(a.grad, w.grad, b)

    (ref, _), (got, err) = run_both(scenario)
    assert err is None
    for g, r in zip(got, ref):
        assert g == pytest.approx(r, rel=1e-5)


def test_writing_a_tensor_that_requires_grad_into_a_plain_buffer_records_it():
    def scenario(lib):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        buf = lib.zeros(3, 2)
        buf[1] = w * 3.0
        buf[2, :1] = w[1:]
        row = buf[0]
        row.copy_(w)
        (buf * buf).sum().backward()
        return buf.requires_grad, buf.is_leaf, as_lists(w.grad, buf)

    (ref, _), (got, err) = run_both(scenario)
    assert err is None and got == ref


def test_uses_recorded_before_an_in_place_change_keep_the_old_history():
    def scenario(lib):
        a = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        b = a * 1.0
        c = b + 1.0  # add does not read b in backward: no error, the old history counts
        b.mul_(10.0)
        (c.sum() + b.sum()).backward()
        return as_lists(a.grad)

    (ref, _), (got, err) = run_both(scenario)
    assert err is None and got == ref == [[11.0, 11.0, 11.0]]


# ----------------------------------------------------------------------------- version counters


def test_changing_a_tensor_saved_for_backward_raises_like_torch():
    def scenario(lib):
        a = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        b = a * 1.0
        c = (b * b).sum()
        b.mul_(10.0)
        c.backward()
        return as_lists(a.grad)

    (_, ref_err), (got, err) = run_both(scenario)
    assert got is None, f"backward ran on a stale saved tensor and gave {got}"
    assert "modified by an inplace operation" in err and "is at version 1; expected version 0" in err
    assert "modified by an inplace operation" in ref_err and "is at version 1; expected version 0" in ref_err


def test_stale_error_names_the_version_at_recording_after_several_changes_like_torch():
    # the version recorded is the one after earlier changes, and later changes to other tensors
    # (an optimizer step) do not count: backward compares the one counter, as torch
    def scenario(lib):
        a = lib.ones(3)
        a.add_(1.0)  # version 1 before recording
        other = lib.zeros(2)
        w = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        loss = (w * a).sum()  # mul saves a (version 1) for w's gradient
        other.add_(1.0)
        a.add_(1.0)
        other.add_(1.0)
        a.mul_(2.0)  # a is now at version 3
        loss.backward()
        return as_lists(w.grad)

    (_, ref_err), (got, err) = run_both(scenario)
    assert got is None, f"backward ran on a stale saved tensor and gave {got}"
    assert "is at version 3; expected version 1" in ref_err
    assert "is at version 3; expected version 1" in err


def test_changes_to_unsaved_tensors_after_recording_leave_backward_alone_like_torch():
    def scenario(lib):
        w = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        a = lib.tensor([2.0, 2.0, 2.0])
        loss = (w * a).sum()
        other = lib.zeros(3)
        other.add_(1.0)  # a change, but to nothing the graph saved
        loss.backward()
        return as_lists(w.grad)

    (ref, _), (got, err) = run_both(scenario)
    assert err is None and got == ref == [[2.0, 2.0, 2.0]]


@pytest.mark.parametrize(
    "change",
    [
        "y.add_(1.0)",  # exp saves its output
        "x.detach().zero_()",  # detach shares the version counter
        "x[0] = 5.0",  # setitem bumps the version
        "x.view(-1)[1:].fill_(0.0)",  # a view shares the version counter
    ],
)
def test_any_in_place_change_to_a_saved_tensor_is_caught(change):
    def scenario(lib):
        a = lib.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        x = a * 1.0
        y = (x * a).exp()
        exec(change)
        y.sum().backward()
        return as_lists(a.grad)

    (_, ref_err), (got, err) = run_both(scenario)
    assert ref_err is not None and got is None and "modified by an inplace operation" in err


def test_versions_count_in_place_changes_like_torch():
    def scenario(lib):
        t = lib.zeros(2, 3)
        versions = [t._version]
        t.add_(1.0)
        t[0] = 2.0
        t.mul_(3.0)
        v = t[1:]
        v.zero_()
        t += 1
        versions.append(t._version)
        versions.append(v._version)
        versions.append(t.detach()._version)
        d = t.data
        d.add_(1.0)  # .data has its own version counter
        versions.append(t._version)
        return versions

    (ref, _), (got, err) = run_both(scenario)
    assert err is None and got == ref


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
@pytest.mark.parametrize("input_requires_grad", [False, True])
def test_optimizer_step_between_forward_and_backward_is_caught(opt_name, input_requires_grad):
    def scenario(lib):
        lib.manual_seed(0)
        model = lib.nn.Linear(3, 2)
        kwargs = {"lr": 0.1, "momentum": 0.9} if opt_name == "SGD" else {"lr": 0.1}
        opt = getattr(lib.optim, opt_name)(model.parameters(), **kwargs)
        x = lib.ones(4, 3, requires_grad=input_requires_grad)
        model(x).sum().backward()
        opt.step()
        loss = model(x).sum()
        opt.step()  # changes the weight; the graph saved it only if x's gradient needs it
        loss.backward()
        return [p.grad.tolist() for p in model.parameters()]

    (ref, ref_err), (got, err) = run_both(scenario)
    if input_requires_grad:
        assert ref_err is not None and err is not None and "modified by an inplace operation" in err
    else:
        assert ref_err is None and err is None and got[1] == pytest.approx(ref[1])


# ----------------------------------------------------------------------------- grad and requires_grad


def test_assigning_a_non_tensor_grad_is_refused_like_torch():
    for lib in (torch, pd):
        t = lib.zeros(3, requires_grad=True)
        with pytest.raises(
            TypeError, match="assigned grad expected to be a Tensor or None but got grad of type float"
        ):
            t.grad = 0.0
        t.grad = lib.ones(3)
        t.grad = None
        with pytest.raises(RuntimeError, match="attempting to assign a gradient of size"):
            t.grad = lib.ones(2)
        with pytest.raises(RuntimeError, match="attempting to assign a gradient with dtype"):
            t.grad = lib.ones(3, dtype=lib.float64)


def test_requires_grad_on_an_integer_tensor_is_refused_like_torch():
    for lib in (torch, pd):
        i = lib.tensor([1, 2, 3])
        with pytest.raises(
            RuntimeError, match="only Tensors of floating point and complex dtype can require gradients"
        ):
            i.requires_grad = True
        with pytest.raises(RuntimeError, match="only Tensors of floating point"):
            i.requires_grad_()
        assert not i.requires_grad
    y = pd.tensor([1.0], requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad = False


# ----------------------------------------------------------------------------- factories and clamp


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((10, (3,)), {}),
        ((2, 10, (3,)), {}),
        ((), {"low": 2, "high": 10, "size": (3,)}),
        ((), {"high": 10, "size": (2, 2)}),
        ((10,), {"size": (3,)}),
        ((2, 10), {"size": (4,)}),
        ((10, [2, 2]), {}),
        ((10, ()), {}),
        ((5, (3,)), {"dtype": "float64"}),
    ],
)
def test_randint_accepts_torchs_calling_forms(args, kwargs):
    tkw = {k: getattr(torch, v) if k == "dtype" else v for k, v in kwargs.items()}
    pkw = {k: getattr(pd, v) if k == "dtype" else v for k, v in kwargs.items()}
    ref = torch.randint(*args, **tkw)
    got = pd.randint(*args, **pkw)
    assert got.shape == tuple(ref.shape) and got.dtype.name == str(ref.dtype).replace("torch.", "")
    low = kwargs.get("low", args[0] if len(args) == 3 or (len(args) == 2 and "size" in kwargs) else 0)
    high = kwargs.get("high", args[1] if low and len(args) > 1 else args[0] if args else None)
    assert all(low <= v < high for v in got.reshape(-1).tolist())


@pytest.mark.parametrize("args", [(10,), (0, 10, 5), (10, 3), (2.5, (3,))])
def test_randint_refuses_what_torch_refuses(args):
    with pytest.raises(TypeError):
        torch.randint(*args)
    with pytest.raises(TypeError):
        pd.randint(*args)


def test_randint_generator_is_reproducible():
    import random

    g1, g2 = random.Random(3), random.Random(3)
    assert pd.randint(100, (5,), generator=g1).tolist() == pd.randint(100, (5,), generator=g2).tolist()


def test_clamp_with_min_above_max_gives_max_like_torch():
    vals = [-3.0, 0.0, 1.5, 4.0, float("nan")]
    t = torch.tensor(vals, requires_grad=True)
    p = pd.tensor(vals, requires_grad=True)
    rt, rp = t.clamp(2.0, 1.0), p.clamp(2.0, 1.0)
    assert str(rp.tolist()) == str(rt.tolist())
    rt.sum().backward()
    rp.sum().backward()
    assert p.grad.tolist() == t.grad.tolist()
    i = pd.tensor([-3, 0, 5]).clamp(2, 1)
    assert i.tolist() == torch.tensor([-3, 0, 5]).clamp(2, 1).tolist()


def test_impossible_sizes_are_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(creation, "available_memory", lambda: 16 * 2**30)
    for make, shape in [
        (lambda: pd.randn(10**9), "(1000000000,)"),
        (lambda: pd.arange(10**12), "(1000000000000,)"),
        (lambda: pd.eye(10**6), "(1000000, 1000000)"),
        (lambda: pd.zeros(10**6, 10**6), "(1000000, 1000000)"),
        (lambda: pd.randint(5, (10**12,)), "(1000000000000,)"),
    ]:
        with pytest.raises(RuntimeError, match=r"needs about .* GiB .* available") as info:
            make()
        assert shape in str(info.value)
    assert pd.randn(1000).shape == (1000,)  # ordinary sizes are not affected


# ----------------------------------------------------------------------------- environment


def _run(args, **env):
    full = dict(os.environ)
    for k in ("PUREDL_ACCEL", "PUREDL_ACCEL_THRESHOLDS"):
        full.pop(k, None)
    full["PYTHONPATH"] = SRC + os.pathsep + full.get("PYTHONPATH", "")
    full.update(env)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full, timeout=120)


@pytest.mark.parametrize(
    "env",
    [
        {"PUREDL_ACCEL": "bogus"},
        {"PUREDL_ACCEL_THRESHOLDS": "matmul=lots"},
        {"PUREDL_ACCEL_THRESHOLDS": "nosuchop=5"},
        {"PUREDL_ACCEL_THRESHOLDS": "matmul=-1"},
    ],
)
def test_bad_accel_environment_warns_and_falls_back(env):
    r = _run(["-m", "puredl", "--help"], **env)
    assert r.returncode == 0 and "usage" in r.stdout
    ((name, value),) = env.items()
    assert f"ignoring {name}={value!r}" in r.stderr
    code = "from puredl import accel; print(accel.get_current_mode().value, accel.threshold_source())"
    r = _run(["-c", code], **env)
    assert r.returncode == 0 and r.stdout.split()[0] == "pure" and "PUREDL_ACCEL_THRESHOLDS" not in r.stdout
