"""Acceleration layer: which backend runs each op (PURE, TORCH or AUTO), statistics and logging.

``select`` is on every op's hot path, so the PURE case with pure inputs returns at once.
"""

from __future__ import annotations

import os
from enum import Enum

from puredl.backends import pure as _pure


class AccelMode(str, Enum):
    PURE = "pure"
    TORCH = "torch"
    AUTO = "auto"


class AccelStats:
    """Counts of ops run on each backend, in total and per op."""

    __slots__ = ("pure_count", "torch_count", "fallback_count", "per_op")

    def __init__(self):
        self.pure_count = 0
        self.torch_count = 0
        self.fallback_count = 0
        self.per_op: dict[str, list[int]] = {}  # op -> [pure, torch, fallback]

    def total(self) -> int:
        return self.pure_count + self.torch_count

    def __repr__(self) -> str:
        return f"AccelStats(pure={self.pure_count}, torch={self.torch_count}, fallback={self.fallback_count})"


_mode = AccelMode.PURE
_stats = AccelStats()


def get_current_mode() -> AccelMode:
    return _mode


def get_stats() -> AccelStats:
    return _stats


def reset_stats() -> None:
    global _stats
    _stats = AccelStats()


def _count_pure(op: str) -> None:
    _stats.pure_count += 1
    row = _stats.per_op.get(op)
    if row is None:
        row = _stats.per_op[op] = [0, 0, 0]
    row[0] += 1


def select(op: str, category: str, work: int, tensors: tuple):
    """Pick the backend for one op and return (backend, impls of ``tensors`` on it)."""
    if _mode is AccelMode.PURE:
        for t in tensors:
            if t._be is not _pure:
                break
        else:
            _count_pure(op)
            return _pure, [t._impl for t in tensors]
    raise NotImplementedError("the torch backend is not wired yet")


def set_acceleration(mode: AccelMode | str) -> None:
    """Choose PURE (default), TORCH or AUTO."""
    global _mode
    _mode = AccelMode(mode.value if isinstance(mode, AccelMode) else str(mode).lower())


if os.environ.get("PUREDL_ACCEL"):
    set_acceleration(os.environ["PUREDL_ACCEL"])
