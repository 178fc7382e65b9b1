"""AUTO's torch threads: one intra-op thread while parallel ops stall, torch's own count otherwise.

Torch splits an op above its grain (32768 elements) across its intra-op threads and waits for
all of them at the end; when another process holds a core, that wait is a scheduler time slice
(milliseconds) whatever the op's size. On one thread the same op costs what its work costs (no
pool to wait for), but gives up the parallel speed-up a quiet machine offers (~2x at 1M elements
on 2 cores). So the thread count is chosen the way the backend is: on some of AUTO's timed torch
calls of parallel-sized keys (bucket >= PARALLEL_BUCKET) the policy runs the call with the other
thread count, keeps each key's recent timings under both, and switches torch's thread count for
all of AUTO when a key's evidence is clear (the same rule as the backends', THREAD_MARGIN) and
the keys timed both ways agree in sum (one call of each). Trying the other count costs at most
the cost model's exploration budget, so a stalling machine tries torch's threads again only
rarely, and comes back to them when a try finds the stall gone.

The switch happens on timed calls only: between them AUTO pays nothing. PURE and TORCH modes get
torch's own thread count back (:meth:`ThreadPolicy.activate`); a count the user set with
``torch.set_num_threads`` is read before each try and is what the policy returns to.

>>> threads = [2]
>>> p = ThreadPolicy(get_threads=lambda: threads[0], set_threads=lambda n: threads.__setitem__(0, n))
>>> p.activate(True)
>>> key = ("sum", 8, False)
>>> for i in range(20):
...     p.begin(key, calls_per_timed=1)
...     stall = threads[0] > 1  # a busy core: every parallel call on 2 threads waits 8 ms
...     _, move = p.end(key, "sum", 100_000, 8e-3 if stall else 20e-6)
...     if move: break
>>> threads[0], str(move).split(" (")[0]
(1, 'torch threads 2 -> 1 for AUTO')
>>> str(move).split(" (")[1].split(",")[0]
'sum 100.0k observed 8.00 ms on 2 threads vs 20 us on 1'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from puredl import adaptive as _adaptive

# off by default: measured under load (benchmarks/results/accel_2026-11-30_2cpu_load*.md), one
# thread count for all of AUTO helped the ops that stalled and cost the large ones 1.3-1.7x
ENABLED = 0  # 1: accel.reset_adaptive() gives AUTO this policy
PARALLEL_BUCKET = 8  # adaptive.bucket(32768): from torch's grain on, an op may run on several threads
THREAD_MARGIN = 1.5  # a thread count switches all of AUTO: wider than the backends' margin
# a thread count's cost: this quantile of its kept timings (the backends' is 1/3): a stall that
# hits half the calls counts here, since a count that stalls now and then costs its stalls
THREAD_QUANTILE = 0.5


def _torch_get_threads() -> int:
    import torch  # (loaded already: the policy only sees timed torch calls)

    return torch.get_num_threads()


def _torch_set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


class ThreadMove(NamedTuple):
    """AUTO's torch thread count changed because of what it observed."""

    op: str  # the op whose timing tipped the balance
    key: tuple
    work: float
    old: int  # threads
    new: int
    old_s: float  # typical recent seconds per call of ``key`` under each
    new_s: float
    old_n: int
    new_n: int
    compared: int  # keys timed both ways (their sum agreed)

    def __str__(self) -> str:
        secs, human = _adaptive._secs, _adaptive._human
        return (
            f"torch threads {self.old} -> {self.new} for AUTO ({self.op} {human(self.work)} observed "
            f"{secs(self.old_s)} on {self.old} thread{'s' * (self.old > 1)} vs {secs(self.new_s)} "
            f"on {self.new}, typical of {self.old_n} and {self.new_n} timed calls; {self.compared} "
            f"size{'s' * (self.compared > 1)} timed both ways)"
        )


class ThreadPolicy:
    """Which intra-op thread count AUTO's torch calls run with: torch's own, or one."""

    def __init__(
        self,
        *,
        get_threads: Callable[[], int] = _torch_get_threads,
        set_threads: Callable[[int], None] = _torch_set_threads,
        budget: float | None = None,
        margin: float | None = None,
    ):
        self._get, self._set = get_threads, set_threads
        self.budget = _adaptive.BUDGET if budget is None else budget
        self.margin = THREAD_MARGIN if margin is None else margin
        self.single = False  # AUTO runs torch on one thread
        self.active = False  # AUTO is the mode: the policy's count is the one set
        self.own: int | None = None  # torch's count outside the policy (read before each try)
        self.books: dict[tuple, _adaptive.Books] = {}  # arm 0: torch's own count, 1: one thread
        self.pending: tuple | None = None  # (key, ran on one thread, a try) of the timed call under way

    def applies(self, key: tuple) -> bool:
        """Can ``key``'s ops run on several threads (its size from torch's grain on)?"""
        return key[1] >= PARALLEL_BUCKET

    def measured(self, key: tuple) -> bool:
        """Has ``key`` been timed on both thread counts (or is there nothing to choose)? Until
        it has, AUTO keeps a parallel key on torch: a stall on torch's threads must be weighed
        against one thread, not against pure."""
        if (
            self.single
            or not self.active
            or key[1] < PARALLEL_BUCKET
            or (self.own is not None and self.own <= 1)
        ):
            return True  # (on one thread nothing stalls: torch against pure is a fair comparison)
        k = self.books.get(key)
        return k is not None and k.cost[0] is not None and k.cost[1] is not None

    def _other_over_current(self) -> float | None:
        """Over the keys timed both ways, the other count's cost / the current one's (one call each)."""
        cur = other = 0.0
        for b in self.books.values():
            if b.cost[0] is not None and b.cost[1] is not None:
                cur += b.cost[self.single]
                other += b.cost[not self.single]
        return other / cur if cur > 0 else None

    def threads(self) -> int | None:
        """The count AUTO runs torch with now (None: torch's own, not read yet)."""
        return 1 if self.single else self.own

    def begin(self, key: tuple, calls_per_timed: float = 1.0) -> None:
        """A timed torch call of ``key`` is about to run: maybe with the other thread count."""
        self.cancel()  # a try whose kernel raised never reached end(): its count goes back
        if not self.active or key[1] < PARALLEL_BUCKET:
            return
        if not self.single:
            self.own = self._get()  # whatever the user set since
        if self.own <= 1:
            return  # one thread already: nothing to choose
        k = self.books.get(key)
        if k is None:
            k = self.books[key] = _adaptive.Books(calls_per_timed, THREAD_QUANTILE)
        k.calls_per_timed = calls_per_timed
        cur = self.single
        cur_s = k.cost[cur] or 1.0
        other_s = k.cost[not cur]
        if other_s is None:  # unmeasured: competitive (tried soon), unless it stalled elsewhere
            ratio = self._other_over_current() if cur else None
            other_s = cur_s * (ratio or 1.0)
        tried = k.try_other(cur, cur_s, other_s, self.budget)
        ran_single = cur is not tried
        if tried:
            self._set(1 if ran_single else self.own)
        self.pending = (key, ran_single, tried)

    def cancel(self) -> None:
        """The timed call never ran its kernel: put the thread count back."""
        pending, self.pending = self.pending, None
        if pending is not None and pending[2]:
            self._set(1 if self.single else self.own)

    def end(self, key: tuple, op: str, work: float, seconds: float) -> tuple[bool, ThreadMove | None]:
        """Book the timed call. Returns (did it run with AUTO's current count, the ThreadMove if
        the count now changes)."""
        if self.pending is None or self.pending[0] != key:
            self.cancel()
            return True, None
        pending, self.pending = self.pending, None
        _, ran_single, tried = pending
        if tried:
            self._set(1 if self.single else self.own)
        k = self.books[key]
        k.add(ran_single, seconds)
        cur = self.single
        if tried and k.promising(cur, seconds, self.margin):
            k.follow_up = True  # look again at its next timed call
        if not k.cheaper(cur, self.margin):
            if k.cost[cur] is not None:
                k.rechecking = False
            return not tried, None
        if not k.confirmed(cur):  # (a new size's first calls fault in fresh pages: ~0.7 ms for 4 MB)
            return not tried, None
        both = [b for b in self.books.values() if b.cost[0] is not None and b.cost[1] is not None]
        cur_sum = sum(b.cost[cur] for b in both)
        other_sum = sum(b.cost[not cur] for b in both)
        if other_sum * self.margin + _adaptive.MIN_GAIN_S >= cur_sum:
            return not tried, None  # other sizes lose more than this one gains
        old_n = 1 if cur else self.own
        self.single = not cur
        if self.active:
            self._set(1 if self.single else self.own)
        for b in self.books.values():
            b.follow_up, b.since_explore = False, 0
        return False, ThreadMove(
            op,
            key,
            work,
            old_n,
            1 if self.single else self.own,
            k.cost[cur],
            k.cost[not cur],
            k.seen[cur],
            k.seen[not cur],
            len(both),
        )

    def activate(self, auto: bool) -> None:
        """AUTO is (or no longer is) the mode: set its count, or put torch's own back."""
        if auto == self.active:
            return
        self.cancel()
        self.active = auto
        if self.single:
            self._set(1 if auto else self.own)
