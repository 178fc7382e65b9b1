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
from puredl import accel, adaptive
from puredl.adaptive import MIN_OBS, CostModel, bucket
from puredl.adaptive_threads import ThreadPolicy
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
def clock(monkeypatch):
    """AUTO with a fresh cost model on the test clock, timing every call."""
    monkeypatch.setattr(adaptive, "TIMED_CALL_S", 0.0)  # (timing is free: no key is timed less often)
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
    # 4 timings of each showed it, 4 fresh ones of each, in turns, confirmed it (a move needs it twice)
    assert [str(m) for m in moves] == [
        "sum 1.0k: torch -> pure (observed torch 8.00 ms vs pure 850 us, typical of 8 and 8 timed calls)"
    ]
    assert accel.adaptive_model().overrides == {("sum", bucket(1000), False): False}
    assert x.sum().item() == pytest.approx(want, rel=1e-6)  # same value from the other backend

    costs.seconds["torch"] = 10 * US  # the other process is gone
    ran = where(x.sum() for _ in range(600))
    assert ran[-20:] == ["torch"] * 20
    assert [(m.old, m.new) for m in accel.get_stats().moves] == [("torch", "pure"), ("pure", "torch")]
    assert accel.adaptive_model().overrides == {}  # back on the threshold's choice
    # while torch looked 9x dearer it was tried rarely (its expected extra cost within 2%): the
    # first try came after 100+ calls; cheap tries in a row, then 4 fresh timings of pure (the
    # second look) brought AUTO back
    first = ran.index("torch")
    assert first > 100 and ran[first : first + 4] == ["torch"] * 4
    assert ran[first + 14 :] == ["torch"] * (600 - first - 14)


def test_a_machine_wide_slowdown_moves_nothing(clock, monkeypatch):
    # a busy host runs everything 3x slower for a while: the current arm's recent timings are
    # slow, the other arm's few timings are from before; compared in the same calls, no move
    # (2026-12-01: sum 1k moved to pure on "torch 30 us vs pure 10 us", torch alone 11 us)
    fast = True
    costs = FakeCosts(
        monkeypatch,
        clock,
        "reduce_sum",
        pure=lambda n: (14 if fast else 42) * US,
        torch=lambda n: (11 if fast else 33) * US,
    )
    accel.set_threshold("reduction", 100)  # torch for a 1000-element sum, and rightly
    x = pd.rand(1000)
    where(x.sum() for _ in range(400))
    assert costs.calls["pure"] >= 4  # pure was measured while the machine was fast
    fast = False
    ran = where(x.sum() for _ in range(400))
    assert accel.get_stats().moves == [] and accel.adaptive_model().overrides == {}
    assert ran.count("torch") > 0.9 * len(ran)  # (the rest: tries of pure)


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
        ("add", bucket(10), False),
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


def test_one_fast_outlier_of_the_other_backend_does_not_move_the_choice(clock, monkeypatch):
    def pure_cost(n: int) -> float:  # one pure call comes out 100x faster than the others
        return 10 * US if n == 2 else 1.5 * MS

    FakeCosts(monkeypatch, clock, "reduce_sum", pure=pure_cost, torch=1 * MS)
    accel.set_threshold("reduction", 100)  # the threshold sends a 1000-element sum to torch
    x = pd.rand(1000)
    ran = where(x.sum() for _ in range(300))
    assert accel.get_stats().moves == [] and accel.adaptive_model().overrides == {}
    assert ran.count("pure") <= 15 and accel.get_stats().explored_count >= MIN_OBS  # tries only


def test_evidence_on_one_op_does_not_move_another_op_of_its_category(clock, monkeypatch):
    """(Measured: a pure max of 256 costs 3x a pure sum of 256; the max's evidence sent every
    reduction of that size to torch, and sum 300 ran 1.25x slower than on pure.)"""
    costs = {
        ("pure", "amax"): 1 * MS,
        ("torch", "amax"): 10 * US,
        ("pure", "sum"): 4 * US,
        ("torch", "sum"): 10 * US,
    }
    for module in (P, T):  # (one kernel runs every table reduction: its cost depends on the op)

        def reduce(op, *args, real=module.reduce, name=module.NAME):
            clock.now += costs[(name, op)]
            return real(op, *args)

        monkeypatch.setattr(module, "reduce", reduce)
    accel.set_threshold("reduction", 1000)  # both on pure by the threshold
    x = pd.rand(256)
    for _ in range(40):
        x.max()
    assert [(m.op, m.old, m.new) for m in accel.get_stats().moves] == [("amax", "pure", "torch")]
    ran = where(x.sum() for _ in range(200))
    assert ran[-20:] == ["pure"] * 20 and len(accel.get_stats().moves) == 1
    assert accel.adaptive_model().overrides == {("amax", bucket(256), False): True}


def test_near_the_crossover_the_threshold_needs_a_wider_margin():
    def run(prior_pure_s, prior_torch_s):
        m = CostModel(sample_gap=(1, 2))
        key = ("sum", bucket(300), False)
        moves = []
        for _ in range(2 * MIN_OBS):
            m.plan(key, False, prior_pure_s, prior_torch_s)
            moves.append(m.observe(key, "sum", 300, False, 40 * US, prior=False))  # pure
            moves.append(m.observe(key, "sum", 300, True, 25 * US, prior=False))  # torch 1.6x cheaper
        return [mv for mv in moves if mv]

    assert run(prior_pure_s=6 * US, prior_torch_s=5 * US) == []  # near: needs 1.6x and 5 us
    (move,) = run(prior_pure_s=60 * US, prior_torch_s=5 * US)  # far: 1.25x is enough
    assert (move.old, move.new) == ("pure", "torch")


def test_exploring_a_dear_key_timed_at_every_call_stays_within_budget():
    """A 2.5 ms key is timed at every call; trying its stalled 25 ms torch must still cost at
    most the budget of its time (it cost as much as the key itself when the gap counted timed
    calls as if each stood for 64 calls)."""
    m = CostModel(sample_gap=(32, 96), budget=0.02)
    key = ("sum", bucket(10**6), False)
    for _ in range(MIN_OBS):
        m.observe(key, "sum", 1e6, True, 25 * MS, prior=True)
    tries = calls = 0
    spent = 0.0
    while calls < 20_000:
        use_torch = m.decide(key, True)
        explore, gap = m.plan(key, use_torch, 2.5 * MS, 30 * US)
        on_torch = use_torch is not explore
        m.observe(key, "sum", 1e6, on_torch, 25 * MS if on_torch else 2.5 * MS, prior=True)
        assert gap == 1
        tries += explore and on_torch
        calls += 1
        spent += 25 * MS if on_torch else 2.5 * MS
    assert m.decide(key, True) is False and tries >= 10
    assert spent / (calls * 2.5 * MS) - 1 <= 0.03


def test_the_decision_parameters_are_read_when_used(monkeypatch):
    monkeypatch.setattr(adaptive, "MARGIN", 3.0)
    m = CostModel(sample_gap=(1, 2))
    key = ("sum", bucket(10**5), False)
    for _ in range(MIN_OBS):
        m.observe(key, "sum", 1e5, True, 2 * MS, prior=True)
        assert m.observe(key, "sum", 1e5, False, 1 * MS, prior=True) is None  # 2x: not 3x
    monkeypatch.setattr(adaptive, "MIN_OBS", 6)
    assert m.margin == 3.0 and m.next_gap(key) == 1


# --------------------------------------------------------------------------- torch's threads


class FakeThreads:
    """torch's intra-op thread count, and a machine whose other core is (or is not) busy."""

    def __init__(self, n: int = 2):
        self.n, self.own, self.busy, self.sets, self.stalls = n, n, True, 0, 0
        self.ran_on: list[int] = []  # the count each fake torch kernel ran with

    def get(self) -> int:
        return self.n

    def set(self, n: int) -> None:
        self.n, self.sets = n, self.sets + 1

    def sum_cost(self, _call: int) -> float:  # a stall on 2 threads when busy, else 2x faster
        self.ran_on.append(self.n)
        if self.n > 1:
            self.stalls += self.busy
            return 8 * MS if self.busy else 60 * US
        return 120 * US

    def big_add_cost(self, _call: int) -> float:  # 4M elements: 2 threads gain even when busy
        self.ran_on.append(self.n)
        return 1 * MS if self.n > 1 else 2 * MS


@pytest.fixture
def threads(clock):
    t = FakeThreads()
    policy = ThreadPolicy(get_threads=t.get, set_threads=t.set)
    accel.reset_adaptive(CostModel(clock=clock, rng=random.Random(0), sample_gap=(1, 2), threads=policy))
    return t


def thread_moves() -> list:
    return [m for m in accel.get_stats().moves if type(m).__name__ == "ThreadMove"]


def test_a_stalling_parallel_op_goes_to_one_thread_not_to_pure_and_back(clock, threads, monkeypatch):
    FakeCosts(monkeypatch, clock, "reduce_sum", pure=0.85 * MS, torch=threads.sum_cost)
    accel.set_threshold("reduction", 100)
    x = pd.rand(100_000)
    ran = where(x.sum() for _ in range(200))
    key = ("sum", bucket(100_000), False)
    assert accel.adaptive_model().threads.threads(key) == 1
    assert ran[-50:] == ["torch"] * 50 and threads.ran_on[-50:] == [1] * 50
    assert threads.n == 2  # outside the calls of the key that stalls, torch runs its own count
    kinds = [type(m).__name__ for m in accel.get_stats().moves]
    assert kinds[-1] in ("ThreadMove", "Move") and "ThreadMove" in kinds
    thread_move = thread_moves()[0]
    assert (thread_move.old, thread_move.new) == (2, 1)
    assert str(thread_move).startswith("torch threads 2 -> 1 for AUTO's sum 100.0k (observed 8.00 ms on 2")
    assert accel.adaptive_model().overrides == {}  # torch on one thread: the threshold's choice holds

    threads.busy = False  # the other process is gone: 2 threads cost 60 us, 1 thread 120 us
    # a try of 2 threads costs 8 ms while they stall: within the 0.5% budget, one in ~13,000 calls
    for _ in range(20_000):
        x.sum()
    assert accel.adaptive_model().threads.threads(key) == 2
    assert accel.adaptive_model().overrides == {}  # (now and then a timed try of pure, never a move)
    assert [(m.old, m.new) for m in thread_moves()] == [(2, 1), (1, 2)]
    # now and then a try of one thread (60 us dearer: within the budget)
    assert threads.ran_on[-2000:].count(1) <= 2000 * 0.005 + 2


def test_each_size_gets_its_own_thread_count(clock, threads, monkeypatch):
    """Under load a 100k-element sum stalls on 2 threads while a 4M-element add still gains from
    them: the sum runs on one thread, the add keeps torch's two (one count for all of AUTO made
    the large ops 1.3-1.75x slower in benchmarks/accel.py --load)."""
    FakeCosts(monkeypatch, clock, "reduce_sum", pure=0.85 * MS, torch=threads.sum_cost)
    FakeCosts(monkeypatch, clock, "binary", pure=150 * MS, torch=threads.big_add_cost)
    accel.set_threshold("reduction", 100)
    x, a, b = pd.rand(100_000), pd.rand(4_000_000), pd.rand(4_000_000)
    for _ in range(300):
        x.sum()
        a + b
    policy = accel.adaptive_model().threads
    assert policy.threads(("sum", bucket(100_000), False)) == 1
    assert policy.threads(("add", bucket(4_000_000), False)) == 2
    assert [(m.op, m.old, m.new) for m in thread_moves()] == [("sum", 2, 1)]
    assert threads.ran_on[-2:] == [1, 2] and threads.n == 2
    assert accel.adaptive_model().overrides == {}


def test_a_stall_on_torchs_threads_is_no_evidence_for_pure_before_one_thread_was_tried():
    t = FakeThreads()
    m = CostModel(sample_gap=(1, 2), threads=ThreadPolicy(get_threads=t.get, set_threads=t.set))
    m.activate(True)
    key = ("matmul", bucket(32 * 32 * 32), False)
    for _ in range(MIN_OBS):  # pure timed while the threshold (another one) said pure
        assert m.observe(key, "matmul", 32768, False, 1.2 * MS, prior=True) is None
    moves = []
    for _ in range(40):  # torch's timed calls: the thread policy tries one thread after 4 stalls
        m.threads.begin(key, calls_per_timed=1)
        moves.append(m.observe(key, "matmul", 32768, True, 90 * MS if t.n > 1 else 30 * US, prior=True))
    kinds = [type(mv).__name__ for mv in moves if mv is not None]
    assert kinds[0] == "ThreadMove" and "Move" not in kinds[: kinds.index("ThreadMove")]
    assert m.threads.threads(key) == 1 and t.n == 2
    assert m.overrides == {}  # never sent to pure: on one thread torch is 40x cheaper


def test_threads_that_stall_on_every_other_call_count_as_stalling():
    """A backend's cost ignores stalls on 2 calls in 5 (noise from other processes hits both
    backends); a thread count that stalls on half its calls costs those stalls."""
    t = FakeThreads()
    policy = ThreadPolicy(get_threads=t.get, set_threads=t.set)
    policy.activate(True)
    key = ("relu", bucket(10**6), False)
    calls, move = 0, None
    while move is None and calls < 200:
        policy.begin(key, calls_per_timed=1)
        calls += 1
        cost = (40 * MS if calls % 2 else 50 * US) if t.n > 1 else 90 * US
        move = policy.end(key, "relu", 1e6, cost)[1]
    assert move is not None and (move.old, move.new) == (2, 1) and policy.threads(key) == 1


def test_a_try_of_one_thread_whose_kernel_raised_puts_the_count_back():
    t = FakeThreads()
    policy = ThreadPolicy(get_threads=t.get, set_threads=t.set)
    policy.activate(True)
    key = ("sum", bucket(100_000), False)
    while True:
        policy.begin(key, calls_per_timed=1)
        if t.n == 1:  # this timed call tries one thread ... and its kernel raises: no end()
            break
        policy.end(key, "sum", 1e5, 60 * US)
    policy.begin(("add", bucket(100_000), False), calls_per_timed=1)  # the next timed call
    assert t.n == 2 and policy.single == set()


def test_a_kernel_that_raises_on_one_thread_puts_the_count_back():
    t = FakeThreads()
    policy = ThreadPolicy(get_threads=t.get, set_threads=t.set)

    def kernel():
        assert t.n == 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        policy.one_thread(kernel)
    assert t.n == 2


def test_waking_the_pool_after_a_try_of_one_thread_is_not_booked_as_the_counts_cost():
    """The first call on torch's count after a try of one thread wakes the pool's other thread
    (+130 us at add 4M, measured; far more when it slept): a cost of the try, not of the count."""
    t = FakeThreads()
    policy = ThreadPolicy(get_threads=t.get, set_threads=t.set)
    policy.activate(True)
    key = ("add", bucket(4 * 10**6), False)
    after_try = False
    for _ in range(12):  # learning both counts: 4 on its own, then tries of one thread every other call
        policy.begin(key, calls_per_timed=1)
        cost = 1.9 * MS if t.n == 1 else (4 * MS if after_try else 0.7 * MS)
        after_try = t.n == 1
        policy.end(key, "add", 4e6, cost)
    books = policy.books[key]
    assert books.seen[1] >= MIN_OBS and max(books.recent[0]) == 0.7 * MS
    assert policy.threads(key) == 2
    seen = books.seen[0]  # another key's calls on one thread wake nothing that is skipped
    policy.one_thread(lambda: None)
    policy.begin(key, calls_per_timed=1)
    assert t.n == 2 and policy.end(key, "add", 4e6, 0.7 * MS) == (True, None)
    assert books.seen[0] == seen + 1


def test_a_quiet_machine_keeps_torchs_threads(clock, threads, monkeypatch):
    threads.busy = False
    FakeCosts(monkeypatch, clock, "reduce_sum", pure=0.85 * MS, torch=threads.sum_cost)
    accel.set_threshold("reduction", 100)
    x = pd.rand(100_000)
    for _ in range(2000):
        x.sum()
    assert threads.n == 2 and accel.get_stats().moves == []
    assert accel.adaptive_model().threads.by_op == {}  # AUTO's path looks at nothing more
    assert 0 < threads.sets <= 2 * (2000 * 0.005 + 2 * MIN_OBS)  # a try: a set and a set back


def test_small_ops_never_change_the_thread_count(clock, threads, monkeypatch):
    FakeCosts(monkeypatch, clock, "reduce_sum", pure=0.85 * MS, torch=threads.sum_cost)
    accel.set_threshold("reduction", 100)
    x = pd.rand(1000)  # below torch's grain: one thread whatever the count
    for _ in range(500):
        x.sum()
    assert threads.sets == 0


@pytest.mark.parametrize("mode", ["pure", "torch"])
def test_pure_and_torch_modes_run_on_torchs_own_thread_count(clock, threads, monkeypatch, mode):
    FakeCosts(monkeypatch, clock, "reduce_sum", pure=0.85 * MS, torch=threads.sum_cost)
    accel.set_threshold("reduction", 100)
    x = pd.rand(100_000)
    for _ in range(200):
        x.sum()
    assert threads.ran_on[-1] == 1 and threads.n == 2
    accel.set_acceleration(mode)
    x.sum()
    assert threads.ran_on[-1] == (2 if mode == "torch" else 1) and threads.n == 2
    accel.set_acceleration("auto")
    x.sum()
    assert threads.ran_on[-1] == 1  # what AUTO learned holds when it comes back
    with accel.using(adaptive=False):
        x.sum()
        assert threads.ran_on[-1] == 2
    accel.reset_adaptive()
    x.sum()
    assert threads.ran_on[-1] == 2 and threads.n == 2


def test_the_real_thread_count_is_torchs_own_outside_a_one_thread_call():
    own = torch.get_num_threads()
    policy = ThreadPolicy()
    seen = policy.one_thread(torch.get_num_threads)
    assert seen == 1 and torch.get_num_threads() == own


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
    model.by_op["sum"] = {(bucket(10**6), False): False}  # an override at another size
    for _ in range(50):
        small.sum()
    assert model.asked == 3
    model.by_op["max"] = {(bucket(10), False): True}  # another op of the category, this size
    for _ in range(50):
        small.sum()
    assert model.asked == 3
    model.by_op["sum"][(bucket(10), False)] = True  # and one for this op at this size
    model.overrides[("sum", bucket(10), False)] = True
    assert where([small.sum()]) == ["torch"] and model.asked == 4


# --------------------------------------------------------------------------- the log and the statistics


def test_the_decision_log_and_stats_say_when_and_why_the_choice_moved(clock, monkeypatch):
    FakeCosts(monkeypatch, clock, "reduce_sum", pure=0.85 * MS, torch=8 * MS)
    accel.set_threshold("reduction", 100)
    buf = io.StringIO()
    accel.enable_logging(True, file=buf)
    x = pd.rand(1000)
    for _ in range(18):
        x.sum()
    accel.enable_logging(False)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "[accel] sum 1000 -> torch (1.0k >= 100)"
    assert lines[4] == "[accel] sum 1000 -> pure (exploring: timing the other backend; 1.0k >= 100)"
    observed = "observed torch 8.00 ms vs pure 850 us, typical of 8 and 8 timed calls"
    assert f"[accel] sum 1.0k: torch -> pure ({observed})" in lines
    assert lines[-1] == "[accel] sum 1000 -> pure (observed cheaper than the threshold's choice; 1.0k >= 100)"
    out = io.StringIO()
    accel.print_stats(file=out)
    text = out.getvalue()
    assert "auto timed 18 calls (8 on the other backend)" in text
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
    assert accel.adaptive_model().keys[("sum", bucket(1000), False)].dropped == 0


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
    assert accel.adaptive_model().keys[("sum", bucket(1000), False)].dropped == 0
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
    assert accel.adaptive_model().keys[("sum", bucket(1000), False)].dropped == 1


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
    # an op that cannot be timed is not retried at every call; a 50 us op is timed a little less
    # often than the ordinary 16-47 (20 us of bookkeeping is 1% of 40 calls of it)
    gaps = [m.next_gap(key) for _ in range(200)]
    assert 20 <= min(gaps) and max(gaps) <= 61 and 35 < sum(gaps) / len(gaps) < 45
    dear = ("activation", bucket(4 * 10**6), False)
    for _ in range(MIN_OBS):
        m.observe(dear, "relu", 4e6, True, 210 * US, prior=True)
        m.observe(dear, "relu", 4e6, False, 200 * MS, prior=True)
    assert m.next_gap(dear) == 10  # a 210 us op: one call in 10 (20 us is 1% of 9.5 calls)
    cheap = ("relu", bucket(10), False)
    for _ in range(MIN_OBS):
        m.observe(cheap, "relu", 10, False, 2 * US, prior=False)
        m.observe(cheap, "relu", 10, True, 5 * US, prior=False)
    # a 2 us op is timed less often than the ordinary gap: 20 us every 1000 calls would be 1% of its
    # time; the gap is capped at MAX_GAP_SCALE (4) times the ordinary 16-47
    gaps = [m.next_gap(cheap) for _ in range(200)]
    assert 64 <= min(gaps) and max(gaps) <= 4 * 48 and 110 < sum(gaps) / len(gaps) < 140


def test_a_block_without_the_cost_model_does_not_make_the_next_auto_call_a_timed_one():
    """AUTO without its model parks the countdown; coming back it counts down an ordinary gap
    (it restarted at 1: in benchmarks/accel.py, whose settings take turns, the AUTO setting after
    the thresholds-only one paid a timed call, sometimes an exploration, every round)."""
    accel.reset_adaptive(CostModel(rng=random.Random(0)))  # the ordinary gaps: 32 to 95 calls
    accel.set_acceleration("auto")
    x = pd.rand(10)
    with accel.using(adaptive=False):
        for _ in range(3):
            x.sum()  # (parks the countdown)
    accel.reset_stats()
    for _ in range(30):
        x.sum()
    assert accel.get_stats().timed_count == 0
    accel.reset_adaptive()


def test_adaptive_can_be_turned_off_from_the_environment():
    env = dict(os.environ, PYTHONPATH=SRC, PUREDL_ACCEL_ADAPTIVE="0")
    code = (
        "from puredl import accel; from puredl.accel import cli; "
        "print(accel.is_adaptive()); print(cli.info_text())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.splitlines()[0] == "False", out.stderr
    assert "auto cost model: off  (PUREDL_ACCEL_ADAPTIVE=0)" in out.stdout


def test_accel_info_names_the_sizes_on_one_thread(clock, threads, monkeypatch):
    from puredl.accel import cli

    assert "per-size thread policy on; on one thread: no size yet" in cli.info_text()
    FakeCosts(monkeypatch, clock, "reduce_sum", pure=0.85 * MS, torch=threads.sum_cost)
    accel.set_threshold("reduction", 100)
    x = pd.rand(100_000)
    for _ in range(200):
        x.sum()
    assert "on one thread: sum 32.8k+" in cli.info_text()  # (its size bucket: 32768 to 131071)
    accel.reset_adaptive(CostModel())
    assert "per-size thread policy off" in cli.info_text()


def test_a_key_whose_other_backend_is_ruled_out_by_size_is_not_timed_at_every_call():
    """A 4M-element relu: pure would cost ~200 ms, never tried; its torch timings are enough to
    go on, so it is timed at the share its cost allows (it was timed at every call, waiting for a
    pure timing that never came)."""
    m = CostModel(sample_gap=(32, 96))
    key = ("relu", bucket(4 * 10**6), False)
    gaps = []
    for _ in range(40):
        m.plan(key, True, prior_pure_s=200 * MS, prior_torch_s=210 * US)
        m.observe(key, "relu", 4e6, True, 210 * US, prior=True)
        gaps.append(m.next_gap(key))
    assert gaps[: MIN_OBS - 1] == [1] * (MIN_OBS - 1)
    assert min(gaps[MIN_OBS:]) == 10  # 20 us of bookkeeping is 1% of a 210 us call one call in 10


def test_slow_first_calls_of_the_current_count_do_not_switch_the_threads():
    """A new size's first calls fault in fresh pages (~0.7 ms for 4 MB) on whichever count runs
    them first; the count moves only on timings taken again after the other was tried."""
    t = FakeThreads()
    policy = ThreadPolicy(get_threads=t.get, set_threads=t.set)
    policy.activate(True)
    key = ("relu", bucket(10**6), False)
    calls, moves = 0, []
    for _ in range(200):
        policy.begin(key, calls_per_timed=1)
        calls += 1
        cost = (700 * US if calls <= 6 else 45 * US) if t.n > 1 else 80 * US  # 2 threads: warm-up only
        moves.append(policy.end(key, "relu", 1e6, cost)[1])
    assert [m for m in moves if m is not None] == [] and policy.threads(key) == 2

    t2 = FakeThreads()  # a stall that lasts: the second look confirms it, and the count moves
    policy = ThreadPolicy(get_threads=t2.get, set_threads=t2.set)
    policy.activate(True)
    moves = []
    for _ in range(200):
        policy.begin(key, calls_per_timed=1)
        moves.append(policy.end(key, "relu", 1e6, 8 * MS if t2.n > 1 else 80 * US)[1])
    first = next(i for i, m in enumerate(moves) if m is not None)
    assert policy.threads(key) == 1 and first < 40


def test_auto_has_the_thread_policy_unless_it_is_disabled(monkeypatch):
    from puredl import adaptive_threads

    accel.reset_adaptive()
    assert isinstance(accel.adaptive_model().threads, ThreadPolicy)
    monkeypatch.setattr(adaptive_threads, "ENABLED", 0)
    accel.reset_adaptive()
    assert accel.adaptive_model().threads is None
    monkeypatch.setattr(adaptive_threads, "ENABLED", 1)
    accel.reset_adaptive()


def test_a_current_arm_timed_at_zero_is_kept_without_error():
    """(A clock too coarse to see the call times it at 0 s; the explore gap divided by it and
    raised OverflowError out of the op.)"""
    m = CostModel(sample_gap=(1, 2))
    key = ("sum", bucket(300), False)
    for _ in range(2 * MIN_OBS):
        explore, gap = m.plan(key, False, 6e-6, 5e-6)
        assert not explore and gap >= 1
        m.observe(key, "sum", 300, False, 0.0, prior=False)
    assert adaptive.explore_gap(float("inf"), 1.0, 0.02) == adaptive.NEVER


def test_the_second_look_tries_the_other_backend_whatever_its_prior():
    """During the second look both backends' costs are unknown again, and the priors put pure 39 ms
    dearer (beyond MAX_EXPLORE_EXTRA_S, so its tries wait): the current backend's fresh timings
    come first, then the other's, and the look ends with the move (not timed at every call for
    ever, waiting for a try that the prior forbids)."""
    m = CostModel(sample_gap=(1, 2))
    key = ("matmul", bucket(2_000_000), False)
    moves = []
    for _ in range(200):
        use_torch = m.decide(key, True)
        explore, _gap = m.plan(key, use_torch, 40 * MS, 1 * MS)  # priors: pure 40 ms, torch 1 ms
        on_torch = use_torch is not explore
        seconds = 60 * MS if on_torch else 40 * MS  # torch stalls at 60 ms a call
        moves.append(m.observe(key, "matmul", 2_000_000, on_torch, seconds, prior=True))
    assert [(mv.old, mv.new) for mv in moves if mv] == [("torch", "pure")]
    assert moves.index(next(mv for mv in moves if mv)) < 20 and not m.keys[key].rechecking
