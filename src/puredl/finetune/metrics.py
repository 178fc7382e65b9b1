"""Capability metrics run on the base model and after every phase (extra ``llm``: torch).

- **fluency** (phase 0, ``korean_text``): token-weighted perplexity on held-out Korean text,
  ``exp(total NLL / predicted tokens)``; lower is better.
- **terminology** (phase 1, ``medical_terms``): pick the right English term for a Korean term,
  and the Korean term for an English one, among 5 dictionary terms by model log-likelihood,
  with a prompt template never used in training; reported for the taught (train split) and the
  held-out (test split) entries.
- **reasoning** (phase 2, ``medical_mcq``): accuracy on held-out five-option questions, each
  option scored by its log-likelihood after the question.

Options are scored by mean log-probability per token (``scoring="mean"``; ``"sum"`` is the raw
total). A tie at the top gets fractional credit (1/k for a k-way tie), so a model that cannot tell
the options apart scores chance (20%), not 0% or 100%. ``correct_prob`` is the probability of
the right option among the five (softmax of their total log-likelihoods), a smoother signal
than accuracy on small test sets.

>>> CAPABILITIES["medical_terms"]
'terminology'
>>> capability_name("korean_text"), data_kind("reasoning")
('fluency', 'medical_mcq')
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from puredl._optional import require
from puredl.finetune.datasets import (
    TERM_EVAL_TEMPLATES,
    MCQuestion,
    TermEntry,
    load_korean_texts,
    load_mcq,
    load_term_entries,
    mcq_answer_text,
    mcq_prompt,
)

CAPABILITIES = {"korean_text": "fluency", "medical_terms": "terminology", "medical_mcq": "reasoning"}
LOWER_IS_BETTER = frozenset({"fluency"})
DIRECTIONS = tuple(TERM_EVAL_TEMPLATES)
_KIND_OF = {cap: kind for kind, cap in CAPABILITIES.items()}
_TIE_TOL = 1e-6  # scores closer than this count as a tie (float32 log-softmax noise)


def capability_name(name: str) -> str:
    """``fluency``/``terminology``/``reasoning`` for a capability or a data kind."""
    if name in _KIND_OF:
        return name
    if name in CAPABILITIES:
        return CAPABILITIES[name]
    raise ValueError(
        f"unknown capability {name!r}; expected one of {', '.join(_KIND_OF)} "
        f"(or a data kind: {', '.join(CAPABILITIES)})"
    )


def data_kind(name: str) -> str:
    """The data kind (``korean_text``...) behind a capability or data kind name."""
    return _KIND_OF[capability_name(name)]


def _torch() -> Any:
    return require("torch", "llm", "validation metrics")


# ----------------------------------------------------------------------------- model plumbing


def _device_of(model: Any, device: str | None) -> Any:
    torch = _torch()
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device(device or "cpu")


@contextmanager
def _evaluating(model: Any):
    """Eval mode and no autograd for the duration; the model's training flag is restored after."""
    torch = _torch()
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training and hasattr(model, "train"):
            model.train()


def _context_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Prompt tokens with the tokenizer's special tokens (Gemma's ``<bos>``), as in training."""
    ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    if not ids:  # a tokenizer without BOS: give the first real token something to condition on
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise ValueError("the tokenizer adds no BOS and has no bos/eos token to start a sequence with")
        ids = [start]
    return ids


def _plain_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _pad_id(tokenizer: Any) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if tid is not None:
            return int(tid)
    return 0  # pragma: no cover


def _accepts_logits_to_keep(model: Any) -> bool:
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return False
    return "logits_to_keep" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def _progress(iterable: Any, total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is part of the llm extra
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, unit="batch")


# ----------------------------------------------------------------------------- log-likelihoods


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
    """``(negative log-likelihood in nats, predicted tokens)`` of each text that has a token to predict.

    Each text is encoded as in training: ``<bos>`` then its tokens (and ``<eos>`` when ``add_eos``),
    every token after ``<bos>`` predicted; batches are right-padded (padding never feeds a
    scored position in a causal model).
    """
    torch = _torch()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = _device_of(model, device)
    seqs: list[tuple[list[int], int]] = []  # (ids, index where scored tokens start)
    for text in texts:
        prefix = _context_ids(tokenizer, "")
        body = _plain_ids(tokenizer, text)
        if add_eos and tokenizer.eos_token_id is not None:
            body.append(tokenizer.eos_token_id)
        ids = (prefix + body)[:max_length]
        if len(ids) > len(prefix):
            seqs.append((ids, len(prefix)))
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    pad = _pad_id(tokenizer)
    results: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
    with _evaluating(model):
        batches = _batches(order, batch_size)
        for batch in _progress(batches, len(batches), "fluency", progress):
            width = max(len(seqs[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for row, i in enumerate(batch):
                seq, start = seqs[i]
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
                labels[row, start : len(seq)] = torch.tensor(seq[start:])
            logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=False).logits
            logits = logits[:, :-1].float()
            target = labels[:, 1:].to(logits.device)
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="none"
            ).reshape(target.shape)
            for row, i in enumerate(batch):
                results[i] = (float(nll[row].sum()), int((target[row] != -100).sum()))
    return results


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
    ends at the last position and only the last ``max continuation + 1`` logits are computed
    (Gemma's 262k-word output layer dominates the cost otherwise).
    """
    torch = _torch()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = _device_of(model, device)
    encoded: list[tuple[list[int], int]] = []  # (ids, continuation length)
    for prompt, cont in pairs:
        ctx = _context_ids(tokenizer, prompt)
        tail = _plain_ids(tokenizer, cont)
        if not tail:
            raise ValueError(f"continuation {cont!r} has no tokens")
        if len(tail) >= max_length:
            raise ValueError(f"continuation of {len(tail)} tokens does not fit max_length {max_length}")
        room = max_length - len(tail)
        if len(ctx) > room:  # keep the first token (<bos>) and the end of the prompt
            ctx = ctx[:1] + ctx[len(ctx) - room + 1 :]
        encoded.append((ctx + tail, len(tail)))
    keep_arg = _accepts_logits_to_keep(model)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    pad = _pad_id(tokenizer)
    results: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    with _evaluating(model):
        batches = _batches(order, batch_size)
        for batch in _progress(batches, len(batches), desc, progress):
            width = max(len(encoded[i][0]) for i in batch)
            keep = max(encoded[i][1] for i in batch) + 1
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                seq = encoded[i][0]
                ids[row, width - len(seq) :] = torch.tensor(seq)
                mask[row, width - len(seq) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            kwargs = {"logits_to_keep": keep} if keep_arg else {}
            out = model(
                input_ids=ids.to(dev),
                attention_mask=mask.to(dev),
                position_ids=positions.to(dev),
                use_cache=False,
                **kwargs,
            )
            logits = out.logits[:, -keep:].float()
            logp = torch.log_softmax(logits, dim=-1)
            for row, i in enumerate(batch):
                n = encoded[i][1]
                steps = torch.arange(keep - n - 1, keep - 1, device=logp.device)
                target = ids[row, width - n :].to(logp.device)
                results[i] = (float(logp[row, steps, target].sum()), n)
    return results


# ----------------------------------------------------------------------------- multiple choice


@dataclass
class ChoiceQuestion:
    """A prompt and candidate continuations, one of them right."""

    prompt: str
    options: list[str]
    answer: int
    group: str = ""
    direction: str = ""


@dataclass
class ChoiceOutcome:
    """How one question went: credit (1, 0, or 1/k for a k-way tie) and the right option's probability."""

    credit: float
    correct_prob: float
    chosen: int


def score_choices(
    model: Any,
    tokenizer: Any,
    questions: Sequence[ChoiceQuestion],
    scoring: str = "mean",
    batch_size: int = 16,
    device: str | None = None,
    progress: bool = False,
    desc: str = "scoring",
    share_prompt: bool = True,
) -> list[ChoiceOutcome]:
    """Score every option of every question and grade the picks.

    With ``share_prompt`` (the default) each question's options are scored in one row that reads
    the prompt once (``shared_prompt``), checked against separate rows on the first question.
    """
    if scoring not in ("mean", "sum"):
        raise ValueError(f"scoring must be 'mean' or 'sum', got {scoring!r}")
    scored = option_logprobs(model, tokenizer, questions, batch_size, device, progress, desc, share_prompt)
    outcomes = []
    for q, part in zip(questions, scored):
        totals = [s for s, _ in part]
        choice = [s / n for s, n in part] if scoring == "mean" else totals
        best = max(choice)
        top = [i for i, s in enumerate(choice) if s >= best - _TIE_TOL]
        credit = 1.0 / len(top) if q.answer in top else 0.0
        peak = max(totals)
        norm = sum(math.exp(s - peak) for s in totals)
        outcomes.append(ChoiceOutcome(credit, math.exp(totals[q.answer] - peak) / norm, choice.index(best)))
    return outcomes


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
    """Per question, ``(sum of log p(option | prompt), token count)`` of each option."""
    from puredl.finetune import shared_prompt as sp

    def separate(qs: Sequence[ChoiceQuestion], show: bool) -> list[list[tuple[float, int]]]:
        pairs = [(q.prompt, opt) for q in qs for opt in q.options]
        flat = continuation_logprobs(model, tokenizer, pairs, batch_size, max_length, device, show, desc)
        out, at = [], 0
        for q in qs:
            out.append(flat[at : at + len(q.options)])
            at += len(q.options)
        return out

    encoded = (
        [sp.encode(tokenizer, q.prompt, q.options, max_length) for q in questions] if share_prompt else []
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
    tol = 1e-3 if sp._model_dtype(model) == _torch().float32 else 5e-2
    if worst > tol * max(1.0, max(abs(b) for b, _ in want)):
        import warnings

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


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


# ----------------------------------------------------------------------------- the three capabilities


def validate_fluency(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int = 4,
    max_length: int = 256,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Token-weighted perplexity over ``texts``.

    Returns ``{"perplexity", "nll_per_token", "tokens", "texts", "score", "per_text_nll"}``:
    ``score`` is the perplexity (lower is better); ``per_text_nll`` holds ``[nll, tokens]`` per text.
    """
    if not texts:
        raise ValueError("fluency needs at least one text")
    per_text = text_nlls(model, tokenizer, texts, batch_size, max_length, device=device, progress=progress)
    nll, n = sum(v for v, _ in per_text), sum(k for _, k in per_text)
    if n == 0:
        raise ValueError("fluency: the texts produced no tokens to predict")
    ppl = math.exp(nll / n)
    return {
        "perplexity": ppl,
        "nll_per_token": nll / n,
        "tokens": n,
        "texts": len(texts),
        "score": ppl,
        "per_text_nll": [[v, k] for v, k in per_text],  # for the forgetting check's noise estimate
    }


def _distractors(entry: TermEntry, pool: Sequence[TermEntry], k: int, rng: random.Random) -> list[TermEntry]:
    """k other entries, same category first; none whose terms contain (or are inside) the entry's."""

    def clashes(other: TermEntry) -> bool:
        a, b = (entry.ko, entry.en.lower()), (other.ko, other.en.lower())
        return any(x in y or y in x for x, y in zip(a, b))

    eligible = [e for e in pool if not clashes(e)]
    same = [e for e in eligible if entry.category and e.category == entry.category]
    rest = [e for e in eligible if not (entry.category and e.category == entry.category)]
    rng.shuffle(same)
    rng.shuffle(rest)
    picked = (same + rest)[:k]
    if len(picked) < k:
        raise ValueError(
            f"terminology: only {len(picked)} dictionary entries can serve as wrong answers for "
            f"{entry.ko!r}; need {k} (use a dictionary of at least {k + 1} distinct terms)"
        )
    return picked


def term_questions(
    entries: Sequence[TermEntry],
    pool: Sequence[TermEntry] | None = None,
    n_candidates: int = 5,
    directions: Sequence[str] = DIRECTIONS,
    seed: int = 0,
) -> list[ChoiceQuestion]:
    """One question per entry and direction, with ``n_candidates - 1`` distractors from ``pool``.

    The candidates of an entry are the same in both directions and fixed by ``seed`` and the
    entry itself, so every stage of a run is asked exactly the same questions.
    """
    pool = list(entries if pool is None else pool)
    unknown = [d for d in directions if d not in TERM_EVAL_TEMPLATES]
    if unknown:
        raise ValueError(f"unknown direction(s) {unknown}; expected {', '.join(TERM_EVAL_TEMPLATES)}")
    questions = []
    for entry in entries:
        rng = random.Random(f"{seed}|{entry.ko}|{entry.en}")
        group = [entry, *_distractors(entry, pool, n_candidates - 1, rng)]
        rng.shuffle(group)
        answer = group.index(entry)
        for direction in directions:
            prompt, cont = TERM_EVAL_TEMPLATES[direction]
            questions.append(
                ChoiceQuestion(
                    prompt=prompt.format(ko=entry.ko, en=entry.en),
                    options=[cont.format(ko=e.ko, en=e.en) for e in group],
                    answer=answer,
                    group="taught" if entry.split == "train" else "heldout",
                    direction=direction,
                )
            )
    return questions


def validate_terminology(
    model: Any,
    tokenizer: Any,
    entries: Sequence[TermEntry],
    pool: Sequence[TermEntry] | None = None,
    n_candidates: int = 5,
    scoring: str = "mean",
    batch_size: int = 16,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, float | None]:
    """Term translation accuracy both ways among ``n_candidates`` dictionary terms.

    Entries of the ``train`` split count as taught, all others as held-out. Returns
    ``{"accuracy", "taught_accuracy", "heldout_accuracy", "ko_to_en_accuracy", "en_to_ko_accuracy",
    "correct_prob", "n_taught", "n_heldout", "questions", "score", "credits"}``; ``score`` is ``accuracy``
    and a group with no entries reports ``None``.
    """
    if not entries:
        raise ValueError("terminology needs at least one dictionary entry")
    questions = term_questions(entries, pool, n_candidates)
    outcomes = score_choices(
        model, tokenizer, questions, scoring, batch_size, device, progress, "terminology"
    )

    def acc(keep: Callable[[ChoiceQuestion], bool]) -> float | None:
        return _mean([o.credit for q, o in zip(questions, outcomes) if keep(q)])

    accuracy = acc(lambda q: True)
    return {
        "accuracy": accuracy,
        "taught_accuracy": acc(lambda q: q.group == "taught"),
        "heldout_accuracy": acc(lambda q: q.group == "heldout"),
        "ko_to_en_accuracy": acc(lambda q: q.direction == "ko_to_en"),
        "en_to_ko_accuracy": acc(lambda q: q.direction == "en_to_ko"),
        "correct_prob": _mean([o.correct_prob for o in outcomes]),
        "n_taught": sum(1 for e in entries if e.split == "train"),
        "n_heldout": sum(1 for e in entries if e.split != "train"),
        "questions": len(questions),
        "score": accuracy,
        "credits": [o.credit for o in outcomes],  # per question, for the forgetting check's noise estimate
    }


def mcq_questions(questions: Sequence[MCQuestion]) -> list[ChoiceQuestion]:
    """Each question's prompt (as trained) and its five `` X. option`` continuations."""
    return [
        ChoiceQuestion(mcq_prompt(q), [mcq_answer_text(q, i) for i in range(len(q.options))], q.answer)
        for q in questions
    ]


def validate_reasoning(
    model: Any,
    tokenizer: Any,
    questions: Sequence[MCQuestion],
    scoring: str = "mean",
    batch_size: int = 8,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Multiple-choice accuracy: ``{"accuracy", "correct_prob", "questions", "score", "credits"}``.

    ``score`` is ``accuracy``; ``credits`` holds each question's credit (1, 0 or a tie's share).
    """
    if not questions:
        raise ValueError("reasoning needs at least one question")
    outcomes = score_choices(
        model, tokenizer, mcq_questions(questions), scoring, batch_size, device, progress, "reasoning"
    )
    accuracy = _mean([o.credit for o in outcomes])
    return {
        "accuracy": accuracy,
        "correct_prob": _mean([o.correct_prob for o in outcomes]),
        "questions": len(questions),
        "score": accuracy,
        "credits": [o.credit for o in outcomes],
    }


# ----------------------------------------------------------------------------- all at once


def _path_for(data_paths: dict[str, str | None] | None, name: str) -> str | None:
    if not data_paths:
        return None
    for key in (name, capability_name(name), data_kind(name)):
        if data_paths.get(key):
            return data_paths[key]
    return None


def evaluate_capabilities(
    model: Any,
    tokenizer: Any,
    capabilities: list[str],
    data_paths: dict[str, str | None] | None = None,
    max_eval: int | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Measure each capability on its held-out data (bundled unless ``data_paths`` names a file).

    ``capabilities`` may use capability names (``fluency``) or data kinds (``korean_text``); the
    result is keyed by the names given. ``max_eval`` caps the items per capability (per group
    for terminology: the first N taught and the first N held-out entries), always the same
    items, so stages stay comparable.

    >>> evaluate_capabilities(None, None, [])
    {}
    """
    if max_eval is not None and max_eval < 1:
        raise ValueError(f"max_eval must be >= 1 (or None for everything), got {max_eval}")
    results: dict[str, dict[str, float]] = {}
    for name in capabilities:
        cap, path = capability_name(name), _path_for(data_paths, name)
        if cap == "fluency":
            texts = load_korean_texts("test", path, max_eval)
            kwargs = {"batch_size": batch_size} if batch_size else {}
            results[name] = validate_fluency(
                model, tokenizer, texts, device=device, progress=progress, **kwargs
            )
        elif cap == "terminology":
            pool = load_term_entries("all", path)
            taught = [e for e in pool if e.split == "train"][:max_eval]
            heldout = [e for e in pool if e.split != "train"][:max_eval]
            kwargs = {"batch_size": batch_size} if batch_size else {}
            results[name] = validate_terminology(
                model, tokenizer, taught + heldout, pool=pool, device=device, progress=progress, **kwargs
            )
        else:
            questions = load_mcq("test", path, max_eval)
            kwargs = {"batch_size": batch_size} if batch_size else {}
            results[name] = validate_reasoning(
                model, tokenizer, questions, device=device, progress=progress, **kwargs
            )
    return results


# ----------------------------------------------------------------------------- presenting


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def headline(capability: str, entry: dict[str, Any]) -> str:
    """A one-cell summary of a capability's metrics (``ppl 41.20``, ``34.0%``).

    >>> headline("fluency", {"perplexity": 41.2, "score": 41.2})
    'ppl 41.20'
    """
    if "perplexity" in entry:
        return f"ppl {entry['perplexity']:.2f}"
    if "accuracy" in entry:
        return _pct(entry["accuracy"])
    score = entry.get("score")
    return f"{score:.4g}" if isinstance(score, (int, float)) else "n/a"


def describe(capability: str, entry: dict[str, Any]) -> str:
    """A one-line description with the details behind the headline."""
    cap = capability_name(capability) if capability in CAPABILITIES or capability in _KIND_OF else capability
    if cap == "fluency" and "perplexity" in entry:
        return (
            f"perplexity {entry['perplexity']:.2f} (NLL {entry.get('nll_per_token', float('nan')):.3f}"
            f"/token over {entry.get('tokens', 0):,} tokens of {entry.get('texts', 0)} held-out texts; "
            "lower is better)"
        )
    if cap == "terminology" and "accuracy" in entry:
        return (
            f"accuracy {_pct(entry['accuracy'])} (taught {_pct(entry.get('taught_accuracy'))} of "
            f"{entry.get('n_taught', 0)} terms, held-out {_pct(entry.get('heldout_accuracy'))} of "
            f"{entry.get('n_heldout', 0)}; ko->en {_pct(entry.get('ko_to_en_accuracy'))}, en->ko "
            f"{_pct(entry.get('en_to_ko_accuracy'))}; chance 20.0%)"
        )
    if cap == "reasoning" and "accuracy" in entry:
        return (
            f"accuracy {_pct(entry['accuracy'])} on {entry.get('questions', 0)} held-out questions "
            f"(right-option probability {entry.get('correct_prob', 0.0):.3f}; chance 20.0%)"
        )
    return headline(cap, entry)


def format_metrics(metrics: dict[str, dict[str, Any]]) -> str:
    """One line per capability (what ``puredl finetune validate`` prints)."""
    width = max((len(k) for k in metrics), default=0)
    return "\n".join(f"{name:<{width}}  {describe(name, entry)}" for name, entry in metrics.items())


def validate_main(
    model: Any,
    tokenizer: Any,
    capabilities: list[str] | None = None,
    data_paths: dict[str, str | None] | None = None,
    max_eval: int | None = None,
    device: str = "cpu",
    output: str | Path | None = None,
    out: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """``puredl finetune validate``: measure, print one line per capability, optionally save JSON.

    ``capabilities`` defaults to all three; ``output`` is a JSON file written atomically.
    """
    caps = list(capabilities) if capabilities else list(_KIND_OF)
    metrics = evaluate_capabilities(model, tokenizer, caps, data_paths, max_eval, device)
    out(format_metrics(metrics))
    if output is not None:
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
        out(f"metrics written to {path}")
    return metrics
