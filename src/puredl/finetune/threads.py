"""CPU thread policy for fine-tuning: how many torch threads, and whether idle ones spin or sleep.

On a machine shared with other busy processes, OpenMP's default (idle threads spin a while, waiting
for the next parallel region) makes torch's threads fight the other processes for cores: with
one busy process, 2 threads were 1.45-1.6x slower than 1 thread on a 2-core machine, and with
2-3 competing jobs 10-30x slower. ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep at once)
brought 2 threads back to about 1-thread speed. OpenMP reads that variable once, when torch
loads it, so it must be in the environment before ``import torch``: ``prepare_environment``
sets it (when the user has not) and the fine-tuning entry points call it before torch loads.

Policies (``training.thread_policy``):

- ``torch`` (the default): torch's default threads and OpenMP's default waiting;
- ``passive``: torch's default threads, ``OMP_WAIT_POLICY=PASSIVE``;
- ``adaptive``: OpenMP's default waiting, and between optimizer steps the thread count follows
  the cores that other processes' runnable tasks leave free (the median of the last few
  readings). Measured on 2 cores (benchmarks/results/finetune_throughput_2026-12-01_*): on a
  quiet machine it keeps torch's count and speed (``passive`` there cost 12-27%: sleeping threads
  wake late for each small op); with another busy process it drops to one thread, where the wait
  policy no longer matters, and trains 1.4-2x faster than ``torch``.

Why ``torch`` stays the default: torch's kernels round differently at different thread counts,
so a count that follows the machine's load makes a run's numbers depend on what else ran (a
resumed run, or a rerun, is bit-identical to the first only if the counts matched). Choose
``adaptive`` on a shared machine when speed matters more than bit-identical reruns.

``training.num_threads: N`` fixes the count (``adaptive`` then never goes above N).

>>> parse_policy("passive:1")
('passive', 1)
>>> wait_policy_for("passive"), wait_policy_for("adaptive")
('PASSIVE', None)
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any

POLICIES = ("torch", "passive", "adaptive")
DEFAULT_POLICY = "torch"  # a fixed count: numbers that do not depend on the machine's load (module doc)
WAIT_ENV = "OMP_WAIT_POLICY"
READINGS = 5  # the adaptive count follows the median of this many load readings (one per step)


def parse_policy(spec: str) -> tuple[str, int | None]:
    """``"NAME"`` or ``"NAME:N"`` (N fixed threads) -> ``(name, N or None)``; a clear error otherwise.

    >>> parse_policy("torch")
    ('torch', None)
    >>> parse_policy("spin")
    Traceback (most recent call last):
    ValueError: unknown thread policy 'spin'; use one of torch, passive, adaptive (optionally :N threads)
    """
    name, _, count = spec.strip().partition(":")
    if name not in POLICIES:
        raise ValueError(
            f"unknown thread policy {name!r}; use one of {', '.join(POLICIES)} (optionally :N threads)"
        )
    if not count:
        return name, None
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"thread policy {spec!r}: N in NAME:N must be a whole number >= 1")
    return name, int(count)


def wait_policy_for(policy: str) -> str | None:
    """The ``OMP_WAIT_POLICY`` a policy wants (None: OpenMP's default)."""
    parse_policy(policy)
    return "PASSIVE" if policy.partition(":")[0] == "passive" else None


def prepare_environment(policy: str, env: MutableMapping[str, str] | None = None) -> str:
    """Set ``OMP_WAIT_POLICY`` for ``policy`` before torch loads; returns what was done, in words.

    A value the user already set is kept. Once torch is imported OpenMP has read its settings, so
    nothing is changed and the answer says so.

    >>> env = {}
    >>> prepare_environment("passive", env), env
    ('OMP_WAIT_POLICY=PASSIVE', {'OMP_WAIT_POLICY': 'PASSIVE'})
    >>> prepare_environment("torch", {"OMP_WAIT_POLICY": "ACTIVE"})
    'OMP_WAIT_POLICY=ACTIVE (set by the user)'
    """
    env = os.environ if env is None else env
    wanted = wait_policy_for(policy)
    if WAIT_ENV in env:
        return f"{WAIT_ENV}={env[WAIT_ENV]} (set by the user)"
    if wanted is None:
        return f"{WAIT_ENV} unset (OpenMP's default: idle threads spin a while, then sleep)"
    if env is os.environ and "torch" in sys.modules:
        return (
            f"{WAIT_ENV} unset: torch was imported before the thread policy could set it "
            f"(set {WAIT_ENV}={wanted} in the environment, or import torch after puredl.finetune "
            "has started the run)"
        )
    env[WAIT_ENV] = wanted
    return f"{WAIT_ENV}={wanted}"


def _runnable_now(task_states: Callable[[], list[str]]) -> int | None:
    """Runnable tasks of other processes right now: ``/proc/loadavg``'s running count (every
    runnable task on the machine) less this process's own runnable threads."""
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            running = int(fh.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None
    return max(0, running - max(1, task_states().count("R")))  # the reader itself runs


def own_task_states() -> list[str]:
    """The scheduler state letter (R, S, D, ...) of each thread of this process (Linux)."""
    states = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return states
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue  # the thread ended meanwhile
        end = stat.rfind(")")  # the command name may hold spaces and parentheses
        if end >= 0:  # (an ending thread can leave nothing to read: skip it, never fail a step)
            states.append(stat[end + 2 : end + 3])
    return states


def runnable_others(
    readings: int = 3, gap_s: float = 0.001, task_states: Callable[[], list[str]] = own_task_states
) -> int | None:
    """Runnable tasks of other processes, the least of ``readings`` readings ``gap_s`` apart
    (None where ``/proc/loadavg`` is unreadable).

    Our own torch threads are subtracted: just after a step one of them may still be finishing or
    spinning, and counted as another process it halved the threads on a quiet machine (measured).
    The least of a few readings drops such moments, and other processes' short bursts with them.
    """
    seen = []
    for i in range(readings):
        if i:
            time.sleep(gap_s)
        now = _runnable_now(task_states)
        if now is None:
            return None
        seen.append(now)
    return min(seen)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class ThreadPolicy:
    """The policy applied to torch after it loads; ``between_steps`` is called after every step."""

    def __init__(
        self,
        policy: str,
        num_threads: int | None = None,
        read_others: Callable[[], int | None] = runnable_others,
        cores: int | None = None,
        set_threads: Callable[[int], None] | None = None,
        get_threads: Callable[[], int] | None = None,
    ) -> None:
        parse_policy(policy)
        self.policy = policy
        self.environment = ""
        if set_threads is None or get_threads is None:
            torch = sys.modules.get("torch") or __import__("torch")
            set_threads, get_threads = torch.set_num_threads, torch.get_num_threads
        self._set, self._get = set_threads, get_threads
        if num_threads:
            self._set(num_threads)
        self.most = self._get()  # adaptive never goes above torch's default (or N)
        self.cores = cores or usable_cores()
        self._read = read_others
        self._seen: deque[int] = deque(maxlen=READINGS)
        self.changes = 0
        if policy == "adaptive":
            self.between_steps()

    @property
    def threads(self) -> int:
        return self._get()

    def between_steps(self) -> None:
        """Adaptive: read the load once and follow the median of the recent readings."""
        if self.policy != "adaptive":
            return
        others = self._read()
        if others is None:
            return  # no load reading here: stay at the passive count
        self._seen.append(others)
        busy = statistics.median_low(self._seen)
        want = max(1, min(self.most, self.cores - busy))
        if want != self._get():
            self._set(want)
            self.changes += 1

    def describe(self) -> str:
        """``thread policy passive: 2 threads, OMP_WAIT_POLICY=PASSIVE``."""
        text = f"thread policy {self.policy}: {self.threads} of {self.cores} cores"
        if self.policy == "adaptive":
            text += f" (at most {self.most}; changed {self.changes} time(s))"
        return text + (f", {self.environment}" if self.environment else "")


def start(policy: str, num_threads: int | None = None) -> ThreadPolicy:
    """Set the wait policy (if torch is not loaded yet), load torch and apply the thread count."""
    said = prepare_environment(policy)
    require_torch()
    applied = ThreadPolicy(policy, num_threads)
    applied.environment = said
    return applied


def require_torch() -> Any:
    from puredl._optional import require

    return require("torch", "llm", "fine-tuning")
