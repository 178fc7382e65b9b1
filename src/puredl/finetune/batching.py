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
from puredl.finetune.length_grouping import length_grouped_order, order_generator, padding_fraction

IGNORE_INDEX = -100


@dataclass
class EncodedExample:
    """Token ids of one example and its labels (``-100`` where no loss is taken).

    A packed row (``puredl.finetune.packing``) also carries ``position_ids`` that restart at
    each example it holds.
    """

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int] | None = None

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
    """Right-pad to the longest example: ``input_ids``, ``attention_mask``, ``labels`` tensors.

    Packed rows get ``position_ids`` instead of ``attention_mask``: the padding tail counts
    0, 1, ... as one more example of its own, which nothing real attends to (it comes last).
    """
    torch = require("torch", "llm", "fine-tuning")
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    packed = any(e.position_ids is not None for e in examples)
    positions = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
        if packed:
            own = e.position_ids if e.position_ids is not None else list(range(n))
            positions[row] = torch.tensor(list(own) + list(range(width - n)))
    if packed:
        return {
            "input_ids": ids.to(device),
            "position_ids": positions.to(device),
            "labels": labels.to(device),
        }
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled example order of one epoch; a pure function of (seed, epoch) so resume can replay it.

    >>> epoch_order(5, seed=1, epoch=0) == epoch_order(5, seed=1, epoch=0)
    True
    """
    torch = require("torch", "llm", "fine-tuning")
    return torch.randperm(n, generator=order_generator(seed, epoch)).tolist()


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
    steps' worth of work, not a hundred million shuffles. With ``lengths`` (one per example)
    each epoch's order is length-grouped (``length_grouping``), in groups of one step's examples.

    >>> steps = StepBatches(5, batch_size=2, seed=0, epochs=10**9, grad_accum=2)
    >>> [len(idx) for _, idx in steps[0]], [e for e, _ in steps[1]]
    ([2, 2], [0, 1])
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        epochs: int,
        grad_accum: int,
        lengths: list[int] | None = None,
    ) -> None:
        self.n, self.batch_size, self.seed, self.epochs, self.grad_accum = (
            n,
            batch_size,
            seed,
            epochs,
            grad_accum,
        )
        if lengths is not None and len(lengths) != n:
            raise ValueError(f"StepBatches: {len(lengths)} lengths for {n} examples")
        self.lengths = lengths
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
            self._order = (epoch, self.epoch_order(epoch))
        start = pos * self.batch_size
        return epoch, self._order[1][start : start + self.batch_size]

    def epoch_order(self, epoch: int) -> list[int]:
        """Epoch ``epoch``'s example order: length-grouped when lengths were given, else shuffled."""
        if self.lengths is None:
            return epoch_order(self.n, self.seed, epoch)
        return length_grouped_order(self.lengths, self.batch_size * self.grad_accum, self.seed, epoch)


def step_padding(
    lengths: list[int], batches: StepBatches, steps: int | None = None
) -> tuple[float, int, int]:
    """(padding share, real tokens, positions) of the first ``steps`` optimizer steps' micro-batches.

    Exact, not sampled: the order is a pure function of the seed, so this is what training computes.

    >>> step_padding([5, 5, 3, 3], StepBatches(4, batch_size=4, seed=0, epochs=1, grad_accum=1))
    (0.2, 16, 20)
    """
    micro = [idx for s in range(min(len(batches), steps or len(batches))) for _, idx in batches[s]]
    share = padding_fraction(lengths, micro)
    real = sum(lengths[i] for b in micro for i in b)
    return share, real, round(real / (1 - share)) if share < 1 else 0


def describe_padding(examples: list[EncodedExample], units: list[EncodedExample], plan: Any) -> str:
    """One line for the log: the padding the plan computes, beside a plain shuffle of unpacked examples."""
    lengths = [len(u.input_ids) for u in units]
    steps = StepBatches(
        len(units),
        plan.batch_size,
        plan.seed,
        plan.epochs,
        plan.grad_accum,
        lengths=lengths if plan.group_by_length else None,
    )
    share, real, positions = step_padding(lengths, steps, plan.total_steps)
    plain_lengths = [len(e.input_ids) for e in examples]
    plain = StepBatches(len(examples), plan.batch_size, plan.seed, 1, plan.grad_accum)
    baseline, _, _ = step_padding(plain_lengths, plain)
    how = []
    if units is not examples:
        how.append(f"{len(examples)} examples packed into {len(units)} rows of <= {plan.max_length} tokens")
    how.append("batches grouped by length" if plan.group_by_length else "batches in a plain shuffle")
    return (
        f"{', '.join(how)}: padding {100 * share:.1f}% of {positions:,} positions "
        f"(a plain shuffle of the unpacked examples: {100 * baseline:.1f}%)"
    )
