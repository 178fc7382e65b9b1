"""The log-likelihood engine behind every capability measure (extra ``llm``: torch).

- :func:`text_nlls`: negative log-likelihood of whole texts (perplexity);
- :func:`continuation_logprobs`: log p(continuation | prompt) for (prompt, continuation) pairs;
- :func:`option_logprobs`: the same for every option of multiple-choice questions, one row per
  question when the model honours 4-D masks (``shared_prompt``), separate rows otherwise;
- :func:`score_choices`: options' scores under a normalisation, the pick and its credit.

Normalisations (``SCORINGS``), with ``ll`` the summed log-likelihood of ``delimiter + option``:

- ``sum``: ``ll`` (lm-evaluation-harness ``acc``);
- ``mean``: ``ll / tokens`` (depends on the tokenizer);
- ``char``: ``ll / len(option)`` in characters (lm-eval ``acc_norm``, OLMES);
- ``pmi``: ``ll - log p(option | nothing)`` (lm-eval ``acc_mutual_info``; the unconditional
  request is the bare option after ``<bos>``).

A tie at the top gets fractional credit (1/k for a k-way tie), so a model that cannot tell
the options apart scores chance, not 0% or 100%.

>>> normalised([(-6.0, 3), (-4.0, 1)], ["abcdef", "ab"], "char")
[-1.0, -2.0]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from puredl.finetune import model_io as io
from puredl.finetune import shared_prompt as sp
from puredl.finetune.output_layer import logits_at

SCORINGS = ("sum", "mean", "char", "pmi")
TIE_TOL = 1e-6  # scores closer than this count as a tie (float32 log-softmax noise)


# ----------------------------------------------------------------------------- whole texts


def token_nlls(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int = 4,
    max_length: int = 256,
    add_eos: bool = True,
    device: str | None = None,
    progress: bool = False,
) -> list[list[float]]:
    """The negative log-likelihood (nats) of every predicted token of each text that has one.

    Each text is encoded as in training: ``<bos>`` then its tokens (and ``<eos>`` when ``add_eos``),
    cut at ``max_length``, every token after ``<bos>`` predicted; batches are right-padded
    (padding never feeds a scored position in a causal model).
    """
    torch = io.torch_module()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = io.device_of(model, device)
    seqs: list[tuple[list[int], int]] = []  # (ids, index where scored tokens start)
    for text in texts:
        prefix = io.context_ids(tokenizer, "")
        body = io.plain_ids(tokenizer, text)
        if add_eos and tokenizer.eos_token_id is not None:
            body.append(tokenizer.eos_token_id)
        ids = (prefix + body)[:max_length]
        if len(ids) > len(prefix):
            seqs.append((ids, len(prefix)))
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    pad = io.pad_id(tokenizer)
    results: list[list[float]] = [[] for _ in seqs]
    with io.evaluating(model):
        groups = io.batches(order, batch_size)
        for batch in io.progress(groups, len(groups), "fluency", progress):
            width = max(len(seqs[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            rows: list[int] = []
            cols: list[int] = []
            targets: list[int] = []
            for row, i in enumerate(batch):
                seq, start = seqs[i]
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
                rows += [row] * (len(seq) - start)
                cols += range(start - 1, len(seq) - 1)  # position t predicts token t + 1
                targets += seq[start:]
            # logits only at the predicting positions: no padding, no last position
            logits = logits_at(
                model, rows, cols, input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=False
            )
            nll = torch.nn.functional.cross_entropy(
                logits, torch.tensor(targets, device=logits.device), reduction="none"
            )
            at = 0
            for i in batch:
                seq, start = seqs[i]
                results[i] = nll[at : at + len(seq) - start].double().tolist()
                at += len(seq) - start
    return results


def text_nlls(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int = 4,
    max_length: int = 256,
    add_eos: bool = True,
    device: str | None = None,
    progress: bool = False,
) -> list[tuple[float, int]]:
    """``(negative log-likelihood in nats, predicted tokens)`` of each text that has a token to predict."""
    per_token = token_nlls(model, tokenizer, texts, batch_size, max_length, add_eos, device, progress)
    return [(sum(t), len(t)) for t in per_token]


def text_nlls_with_and_without_eos(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int = 4,
    max_length: int = 256,
    device: str | None = None,
    progress: bool = False,
) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """``text_nlls`` without and with ``<eos>`` from one forward pass.

    A causal model predicts a text's tokens the same way whether ``<eos>`` follows or not, so the
    variant without it is the variant with it minus its last term (when the text kept its
    ``<eos>`` inside ``max_length``).
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token: perplexity with <eos> is undefined")
    prefix = len(io.context_ids(tokenizer, ""))
    lengths = [len(io.plain_ids(tokenizer, t)) for t in texts]
    if prefix >= max_length or not all(lengths):
        raise ValueError("every text needs a token to predict within max_length (an empty text has none)")
    with_eos = token_nlls(model, tokenizer, texts, batch_size, max_length, True, device, progress)
    without = [t[:-1] if prefix + n < max_length else t for t, n in zip(with_eos, lengths)]
    return [(sum(t), len(t)) for t in without], [(sum(t), len(t)) for t in with_eos]


def perplexity(nll: float, tokens: int) -> float:
    """``exp(nll / tokens)``, ``inf`` when that overflows or the NLL is not finite (a diverged model).

    >>> perplexity(0.0, 4), perplexity(1e6, 2), perplexity(float("nan"), 3)
    (1.0, inf, inf)
    """
    if tokens <= 0:
        raise ValueError("perplexity needs at least one predicted token")
    per_token = nll / tokens
    if not math.isfinite(per_token) or per_token > 709.0:  # exp(709.8) is the largest float
        return math.inf
    return math.exp(per_token)


# ----------------------------------------------------------------------------- continuations


def continuation_logprobs(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 16,
    max_length: int = 512,
    device: str | None = None,
    progress: bool = False,
    desc: str = "scoring",
) -> list[tuple[float, int]]:
    """For each ``(prompt, continuation)``: (sum of log p(continuation tokens | prompt), token count).

    The prompt is encoded with special tokens and the continuation without, exactly as the
    training batches do. Batches are left-padded (explicit position ids) so every continuation
    ends at the last position; the output layer runs only at the positions that predict a
    continuation token (Gemma's 262k-word output layer dominates the cost otherwise).
    """
    torch = io.torch_module()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = io.device_of(model, device)
    encoded: list[tuple[list[int], int]] = []  # (ids, continuation length)
    for prompt, cont in pairs:
        ctx = io.context_ids(tokenizer, prompt)
        tail = io.plain_ids(tokenizer, cont)
        if not tail:
            raise ValueError(f"continuation {cont!r} has no tokens")
        if len(tail) >= max_length:
            raise ValueError(f"continuation of {len(tail)} tokens does not fit max_length {max_length}")
        room = max_length - len(tail)
        if len(ctx) > room:  # keep the first token (<bos>) and the end of the prompt
            ctx = ctx[:1] + ctx[len(ctx) - room + 1 :]
        encoded.append((ctx + tail, len(tail)))
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    pad = io.pad_id(tokenizer)
    results: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    with io.evaluating(model):
        groups = io.batches(order, batch_size)
        for batch in io.progress(groups, len(groups), desc, progress):
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                seq = encoded[i][0]
                ids[row, width - len(seq) :] = torch.tensor(seq)
                mask[row, width - len(seq) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            rows: list[int] = []
            cols: list[int] = []
            for row, i in enumerate(batch):
                n = encoded[i][1]
                rows += [row] * n
                cols += range(width - n - 1, width - 1)  # the positions predicting the continuation
            logits = logits_at(
                model,
                rows,
                cols,
                input_ids=ids.to(dev),
                attention_mask=mask.to(dev),
                position_ids=positions.to(dev),
                use_cache=False,
            )
            targets = ids[rows, [c + 1 for c in cols]].to(logits.device)
            picked = logits.gather(1, targets.unsqueeze(1)).squeeze(1) - torch.logsumexp(logits, dim=-1)
            at = 0
            for i in batch:
                n = encoded[i][1]
                results[i] = (float(picked[at : at + n].sum()), n)
                at += n
    return results


# ----------------------------------------------------------------------------- multiple choice


@dataclass
class ChoiceQuestion:
    """A prompt and candidate answers, one of them right.

    Option ``j`` is scored as the continuation ``delimiter + options[j]`` (lm-eval's
    ``target_delimiter`` + choice); ``char`` normalisation divides by ``len(options[j])``.
    ``group``/``direction``/``cluster`` label the item for reports (a cluster holds items that
    are not independent, such as the two directions of one dictionary entry).
    """

    prompt: str
    options: list[str]
    answer: int
    delimiter: str = ""
    group: str = ""
    direction: str = ""
    cluster: str = ""

    @property
    def continuations(self) -> list[str]:
        return [self.delimiter + opt for opt in self.options]


@dataclass
class ChoiceOutcome:
    """How one question went under one scoring.

    ``credit``: 1, 0, or 1/k for a k-way tie; ``chosen``: the top-scoring option;
    ``correct_prob``: the right option's probability among the options (softmax of the summed
    log-likelihoods); ``margin``: the right option's score minus the best other one (> 0 when
    picked alone); ``scores``: every option's normalised score.
    """

    credit: float
    correct_prob: float
    chosen: int
    margin: float
    scores: list[float]


def option_logprobs(
    model: Any,
    tokenizer: Any,
    questions: Sequence[ChoiceQuestion],
    batch_size: int = 16,
    device: str | None = None,
    progress: bool = False,
    desc: str = "scoring",
    share_prompt: bool = True,
    max_length: int = 512,
) -> list[list[tuple[float, int]]]:
    """Per question, ``(sum of log p(delimiter + option | prompt), token count)`` of each option.

    With ``share_prompt`` (the default) each question's options are scored in one row that reads
    the prompt once (``shared_prompt``), checked against separate rows on the cheapest question;
    a model whose 4-D masks disagree gets a warning and separate rows.
    """

    def separate(qs: Sequence[ChoiceQuestion], show: bool) -> list[list[tuple[float, int]]]:
        pairs = [(q.prompt, cont) for q in qs for cont in q.continuations]
        flat = continuation_logprobs(model, tokenizer, pairs, batch_size, max_length, device, show, desc)
        out, at = [], 0
        for q in qs:
            out.append(flat[at : at + len(q.options)])
            at += len(q.options)
        return out

    encoded = (
        [sp.encode(tokenizer, q.prompt, q.continuations, max_length) for q in questions]
        if share_prompt
        else []
    )
    shared = [i for i, e in enumerate(encoded) if e is not None]
    if not shared:
        return separate(questions, progress)
    # a model that ignores custom 4-D attention masks would score wrongly: check on the cheapest question
    probe = min(shared, key=lambda i: len(encoded[i][0]) * len(encoded[i][1]) + sum(map(len, encoded[i][1])))
    want = separate([questions[probe]], False)[0]
    try:
        got = sp.shared_prompt_logprobs(model, tokenizer, [encoded[probe]], batch_size, device)[0]
        worst = max(abs(a - b) for (a, _), (b, _) in zip(got, want))
        problem = f"differs from separate rows by {worst:.3g} nats"
    except Exception as exc:  # noqa: BLE001 - any failure of the 4-D mask path means: do not use it
        worst, problem = math.inf, f"failed ({type(exc).__name__}: {exc})"
    tol = 1e-3 if io.model_dtype(model) == io.torch_module().float32 else 5e-2
    if worst > tol * max(1.0, max(abs(b) for b, _ in want)):
        warnings.warn(
            f"shared-prompt scoring {problem} on this model; scoring every option separately",
            RuntimeWarning,
            stacklevel=2,
        )
        return separate(questions, progress)
    results: list[list[tuple[float, int]]] = [[] for _ in questions]
    scored = sp.shared_prompt_logprobs(
        model, tokenizer, [encoded[i] for i in shared], batch_size, device, progress, desc
    )
    for i, part in zip(shared, scored):
        results[i] = part
    rest = [i for i, e in enumerate(encoded) if e is None]
    for i, part in zip(rest, separate([questions[i] for i in rest], progress) if rest else []):
        results[i] = part
    return results


def unconditional_logprobs(
    model: Any,
    tokenizer: Any,
    questions: Sequence[ChoiceQuestion],
    batch_size: int = 16,
    device: str | None = None,
) -> list[list[float]]:
    """Per question, log p(option | ``<bos>`` only) of each option (each distinct option scored once)."""
    distinct = sorted({opt for q in questions for opt in q.options})
    scored = continuation_logprobs(
        model, tokenizer, [("", opt) for opt in distinct], batch_size, device=device
    )
    by_option = {opt: s for opt, (s, _) in zip(distinct, scored)}
    return [[by_option[opt] for opt in q.options] for q in questions]


def normalised(
    logprobs: Sequence[tuple[float, int]],
    options: Sequence[str],
    scoring: str,
    unconditional: Sequence[float] | None = None,
) -> list[float]:
    """Each option's score under ``scoring`` (see the module docstring) from its ``(sum, tokens)``."""
    if scoring == "sum":
        return [s for s, _ in logprobs]
    if scoring == "mean":
        return [s / n for s, n in logprobs]
    if scoring == "char":
        return [s / max(1, len(opt)) for (s, _), opt in zip(logprobs, options)]
    if scoring == "pmi":
        if unconditional is None:
            raise ValueError("pmi scoring needs the options' unconditional log-likelihoods")
        return [s - u for (s, _), u in zip(logprobs, unconditional)]
    raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")


def grade(scores: Sequence[float], totals: Sequence[float], answer: int) -> ChoiceOutcome:
    """Credit (ties share it), pick, right-option probability and margin of one question.

    >>> grade([-1.0, -1.0, -3.0], [-1.0, -1.0, -3.0], 1).credit
    0.5
    """
    best = max(scores)
    top = [i for i, s in enumerate(scores) if s >= best - TIE_TOL]
    credit = 1.0 / len(top) if answer in top else 0.0
    peak = max(totals)
    norm = sum(math.exp(s - peak) for s in totals)
    others = [s for i, s in enumerate(scores) if i != answer]
    margin = scores[answer] - max(others) if others else math.inf
    return ChoiceOutcome(
        credit, math.exp(totals[answer] - peak) / norm, scores.index(best), margin, list(scores)
    )


def score_choices(
    model: Any,
    tokenizer: Any,
    questions: Sequence[ChoiceQuestion],
    scorings: Sequence[str] = ("sum",),
    batch_size: int = 16,
    device: str | None = None,
    progress: bool = False,
    desc: str = "scoring",
    share_prompt: bool = True,
) -> dict[str, list[ChoiceOutcome]]:
    """Score every option of every question once and grade the picks under each of ``scorings``."""
    if isinstance(scorings, str):
        scorings = (scorings,)
    bad = [s for s in scorings if s not in SCORINGS]
    if bad or not scorings:
        raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, got {bad or list(scorings)!r}")
    raw = option_logprobs(model, tokenizer, questions, batch_size, device, progress, desc, share_prompt)
    uncond = (
        unconditional_logprobs(model, tokenizer, questions, batch_size, device) if "pmi" in scorings else None
    )
    out: dict[str, list[ChoiceOutcome]] = {}
    for scoring in scorings:
        out[scoring] = [
            grade(
                normalised(part, q.options, scoring, uncond[i] if uncond else None),
                [s for s, _ in part],
                q.answer,
            )
            for i, (q, part) in enumerate(zip(questions, raw))
        ]
    return out
