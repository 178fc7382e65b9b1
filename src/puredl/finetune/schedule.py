"""Learning-rate schedule: linear warm-up, then cosine, linear or constant decay.

The factor multiplies the peak learning rate at optimizer step ``step`` (0-based). Warm-up
starts above zero and decay ends above zero, so no step is wasted with a zero learning rate.

>>> [round(lr_factor(s, total=4, warmup=0, kind="linear"), 2) for s in range(4)]
[1.0, 0.75, 0.5, 0.25]
>>> round(lr_factor(0, total=10, warmup=1, kind="cosine"), 2)
0.5
"""

from __future__ import annotations

import math


def warmup_steps_for(total: int, warmup_steps: int, warmup_ratio: float) -> int:
    """Warm-up length: ``warmup_steps`` when set, else ``ceil(ratio * total)``, never all steps."""
    steps = warmup_steps if warmup_steps > 0 else math.ceil(warmup_ratio * total)
    return max(0, min(steps, total - 1))


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """Multiplier of the peak learning rate at ``step`` of ``total`` optimizer steps."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "linear":
        return 1.0 - progress
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown scheduler {kind!r}; use cosine, linear or constant")
