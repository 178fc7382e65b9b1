"""Where ops ran: counts per backend, in total and per op, and AUTO's timed calls and moves.

Dispatch counts every call it runs (``count_pure`` / ``count_torch`` on its fast paths,
``count_fallback`` when torch failed and pure ran instead).
"""

from __future__ import annotations

import sys
from typing import NamedTuple


class OpStats(NamedTuple):
    pure: int
    torch: int
    fallback: int


class AccelStats:
    """Counts of ops run on each backend, in total and per op.

    ``pure_count`` and ``torch_count`` say where ops ran; a fallback (torch failed, pure ran) is
    counted in ``pure_count`` and in ``fallback_count``.
    """

    __slots__ = (
        "pure_count",
        "torch_count",
        "fallback_count",
        "per_op",
        "timed_count",
        "explored_count",
        "moves",
    )

    def __init__(self):
        self.pure_count = 0
        self.torch_count = 0
        self.fallback_count = 0
        self.per_op: dict[str, list[int]] = {}  # op -> [pure, torch, fallback]
        self.timed_count = 0  # AUTO's timed calls (its cost model's evidence)
        self.explored_count = 0  # of which AUTO ran on the other backend to see what it costs now
        self.moves: list = []  # adaptive.Move: when and why AUTO's observed choice moved

    def total(self) -> int:
        return self.pure_count + self.torch_count

    def copy(self) -> AccelStats:
        """A snapshot that later ops do not change."""
        c = AccelStats()
        c.pure_count, c.torch_count, c.fallback_count = self.pure_count, self.torch_count, self.fallback_count
        c.per_op = {k: list(v) for k, v in self.per_op.items()}
        c.timed_count, c.explored_count, c.moves = self.timed_count, self.explored_count, list(self.moves)
        return c

    def ops(self) -> dict[str, OpStats]:
        """Per-op counts: ``{"matmul": OpStats(pure=2, torch=5, fallback=0), ...}``."""
        return {op: OpStats(*row) for op, row in sorted(self.per_op.items())}

    def op(self, name: str) -> OpStats:
        return OpStats(*self.per_op.get(name, (0, 0, 0)))

    @property
    def torch_fraction(self) -> float:
        total = self.total()
        return self.torch_count / total if total else 0.0

    def __repr__(self) -> str:
        return f"AccelStats(pure={self.pure_count}, torch={self.torch_count}, fallback={self.fallback_count})"


_stats = AccelStats()


def get_stats() -> AccelStats:
    return _stats


def reset_stats() -> None:
    global _stats
    _stats = AccelStats()


def count_pure(op: str) -> None:
    _stats.pure_count += 1
    row = _stats.per_op.get(op)
    if row is None:
        row = _stats.per_op[op] = [0, 0, 0]
    row[0] += 1


def count_torch(op: str) -> None:
    _stats.torch_count += 1
    row = _stats.per_op.get(op)
    if row is None:
        row = _stats.per_op[op] = [0, 0, 0]
    row[1] += 1


def uncount(op: str, on_torch: bool) -> None:
    """Take back one call of ``op`` counted but not run (an in-place kernel that declined)."""
    if on_torch:
        _stats.torch_count -= 1
    else:
        _stats.pure_count -= 1
    row = _stats.per_op[op]
    row[1 if on_torch else 0] -= 1
    if row == [0, 0, 0]:
        del _stats.per_op[op]


def count_fallback(op: str) -> None:
    """``op`` ran on pure after torch failed (it counts as a pure call)."""
    _stats.fallback_count += 1
    _stats.pure_count += 1
    row = _stats.per_op.setdefault(op, [0, 0, 0])
    row[0] += 1
    row[2] += 1


def uncount_torch(op: str) -> None:
    """Take back one torch call of ``op`` (it failed and falls back)."""
    _stats.torch_count -= 1
    _stats.per_op[op][1] -= 1


def format_work(n: float) -> str:
    """A count of work units, short: ``1.0G``, ``4.1k``, ``98``; ``never`` for infinity.

    >>> format_work(1_000_000_000), format_work(4096), format_work(float("inf"))
    ('1.0G', '4.1k', 'never')
    """
    if n == float("inf"):
        return "never"
    n = float(n)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def format_stats(stats: AccelStats | None = None) -> str:
    """The statistics as a small table: totals, the share of ops on torch, and per-op counts."""
    from puredl.accel.settings import get_current_mode

    s = stats or _stats
    total = s.total()
    lines = [
        f"Acceleration statistics (mode {get_current_mode().value})",
        f"  pure:      {s.pure_count:>8}",
        f"  torch:     {s.torch_count:>8}"
        + (f"  ({100.0 * s.torch_count / total:.1f}% of {total} ops)" if total else ""),
        f"  fallbacks: {s.fallback_count:>8}",
    ]
    if s.per_op:
        width = max(14, *(len(name) + 1 for name in s.per_op))
        lines.append(f"  {'op':<{width}}{'pure':>9}{'torch':>9}{'fallback':>10}")
        for name, row in sorted(s.per_op.items(), key=lambda kv: -(kv[1][0] + kv[1][1])):
            lines.append(f"  {name:<{width}}{row[0]:>9}{row[1]:>9}{row[2]:>10}")
    if s.timed_count:
        lines.append(f"  auto timed {s.timed_count} calls ({s.explored_count} on the other backend)")
    for move in s.moves:
        lines.append(f"  moved: {move}")
    return "\n".join(lines)


def print_stats(stats: AccelStats | None = None, file=None) -> None:
    """Print :func:`format_stats`."""
    print(format_stats(stats), file=file or sys.stdout)
