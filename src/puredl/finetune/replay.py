"""Replay: phase k also rehearses a few of the earlier phases' training examples.

Rehearsing 1% of earlier data kept ~100% of earlier performance in Continual-T0 (Scialom et al.
2022); a few percent suffice for a weak shift, 25-50% for a strong one (Ibrahim et al. 2024).
Each epoch of phase k adds ``round(ratio * n_k)`` examples drawn without replacement (a fixed
seed per phase and epoch) from the earlier phases' *training* examples, split as evenly as
possible over those phases (the earliest phases take the remainder). The trainer then shuffles
the phase's epochs together as one pass over ``epochs`` blocks, each block holding every new
example once and that epoch's replay draw.

>>> mixed = mix_replay(["n1", "n2", "n3", "n4"], [["a1", "a2", "a3"], ["b1", "b2"]], 0.5, 2, 7, 2)
>>> len(mixed.examples), mixed.per_epoch, mixed.replayed_per_phase
(12, 2, [2, 2])
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ReplayMix:
    """A phase's training examples with replay mixed in (what the trainer runs for one pass)."""

    examples: list[Any]
    per_epoch: int  # replayed examples added to each epoch
    epochs: int
    replayed_per_phase: list[int] = field(default_factory=list)  # over all epochs, per earlier phase

    def describe(self) -> str:
        shares = ", ".join(f"phase {j}: {n}" for j, n in enumerate(self.replayed_per_phase))
        return (
            f"replay: {self.per_epoch} earlier example(s) per epoch x {self.epochs} epoch(s) "
            f"({shares}), shuffled with the new examples as one pass"
        )


def replay_count(ratio: float, n_new: int) -> int:
    """Replayed examples per epoch: ``round(ratio * n_new)`` (halves round up).

    >>> replay_count(0.25, 96), replay_count(0.25, 32), replay_count(0.25, 2)
    (24, 8, 1)
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"replay ratio must be in [0, 1], got {ratio!r}")
    return int(ratio * n_new + 0.5)


def split_evenly(total: int, sizes: list[int]) -> list[int]:
    """``total`` draws shared as evenly as the pools allow; a pool never gives more than it has.

    >>> split_evenly(8, [96, 96]), split_evenly(5, [10, 10]), split_evenly(6, [1, 10])
    ([4, 4], [3, 2], [1, 5])
    """
    if total > sum(sizes):
        raise ValueError(f"cannot draw {total} replay examples from earlier phases holding {sum(sizes)}")
    counts = [0] * len(sizes)
    left = total
    while left:
        open_pools = [j for j, n in enumerate(sizes) if counts[j] < n]
        share, extra = divmod(left, len(open_pools))
        for rank, j in enumerate(open_pools):
            take = min(sizes[j] - counts[j], share + (1 if rank < extra else 0))
            counts[j] += take
            left -= take
    return counts


def mix_replay(
    new: list[Any], earlier: list[list[Any]], ratio: float, epochs: int, seed: int, phase: int
) -> ReplayMix:
    """Phase ``phase``'s examples for ``epochs`` epochs, each with ``replay_count(ratio, len(new))`` replays.

    ``earlier[j]`` holds phase j's training examples. Draws are a pure function of
    ``(seed, phase, epoch)``, so a resumed or repeated run replays the same examples.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    per_epoch = replay_count(ratio, len(new)) if earlier else 0
    counts = split_evenly(per_epoch, [len(pool) for pool in earlier]) if per_epoch else [0] * len(earlier)
    examples: list[Any] = []
    for epoch in range(epochs):
        rng = random.Random(seed * 1_000_003 + phase * 1_009 + epoch)
        examples += list(new)
        for pool, n in zip(earlier, counts):
            examples += rng.sample(pool, n)
    return ReplayMix(examples, per_epoch, epochs, [n * epochs for n in counts])
