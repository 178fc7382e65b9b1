"""accel is the one door: every kernel call, setitem, device move and fused optimizer update is
chosen, counted and logged there, in every mode; the backends hold no dispatch policy."""

from __future__ import annotations

import io

import pytest

import puredl as pd
from puredl import accel, optim

torch = pytest.importorskip("torch")
from puredl.backends import pure as P  # noqa: E402
from puredl.backends import torch as T  # noqa: E402

MODES = [("pure", None), ("torch", None), ("auto", "low"), ("auto", "default")]


@pytest.fixture(params=MODES, ids=["pure", "torch", "auto-low", "auto-default"])
def mode(request):
    name, thresholds = request.param
    accel.set_acceleration(name)
    if thresholds == "low":
        accel.set_thresholds(accel.LOW_THRESHOLDS)
    else:
        accel.reset_thresholds()
    accel.set_adaptive(False)  # decisions by the thresholds alone: the expected backend is known
    accel.reset_stats()
    log = io.StringIO()
    accel.enable_logging(True, file=log)
    yield name, log
    accel.enable_logging(False)


def _lines(log, op: str) -> list:
    return [line for line in log.getvalue().splitlines() if line.startswith(f"[accel] {op} ")]


def _expected(mode_name: str, pure_storage: bool = True) -> str:
    """Where an in-place write runs: where the target lives (pure storage stays pure)."""
    return "pure" if pure_storage else "torch"


def test_setitem_is_counted_and_logged_in_every_mode(mode):
    name, log = mode
    x = pd.zeros(4, 3)
    x[0] = 1.0  # scalar value
    x[1:3] = pd.ones(2, 3) * 2  # tensor value (computed where the mode puts it)
    x[3, :2] = pd.from_torch(torch.full((2,), 5.0))  # a torch value into pure storage: torch's view
    assert x.tolist() == [[1.0] * 3, [2.0] * 3, [2.0] * 3, [5.0, 5.0, 0.0]]
    s = accel.get_stats().op("setitem")
    assert s.pure + s.torch == 3 and s.fallback == 0
    assert s.torch >= 1  # the torch value's write ran on torch
    lines = _lines(log, "setitem")
    assert len(lines) == 3 and all("in place, where the target lives" in ln for ln in lines)
    assert lines[-1] == "[accel] setitem 4x3, 2 -> torch (in place, where the target lives (cpu))"
    # on torch storage the write runs on torch whatever the mode
    y = pd.from_torch(torch.zeros(3))
    y[1] = 7.0
    assert y.tolist() == [0.0, 7.0, 0.0] and accel.get_stats().op("setitem").torch == s.torch + 1


def test_a_device_move_back_to_the_cpu_is_counted_and_logged(mode):
    """(A CUDA round trip is in tests/gpu; on the CPU, accel.move is the same door.)"""
    name, log = mode
    t = pd.from_torch(torch.arange(6.0).reshape(2, 3))
    impl, be = accel.move(t, "cpu")
    assert be.NAME == ("pure" if name == "pure" else "torch")  # back on the CPU: pure in PURE mode
    assert be.tolist(impl) == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    s = accel.get_stats().op("to")
    assert (s.pure, s.torch) == ((1, 0) if name == "pure" else (0, 1))
    assert _lines(log, "to") == [f"[accel] to 2x3 -> {be.NAME} (a move from cpu to cpu)"]


@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "AdamW"])
def test_fused_optimizer_updates_are_counted_and_logged(mode, opt_name):
    name, log = mode
    w = pd.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
    b = pd.from_torch(torch.tensor([0.1, 0.2])).requires_grad_()
    kwargs = {"lr": 0.1, "momentum": 0.9} if opt_name == "SGD" else {"lr": 0.1}
    opt = getattr(optim, opt_name)([w, b], **kwargs)
    for _ in range(2):
        opt.zero_grad()
        ((w * w).sum() + (b * b).sum()).backward()
        accel.reset_stats()
        opt.step()
        op = opt_name.lower()
        s = accel.get_stats()
        # one fused kernel per parameter and nothing else: b lives on torch, w's gradient where
        # the mode computed it (pure storage with a torch gradient updates through torch's view)
        assert s.total() == 2 and s.op(op).pure + s.op(op).torch == 2
        assert s.op(op).torch >= 1
    assert len(_lines(log, op)) == 4
    ref_w = torch.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
    ref_b = torch.tensor([0.1, 0.2], requires_grad=True)
    ref = getattr(torch.optim, opt_name)([ref_w, ref_b], foreach=False, **kwargs)
    for _ in range(2):
        ref.zero_grad()
        ((ref_w * ref_w).sum() + (ref_b * ref_b).sum()).backward()
        ref.step()
    assert w.reshape(-1).tolist() == pytest.approx(ref_w.reshape(-1).tolist(), rel=1e-6, abs=1e-7)
    assert b.tolist() == pytest.approx(ref_b.tolist(), rel=1e-6, abs=1e-7)


def test_every_op_of_a_training_step_goes_through_the_door(mode):
    """The statistics see the whole step: forward, backward, setitem and the update."""
    name, _ = mode
    model = pd.nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = pd.rand(4, 3)
    x[0, 0] = 0.5
    loss = model(x).sum()
    loss.backward()
    opt.step()
    ops = accel.get_stats().per_op
    assert {"setitem", "linear", "sum", "sgd"} <= set(ops)
    if name == "pure":
        assert accel.get_stats().torch_count == 0
    if name == "torch":
        assert accel.get_stats().op("linear").pure == 0


# --------------------------------------------------------------------------- the fallback


def test_a_failing_torch_setitem_into_pure_storage_falls_back_in_auto(monkeypatch):
    def boom(*args):
        raise RuntimeError("simulated torch failure")

    monkeypatch.setattr(T, "setitem", boom)
    monkeypatch.setattr(accel.dispatch, "_fallback_logged", {"setitem"})  # (quiet)
    accel.set_acceleration("auto")
    x = pd.zeros(3)
    x[1:] = pd.from_torch(torch.tensor([4.0, 5.0]))
    assert x.tolist() == [0.0, 4.0, 5.0]
    assert accel.get_stats().op("setitem").fallback == 1
    accel.set_acceleration("torch")
    with pytest.raises(RuntimeError, match=r"torch backend failed in setitem \(kernel setitem, .*mode torch"):
        x[:2] = pd.from_torch(torch.tensor([1.0, 2.0]))


def test_the_backends_know_no_fallback_policy():
    """A torch kernel's failure leaves the backend as it is: the door handles it."""
    assert not hasattr(T, "on_kernel_failure")
    assert not any(hasattr(getattr(T, k), "__wrapped__") for k in ("binary", "unary", "matmul", "reduce_sum"))


def test_run_calls_the_kernel_on_the_chosen_backend_with_head_impls_tail():
    accel.set_acceleration("pure")
    be, out = accel.run("cat", "shape", 4, (pd.ones(2), pd.zeros(2)), "cat", (0, pd.float32))
    assert be is P and P.tolist(out) == [1.0, 1.0, 0.0, 0.0]
    accel.set_acceleration("torch")
    be, out = accel.run("clamp", "elementwise", 3, (pd.tensor([-1.0, 0.5, 2.0]),), "clamp", (), 0.0, 1.0)
    assert be is T and out.tolist() == [0.0, 0.5, 1.0]
    assert accel.get_stats().op("clamp") == (0, 1, 0)


def test_a_half_pure_target_takes_a_torch_value_on_pure():
    """float16 pure storage has no zero-copy torch view: the write runs on pure, reading a copy."""
    accel.set_acceleration("auto")
    accel.reset_stats()
    x = pd.zeros(3, dtype=pd.float16)
    x[1:] = pd.from_torch(torch.tensor([1.5, 2.5], dtype=torch.float16))
    assert x.tolist() == [0.0, 1.5, 2.5] and x._be is P
    assert accel.get_stats().op("setitem") == (1, 0, 0)
