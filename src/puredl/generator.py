"""``puredl.Generator``: torch.Generator's interface over Python's ``random.Random``.

Every puredl function that takes ``generator=`` (``rand``, ``randn``, ``randint``,
``randperm``, ``utils.data.random_split``, ``RandomSampler``, ``DataLoader``) accepts one.
The numbers are Python's Mersenne Twister draws, not torch's: the same seed gives the same
numbers in puredl every time, and different ones than torch.

>>> import puredl as pd
>>> g = pd.Generator().manual_seed(42)
>>> a = pd.rand(2, generator=g); b = pd.rand(2, generator=pd.Generator().manual_seed(42))
>>> a.tolist() == b.tolist()
True
"""

from __future__ import annotations

import random as _random
from typing import Any


class Generator(_random.Random):
    """A random-number generator object (``torch.Generator(device="cpu")``)."""

    def __init__(self, device: Any = "cpu"):
        from puredl.placement import device as _device

        self.device = _device(device)
        self._initial_seed = 67280421310721  # torch's default seed, for initial_seed()
        super().__init__(self._initial_seed)

    def manual_seed(self, seed: int) -> Generator:
        """Seed it; returns the generator itself so ``Generator().manual_seed(0)`` chains."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"manual_seed expected an int seed, got {seed!r}")
        self._initial_seed = seed
        super().seed(seed)
        return self

    def seed(self, a: Any = None, version: int = 2) -> int:  # type: ignore[override]
        """Re-seed from system entropy and return the seed (torch's ``Generator.seed()``)."""
        if a is not None:  # random.Random's own re-seeding path (used by its __init__)
            super().seed(a, version)
            return a
        s = _random.SystemRandom().randrange(2**63)
        self._initial_seed = s
        super().seed(s)
        return s

    def initial_seed(self) -> int:
        """The seed last given to ``manual_seed`` (or drawn by ``seed()``)."""
        return self._initial_seed

    def get_state(self) -> Any:
        """The generator's state (Python's state tuple, not torch's ByteTensor)."""
        return self.getstate()

    def set_state(self, state: Any) -> Generator:
        self.setstate(state)
        return self

    def __repr__(self) -> str:
        return f"<puredl.Generator object (device={self.device})>"
