"""The global random generator behind every random factory (reproducible with ``manual_seed``)."""

from __future__ import annotations

import random as _random

default_generator = _random.Random(0)


def manual_seed(seed: int) -> _random.Random:
    """Seed every puredl random factory (rand, randn, randint, randperm, dropout, init, shuffles)."""
    default_generator.seed(int(seed))
    return default_generator


def seed() -> int:
    """Re-seed from system entropy and return the seed used."""
    s = _random.SystemRandom().randrange(2**63)
    default_generator.seed(s)
    return s
