"""Capability validators run on the base model and after every phase (extra ``llm``: torch).

Each validator returns one entry per capability: a ``measures`` dict of named measures and, at
the top level, a copy of the primary measure (``capabilities.TABLE``) with ``score`` = its value,
which is what the forgetting check and the report read. docs/data.md describes every probe.

- **fluency** (``korean_text``): token-weighted perplexity on held-out Korean sentences, without
  the end-of-sequence token (primary: the text itself) and with it (as trained);
  ``per_text_nll`` = ``[[nll, tokens], ...]`` per text for both.
- **terminology** (``medical_terms``): in the trained format (``고혈압(`` -> ``hypertension):``),
  both directions, 5 options whose distractors come from the same group (taught entries among
  taught, held-out among held-out); scored by ``sum`` (primary), ``char`` and ``pmi``. The
  quoted-template question (never trained) is the separate ``transfer`` measure.
- **reasoning** (``medical_mcq``): taught questions (the phase's training questions) by their
  letter after the training prompt (primary); held-out questions cloze (options not shown,
  ``char`` normalisation) and by letter; trap items (a taught right answer among the wrong
  options) apart; the longest-option baseline and chance beside them.

An accuracy measure holds ``accuracy``, ``n``, ``ci95`` (exact Clopper-Pearson on the rounded
number right), per-item ``credits`` (same items in the same order at every stage), ``clusters``
where items are not independent (the two directions of one dictionary entry), ``scoring``,
``chance`` and ``correct_prob``.

>>> CAPABILITIES["medical_terms"]
'terminology'
>>> capability_name("korean_text"), data_kind("reasoning")
('fluency', 'medical_mcq')
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from puredl.finetune import loglik
from puredl.finetune.capabilities import CAPABILITIES, capability, capability_name, data_kind
from puredl.finetune.datasets import (
    LETTERS,
    TERM_DIRECTIONS,
    TERM_PROBES,
    TERM_TRANSFER_TEMPLATES,
    MCQuestion,
    TermEntry,
    load_korean_texts,
    load_mcq,
    load_term_entries,
    mcq_cloze_prompt,
    mcq_prompt,
)
from puredl.finetune.loglik import ChoiceOutcome, ChoiceQuestion

__all__ = [
    "CAPABILITIES",
    "capability_name",
    "data_kind",
    "validate_fluency",
    "validate_terminology",
    "validate_reasoning",
    "evaluate_capabilities",
    "term_questions",
    "mcq_letter_questions",
    "mcq_cloze_questions",
    "trap_items",
    "longest_option_credits",
    "accuracy_measure",
    "headline",
    "describe",
    "format_metrics",
]


# ----------------------------------------------------------------------------- one accuracy measure


def accuracy_measure(
    credits: Sequence[float],
    scoring: str,
    chance: float,
    clusters: Sequence[str] | None = None,
    correct_prob: Sequence[float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The entry of one accuracy measure: ``accuracy``, ``n``, ``ci95``, ``credits`` [, ``clusters``] ...

    ``ci95`` is the exact binomial interval of ``round(sum(credits))`` right out of ``n`` (a tie's
    fractional credit is rounded into the count); ``None`` values when ``n`` is 0.

    >>> m = accuracy_measure([1, 0, 1, 1], "sum", 0.2)
    >>> m["accuracy"], m["n"], [round(v, 3) for v in m["ci95"]]
    (0.75, 4, [0.194, 0.994])
    """
    from puredl.finetune.stats import binomial_ci

    n = len(credits)
    entry: dict[str, Any] = {
        "accuracy": sum(credits) / n if n else None,
        "n": n,
        "ci95": list(binomial_ci(round(sum(credits)), n)) if n else None,
        "scoring": scoring,
        "chance": chance,
        "credits": [float(c) for c in credits],
    }
    if clusters is not None:
        entry["clusters"] = list(clusters)
    if correct_prob is not None:
        entry["correct_prob"] = sum(correct_prob) / n if n else None
    entry.update(extra)
    return entry


def _measure_of(
    outcomes: Sequence[ChoiceOutcome],
    questions: Sequence[ChoiceQuestion],
    scoring: str,
    clustered: bool,
    **extra: Any,
) -> dict[str, Any]:
    chance = sum(1.0 / len(q.options) for q in questions) / len(questions) if questions else 0.0
    return accuracy_measure(
        [o.credit for o in outcomes],
        scoring,
        chance,
        clusters=[q.cluster for q in questions] if clustered else None,
        correct_prob=[o.correct_prob for o in outcomes],
        margins=[o.margin for o in outcomes],
        **extra,
    )


def _with_primary(measures: dict[str, dict[str, Any]], primary: str, **extra: Any) -> dict[str, Any]:
    """The capability entry: the primary measure's keys at the top level, ``score``, all ``measures``."""
    top = dict(measures[primary])
    value = top.get("perplexity", top.get("accuracy"))
    return {**top, **extra, "score": value, "primary": primary, "measures": measures}


# ----------------------------------------------------------------------------- fluency


def _fluency_measure(per_text: list[tuple[float, int]], eos: bool) -> dict[str, Any]:
    nll, n = sum(v for v, _ in per_text), sum(k for _, k in per_text)
    if n == 0:
        raise ValueError("fluency: the texts produced no tokens to predict")
    return {
        "perplexity": loglik.perplexity(nll, n),
        "nll_per_token": nll / n,
        "tokens": n,
        "texts": len(per_text),
        "eos": eos,
        "per_text_nll": [[v, k] for v, k in per_text],  # for paired tests over texts
    }


def validate_fluency(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int = 4,
    max_length: int = 256,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Token-weighted perplexity over ``texts``, without ``<eos>`` (primary) and with it.

    Measures ``heldout_no_eos`` and ``heldout_eos``, each ``{"perplexity", "nll_per_token",
    "tokens", "texts", "eos", "per_text_nll"}``; the primary's keys are copied to the top level
    with ``score`` (its perplexity, lower is better) and ``perplexity_eos``. A diverged model
    gives ``inf``, never an overflow.
    """
    if not texts:
        raise ValueError("fluency needs at least one text")
    without, with_eos = loglik.text_nlls_with_and_without_eos(
        model, tokenizer, texts, batch_size, max_length, device=device, progress=progress
    )
    measures = {
        "heldout_no_eos": _fluency_measure(without, False),
        "heldout_eos": _fluency_measure(with_eos, True),
    }
    primary = capability("fluency").primary
    return _with_primary(measures, primary, perplexity_eos=measures["heldout_eos"]["perplexity"])


# ----------------------------------------------------------------------------- terminology


def _cluster_of(entry: TermEntry) -> str:
    return entry.id or f"{entry.ko}|{entry.en}"


def _distractors(entry: TermEntry, pool: Sequence[TermEntry], k: int, rng: random.Random) -> list[TermEntry]:
    """k other entries of ``pool``, same category first; no term containing or inside the entry's."""

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
            f"terminology: only {len(picked)} entries of the same group can serve as wrong answers for "
            f"{entry.ko!r}; need {k} (a group needs at least {k + 1} distinct terms)"
        )
    return picked


def term_questions(
    entries: Sequence[TermEntry],
    pool: Sequence[TermEntry] | None = None,
    n_candidates: int = 5,
    directions: Sequence[str] = TERM_DIRECTIONS,
    templates: dict[str, tuple[str, str]] = TERM_PROBES,
    group: str = "",
    seed: int = 0,
) -> list[ChoiceQuestion]:
    """One question per entry and direction, with ``n_candidates - 1`` distractors drawn from ``pool``.

    ``pool`` (default: ``entries``) must be the entries' own group, so that taught questions
    offer only taught distractors and held-out ones only held-out distractors. ``templates``
    maps a direction to ``(prompt, continuation)`` (default: the trained format). The
    candidates are the same in both directions and fixed by ``seed`` and the entry; both
    directions of an entry share its ``cluster`` (the entry id).
    """
    pool = list(entries if pool is None else pool)
    unknown = [d for d in directions if d not in templates]
    if unknown:
        raise ValueError(f"unknown direction(s) {unknown}; expected {', '.join(templates)}")
    questions = []
    for entry in entries:
        rng = random.Random(f"{seed}|{entry.ko}|{entry.en}")
        options = [entry, *_distractors(entry, pool, n_candidates - 1, rng)]
        rng.shuffle(options)
        answer = options.index(entry)
        for direction in directions:
            prompt, cont = templates[direction]
            questions.append(
                ChoiceQuestion(
                    prompt=prompt.format(ko=entry.ko, en=entry.en),
                    options=[cont.format(ko=e.ko, en=e.en) for e in options],
                    answer=answer,
                    group=group,
                    direction=direction,
                    cluster=_cluster_of(entry),
                )
            )
    return questions


def _by_direction(questions: Sequence[ChoiceQuestion], outcomes: Sequence[ChoiceOutcome]) -> dict[str, float]:
    out = {}
    for d in dict.fromkeys(q.direction for q in questions):
        credits = [o.credit for q, o in zip(questions, outcomes) if q.direction == d]
        out[d] = sum(credits) / len(credits)
    return out


def terminology_question_sets(
    taught: Sequence[TermEntry],
    heldout: Sequence[TermEntry] = (),
    heldout_pool: Sequence[TermEntry] | None = None,
    transfer: Sequence[TermEntry] = (),
    n_candidates: int = 5,
    taught_pool: Sequence[TermEntry] | None = None,
) -> dict[str, list[ChoiceQuestion]]:
    """The questions of each group: ``taught`` and ``heldout`` (trained format, both directions,
    distractors from the group's own pool: ``taught_pool`` / ``heldout_pool``, by default the
    asked entries) and ``transfer`` (quoted template, ko->en, distractors from the taught pool);
    an empty group is left out."""
    sets: dict[str, list[ChoiceQuestion]] = {}
    taught_pool = taught if taught_pool is None else taught_pool
    if taught:
        sets["taught"] = term_questions(taught, taught_pool, n_candidates, group="taught")
    if heldout:
        pool = heldout if heldout_pool is None else heldout_pool
        sets["heldout"] = term_questions(heldout, pool, n_candidates, group="heldout")
    if transfer:
        sets["transfer"] = term_questions(
            transfer,
            taught_pool or transfer,
            n_candidates,
            ("ko_to_en",),
            TERM_TRANSFER_TEMPLATES,
            group="transfer",
        )
    return sets


def validate_terminology(
    model: Any,
    tokenizer: Any,
    taught: Sequence[TermEntry],
    heldout: Sequence[TermEntry] = (),
    heldout_pool: Sequence[TermEntry] | None = None,
    transfer: Sequence[TermEntry] = (),
    taught_pool: Sequence[TermEntry] | None = None,
    n_candidates: int = 5,
    scorings: Sequence[str] = ("sum", "char", "pmi"),
    batch_size: int = 16,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Term recall in the trained format, both directions, distractors from the same group.

    ``taught`` are entries phase 1 trained on (distractors from ``taught_pool``, default
    ``taught``: every entry the phase trained on);
    ``heldout`` are untaught entries (distractors from ``heldout_pool``, default ``heldout``);
    ``transfer`` are taught entries asked ko->en with the quoted template, never trained
    (distractors from the taught pool). Measures: ``taught`` (sum, primary), ``taught_char``,
    ``taught_pmi``, ``heldout`` ..., ``transfer``; each accuracy measure carries ``clusters``
    (entry ids) and ``by_direction``. A group without entries is left out.
    """
    if not taught and not heldout:
        raise ValueError("terminology needs at least one dictionary entry")
    if "sum" not in scorings:
        raise ValueError("terminology scorings must include 'sum' (the primary measure)")
    sets = [
        (name, qs, ("sum",) if name == "transfer" else tuple(scorings))
        for name, qs in terminology_question_sets(
            taught, heldout, heldout_pool, transfer, n_candidates, taught_pool
        ).items()
    ]
    measures: dict[str, dict[str, Any]] = {}
    for name, questions, these in sets:
        graded = loglik.score_choices(
            model, tokenizer, questions, these, batch_size, device, progress, f"terminology {name}"
        )
        for scoring in these:
            key = name if scoring == "sum" else f"{name}_{scoring}"
            outcomes = graded[scoring]
            measures[key] = _measure_of(
                outcomes, questions, scoring, clustered=True, by_direction=_by_direction(questions, outcomes)
            )
    primary = capability("terminology").primary if taught else "heldout"
    return _with_primary(
        measures,
        primary,
        taught_accuracy=measures.get("taught", {}).get("accuracy"),
        heldout_accuracy=measures.get("heldout", {}).get("accuracy"),
        transfer_accuracy=measures.get("transfer", {}).get("accuracy"),
        n_taught=len(taught),
        n_heldout=len(heldout),
    )


# ----------------------------------------------------------------------------- reasoning


def mcq_letter_questions(questions: Sequence[MCQuestion]) -> list[ChoiceQuestion]:
    """Each question's training prompt (options listed) and the letters `` A`` .. `` E`` as options."""
    return [
        ChoiceQuestion(mcq_prompt(q), list(LETTERS[: len(q.options)]), q.answer, delimiter=" ", cluster=q.id)
        for q in questions
    ]


def mcq_cloze_questions(questions: Sequence[MCQuestion]) -> list[ChoiceQuestion]:
    """Each question without its options, and the option texts as continuations (after a space)."""
    return [
        ChoiceQuestion(mcq_cloze_prompt(q), list(q.options), q.answer, delimiter=" ", cluster=q.id)
        for q in questions
    ]


def trap_items(questions: Sequence[MCQuestion], taught: Sequence[MCQuestion]) -> list[bool]:
    """For each question: does a *wrong* option equal the right answer of a taught question?

    >>> t = [MCQuestion("?", ("a", "b", "c", "d", "e"), 0)]
    >>> qs = [MCQuestion("?", ("x", "a", "y", "z", "w"), 0), MCQuestion("?", ("a", "y", "z", "w", "v"), 0)]
    >>> trap_items(qs, t)
    [True, False]
    """
    trained = {q.answer_text.strip() for q in taught}
    return [
        any(opt.strip() in trained for i, opt in enumerate(q.options) if i != q.answer) for q in questions
    ]


def longest_option_credits(questions: Sequence[MCQuestion]) -> list[float]:
    """The credit of always picking the longest option (in characters; ties share the credit).

    >>> qs = [MCQuestion("?", ("aaa", "b", "ccc", "d", "e"), 0), MCQuestion("?", ("a", "bb", "c", "d"), 0)]
    >>> longest_option_credits(qs)
    [0.5, 0.0]
    """
    out = []
    for q in questions:
        longest = max(len(o) for o in q.options)
        top = [i for i, o in enumerate(q.options) if len(o) == longest]
        out.append(1.0 / len(top) if q.answer in top else 0.0)
    return out


def validate_reasoning(
    model: Any,
    tokenizer: Any,
    taught: Sequence[MCQuestion],
    heldout: Sequence[MCQuestion] = (),
    heldout_letter: bool = False,
    batch_size: int = 8,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Multiple-choice accuracy that does not reward option length.

    Measures: ``taught`` (the taught questions by letter after the training prompt; primary),
    ``heldout`` (cloze, ``char`` normalisation), ``heldout_letter`` (only with
    ``heldout_letter=True``: it reads every question with its options, the costliest probe),
    ``heldout_trap`` and
    ``heldout_nontrap`` (cloze on held-out items with / without a taught right answer among the
    wrong options), and the baselines ``taught_longest`` / ``heldout_longest`` (always the
    longest option). ``n_trap`` counts the trap items.
    """
    if not taught and not heldout:
        raise ValueError("reasoning needs at least one question")
    measures: dict[str, dict[str, Any]] = {}

    def letters(name: str, items: Sequence[MCQuestion]) -> None:
        qs = mcq_letter_questions(items)
        graded = loglik.score_choices(
            model, tokenizer, qs, ("sum",), batch_size, device, progress, f"reasoning {name}"
        )
        measures[name] = _measure_of(graded["sum"], qs, "letter", clustered=False)

    def longest(name: str, items: Sequence[MCQuestion]) -> None:
        chance = sum(1 / len(q.options) for q in items) / len(items)
        measures[name] = accuracy_measure(longest_option_credits(items), "longest option", chance)

    if taught:
        letters("taught", taught)
        longest("taught_longest", taught)
    if heldout:
        qs = mcq_cloze_questions(heldout)
        graded = loglik.score_choices(
            model, tokenizer, qs, ("char",), batch_size, device, progress, "reasoning cloze"
        )
        cloze = graded["char"]
        measures["heldout"] = _measure_of(cloze, qs, "char", clustered=False)
        if heldout_letter:
            letters("heldout_letter", heldout)
        longest("heldout_longest", heldout)
        traps = trap_items(heldout, taught)
        for name, keep in (("heldout_trap", True), ("heldout_nontrap", False)):
            picked = [i for i, t in enumerate(traps) if t == keep]
            measures[name] = _measure_of(
                [cloze[i] for i in picked], [qs[i] for i in picked], "char", clustered=False, items=picked
            )
    primary = capability("reasoning").primary if taught else "heldout"
    return _with_primary(
        measures,
        primary,
        taught_accuracy=measures.get("taught", {}).get("accuracy"),
        heldout_accuracy=measures.get("heldout", {}).get("accuracy"),
        n_taught=len(taught),
        n_heldout=len(heldout),
        n_trap=measures.get("heldout_trap", {}).get("n", 0),
    )


# ----------------------------------------------------------------------------- all at once


def _path_for(data_paths: dict[str, str | None] | None, name: str) -> str | None:
    if not data_paths:
        return None
    for key in (name, capability_name(name), data_kind(name)):
        if data_paths.get(key):
            return data_paths[key]
    return None


def _taught_count(taught: dict[str, int | None] | None, name: str) -> int | None:
    """How many leading train records the run taught (None: unknown, take the eval size)."""
    if not taught:
        return None
    for key in (name, capability_name(name), data_kind(name)):
        if key in taught:
            return taught[key]
    return None


def eval_size(name: str, group: str, max_eval: int | None) -> int:
    """Items of one measure group: ``max_eval`` when given, else the capabilities table's size."""
    return max_eval if max_eval is not None else capability(name).eval_sizes[group]


def terminology_entries(
    path: str | None = None, max_eval: int | None = None, n_taught: int | None = None
) -> dict[str, list[TermEntry]]:
    """The entries the run asks about: ``taught`` (the first taught train entries), ``taught_pool``
    (every entry the run taught: taught distractors), ``heldout`` (the first test entries),
    ``heldout_pool`` (every test entry: held-out distractors) and ``transfer`` (the first taught
    entries again, for the quoted template)."""
    pool = load_term_entries("all", path)
    train = [e for e in pool if e.split != "test"]  # records without a split count as both
    held = [e for e in pool if e.split == "test"]

    def size(group: str) -> int:
        n = eval_size("terminology", group, max_eval)
        return n if n_taught is None or group == "heldout" else min(n, n_taught)

    return {
        "taught": train[: size("taught")],
        "taught_pool": train[: n_taught if n_taught is not None else size("taught")],
        "heldout": held[: size("heldout")],
        "heldout_pool": held,
        "transfer": train[: size("transfer")],
    }


def evaluate_capabilities(
    model: Any,
    tokenizer: Any,
    capabilities: list[str],
    data_paths: dict[str, str | None] | None = None,
    max_eval: int | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    progress: bool = True,
    taught: dict[str, int | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Measure each capability on its data (bundled unless ``data_paths`` names a file).

    ``capabilities`` may use capability names (``fluency``) or data kinds (``korean_text``); the
    result is keyed by the names given. Each measure group scores the first N items of its
    split, N = ``max_eval`` or the capabilities table's size; ``taught`` (data kind -> the
    number of leading train records the run trained on, as ``max_samples``) caps the taught
    groups so that they hold only taught items. The same items at every stage.

    >>> evaluate_capabilities(None, None, [])
    {}
    """
    if max_eval is not None and max_eval < 1:
        raise ValueError(
            f"max_eval must be >= 1 (or None for the capabilities table's sizes), got {max_eval}"
        )
    results: dict[str, dict[str, Any]] = {}
    kwargs = {"batch_size": batch_size} if batch_size else {}
    for name in capabilities:
        cap, path = capability_name(name), _path_for(data_paths, name)
        n_taught = _taught_count(taught, name)

        if cap == "fluency":
            texts = load_korean_texts("test", path, eval_size(cap, "heldout", max_eval))
            results[name] = validate_fluency(
                model, tokenizer, texts, device=device, progress=progress, **kwargs
            )
        elif cap == "terminology":
            groups = terminology_entries(path, max_eval, n_taught)
            results[name] = validate_terminology(
                model, tokenizer, **groups, device=device, progress=progress, **kwargs
            )
        else:
            size = eval_size(cap, "taught", max_eval)
            train = load_mcq("train", path)[: size if n_taught is None else min(size, n_taught)]
            heldout = load_mcq("test", path, eval_size(cap, "heldout", max_eval))
            results[name] = validate_reasoning(
                model, tokenizer, train, heldout, device=device, progress=progress, **kwargs
            )
    return results


# ----------------------------------------------------------------------------- presenting


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _ci(entry: dict[str, Any]) -> str:
    ci = entry.get("ci95")
    return f" [{100 * ci[0]:.0f}-{100 * ci[1]:.0f}]" if ci else ""


def headline(capability: str, entry: dict[str, Any]) -> str:
    """A one-cell summary of a capability's primary measure (``ppl 41.20``, ``34.0%``).

    >>> headline("fluency", {"perplexity": 41.2, "score": 41.2})
    'ppl 41.20'
    """
    if "perplexity" in entry:
        return f"ppl {entry['perplexity']:.2f}"
    if "accuracy" in entry:
        return _pct(entry["accuracy"])
    score = entry.get("score")
    return f"{score:.4g}" if isinstance(score, (int, float)) else "n/a"


def _measure_line(name: str, m: dict[str, Any]) -> str:
    if "perplexity" in m:
        return f"{name} ppl {m['perplexity']:.2f} ({m['texts']} texts)"
    return f"{name} {_pct(m['accuracy'])}{_ci(m)} n={m['n']}"


def describe(capability: str, entry: dict[str, Any]) -> str:
    """A one-line description: every measure with its interval, then chance."""
    measures = entry.get("measures")
    if not measures:
        return headline(capability, entry)
    parts = [_measure_line(name, m) for name, m in measures.items()]
    chance = next((m["chance"] for m in measures.values() if "chance" in m), None)
    tail = f"; chance {_pct(chance)}" if chance is not None else "; lower is better"
    return f"{entry.get('primary', '')} is primary: " + "; ".join(parts) + tail


def format_metrics(metrics: dict[str, dict[str, Any]]) -> str:
    """One line per capability (what ``puredl finetune validate`` prints)."""
    width = max((len(k) for k in metrics), default=0)
    return "\n".join(f"{name:<{width}}  {describe(name, entry)}" for name, entry in metrics.items())
