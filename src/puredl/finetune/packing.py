"""Packing: several examples in one row of up to ``max_length`` tokens, none seeing another.

Rows are filled best-fit-decreasing (longest example first, each into the fullest row it still
fits; TRL's ``packing_strategy="bfd"``), once per phase, so the rows are a pure function of the
examples and the same in every epoch and on resume. Inside a row:

- position ids restart at 0 at each example, so each example gets the rotary positions it has
  alone;
- no 2-D attention mask and no KV cache are passed: transformers (checked on 5.x for Gemma 3's
  sliding and full layers, eager and SDPA) then reads the restarts in the position ids as
  example boundaries and builds a block-diagonal causal mask, in which the sliding window
  counts positions within the example (``masking_utils.find_packed_sequence_indices``; with a
  cache it does not, so the trainer passes ``use_cache=False``);
- the first label of each example is ``-100``, so no loss predicts an example's first token
  from the one before it.

:func:`check_packing_isolates` runs two examples packed and alone through the model once, and
refuses a model whose attention crosses the boundaries.

>>> a = EncodedExample([2, 5, 6], [-100, 5, 6]); b = EncodedExample([2, 7], [7, 7])
>>> row = pack_examples([a, b], max_length=8)[0]
>>> row.input_ids, row.labels, row.position_ids
([2, 5, 6, 2, 7], [-100, 5, 6, -100, 7], [0, 1, 2, 0, 1])
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from puredl._optional import require
from puredl.finetune.batching import IGNORE_INDEX, EncodedExample
from puredl.finetune.errors import FinetuneError


def pack_rows(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Example indices of each row: best-fit decreasing into rows of at most ``max_length`` tokens.

    >>> pack_rows([5, 3, 4, 2], max_length=8)
    [[0, 1], [2, 3]]
    """
    if any(n > max_length for n in lengths):
        raise ValueError(
            f"pack_rows: an example of {max(lengths)} tokens does not fit max_length {max_length}"
        )
    rows: list[list[int]] = []
    room: list[
        tuple[int, int]
    ] = []  # (free tokens, row) sorted: the fullest row that fits is found by bisect
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):  # stable: ties keep their order
        at = bisect.bisect_left(room, (lengths[i], -1))
        if at == len(room):
            rows.append([i])
            free, row = max_length - lengths[i], len(rows) - 1
        else:
            free, row = room.pop(at)
            rows[row].append(i)
            free -= lengths[i]
        bisect.insort(room, (free, row))
    return rows


def pack_examples(examples: Sequence[EncodedExample], max_length: int) -> list[EncodedExample]:
    """The examples packed into rows (see the module doc); each row carries its ``position_ids``."""
    rows = pack_rows([len(e.input_ids) for e in examples], max_length)
    packed: list[EncodedExample] = []
    for row in rows:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in row:
            e = examples[i]
            ids += e.input_ids
            labels += [IGNORE_INDEX] + e.labels[1:]  # never a target across the boundary
            positions += range(len(e.input_ids))
        packed.append(EncodedExample(input_ids=ids, labels=labels, position_ids=positions))
    return packed


def check_packing_isolates(model: Any, examples: Sequence[EncodedExample], device: str = "cpu") -> None:
    """Raise unless two examples packed in one row give the hidden states they give alone.

    Uses the two shortest examples (a cheap forward) in eval mode without gradients. A model whose
    attention ignores packed position ids would let the second example see the first: refused.
    """
    torch = require("torch", "llm", "fine-tuning")
    if len(examples) < 2:
        return
    shortest = sorted(examples, key=lambda e: len(e.input_ids))[:2]
    row = pack_examples(shortest, sum(len(e.input_ids) for e in shortest))[0]
    two = [shortest[i] for i in pack_rows([len(e.input_ids) for e in shortest], len(row.input_ids))[0]]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = _last_hidden(model, row.input_ids, row.position_ids, device)
            alone = torch.cat([_last_hidden(model, e.input_ids, None, device) for e in two])
    finally:
        model.train(was_training)
    # float32 agrees to ~1e-6 of the scale, bf16 to ~1e-2; attention across the boundary moves it by O(1)
    relative = 1e-3 if packed.dtype == torch.float32 else 5e-2
    packed, alone = packed.float(), alone.float()
    tolerance = relative * (1 + float(alone.abs().max()))
    if packed.shape != alone.shape or float((packed - alone).abs().max()) > tolerance:
        raise FinetuneError(
            f"training.packing: {type(model).__name__} lets packed examples attend to each other "
            "(its attention ignores restarting position ids); set training.packing: false"
        )


def _last_hidden(model: Any, ids: list[int], positions: list[int] | None, device: str) -> Any:
    """The decoder's last hidden states of one row ([tokens, hidden])."""
    torch = require("torch", "llm", "fine-tuning")
    kwargs: dict[str, Any] = {"input_ids": torch.tensor([ids], device=device), "use_cache": False}
    if positions is not None:
        kwargs["position_ids"] = torch.tensor([positions], device=device)
    out = model(**kwargs, output_hidden_states=True)
    return out.hidden_states[-1][0]
