"""Length-grouped batch order: batches of similar lengths, so little padding is computed.

The order is transformers' ``LengthGroupedSampler`` (``get_length_grouped_indices``): shuffle
the examples, cut the shuffle into mega-batches of ``mult x group`` examples (``mult`` = 50,
or fewer so that there are at least 4 mega-batches), sort each mega-batch by length (longest
first), and move the longest example of all to the front (an out-of-memory error shows on the
first step, not the last). Consecutive slices of the order then hold similar lengths, while the
shuffle still decides which examples meet. ``group`` is one optimizer step's examples
(``batch_size x grad_accum``), as the Trainer passes it.

The shuffle uses the same generator as the plain order (``batching.epoch_order``), so the
order is a pure function of (lengths, group, seed, epoch): a resumed phase replays it exactly.

>>> order = length_grouped_order([3, 9, 1, 7, 5, 2, 8, 4], group=2, seed=0, epoch=0)
>>> sorted(order) == list(range(8))
True
>>> padding_fraction([3, 9, 1, 7], [[0, 1], [2, 3]])  # rows padded to 9 and 7: 12 of 32 positions
0.375
"""

from __future__ import annotations

from collections.abc import Sequence

from puredl._optional import require

MEGA_BATCH_MULT = 50  # transformers' default: mega-batches of at most 50 groups


def order_generator(seed: int, epoch: int):
    """The torch generator that shuffles epoch ``epoch`` (shared by the plain and the grouped order)."""
    torch = require("torch", "llm", "fine-tuning")
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def length_grouped_order(lengths: Sequence[int], group: int, seed: int, epoch: int) -> list[int]:
    """Epoch ``epoch``'s example order with similar lengths next to each other (see the module doc)."""
    torch = require("torch", "llm", "fine-tuning")
    n = len(lengths)
    if n == 0:
        return []
    mult = min(n // (group * 4), MEGA_BATCH_MULT) or 1
    shuffled = torch.randperm(n, generator=order_generator(seed, epoch)).tolist()
    size = mult * group
    megas = [shuffled[i : i + size] for i in range(0, n, size)]
    megas = [
        sorted(m, key=lambda i: lengths[i], reverse=True) for m in megas
    ]  # stable: ties keep the shuffle
    longest = max(range(len(megas)), key=lambda j: (lengths[megas[j][0]], -j))  # the first of the longest
    megas[0][0], megas[longest][0] = megas[longest][0], megas[0][0]
    return [i for m in megas for i in m]


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The share of computed positions that are padding when each batch is right-padded to its longest."""
    positions = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    real = sum(lengths[i] for b in batches for i in b)
    return (positions - real) / positions if positions else 0.0
