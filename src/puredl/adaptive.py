"""AUTO's cost model: what each backend has cost lately, per op and size bucket.

The calibrated thresholds are measured once, on a quiet machine. When another process holds a
core, torch's intra-op thread pool can stall an op for milliseconds whatever its size, and the
threshold's choice becomes the slow one. So AUTO times a few of its own calls (one in 32-95, the
gap drawn at random so that it never locks onto one op of a repeating training step; dear ops
more often, the cheapest less often), keeps the
last few timings of each backend per key ``(op, size bucket, inputs on torch)`` (like with like:
a pure ``max`` costs more than a pure ``sum`` of the same size), tries the other backend now and
then (as rarely as its expected extra cost allows), and overrides the threshold only on clear
evidence: both backends timed at least MIN_OBS times, the other one's low-quantile cost lower by
a margin (a wider one near the crossover, where the threshold's choice is close anyway) and its
median lower too. One outlier, fast or slow, moves nothing.

This module only keeps the books: ``puredl.accel`` asks it what to run and reports timings; a
:class:`~puredl.adaptive_threads.ThreadPolicy`, when given, also chooses torch's intra-op
threads. It imports nothing from puredl, and takes its clock and random source as arguments, so
tests drive it with made-up durations. The decision parameters are module constants, read when
used (``benchmarks/accel.py --set MARGIN=1.3`` changes one for a run).

>>> m = CostModel(sample_gap=(1, 2))
>>> key = ("sum", bucket(100_000), False)
>>> moves = []
>>> for _ in range(8):  # (4 pairs show it, 4 fresh pairs confirm it: a move needs it twice)
...     moves.append(m.observe(key, "sum", 100_000, True, 8e-3, prior=True))  # torch: 8 ms (stalling)
...     moves.append(m.observe(key, "sum", 100_000, False, 0.85e-3, prior=True))  # pure: 0.85 ms
>>> [str(move) for move in moves if move]
['sum 100.0k: torch -> pure (observed torch 8.00 ms vs pure 850 us, typical of 8 and 8 timed calls)']
>>> m.decide(key, True)
False
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import NamedTuple

# ---- decision parameters (read when used: a benchmark may set them for a run)
WINDOW = 8  # timings kept per backend and key
QUANTILE = 1 / 3  # a backend's cost: this quantile of its kept timings, never the lowest one
MIN_OBS = 4  # timings each backend needs before the evidence can move the choice
MARGIN = 1.25  # the other backend's cost must be this much lower (hysteresis: no flapping) ...
NEAR_MARGIN = 1.6  # ... or this much, against the threshold's choice near the crossover
NEAR_FACTOR = 2.0  # "near": the calibrated estimates of the two backends within this factor
# ... and cheaper by this much: a timing covers the inputs' conversion and the kernel, not the
# ~3 us a torch result costs afterwards (its wrapper, freeing it), so tiny gaps are not evidence
MIN_GAIN_S = 5e-6
BUDGET = 0.02  # exploration may cost at most this share of a key's time, on its estimates
MAX_EXPLORE_EXTRA_S = 0.02  # never try a backend expected to cost this much more per call
SAMPLE_GAP = (32, 96)  # one call in 32..95 is timed (uniform gap; mean 63.5) ...
# ... each costing ~6 us of bookkeeping after a cheap op and ~20 us after a 4M-element one (the
# op's data pushed the bookkeeping out of the caches; measured): the dear keys' figure, so a key
TIMED_CALL_S = 2e-5  # whose calls cost more
TIMING_SHARE = 0.01  # is timed more often: at most this share of its time (a 1 ms op: every call),
MAX_GAP_SCALE = 4.0  # and a cheap key less often, up to this many times the ordinary gap
MIN_EXPLORE_GAP = 2  # timed calls of a key between two explorations, at least
STEADY_EXPLORE_GAP = 8  # ... once both backends are measured (even when they look alike)
NEVER = 1 << 62  # the explore gap of an arm whose size alone rules it out


def bucket(work: float) -> int:
    """Size buckets a factor of 4 wide: work 1-3 is bucket 0/1, 100k is 8, 4M is 11."""
    return int(work).bit_length() // 2


def _human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _secs(s: float) -> str:
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} us"


def typical(xs: list, quantile: float | None = None) -> float:
    """The QUANTILE of the timings and never the lowest (the 2nd of 4-5, the 3rd of 6-8): a cost
    counts when most calls pay it, so a busy core's stall (nearly every call of a parallel op)
    counts, a preemption or a garbage collection now and then does not, and neither does one
    call that came out fast."""
    return _pick(sorted(xs), QUANTILE if quantile is None else quantile)


def median(xs: list) -> float:
    """(The upper one of an even count: a stall on half the calls shows.)"""
    s = sorted(xs)
    return s[len(s) // 2]


def _pick(s: list, q: float) -> float:
    return s[min(len(s) - 1, max(1, int((len(s) - 1) * q + 0.5)))]


def mean_gap(sample_gap: tuple[int, int]) -> float:
    return 0.5 * (sample_gap[0] + sample_gap[1] - 1)


def explore_gap(ratio: float, calls_per_timed: float, budget: float) -> int:
    """Timed calls between two tries of an arm that looks ``ratio`` times dearer, so that the
    tries cost at most ``budget`` of the key's time (10x dearer, a key timed one call in 64:
    one try in 8 timed calls, ~500 calls; a 1 ms key timed at every call: one in 450)."""
    if ratio == math.inf:  # the current arm timed at zero (a coarse clock): nothing to gain
        return NEVER
    return max(STEADY_EXPLORE_GAP, math.ceil((ratio - 1.0) / budget / max(calls_per_timed, 1.0)))


class Move(NamedTuple):
    """AUTO's choice for a key changed because of what it observed."""

    op: str
    key: tuple  # (op, bucket, inputs on torch)
    work: float
    old: str  # "pure" or "torch"
    new: str
    old_s: float  # typical recent seconds per call of each
    new_s: float
    old_n: int  # timings seen of each
    new_n: int

    def __str__(self) -> str:
        return (
            f"{self.op} {_human(self.work)}: {self.old} -> {self.new} (observed {self.old} "
            f"{_secs(self.old_s)} vs {self.new} {_secs(self.new_s)}, typical of {self.old_n} "
            f"and {self.new_n} timed calls)"
        )


class Books:
    """Recent timings of two arms (index 0 and 1: pure and torch, or torch's threads and one
    thread) for one key, and when to try the arm not in use."""

    __slots__ = (
        "recent",
        "cost",
        "mid",
        "seen",
        "dropped",
        "since_explore",
        "explore_gap",
        "follow_up",
        "near",
        "calls_per_timed",
        "quantile",
        "rechecking",
    )

    def __init__(self, calls_per_timed: float, quantile: float | None = None):
        self.recent: tuple[list, list] = ([], [])
        self.cost: list = [None, None]  # typical(recent) once it holds MIN_OBS timings
        self.mid: list = [None, None]  # median(recent), likewise
        self.seen = [0, 0]
        self.dropped = 0  # timed calls whose kernel never ran where timed (an op outside the contract)
        self.since_explore = 0
        self.explore_gap = MIN_EXPLORE_GAP
        self.follow_up = False  # the other arm just came out cheaper: try it again next time
        self.near = False  # the calibrated estimates of both arms are close (near the crossover)
        self.calls_per_timed = calls_per_timed  # how many calls one timed call stands for
        self.quantile = quantile  # of the kept timings that is the cost (None: QUANTILE)
        self.rechecking = False  # the current arm is being timed afresh before a move

    def add(self, arm: bool, seconds: float) -> None:
        r = self.recent[arm]
        r.append(seconds)
        if len(r) > WINDOW:
            del r[0]
        self.seen[arm] += 1
        if len(r) >= MIN_OBS:
            s = sorted(r)
            self.cost[arm] = _pick(s, QUANTILE if self.quantile is None else self.quantile)
            self.mid[arm] = s[len(s) // 2]  # median()

    def forget(self, arm: bool) -> None:
        """What ``arm`` cost no longer holds (torch's threads changed): measure it again soon."""
        self.recent[arm].clear()
        self.cost[arm] = self.mid[arm] = None
        self.seen[arm] = 0
        self.follow_up, self.since_explore, self.explore_gap = False, 0, MIN_EXPLORE_GAP

    def cheaper(self, current: bool, margin: float) -> bool:
        """Is the other arm clearly cheaper than ``current``: its typical cost lower by ``margin``
        and MIN_GAIN_S, and its median lower too?"""
        cur, other = self.cost[current], self.cost[not current]
        if cur is None or other is None:
            return False
        return other * margin + MIN_GAIN_S < cur and self.mid[not current] < self.mid[current]

    def confirmed(self, current: bool) -> bool:
        """The other arm just came out clearly cheaper: is that so on a second look? The first
        time, both arms' timings are dropped, to be taken afresh in turns, call after call (see
        ``try_other``): the old ones may be a new size's first calls (fresh pages to fault in) or
        a burst of stalls that has passed, and the other arm's few timings are spread over a long
        stretch while the current arm's are recent, so a machine that runs everything 2x slower
        for a few seconds (a busy host) would look like the current arm's cost. Compared in the
        same few calls, such a swing hits both. A move needs the evidence twice."""
        if self.rechecking:
            self.rechecking = False
            return True
        self.rechecking = True
        for arm in (False, True):
            self.recent[arm].clear()
            self.cost[arm] = self.mid[arm] = None
        return False

    def not_confirmed(self) -> None:
        """The other arm is not clearly cheaper: a second look under way ends here once both
        arms hold fresh timings (it did not confirm the move)."""
        if self.cost[0] is not None and self.cost[1] is not None:
            self.rechecking = False

    def promising(self, current: bool, seconds: float, margin: float) -> bool:
        cur = self.cost[current]
        return cur is not None and seconds * margin + MIN_GAIN_S < cur

    def try_other(self, current: bool, cur_s: float, other_s: float, budget: float) -> bool:
        """Run this timed call on the other arm? ``cur_s`` and ``other_s``: the estimates."""
        self.since_explore += 1
        if self.rechecking:  # the second look: the arms in turns, the other one first
            if len(self.recent[not current]) > len(self.recent[current]):
                return False
            self.follow_up, self.since_explore = False, 0
            return True
        if self.seen[current] < MIN_OBS:  # first learn what the current choice costs
            return False
        if not self.follow_up:
            ratio = other_s / cur_s if cur_s > 0 else math.inf
            if self.seen[not current] < MIN_OBS and ratio < 2.0:
                wanted = MIN_EXPLORE_GAP  # it looks competitive and is unmeasured: look soon
            else:
                wanted = explore_gap(ratio, self.calls_per_timed, budget)
            self.explore_gap = wanted
            if self.since_explore < wanted:
                return False
        self.follow_up = False
        self.since_explore = 0
        return True


class CostModel:
    """Recent cost of each backend per key; overrides the threshold's choice on clear evidence."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.perf_counter,
        rng: random.Random | None = None,
        sample_gap: tuple[int, int] | None = None,
        margin: float | None = None,
        budget: float | None = None,
        threads=None,
    ):
        self.clock = clock
        self.rng = rng or random.Random(0)
        self.sample_gap = sample_gap or SAMPLE_GAP
        self.margin = MARGIN if margin is None else margin
        self.budget = BUDGET if budget is None else budget
        # a puredl.adaptive_threads.ThreadPolicy (or None: torch's threads are left alone)
        self.threads = threads
        self.keys: dict[tuple, Books] = {}
        # key -> use torch, only where the evidence overrides the threshold (empty on a machine
        # where the thresholds hold)
        self.overrides: dict[tuple, bool] = {}
        # the same, by op: {op: {(bucket, inputs on torch): use torch}}; an op is absent while
        # none of its keys is overridden (AUTO's hot path looks only at that)
        self.by_op: dict[str, dict[tuple, bool]] = {}

    def _book(self, key: tuple) -> Books:
        k = self.keys.get(key)
        if k is None:
            k = self.keys[key] = Books(mean_gap(self.sample_gap))
        return k

    def decide(self, key: tuple, prior: bool) -> bool:
        """Use torch? The observed choice for ``key`` where there is one, else ``prior``."""
        choice = self.overrides.get(key)
        return prior if choice is None else choice

    def plan(
        self, key: tuple, use_torch: bool, prior_pure_s: float, prior_torch_s: float
    ) -> tuple[bool, int]:
        """On a timed call: run this one on the other backend? And how many calls until the next
        timed one? ``use_torch`` is the choice so far; the priors are the calibrated estimates.
        With a thread policy, a timed call that runs on torch may also try the other thread count."""
        k = self._book(key)
        if use_torch and self.threads is not None and not self.threads.measured(key):
            explore = False  # torch's two thread counts are compared first
            k.since_explore += 1
        else:
            explore = self._explore(k, use_torch, prior_pure_s, prior_torch_s)
        if self.threads is not None and use_torch is not explore:
            self.threads.begin(key, k.calls_per_timed)
        return explore, self._gap(k)

    def next_gap(self, key: tuple | None = None) -> int:
        """Calls until the next timed one: 1 while ``key`` still lacks the timings it could act on
        (no key: an ordinary gap, drawn at random)."""
        return self._gap(self.keys.get(key))

    def explore(self, key: tuple, use_torch: bool, prior_pure_s: float, prior_torch_s: float) -> bool:
        """Run this timed call on the other backend? (:meth:`plan` without the gap or threads.)"""
        return self._explore(self._book(key), use_torch, prior_pure_s, prior_torch_s)

    def _gap(self, k: Books | None) -> int:
        if k is not None and k.dropped < MIN_OBS:
            seen = k.seen[0] + k.seen[1]
            if (
                seen < MIN_OBS
                or k.follow_up
                or k.rechecking
                or (min(k.seen) < MIN_OBS and k.explore_gap <= MIN_EXPLORE_GAP)
            ):
                return 1
        lo, hi = self.sample_gap
        gap = lo + int(self.rng.random() * (hi - lo))
        if k is not None:
            every = mean_gap(self.sample_gap)
            known = [m for m in k.cost if m]
            if known:  # a timed call's bookkeeping stays near TIMING_SHARE of the key's time:
                # dear ops are timed often (a stall costs most there, and timing least), the
                # cheapest up to MAX_GAP_SCALE times less often than the ordinary gap
                share = TIMED_CALL_S / (TIMING_SHARE * min(known))
                if share < every:
                    dear = max(1, math.ceil(share))
                    gap, every = min(gap, dear), min(every, dear)
                else:
                    scale = min(share / every, MAX_GAP_SCALE)
                    gap, every = max(1, round(gap * scale)), every * scale
            k.calls_per_timed = every  # exploration's budget counts calls, not timed calls
        return gap

    def _explore(self, k: Books, use_torch: bool, prior_pure_s: float, prior_torch_s: float) -> bool:
        """As often as the budget allows: the gap between explorations grows with how much dearer
        the other backend looks (10x dearer: one call in ~450 tries it, 2% of the time), and it
        is never tried when its size alone (the prior) makes it cost MAX_EXPLORE_EXTRA_S more (a
        1000x1000 matmul on pure)."""
        k.near = max(prior_pure_s, prior_torch_s) <= NEAR_FACTOR * min(prior_pure_s, prior_torch_s)
        prior_cur = prior_torch_s if use_torch else prior_pure_s
        prior_other = prior_pure_s if use_torch else prior_torch_s
        cur = k.cost[use_torch]
        cur = prior_cur if cur is None else cur
        if prior_other - cur > MAX_EXPLORE_EXTRA_S:  # by its size, not by a stall it once had
            k.since_explore += 1
            k.explore_gap = NEVER  # (so the key is not timed at every call waiting for it)
            return False
        other = k.cost[not use_torch]
        return k.try_other(use_torch, cur, prior_other if other is None else other, self.budget)

    def drop(self, key: tuple) -> None:
        """A timed call of ``key`` that could not be timed (its kernel did not run on the backend)."""
        self._book(key).dropped += 1
        if self.threads is not None:
            self.threads.cancel()

    def observe(self, key: tuple, op: str, work: float, torch: bool, seconds: float, prior: bool):
        """Book one timed call; return the Move when the evidence now overrides (or restores)
        ``prior`` (or the thread policy's move when torch's threads changed)."""
        if torch and self.threads is not None:
            booked, thread_move = self.threads.end(key, op, work, seconds)
            if thread_move is not None:  # this key's torch timings no longer hold
                books = self.keys.get(key)
                if books is not None:
                    books.forget(True)
                return thread_move
            if not booked or not self.threads.measured(key):
                # a try of the other thread count, or a parallel key whose torch cost is not known
                # at its better thread count yet (a stall on torch's threads is no evidence for
                # pure before one thread was tried): the thread policy's evidence only
                return None
        k = self._book(key)
        k.add(torch, seconds)
        current = self.decide(key, prior)
        margin = self.margin
        if current is prior and k.near:  # leaving the threshold's choice near the crossover
            margin = max(margin, NEAR_MARGIN)
        if torch is not current and k.promising(current, seconds, margin):
            k.follow_up = True  # a promising try: look again at the next timed call
        if not k.cheaper(current, margin):
            k.not_confirmed()
            return None
        if not k.confirmed(current):
            return None
        new = not current
        k.follow_up, k.since_explore = False, 0  # the tries that led here are done
        name, rest = key[0], key[1:]
        if new is prior:
            self.overrides.pop(key, None)
            inner = self.by_op.get(name)
            if inner is not None:
                inner.pop(rest, None)
                if not inner:
                    del self.by_op[name]
        else:
            self.overrides[key] = new
            self.by_op.setdefault(name, {})[rest] = new
        names = ("pure", "torch")
        return Move(
            op,
            key,
            work,
            names[current],
            names[new],
            k.cost[current],
            k.cost[new],
            k.seen[current],
            k.seen[new],
        )

    def activate(self, auto: bool) -> None:
        """AUTO is (or is no longer) the mode: the thread policy's setting applies only in AUTO."""
        if self.threads is not None:
            self.threads.activate(auto)

    def table(self) -> list[tuple]:
        """``(key, pure cost or None, torch cost or None, overridden choice or None)`` per key."""
        rows = []
        for key, k in sorted(self.keys.items()):
            rows.append((key, k.cost[0], k.cost[1], self.overrides.get(key)))
        return rows
