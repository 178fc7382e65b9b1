"""Score all the options of a multiple-choice question in one row that reads the prompt once.

The options of a question share its prompt. Laid out as ``prompt + option 1 + ... + option k``,
with a 4-D attention mask that lets each option's tokens see the prompt and their own earlier
tokens only, and position ids that restart after the prompt for every option, one row computes
what k separate ``prompt + option`` rows compute (prefix sharing, as tree-attention verifiers
do) for about 1/k of the prompt's cost. Sliding-window layers get their window applied on the
position ids, so they match the separate rows too.

A model that ignores custom 4-D masks would score wrongly, so :func:`option_logprobs` in
``loglik`` checks this path against separate rows on the first question of every call and
falls back to separate rows if they differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from puredl.finetune import model_io as io
from puredl.finetune.output_layer import logits_at


def _text_config(model: Any) -> Any:
    """The language model's config (sliding window, layer types), also through wrappers (PEFT)."""
    config = getattr(model, "config", None)
    if config is None and hasattr(model, "modules"):
        config = next(
            (mod.config for mod in model.modules() if getattr(mod, "config", None) is not None), None
        )
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def encode(
    tokenizer: Any, prompt: str, options: Sequence[str], max_length: int
) -> tuple[list[int], list[list[int]]] | None:
    """(prompt ids, ids of each option), or None when some ``prompt + option`` would need trimming.

    Trimming is left to the separate-rows path, which trims each pair on its own.
    """
    ctx = io.context_ids(tokenizer, prompt)
    tails = [io.plain_ids(tokenizer, opt) for opt in options]
    for opt, tail in zip(options, tails):
        if not tail:
            raise ValueError(f"continuation {opt!r} has no tokens")
    if len(ctx) + max(len(t) for t in tails) > max_length:
        return None
    return ctx, tails


def _row_layout(ctx: list[int], tails: list[list[int]]) -> tuple[list[int], list[int], list[int]]:
    """Token ids, position ids and branch ids (0: prompt, j: option j) of one question's row."""
    ids, pos, branch = list(ctx), list(range(len(ctx))), [0] * len(ctx)
    for j, tail in enumerate(tails, start=1):
        ids += tail
        pos += range(len(ctx), len(ctx) + len(tail))
        branch += [j] * len(tail)
    return ids, pos, branch


def shared_prompt_logprobs(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[tuple[list[int], list[list[int]]]],
    batch_size: int,
    device: str | None = None,
    progress: bool = False,
    desc: str = "scoring",
) -> list[list[tuple[float, int]]]:
    """For each encoded question, ``(sum of log p(option tokens | prompt), token count)`` per option.

    ``batch_size`` counts ``prompt + option`` sequences, as in ``continuation_logprobs``: a batch
    holds ``batch_size // k`` questions of k options (at least one).
    """
    torch = io.torch_module()
    dev = io.device_of(model, device)
    config = _text_config(model)
    window = getattr(config, "sliding_window", None)
    layer_types = set(getattr(config, "layer_types", None) or ())
    dtype = io.model_dtype(model)
    lowest = torch.finfo(dtype).min
    pad = io.pad_id(tokenizer)
    layouts = [_row_layout(ctx, tails) for ctx, tails in encoded]
    order = sorted(range(len(layouts)), key=lambda i: len(layouts[i][0]))
    k = max((len(tails) for _, tails in encoded), default=1)
    results: list[list[tuple[float, int]]] = [[] for _ in encoded]
    with io.evaluating(model):
        batches = io.batches(order, max(1, batch_size // k))
        for batch in io.progress(batches, len(batches), desc, progress):
            width = max(len(layouts[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            pos = torch.zeros((len(batch), width), dtype=torch.long)
            branch = torch.full((len(batch), width), -1, dtype=torch.long)  # -1: padding
            for r, i in enumerate(batch):
                row_ids, row_pos, row_branch = layouts[i]
                n = len(row_ids)
                ids[r, width - n :] = torch.tensor(row_ids)
                pos[r, width - n :] = torch.tensor(row_pos)
                branch[r, width - n :] = torch.tensor(row_branch)
            q_b, k_b = branch.unsqueeze(2), branch.unsqueeze(1)
            causal = torch.ones(width, width, dtype=torch.bool).tril()
            allowed = causal & (k_b >= 0) & ((k_b == 0) | (k_b == q_b))
            allowed |= torch.eye(width, dtype=torch.bool) & (q_b < 0)  # a pad attends to itself: no empty row
            masks = {"full_attention": allowed}
            if window and "sliding_attention" in layer_types:
                distance = pos.unsqueeze(2) - pos.unsqueeze(1)
                masks["sliding_attention"] = allowed & ((distance < window) | (q_b < 0))
            masks = {
                name: torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, lowest).unsqueeze(1).to(dev)
                for name, mask in masks.items()
            }
            # logits only where an option token is predicted: the prompt's last token and the options'
            rows: list[int] = []
            cols: list[int] = []
            targets: list[int] = []
            for r, i in enumerate(batch):
                ctx, tails = encoded[i]
                start = width - len(layouts[i][0])  # where this row's prompt begins
                at = start + len(ctx)  # where its first option begins
                for tail in tails:
                    cols += [start + len(ctx) - 1] + list(range(at, at + len(tail) - 1))
                    targets += tail
                    at += len(tail)
                rows += [r] * (len(cols) - len(rows))
            logits = logits_at(
                model,
                rows,
                cols,
                input_ids=ids.to(dev),
                attention_mask=masks if len(masks) > 1 else masks["full_attention"],
                position_ids=pos.to(dev),
                use_cache=False,
            )
            target = torch.tensor(targets, device=logits.device).unsqueeze(1)
            logp = logits.gather(1, target).squeeze(1) - torch.logsumexp(logits, dim=-1)
            at = 0
            for i in batch:
                for tail in encoded[i][1]:
                    results[i].append((float(logp[at : at + len(tail)].sum()), len(tail)))
                    at += len(tail)
    return results
