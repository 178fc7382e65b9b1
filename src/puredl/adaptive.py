"""AUTO's cost model: what each backend has cost lately, per op category and size bucket.

The calibrated thresholds are measured once, on a quiet machine. When another process holds a
core, torch's intra-op thread pool can stall an op for milliseconds whatever its size, and the
threshold's choice becomes the slow one. So AUTO times a few of its own calls (one in 32-95, the
gap drawn at random so that it never locks onto one op of a repeating training step), keeps the
last few timings of each backend per key ``(category, size bucket, inputs on torch)``, tries
the other backend now and then (as rarely as its expected extra cost allows), and overrides the
threshold when the other backend's typical recent cost is lower by a margin (25% and 5 us).

This module only keeps the books: ``puredl.accel`` asks it what to run and reports timings. It
imports nothing from puredl, and takes its clock and random source as arguments, so tests drive
it with made-up durations.

>>> m = CostModel(sample_gap=(1, 2))
>>> key = ("reduction", bucket(100_000), False)
>>> for _ in range(3):
...     _ = m.observe(key, "sum", 100_000, True, 8e-3, prior=True)   # torch: 8 ms (stalling)
...     move = m.observe(key, "sum", 100_000, False, 0.85e-3, prior=True)  # pure: 0.85 ms
>>> str(move)
'sum 100.0k: torch -> pure (observed torch 8.00 ms vs pure 850 us, typical of 3 and 3 timed calls)'
>>> m.decide(key, True)
False
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import NamedTuple

WINDOW = 5  # timings kept per backend and key (the cost is the second-lowest: see _typical)
MIN_OBS = 3  # timings each backend needs before the evidence can move the choice
MARGIN = 1.25  # the other backend's cost must be this much lower (hysteresis: no flapping)
# ... and cheaper by this much: a timing covers the inputs' conversion and the kernel, not the
# ~3 us a torch result costs afterwards (its wrapper, freeing it), so tiny gaps are not evidence
MIN_GAIN_S = 5e-6
BUDGET = 0.02  # exploration may cost at most this share of a key's time, on its estimates
MAX_EXPLORE_EXTRA_S = 0.02  # never try a backend expected to cost this much more per call
SAMPLE_GAP = (32, 96)  # one call in 32..95 is timed (uniform gap; mean 63.5) ...
TIMED_CALL_S = 6e-6  # ... each costing ~6 us of bookkeeping, so a key whose calls cost more
TIMING_SHARE = 0.01  # is timed more often: at most this share of its time (a 1 ms op: every call)
MIN_EXPLORE_GAP = 2  # timed calls of a key between two explorations, at least
STEADY_EXPLORE_GAP = 8  # ... once both backends are measured (even when they look alike)


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


def _typical(xs: list) -> float:
    """The second-lowest of five (the lowest of three): a cost only counts when most calls pay
    it, so a busy core's stall (nearly every call of a parallel op) counts and a preemption or a
    garbage collection now and then (on any op) does not."""
    return sorted(xs)[(len(xs) - 1) // 3]


class Move(NamedTuple):
    """AUTO's choice for a key changed because of what it observed."""

    op: str  # the op whose timing tipped the balance (the key covers its whole category)
    key: tuple  # (category, bucket, inputs on torch)
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


class _Key:
    """The books of one key: recent timings of each backend (index 0 pure, 1 torch)."""

    __slots__ = ("recent", "median", "seen", "dropped", "since_explore", "explore_gap", "follow_up")

    def __init__(self):
        self.recent: tuple[list, list] = ([], [])
        self.median: list = [None, None]  # _typical(recent), once it holds MIN_OBS timings
        self.seen = [0, 0]
        self.dropped = 0  # timed calls whose kernel never ran where timed (an op outside the contract)
        self.since_explore = 0
        self.explore_gap = MIN_EXPLORE_GAP
        self.follow_up = False  # the other backend just came out cheaper: try it again next time

    def estimate(self, torch: bool, prior_s: float) -> float:
        m = self.median[torch]
        return prior_s if m is None else m


class CostModel:
    """Recent cost of each backend per key; overrides the threshold's choice on clear evidence."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.perf_counter,
        rng: random.Random | None = None,
        sample_gap: tuple[int, int] = SAMPLE_GAP,
        margin: float = MARGIN,
        budget: float = BUDGET,
    ):
        self.clock = clock
        self.rng = rng or random.Random(0)
        self.sample_gap = sample_gap
        self.margin = margin
        self.budget = budget
        self.keys: dict[tuple, _Key] = {}
        # key -> use torch, only where the evidence overrides the threshold (empty on a machine
        # where the thresholds hold)
        self.overrides: dict[tuple, bool] = {}
        # the same, by category: {category: {(bucket, inputs on torch): use torch}}; a category
        # is absent while none of its keys is overridden (AUTO's hot path looks only at that)
        self.by_category: dict[str, dict[tuple, bool]] = {}

    def _book(self, key: tuple) -> _Key:
        k = self.keys.get(key)
        if k is None:
            k = self.keys[key] = _Key()
        return k

    def decide(self, key: tuple, prior: bool) -> bool:
        """Use torch? The observed choice for ``key`` where there is one, else ``prior``."""
        choice = self.overrides.get(key)
        return prior if choice is None else choice

    def plan(
        self, key: tuple, use_torch: bool, prior_pure_s: float, prior_torch_s: float
    ) -> tuple[bool, int]:
        """On a timed call: run this one on the other backend? And how many calls until the next
        timed one? ``use_torch`` is the choice so far; the priors are the calibrated estimates."""
        k = self._book(key)
        return self._explore(k, use_torch, prior_pure_s, prior_torch_s), self._gap(k)

    def next_gap(self, key: tuple) -> int:
        """Calls until the next timed one: 1 while ``key`` still lacks the timings it could act on."""
        return self._gap(self.keys.get(key))

    def explore(self, key: tuple, use_torch: bool, prior_pure_s: float, prior_torch_s: float) -> bool:
        """Run this timed call on the other backend? (:meth:`plan` without the gap.)"""
        return self._explore(self._book(key), use_torch, prior_pure_s, prior_torch_s)

    def _gap(self, k: _Key | None) -> int:
        if k is not None and k.dropped < MIN_OBS:
            seen = k.seen[0] + k.seen[1]
            if seen < MIN_OBS or k.follow_up or (min(k.seen) < MIN_OBS and k.explore_gap <= MIN_EXPLORE_GAP):
                return 1
        lo, hi = self.sample_gap
        gap = lo + int(self.rng.random() * (hi - lo))
        if k is not None:
            known = [m for m in k.median if m]
            if known:  # dear ops are timed often: a stall costs most there, and timing least
                gap = min(gap, max(1, math.ceil(TIMED_CALL_S / (TIMING_SHARE * min(known)))))
        return gap

    def _explore(self, k: _Key, use_torch: bool, prior_pure_s: float, prior_torch_s: float) -> bool:
        """As often as the budget allows: the gap between explorations grows with how much dearer
        the other backend looks (10x dearer: one call in ~450 tries it, 2% of the time), and it
        is never tried when its size alone (the prior) makes it cost MAX_EXPLORE_EXTRA_S more (a
        1000x1000 matmul on pure)."""
        k.since_explore += 1
        if k.seen[use_torch] < MIN_OBS:  # first learn what the current choice costs
            return False
        cur = k.estimate(use_torch, prior_torch_s if use_torch else prior_pure_s)
        prior_other = prior_pure_s if use_torch else prior_torch_s
        if prior_other - cur > MAX_EXPLORE_EXTRA_S:  # by its size, not by a stall it once had
            return False
        if not k.follow_up:
            other = k.estimate(not use_torch, prior_other)
            ratio = other / cur if cur > 0 else math.inf
            if k.seen[not use_torch] < MIN_OBS and ratio < 2.0:
                wanted = MIN_EXPLORE_GAP  # it looks competitive and is unmeasured: look soon
            else:
                mean_gap = 0.5 * (self.sample_gap[0] + self.sample_gap[1])
                wanted = max(STEADY_EXPLORE_GAP, math.ceil((ratio - 1.0) / self.budget / mean_gap))
            k.explore_gap = wanted
            if k.since_explore < wanted:
                return False
        k.follow_up = False
        k.since_explore = 0
        return True

    def drop(self, key: tuple) -> None:
        """A timed call of ``key`` that could not be timed (its kernel did not run on the backend)."""
        self._book(key).dropped += 1

    def observe(
        self, key: tuple, op: str, work: float, torch: bool, seconds: float, prior: bool
    ) -> Move | None:
        """Book one timed call; return the Move when the evidence now overrides (or restores) ``prior``."""
        k = self._book(key)
        r = k.recent[torch]
        r.append(seconds)
        if len(r) > WINDOW:
            del r[0]
        k.seen[torch] += 1
        if len(r) >= MIN_OBS:
            k.median[torch] = _typical(r)
        current = self.decide(key, prior)
        cur_s, other_s = k.median[current], k.median[not current]
        if torch is not current and cur_s is not None and seconds * self.margin + MIN_GAIN_S < cur_s:
            k.follow_up = True  # a promising try: look again at the next timed call
        if cur_s is None or other_s is None or other_s * self.margin + MIN_GAIN_S >= cur_s:
            return None
        new = not current
        k.follow_up, k.since_explore = False, 0  # the tries that led here are done
        category, rest = key[0], key[1:]
        if new is prior:
            self.overrides.pop(key, None)
            inner = self.by_category.get(category)
            if inner is not None:
                inner.pop(rest, None)
                if not inner:
                    del self.by_category[category]
        else:
            self.overrides[key] = new
            self.by_category.setdefault(category, {})[rest] = new
        names = ("pure", "torch")
        return Move(op, key, work, names[current], names[new], cur_s, other_s, k.seen[current], k.seen[new])

    def table(self) -> list[tuple]:
        """``(key, pure cost or None, torch cost or None, overridden choice or None)`` per key."""
        rows = []
        for key, k in sorted(self.keys.items()):
            rows.append((key, k.median[0], k.median[1], self.overrides.get(key)))
        return rows
