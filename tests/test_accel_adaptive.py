"""AUTO's cost model: it moves off a backend that observes slow and comes back when it recovers.

Every timing here comes from a test clock that only the fake kernels advance (a kernel "takes"
8 ms by moving the clock 8 ms), so no assertion depends on how busy the machine is.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys

import pytest

import puredl as pd
from puredl import accel
from puredl.adaptive import MIN_OBS, CostModel, bucket
from puredl.backends import pure as P

torch = pytest.importorskip("torch")
from puredl.backends import torch as T  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
MS, US = 1e-3, 1e-6


class TestClock:
    """A clock that moves only when a fake kernel says so."""

    __test__ = False

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeCosts:
    """Patches a kernel on both backends so that a call costs ``seconds[backend]`` on the clock."""

    def __init__(self, monkeypatch, clock: TestClock, kernel: str, pure: float, torch: float):
        self.seconds = {"pure": pure, "torch": torch}
        self.calls = {"pure": 0, "torch": 0}
        for module in (P, T):
            real = getattr(module, kernel)
            monkeypatch.setattr(module, kernel, self._costly(module.NAME, real, clock))

    def _costly(self, name, real, clock):
        def kernel(*args):
            self.calls[name] += 1
            cost = self.seconds[name]
            clock.now += cost(self.calls[name]) if callable(cost) else cost
            return real(*args)

        return kernel


@pytest.fixture
def clock():
    """AUTO with a fresh cost model on the test clock, timing every call."""
    c = TestClock()
    accel.reset_adaptive(CostModel(clock=c, rng=random.Random(0), sample_gap=(1, 2)))
    accel.reset_stats()
    accel.set_acceleration("auto")
    return c


def where(results) -> list:
    return [t._be.NAME for t in results]


# --------------------------------------------------------------------------- converging and returning


def test_auto_leaves_a_slow_torch_and_returns_when_it_recovers(clock, monkeypatch):
    costs = FakeCosts(monkeypatch, clock, "reduce_sum", pure=0.85 * MS, torch=8 * MS)
    accel.set_threshold("reduction", 100)  # the threshold sends a 1000-element sum to torch
    x = pd.rand(1000)
    want = x.sum().item()  # (the first call: torch, timed)
    ran = where(x.sum() for _ in range(59))
    assert ran[:2] == ["torch", "torch"] and ran[-20:] == ["pure"] * 20
    moves = accel.get_stats().moves
    assert [str(m) for m in moves] == [
        "sum 1.0k: torch -> pure (observed torch 8.00 ms vs pure 850 us, typical of 3 and 3 timed calls)"
    ]
    assert accel.adaptive_model().overrides == {("reduction", bucket(1000), False): False}
    assert x.sum().item() == pytest.approx(want, rel=1e-6)  # same value from the other backend

    costs.seconds["torch"] = 10 * US  # the other process is gone
    ran = where(x.sum() for _ in range(400))
    assert ran[-20:] == ["torch"] * 20
    assert [(m.old, m.new) for m in accel.get_stats().moves] == [("torch", "pure"), ("pure", "torch")]
    assert accel.adaptive_model().overrides == {}  # back on the threshold's choice
    # while torch looked 9x dearer it was tried rarely (its expected extra cost within 2%): the
    # first try came after 100+ calls, and three cheap tries in a row brought AUTO back
    first = ran.index("torch")
    assert (
        first > 100
        and ran[first : first + 4] == ["torch"] * 4
        and ran[first + 3 :] == ["torch"] * (397 - first)
    )


def test_auto_leaves_a_slow_pure_for_torch_below_the_threshold(clock, monkeypatch):
    FakeCosts(monkeypatch, clock, "binary", pure=1 * MS, torch=10 * US)
    accel.set_threshold("elementwise", 98)
    a, b = pd.rand(10), pd.rand(10)
    ran = where(a + b for _ in range(30))
    assert ran[:3] == ["pure"] * 3 and ran[-10:] == ["torch"] * 10
    (move,) = accel.get_stats().moves
    assert (move.op, move.old, move.new, move.key) == (
        "add",
        "pure",
        "torch",
        ("elementwise", bucket(10), False),
    )
    assert (a + b).tolist() == pytest.approx([x + y for x, y in zip(a.tolist(), b.tolist())])


def test_one_or_two_stalls_in_five_do_not_move_the_choice(clock, monkeypatch):
    def torch_cost(n: int) -> float:  # the n-th torch call: two in five stall
        return 8 * MS if n % 5 in (2, 4) else 10 * US

    FakeCosts(monkeypatch, clock, "reduce_sum", pure=0.85 * MS, torch=torch_cost)
    accel.set_threshold("reduction", 100)
    x = pd.rand(1000)
    for _ in range(200):
        x.sum()
    assert accel.get_stats().moves == [] and accel.adaptive_model().overrides == {}
    assert accel.get_stats().op("sum").torch >= 195


def test_a_difference_within_the_margin_does_not_move_the_choice(clock, monkeypatch):
    FakeCosts(monkeypatch, clock, "reduce_sum", pure=0.9 * MS, torch=1.0 * MS)  # pure 10% cheaper
    accel.set_threshold("reduction", 100)
    x = pd.rand(1000)
    for _ in range(50):
        x.sum()
    assert accel.get_stats().moves == []
    assert accel.get_stats().explored_count >= MIN_OBS  # it did look at pure


# --------------------------------------------------------------------------- PURE and TORCH pay nothing


@pytest.mark.parametrize("mode", ["pure", "torch"])
def test_pure_and_torch_modes_time_nothing_and_decide_as_before(clock, monkeypatch, mode):
    FakeCosts(monkeypatch, clock, "reduce_sum", pure=8 * MS, torch=8 * MS)
    slow_pure, slow_torch = P.reduce_sum, T.reduce_sum
    accel.set_acceleration(mode)
    x, y = pd.rand(1000), pd.from_torch(torch.rand(1000))
    ran = where([x.sum() for _ in range(20)] + [y.sum() for _ in range(20)])
    assert ran == [mode] * 40
    s = accel.get_stats()
    assert (s.timed_count, s.explored_count, s.moves) == (0, 0, [])
    assert accel.adaptive_model().keys == {}
    assert P.reduce_sum is slow_pure and T.reduce_sum is slow_torch  # never swapped


def test_auto_without_adaptive_follows_the_threshold_only(clock, monkeypatch):
    FakeCosts(monkeypatch, clock, "reduce_sum", pure=0.85 * MS, torch=8 * MS)
    accel.set_adaptive(False)
    accel.set_threshold("reduction", 100)
    ran = where(pd.rand(1000).sum() for _ in range(50))
    assert ran == ["torch"] * 50 and accel.get_stats().timed_count == 0


class CountingModel(CostModel):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.asked = 0

    def decide(self, key, prior):
        self.asked += 1
        return super().decide(key, prior)

    def plan(self, *args):
        self.asked += 1
        return False, 10**9  # one timed call (the first), then none


def test_between_timed_calls_auto_does_not_consult_the_model():
    model = CountingModel()
    accel.reset_adaptive(model)
    accel.set_acceleration("auto")
    accel.set_threshold("reduction", 100)
    x, small = pd.rand(1000), pd.rand(10)
    for _ in range(50):
        x.sum()
        small.sum()
    assert model.asked == 3 and accel.get_stats().timed_count == 1  # decide, plan, decide in observe
    model.by_category["reduction"] = {(bucket(10**6), False): False}  # an override at another size
    for _ in range(50):
        small.sum()
    assert model.asked == 3
    model.by_category["reduction"][(bucket(10), False)] = True  # and one at this size
    model.overrides[("reduction", bucket(10), False)] = True
    assert where([small.sum()]) == ["torch"] and model.asked == 4


# --------------------------------------------------------------------------- the log and the statistics


def test_the_decision_log_and_stats_say_when_and_why_the_choice_moved(clock, monkeypatch):
    FakeCosts(monkeypatch, clock, "reduce_sum", pure=0.85 * MS, torch=8 * MS)
    accel.set_threshold("reduction", 100)
    buf = io.StringIO()
    accel.enable_logging(True, file=buf)
    x = pd.rand(1000)
    for _ in range(8):
        x.sum()
    accel.enable_logging(False)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "[accel] sum 1000 -> torch (1.0k >= 100)"
    assert lines[3] == "[accel] sum 1000 -> pure (exploring: timing the other backend; 1.0k >= 100)"
    observed = "observed torch 8.00 ms vs pure 850 us, typical of 3 and 3 timed calls"
    assert f"[accel] sum 1.0k: torch -> pure ({observed})" in lines
    assert lines[-1] == "[accel] sum 1000 -> pure (observed cheaper than the threshold's choice; 1.0k >= 100)"
    out = io.StringIO()
    accel.print_stats(file=out)
    text = out.getvalue()
    assert "auto timed 8 calls (3 on the other backend)" in text
    assert "moved: sum 1.0k: torch -> pure (observed torch 8.00 ms" in text
    snap = accel.get_stats().copy()
    accel.reset_stats()
    assert len(snap.moves) == 1 and accel.get_stats().moves == []


# --------------------------------------------------------------------------- the cost model itself


def test_select_takes_no_timed_call_and_replaces_no_kernel(clock):
    """select() runs no kernel, so it has nothing to time: the timed call stays due for the door."""
    real = T.reduce_sum
    x = pd.rand(1000)
    accel.set_threshold("reduction", 100)
    be, _ = accel.select("sum", "reduction", 1000, (x,))
    assert be is T and T.reduce_sum is real
    assert accel.adaptive_model().keys == {} and accel.get_stats().timed_count == 0
    x.sum()
    assert accel.get_stats().timed_count == 1 and T.reduce_sum is real
    assert accel.adaptive_model().keys[("reduction", bucket(1000), False)].dropped == 0


class ListeningModel(CostModel):
    def __init__(self, heard: list, **kw):
        super().__init__(**kw)
        self.heard = heard

    def observe(self, key, op, work, torch, seconds, prior):
        self.heard.append((torch, seconds))
        return super().observe(key, op, work, torch, seconds, prior)


def test_timed_calls_read_the_clock_around_the_kernel_and_never_replace_it(clock, monkeypatch):
    """The door times the kernel it calls; the backends' kernels stay what they are."""
    clock.observed = []
    accel.reset_adaptive(ListeningModel(clock.observed, clock=clock, rng=random.Random(0), sample_gap=(1, 2)))
    FakeCosts(monkeypatch, clock, "reduce_sum", pure=2 * MS, torch=5 * MS)
    fake_pure, fake_torch = P.reduce_sum, T.reduce_sum
    accel.set_threshold("reduction", 100)
    x = pd.rand(1000)
    for _ in range(20):
        assert x.sum().item() == pytest.approx(sum(x.tolist()), rel=1e-5)
        assert P.reduce_sum is fake_pure and T.reduce_sum is fake_torch
    assert accel.get_stats().timed_count == 20
    assert accel.adaptive_model().keys[("reduction", bucket(1000), False)].dropped == 0
    # what the model was told is what the kernels cost on the clock, per backend
    seen = {(torch, round(seconds / MS, 9)) for torch, seconds in clock.observed}
    assert (True, 5) in seen and seen <= {(True, 5), (False, 2)}


def test_a_timed_call_whose_torch_kernel_fails_falls_back_and_is_not_observed(clock, monkeypatch):
    def boom(*args):
        raise RuntimeError("simulated torch failure")

    monkeypatch.setattr(T, "reduce_sum", boom)
    monkeypatch.setattr(accel.dispatch, "_fallback_logged", {"sum"})  # (quiet)
    accel.set_threshold("reduction", 100)
    x = pd.rand(1000)
    assert x.sum().item() == pytest.approx(sum(x.tolist()), rel=1e-5)
    s = accel.get_stats()
    assert (s.fallback_count, s.timed_count) == (1, 0)
    assert accel.adaptive_model().keys[("reduction", bucket(1000), False)].dropped == 1


def test_exploration_never_tries_what_its_size_makes_expensive():
    m = CostModel(sample_gap=(1, 2))
    key = ("matmul", bucket(10**9), False)
    for _ in range(MIN_OBS):
        m.observe(key, "matmul", 1e9, True, 10 * MS, prior=True)
    # pure would take ~27 s by its calibrated cost per multiply-add
    assert not any(m.explore(key, True, prior_pure_s=27.0, prior_torch_s=10 * US) for _ in range(10_000))


def test_exploration_costs_at_most_its_budget():
    m = CostModel(sample_gap=(32, 96), budget=0.02)
    key = ("elementwise", bucket(10**5), False)
    for _ in range(MIN_OBS):
        m.observe(key, "add", 1e5, True, 1 * MS, prior=True)
        m.observe(key, "add", 1e5, False, 10 * MS, prior=True)  # pure 10x dearer
    timed = 10_000
    tries = sum(m.explore(key, True, 10 * MS, 1 * MS) for _ in range(timed))
    calls = timed * 64  # one call in 64 on average is timed
    extra = tries * (10 * MS - 1 * MS) / (calls * 1 * MS)
    assert 0.005 < extra <= 0.02


def test_new_keys_are_timed_densely_until_they_can_be_compared():
    m = CostModel(sample_gap=(16, 48))
    key = ("activation", bucket(1000), False)
    assert 16 <= m.next_gap(key) < 48  # unknown key: the ordinary gap
    for _ in range(MIN_OBS):
        m.observe(key, "relu", 1000, False, 50 * US, prior=False)
        assert m.next_gap(key) == 1
    for _ in range(MIN_OBS):
        m.drop(key)
    # an op that cannot be timed is not retried at every call; a 50 us op is timed one call in 12
    # (6 us of bookkeeping is 1% of its time), dearer than the ordinary 16-47
    assert m.next_gap(key) == 12


def test_adaptive_can_be_turned_off_from_the_environment():
    env = dict(os.environ, PYTHONPATH=SRC, PUREDL_ACCEL_ADAPTIVE="0")
    code = (
        "from puredl import accel; from puredl.accel import cli; "
        "print(accel.is_adaptive()); print(cli.info_text())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.splitlines()[0] == "False", out.stderr
    assert "auto cost model: off  (PUREDL_ACCEL_ADAPTIVE=0)" in out.stdout
