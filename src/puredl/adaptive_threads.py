"""AUTO's torch threads, per size: one intra-op thread for the keys whose parallel calls stall.

Torch splits an op above its grain (32768 elements) across its intra-op threads and waits for
all of them at the end; when another process holds a core, that wait is a scheduler time slice
(milliseconds) whatever the op's size. On one thread the same op costs what its work costs (no
pool to wait for), but gives up the parallel speed-up a quiet machine offers (~2x at 1M elements
on 2 cores). Under load the balance differs by size: a 548x548 matmul stalled on 2 threads (16 ms
against 2.8 ms on one), while relu and add of 1-4M elements were still faster on 2. So the
thread count is chosen per key, the way the backend is: on some of AUTO's timed torch calls of a
parallel-sized key (bucket >= PARALLEL_BUCKET) the policy runs the call with the other count,
keeps the key's recent timings under both, and moves the key to the other count when its
evidence is clear (THREAD_MARGIN, seen twice). Trying the other count costs at most
THREAD_BUDGET of the key's time, so a key that stalls tries torch's threads again only rarely,
and goes back to them when a try finds the stall gone (slowly, by design: each try under load
is a stall).

A key on one thread runs each call as ``set_num_threads(1)``, the kernel, and torch's count back
(~0.2 us each, on calls that cost milliseconds when they stalled); outside those calls torch runs
its own count, so TORCH and PURE modes, ops outside the door and keys that still gain from the
threads are untouched. A count the user set with ``torch.set_num_threads`` is what comes back.

>>> threads = [2]
>>> p = ThreadPolicy(get_threads=lambda: threads[0], set_threads=lambda n: threads.__setitem__(0, n))
>>> p.activate(True)
>>> key = ("sum", 8, False)
>>> for i in range(20):
...     p.begin(key, calls_per_timed=1)
...     stall = threads[0] > 1  # a busy core: every parallel call on 2 threads waits 8 ms
...     _, move = p.end(key, "sum", 100_000, 8e-3 if stall else 20e-6)
...     if move: break
>>> threads[0], p.threads(key), str(move).split(" (")[0]
(2, 1, "torch threads 2 -> 1 for AUTO's sum 100.0k")
>>> str(move).split(" (")[1].split(",")[0]
'observed 8.00 ms on 2 threads vs 20 us on 1'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from puredl import adaptive as _adaptive

# on by default since the count is per key (one global count, measured under load in
# benchmarks/results/accel_2026-11-30_2cpu_load_thread_policy.md, cost the large ops 1.3-1.7x);
# measured per key: docs/acceleration.md "AUTO on a busy machine"
ENABLED = 1  # 0: accel.reset_adaptive() gives AUTO no thread policy (torch's own count always)
PARALLEL_BUCKET = 8  # adaptive.bucket(32768): from torch's grain on, an op may run on several threads
# a try of one thread costs ~2x a call of a large op on a quiet machine, and the call after it
# pays waking torch's pool (+130 us at add 4M): tries are rarer than the backends' (BUDGET 2%)
THREAD_BUDGET = 0.005
THREAD_MARGIN = 1.5  # wider than the backends' margin: a stall must be clear, not noise
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
    """The torch thread count AUTO runs one key's calls with changed because of what it observed."""

    op: str
    key: tuple
    work: float
    old: int  # threads
    new: int
    old_s: float  # typical recent seconds per call of ``key`` under each
    new_s: float
    old_n: int
    new_n: int

    def __str__(self) -> str:
        secs, human = _adaptive._secs, _adaptive._human
        return (
            f"torch threads {self.old} -> {self.new} for AUTO's {self.op} {human(self.work)} (observed "
            f"{secs(self.old_s)} on {self.old} thread{'s' * (self.old > 1)} vs {secs(self.new_s)} "
            f"on {self.new}, typical of {self.old_n} and {self.new_n} timed calls)"
        )


class ThreadPolicy:
    """Which intra-op thread count each parallel-sized key's AUTO torch calls run with: torch's
    own, or one. Outside those calls torch runs its own count."""

    def __init__(
        self,
        *,
        get_threads: Callable[[], int] = _torch_get_threads,
        set_threads: Callable[[int], None] = _torch_set_threads,
        budget: float | None = None,
        margin: float | None = None,
    ):
        self._get, self._set = get_threads, set_threads
        self.budget = THREAD_BUDGET if budget is None else budget
        self.margin = THREAD_MARGIN if margin is None else margin
        self.active = False  # AUTO is the mode: the policy's counts apply
        self.own: int | None = None  # torch's count outside the policy (read before each timed call)
        self.books: dict[tuple, _adaptive.Books] = {}  # arm 0: torch's own count, 1: one thread
        self.single: set[tuple] = set()  # keys whose calls run on one thread
        # the same by op, {op: {(bucket, inputs on torch)}}: AUTO's path looks only at this, and an
        # op is absent while none of its keys runs on one thread (so a quiet machine pays nothing)
        self.by_op: dict[str, set[tuple]] = {}
        self.pending: tuple | None = None  # (key, ran on one thread, a try) of the timed call under way
        # the key whose last timed call tried one thread: its next call on torch's count wakes
        # the pool's other threads (measured: +130 us at add 4M, quiet), a cost of the try, not of
        # the count, so that timing is not booked (where calls of keys on one thread and on torch's
        # count take turns, every call pays the waking: then it is booked, as it is the count's)
        self.cold: tuple | None = None

    def measured(self, key: tuple) -> bool:
        """Has ``key`` been timed on both thread counts (or is there nothing to choose)? Until
        it has, AUTO keeps a parallel key on torch: a stall on torch's threads must be weighed
        against one thread, not against pure."""
        if (
            key in self.single
            or not self.active
            or key[1] < PARALLEL_BUCKET
            or (self.own is not None and self.own <= 1)
        ):
            return True  # (on one thread nothing stalls: torch against pure is a fair comparison)
        k = self.books.get(key)
        return k is not None and k.cost[0] is not None and k.cost[1] is not None

    def threads(self, key: tuple | None = None) -> int | None:
        """The count AUTO runs ``key``'s torch calls with (None: torch's own, not read yet)."""
        return 1 if key in self.single else self.own

    def one_thread(self, fn: Callable, *args):
        """``fn(*args)`` on one intra-op thread, then torch's count back (a key in ``single``)."""
        own = self._get()
        self._set(1)
        try:
            return fn(*args)
        finally:
            self._set(own)

    def begin(self, key: tuple, calls_per_timed: float = 1.0) -> None:
        """A timed torch call of ``key`` is about to run: on its count, or trying the other."""
        self.cancel()  # a call whose kernel raised never reached end(): its count goes back
        if not self.active or key[1] < PARALLEL_BUCKET:
            return
        self.own = self._get()  # whatever the user set since
        if self.own <= 1:
            return  # one thread already: nothing to choose
        k = self.books.get(key)
        if k is None:
            k = self.books[key] = _adaptive.Books(calls_per_timed, THREAD_QUANTILE)
        k.calls_per_timed = calls_per_timed
        cur = key in self.single
        cur_s = k.cost[cur] or 1.0
        other_s = k.cost[not cur]
        tried = k.try_other(cur, cur_s, cur_s if other_s is None else other_s, self.budget)
        ran_single = cur is not tried  # (unmeasured, the other count looks competitive: tried soon)
        if ran_single:
            self._set(1)
        self.pending = (key, ran_single, tried)

    def cancel(self) -> None:
        """The timed call never ran its kernel: put torch's count back."""
        pending, self.pending = self.pending, None
        if pending is not None and pending[1]:
            self._set(self.own)

    def end(self, key: tuple, op: str, work: float, seconds: float) -> tuple[bool, ThreadMove | None]:
        """Book the timed call. Returns (did it run with ``key``'s current count, the ThreadMove if
        ``key``'s count now changes)."""
        if self.pending is None or self.pending[0] != key:
            self.cancel()
            return True, None
        pending, self.pending = self.pending, None
        _, ran_single, tried = pending
        if ran_single:
            self._set(self.own)
            if tried:
                self.cold = key
        elif self.cold == key:
            self.cold = None
            return True, None  # the pool woke for this call after the try: not what the count costs
        k = self.books[key]
        k.add(ran_single, seconds)
        cur = key in self.single
        if tried and k.promising(cur, seconds, self.margin):
            k.follow_up = True  # look again at its next timed call
        if not k.cheaper(cur, self.margin):
            k.not_confirmed()
            return not tried, None
        if not k.confirmed(cur):  # (a new size's first calls fault in fresh pages: ~0.7 ms for 4 MB)
            return not tried, None
        name, rest = key[0], key[1:]
        if cur:
            self.single.discard(key)
            inner = self.by_op.get(name)
            if inner is not None:
                inner.discard(rest)
                if not inner:
                    del self.by_op[name]
        else:
            self.single.add(key)
            self.by_op.setdefault(name, set()).add(rest)
        k.follow_up, k.since_explore = False, 0
        return False, ThreadMove(
            op,
            key,
            work,
            1 if cur else self.own,
            self.own if cur else 1,
            k.cost[cur],
            k.cost[not cur],
            k.seen[cur],
            k.seen[not cur],
        )

    def activate(self, auto: bool) -> None:
        """AUTO is (or no longer is) the mode: only AUTO's calls run on the policy's counts."""
        if auto != self.active:
            self.cancel()
            self.active = auto
