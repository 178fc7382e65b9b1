"""Turn text examples into padded token batches whose labels skip padding and prompt tokens.

An example is ``prompt`` (context, not trained on) followed by ``text`` (trained on). The prompt
is tokenized with the tokenizer's special tokens (Gemma's ``<bos>``), the text without them and
closed by ``<eos>``; labels are ``-100`` (ignored by the loss) on the prompt and on padding.

>>> enc = EncodedExample(input_ids=[2, 5, 6, 7], labels=[-100, -100, 6, 7])
>>> batch = collate([enc], pad_id=0)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from puredl._optional import require

IGNORE_INDEX = -100


@dataclass
class EncodedExample:
    """Token ids of one example and its labels (``-100`` where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def n_targets(self) -> int:
        """Tokens that are predicted (labels other than -100, excluding the first position)."""
        return sum(1 for t in self.labels[1:] if t != IGNORE_INDEX)


def encode_example(tokenizer: Any, text: str, prompt: str = "", max_length: int = 128) -> EncodedExample:
    """Tokenize ``prompt + text``; only ``text`` tokens (and ``<eos>``) carry labels.

    Too long: the prompt loses tokens from its start (after ``<bos>``) so that the answer
    at the end survives; a text longer than ``max_length`` alone is cut at its end.
    """
    prefix = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    body = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        body.append(tokenizer.eos_token_id)
    room = max_length - len(body)
    if len(prefix) > room and len(prefix) > 1:
        head = prefix[:1] if prefix[0] == tokenizer.bos_token_id else []
        keep = max(0, room - len(head))
        prefix = head + (prefix[len(prefix) - keep :] if keep else [])
    ids = (prefix + body)[:max_length]
    labels = ([IGNORE_INDEX] * len(prefix) + body)[:max_length]
    return EncodedExample(input_ids=ids, labels=labels)


def encode_examples(
    tokenizer: Any, examples: Iterable[Any], max_length: int
) -> tuple[list[EncodedExample], int]:
    """Encode ``TextExample``-like objects (``.text``, ``.prompt``); drop ones left with no target.

    Returns ``(encoded, dropped)``; ``dropped`` counts examples with nothing left to predict.
    """
    encoded: list[EncodedExample] = []
    dropped = 0
    for ex in examples:
        enc = encode_example(tokenizer, ex.text, getattr(ex, "prompt", "") or "", max_length)
        if enc.n_targets == 0:
            dropped += 1
            continue
        encoded.append(enc)
    return encoded, dropped


def collate(examples: list[EncodedExample], pad_id: int, device: str = "cpu") -> dict[str, Any]:
    """Right-pad to the longest example: ``input_ids``, ``attention_mask``, ``labels`` tensors."""
    torch = require("torch", "llm", "fine-tuning")
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled example order of one epoch; a pure function of (seed, epoch) so resume can replay it.

    >>> epoch_order(5, seed=1, epoch=0) == epoch_order(5, seed=1, epoch=0)
    True
    """
    torch = require("torch", "llm", "fine-tuning")
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen).tolist()


def micro_batches(n: int, batch_size: int, seed: int, epochs: int) -> list[tuple[int, list[int]]]:
    """Every micro-batch of a phase in order, as ``(epoch, example indices)``."""
    out: list[tuple[int, list[int]]] = []
    for epoch in range(epochs):
        order = epoch_order(n, seed, epoch)
        out += [(epoch, order[i : i + batch_size]) for i in range(0, n, batch_size)]
    return out


class StepBatches:
    """The micro-batches of each optimizer step, computed when asked (never the whole phase at once).

    Step ``s`` takes micro-batches ``s*grad_accum .. (s+1)*grad_accum - 1`` of the sequence
    ``micro_batches`` would list, so ``epochs: 100000000`` with ``max_steps: 2`` costs two
    steps' worth of work, not a hundred million shuffles.

    >>> steps = StepBatches(5, batch_size=2, seed=0, epochs=10**9, grad_accum=2)
    >>> [len(idx) for _, idx in steps[0]], [e for e, _ in steps[1]]
    ([2, 2], [0, 1])
    """

    def __init__(self, n: int, batch_size: int, seed: int, epochs: int, grad_accum: int) -> None:
        self.n, self.batch_size, self.seed, self.epochs, self.grad_accum = (
            n,
            batch_size,
            seed,
            epochs,
            grad_accum,
        )
        self.per_epoch = math.ceil(n / batch_size)
        self._order: tuple[int, list[int]] | None = None  # the last epoch's order (steps go forward)

    def __len__(self) -> int:
        return math.ceil(self.per_epoch * self.epochs / self.grad_accum)

    def __getitem__(self, step: int) -> list[tuple[int, list[int]]]:
        first = step * self.grad_accum
        last = min(first + self.grad_accum, self.per_epoch * self.epochs)
        if not 0 <= first < last:
            raise IndexError(f"step {step} is outside 0..{len(self) - 1}")
        return [self._micro_batch(m) for m in range(first, last)]

    def _micro_batch(self, m: int) -> tuple[int, list[int]]:
        epoch, pos = divmod(m, self.per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.n, self.seed, epoch))
        start = pos * self.batch_size
        return epoch, self._order[1][start : start + self.batch_size]
