"""Log-likelihood scoring of multiple-choice questions, as lm-evaluation-harness's HFLM scores them.

Three methods, each the harness's own metric:

- ``letter``: options listed, ``"{question}\\nA. ..\\nD. ..\\n정답："`` (full-width colon U+FF1A, the
  kmmlu/kormedmcqa prompt), continuations ``" A"``..; pick = argmax log-likelihood (``acc``).
- ``cloze``: options not listed, ``"{question}\\n정답："`` then ``" {option text}"``; pick = argmax of
  log-likelihood / ``len(option)`` in characters (``acc_norm``; OLMES "CF").
- ``pmi``: as cloze, minus the continuation's unconditional log-likelihood (``acc_mutual_info``).

The layers are usable on their own: ``loglikelihoods`` takes harness-style ``(context,
continuation)`` requests, ``choice_loglikelihoods`` takes ``(context, [continuations])``, and
``score_questions`` takes any objects with ``question``, ``options`` and ``answer`` (a
``BenchmarkItem`` or the bundled ``MCQuestion``).

>>> letter_prompt("2+2는?", ["3", "4"])
'2+2는?\\nA. 3\\nB. 4\\n정답：'
>>> cloze_scores([-4.0, -6.0], ["ab", "abcd"])
[-2.0, -1.5]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from puredl._optional import require
from puredl.finetune.output_layer import logits_at

METHODS = ("letter", "cloze", "pmi")
LETTERS = "ABCDEFGHIJ"
ANSWER_CUE = "정답："  # full-width colon U+FF1A, byte for byte the harness's kmmlu/kormedmcqa prompt
TARGET_DELIMITER = " "  # the harness's default between a context and its continuation
FEWSHOT_DELIMITER = "\n\n"  # the harness's default between few-shot examples
DEFAULT_MAX_LENGTH = 2048  # the harness's fallback when the config names no context length
MAX_LOGIT_SPAN = 64  # positions of logits one batch keeps: 8 rows x 64 x 262k vocabulary = 0.5 GB


class Question(Protocol):
    question: str
    options: Sequence[str]
    answer: int


# ----------------------------------------------------------------------------- prompts


def letter_prompt(question: str, options: Sequence[str]) -> str:
    """The harness's kmmlu/kormedmcqa ``doc_to_text``: question stripped, options as given."""
    lines = [question.strip()] + [f"{LETTERS[i]}. {opt}" for i, opt in enumerate(options)]
    return "\n".join(lines) + "\n" + ANSWER_CUE


def cloze_prompt(question: str) -> str:
    """OLMES cloze form in the same Korean frame: the options are not shown."""
    return question.strip() + "\n" + ANSWER_CUE


def _prompt(method: str, q: Question) -> str:
    return letter_prompt(q.question, q.options) if method == "letter" else cloze_prompt(q.question)


def choice_texts(method: str, q: Question) -> list[str]:
    """The harness's ``doc_to_choice``: letters for ``letter``, option texts otherwise."""
    return list(LETTERS[: len(q.options)]) if method == "letter" else [str(o) for o in q.options]


def fewshot_context(method: str, q: Question, shots: Sequence[Question] = ()) -> str:
    """Shots as ``prompt + " " + gold choice + "\\n\\n"`` (the harness's delimiters), then the question."""
    parts = [
        _prompt(method, s) + TARGET_DELIMITER + choice_texts(method, s)[s.answer] + FEWSHOT_DELIMITER
        for s in shots
    ]
    return "".join(parts) + _prompt(method, q)


# ----------------------------------------------------------------------------- the three metrics


def letter_scores(lls: Sequence[float]) -> list[float]:
    """``acc``: the raw log-likelihoods."""
    return [float(x) for x in lls]


def cloze_scores(lls: Sequence[float], choices: Sequence[str]) -> list[float]:
    """``acc_norm``: log-likelihood divided by the choice's length in characters (not tokens)."""
    return [float(ll) / float(len(c)) for ll, c in zip(lls, choices, strict=True)]


def pmi_scores(lls: Sequence[float], unconditional: Sequence[float]) -> list[float]:
    """``acc_mutual_info``: log P(choice | context) - log P(choice | BOS)."""
    return [float(c) - float(u) for c, u in zip(lls, unconditional, strict=True)]


def argmax(scores: Sequence[float]) -> int:
    """First index of the maximum (``numpy.argmax``'s tie rule)."""
    best = 0
    for i, s in enumerate(scores):
        if s > scores[best] or (math.isnan(s) and not math.isnan(scores[best])):
            best = i
    return best


# ----------------------------------------------------------------------------- log-likelihoods


def _prefix_token_id(tokenizer: Any) -> int:
    """The harness's context for an empty context: BOS, else EOS."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def _tok_encode(tokenizer: Any, text: str, add_special_tokens: bool | None = None) -> list[int]:
    """HFLM.tok_encode: the tokenizer's own special tokens (Gemma's BOS) unless the text starts with BOS."""
    kwargs: dict[str, bool] = {}
    if add_special_tokens is not None:
        kwargs["add_special_tokens"] = add_special_tokens
    else:
        bos = tokenizer.decode(_prefix_token_id(tokenizer))
        if bos and text.startswith(bos):
            kwargs["add_special_tokens"] = False
    return list(tokenizer.encode(text, **kwargs))


def encode_request(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """HFLM's token split of one request (``LM.loglikelihood`` + ``_encode_pair``).

    Trailing spaces of the context move to the continuation; the pair is encoded whole and the
    context's own encoding decides where the continuation starts. An empty context becomes BOS.
    """
    if context == "":
        cont = _tok_encode(tokenizer, continuation, add_special_tokens=False)
        prefix = _prefix_token_id(tokenizer)
        return ([prefix], cont) if prefix != cont[0] else (cont[:1], cont[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = _tok_encode(tokenizer, context + continuation)
    ctx = _tok_encode(tokenizer, context)
    return ctx, whole[len(ctx) :]


def max_length_of(model: Any, tokenizer: Any) -> int:
    """The harness's ``resolve_max_length``: text config, config, tokenizer, then 2048."""
    config = getattr(model, "config", None)
    for cfg in (getattr(config, "text_config", None), config):
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(cfg, attr, None) if cfg is not None else None
            if isinstance(value, int):
                return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and limit < 1_000_000_000:
        return limit
    return DEFAULT_MAX_LENGTH


@dataclass
class _Row:
    """One forward-pass row: the tokens fed, and the requests whose continuation it scores."""

    tokens: list[int]
    wanted: list[tuple[int, list[int]]] = field(default_factory=list)  # (request index, continuation)


def loglikelihoods(
    model: Any,
    tokenizer: Any,
    requests: Sequence[tuple[str, str]],
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[float]:
    """Sum of log P(continuation tokens | context) per ``(context, continuation)`` request.

    Equal to lm-evaluation-harness's HFLM ``loglikelihood`` (same tokenisation, BOS, left
    truncation to the model's length). Requests whose fed tokens are the same (one-token
    continuations of one prompt, such as " A".." E") share one row, as the harness's logits cache
    does; rows run longest first in batches, right-padded, scoring only continuation positions.
    ``progress(n)`` is called with the number of requests finished after each batch.
    """
    torch = require("torch", "llm", "scoring")
    max_length = max_length_of(model, tokenizer)
    rows: dict[tuple[int, ...], _Row] = {}
    for i, (context, continuation) in enumerate(requests):
        ctx, cont = encode_request(tokenizer, context, continuation)
        if not cont:
            raise ValueError(f"request {i}: the continuation {continuation!r} encodes to no tokens")
        fed = (ctx + cont)[-(max_length + 1) :][:-1]
        rows.setdefault(tuple(fed), _Row(fed)).wanted.append((i, cont))
    ordered = sorted(rows.values(), key=lambda r: (-len(r.tokens), r.tokens))
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = [0.0] * len(requests)
    with torch.no_grad():
        for batch in _batches(ordered, batch_size):
            width = len(batch[0].tokens)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            for b, r in enumerate(batch):
                ids[b, : len(r.tokens)] = torch.tensor(r.tokens, dtype=torch.long)
            # the output layer only at the positions that predict a continuation token
            at_row = [b for b, r in enumerate(batch) for _ in range(len(r.tokens) - _first_scored(r))]
            at_pos = [p for r in batch for p in range(_first_scored(r), len(r.tokens))]
            logits = logits_at(model, at_row, at_pos, input_ids=ids.to(device))  # [positions, V]
            logp = torch.log_softmax(logits, dim=-1)
            at = 0
            for r in batch:
                end = at + len(r.tokens) - _first_scored(r)  # this row's scored positions end here
                for index, cont in r.wanted:
                    target = torch.tensor(cont, dtype=torch.long, device=logp.device).unsqueeze(-1)
                    out[index] = float(logp[end - len(cont) : end].gather(-1, target).sum())
                at = end
            if progress:
                progress(sum(len(r.wanted) for r in batch))
    return out


def _first_scored(row: _Row) -> int:
    """Position of the row's first logit that scores a continuation token."""
    return len(row.tokens) - max(len(cont) for _, cont in row.wanted)


def _batches(rows: list[_Row], batch_size: int, max_span: int = MAX_LOGIT_SPAN) -> Iterator[list[_Row]]:
    """Consecutive rows (longest first), at most ``batch_size``, kept while the scored span stays small."""
    batch: list[_Row] = []
    for row in rows:
        if batch and (
            len(batch) == batch_size
            or len(batch[0].tokens) - min(_first_scored(row), *map(_first_scored, batch)) > max_span
        ):
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


def choice_loglikelihoods(
    model: Any,
    tokenizer: Any,
    questions: Sequence[tuple[str, Sequence[str]]],
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[list[float]]:
    """Log-likelihood of every continuation of every ``(context, [continuations])``, in one pass.

    >>> choice_loglikelihoods(model, tok, [("2+2는?\\n정답：", [" 4", " 5"])])  # doctest: +SKIP
    [[-1.2, -3.4]]
    """
    flat = [(ctx, cont) for ctx, conts in questions for cont in conts]
    lls = loglikelihoods(model, tokenizer, flat, batch_size, progress)
    out, at = [], 0
    for _, conts in questions:
        out.append(lls[at : at + len(conts)])
        at += len(conts)
    return out


# ----------------------------------------------------------------------------- whole questions


@dataclass
class ScoredQuestion:
    """One question's prompt, scored continuations, scores under the method, pick and gold."""

    prompt: str
    choices: list[str]  # the continuations scored, delimiter included (" A", " 고혈압")
    loglikelihoods: list[float]
    scores: list[float]
    pred: int
    gold: int

    @property
    def correct(self) -> bool:
        return self.pred == self.gold


def score_questions(
    model: Any,
    tokenizer: Any,
    questions: Sequence[Question],
    method: str = "letter",
    shots: Sequence[Sequence[Question]] | None = None,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[ScoredQuestion]:
    """Score each question by ``method`` (letter, cloze or pmi); ``shots[i]`` are question i's examples.

    ``progress(n)`` counts log-likelihood requests (pmi adds one unconditional request per option).
    """
    if method not in METHODS:
        raise ValueError(f"unknown scoring method {method!r}; expected one of {', '.join(METHODS)}")
    shots = shots if shots is not None else [()] * len(questions)
    prompts = [fewshot_context(method, q, s) for q, s in zip(questions, shots, strict=True)]
    texts = [choice_texts(method, q) for q in questions]
    conts = [[TARGET_DELIMITER + c for c in t] for t in texts]
    requests: list[tuple[str, Sequence[str]]] = list(zip(prompts, conts))
    if method == "pmi":  # unconditional requests, deduplicated across questions
        unique = sorted({c for cs in conts for c in cs})
        requests.append(("", unique))
    lls = choice_loglikelihoods(model, tokenizer, requests, batch_size, progress)
    uncond = dict(zip(requests[-1][1], lls[-1])) if method == "pmi" else {}
    out = []
    for q, prompt, text, cont, ll in zip(questions, prompts, texts, conts, lls):
        if method == "letter":
            scores = letter_scores(ll)
        elif method == "cloze":
            scores = cloze_scores(ll, text)
        else:
            scores = pmi_scores(ll, [uncond[c] for c in cont])
        out.append(ScoredQuestion(prompt, cont, ll, scores, argmax(scores), int(q.answer)))
    return out


def request_count(questions: Sequence[Question], method: str) -> int:
    """How many log-likelihood requests ``score_questions`` makes (for a progress bar's total)."""
    n = sum(len(q.options) for q in questions)
    if method == "pmi":
        n += len({TARGET_DELIMITER + c for q in questions for c in choice_texts(method, q)})
    return n
