"""Catastrophic-forgetting verdicts over a run's history of capability measurements.

A history has one entry per stage: the base model first, then the model after each phase::

    {"stage": "phase1", "taught": "terminology", "metrics": {capability: entry, ...}}

Accuracy entries carry ``score`` (or ``accuracy``) and per-item ``credits`` (1, 0 or a tie's
share; the same items in the same order at every stage) and may carry ``clusters`` (one id per
item: the two directions of one dictionary entry share an id). Perplexity entries (``fluency``,
or any entry with ``perplexity``) carry ``perplexity`` and ``per_text_nll`` = ``[[nll, tokens],
...]``.

Every capability is checked at every stage after the one that taught it (the most recent
teaching, if taught again), against right after that teaching: a paired comparison on the same
items (:mod:`puredl.finetune.stats`), Holm-corrected over all checks of the history, then one of
three verdicts — ``FORGOTTEN`` (a significant drop larger than the margin), ``RETAINED`` (the
interval excludes a drop larger than the margin) or ``INCONCLUSIVE`` (neither; the record says
which drop this many items could detect). Only ``FORGOTTEN`` should fail a run
(:func:`any_forgotten`).

>>> def acc(credits): return {"score": sum(credits) / len(credits), "credits": credits}
>>> history = [
...     {"stage": "base", "taught": None, "metrics": {"reasoning": acc([0] * 40)}},
...     {"stage": "phase0", "taught": "reasoning", "metrics": {"reasoning": acc([1] * 30 + [0] * 10)}},
...     {"stage": "phase1", "taught": "terminology", "metrics": {"reasoning": acc([1] * 5 + [0] * 35)}},
... ]
>>> (record,) = check_catastrophic_forgetting(history)
>>> record["verdict"], record["lost"], round(record["change"], 3)
('FORGOTTEN', 25.0, -0.625)
>>> any_forgotten([record])
True
"""

from __future__ import annotations

import math
from typing import Any

from puredl.finetune import stats

# a copy of metrics.LOWER_IS_BETTER (plus the data kind); entries holding perplexity count too
LOWER_IS_BETTER = frozenset({"fluency", "korean_text"})


def lower_is_better(capability: str, entry: dict[str, Any] | None = None) -> bool:
    """True for perplexity-like capabilities (``fluency``) or metric dicts holding ``perplexity``."""
    return capability in LOWER_IS_BETTER or bool(entry and "perplexity" in entry)


def _score(entry: Any) -> float | None:
    if not isinstance(entry, dict):
        return None
    value = entry.get("score", entry.get("accuracy"))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)  # +inf stays: a diverged model's perplexity


def _check_history(history: list[dict]) -> None:
    if not isinstance(history, list):
        raise TypeError(f"history must be a list of stage dicts, got {type(history).__name__}")
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or "stage" not in entry or not isinstance(entry.get("metrics"), dict):
            raise ValueError(
                f"history[{i}] must be a dict with 'stage', 'taught' and 'metrics' (a dict of capabilities)"
            )


def relative_worsening(before: float, after: float, lower_better: bool) -> float:
    """How much worse ``after`` is than ``before``, as a fraction of ``|before|`` (negative = better).

    >>> relative_worsening(1.0, 0.75, lower_better=False), relative_worsening(40.0, 50.0, lower_better=True)
    (0.25, 0.25)
    """
    worse = (after - before) if lower_better else (before - after)
    if before == 0:
        return 0.0 if worse == 0 else math.copysign(math.inf, worse)
    return worse / abs(before)


# ----------------------------------------------------------------------------- one paired comparison


def paired_change(
    before: Any,
    after: Any,
    lower: bool,
    *,
    level: float = 0.95,
    n_boot: int = 4000,
    n_resamples: int = 20_000,
    seed: int = 0,
) -> stats.PairedChange | None:
    """The paired change between two metric entries of one capability, or None without per-item data.

    Accuracy: ``credits`` (and ``clusters``, taken from the later entry when both carry them);
    perplexity: ``per_text_nll``. Items must match in number; ``ValueError`` if the clusters of
    the two stages differ (the items would not be the same).
    """
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None
    options = {"level": level, "n_boot": n_boot, "n_resamples": n_resamples, "seed": seed}
    if lower:
        a, b = before.get("per_text_nll"), after.get("per_text_nll")
        if isinstance(a, list) and isinstance(b, list) and a and len(a) == len(b) and _finite(a + b):
            return stats.paired_log_ppl_change(a, b, **options)
        return None
    a, b = before.get("credits"), after.get("credits")
    if not (isinstance(a, list) and isinstance(b, list) and a and len(a) == len(b)):
        return None
    clusters_a, clusters_b = before.get("clusters"), after.get("clusters")
    if clusters_a is not None and clusters_b is not None and list(clusters_a) != list(clusters_b):
        raise ValueError("the two stages' clusters differ: per-item credits must be for the same items")
    return stats.paired_accuracy_change(
        a, b, clusters=clusters_b if clusters_b is not None else clusters_a, **options
    )


def _relative_change(before: float, after: float) -> float:
    if before == 0:
        return 0.0 if after == 0 else math.copysign(math.inf, after)
    return (after - before) / abs(before)


def _finite(rows: list) -> bool:
    return all(isinstance(r, (list, tuple)) and all(math.isfinite(v) for v in r) for r in rows)


# ----------------------------------------------------------------------------- all checks of a history


def check_catastrophic_forgetting(
    history: list[dict],
    threshold: float = 0.05,
    *,
    absolute_margin: float | None = None,
    alpha: float = 0.05,
    level: float = 0.95,
    power: float = 0.8,
    n_boot: int = 4000,
    n_resamples: int = 20_000,
    seed: int = 0,
) -> list[dict]:
    """One record per (capability, later stage): the paired change since it was taught and a verdict.

    ``threshold`` is the practical margin relative to the score right after teaching (0.05 =
    5%); ``absolute_margin`` (score units: accuracy fraction or perplexity) replaces it. The
    one-sided p-values of a worsening are Holm-adjusted over all records that have one.
    Each record: ``capability``, ``taught_at``, ``stage``, ``metric`` (``accuracy`` /
    ``perplexity``), ``lower_is_better``, ``before`` / ``after`` (scores), ``relative_change``
    and ``worse_by`` (relative), ``change`` with ``ci`` and ``level`` (accuracy difference, or
    log-perplexity change: ``exp(change)`` is the perplexity ratio), ``change_units``,
    ``p_value`` (one-sided, for a worsening), ``p_two_sided``, ``p_holm``, ``margin`` (in
    ``change_units``), ``threshold``, ``absolute_margin``, ``alpha``, ``items``, ``clusters``,
    ``lost`` / ``gained`` (items, or NLL nats), ``min_detectable_drop`` (change units; one-sided
    at alpha/m with power ``power``, m = the number of tested records: Holm's strictest step),
    ``verdict`` and a one-line ``message``. Without per-item data a record has ``p_value`` None
    and is ``INCONCLUSIVE``.
    """
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or threshold < 0:
        raise ValueError(f"threshold must be a number >= 0, got {threshold!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    if absolute_margin is not None and not absolute_margin >= 0:
        raise ValueError(f"absolute_margin must be a number >= 0 (score units), got {absolute_margin!r}")
    _check_history(history)
    options = {"level": level, "n_boot": n_boot, "n_resamples": n_resamples, "seed": seed}
    pending: list[tuple[dict, stats.PairedChange | None]] = []
    reference: dict[str, tuple[str, Any]] = {}  # capability -> (teaching stage, its entry then)
    for entry in history:
        stage, metrics = str(entry["stage"]), entry["metrics"]
        for capability, (taught_at, then) in reference.items():
            now = metrics.get(capability)
            before, after = _score(then), _score(now)
            if after is None:
                continue
            lower = lower_is_better(capability, now)
            change = paired_change(then, now, lower, **options)
            margin = stats.practical_margin(before, threshold, absolute_margin, lower)
            record = {
                "capability": capability,
                "taught_at": taught_at,
                "stage": stage,
                "metric": "perplexity" if lower else "accuracy",
                "lower_is_better": lower,
                "before": before,
                "after": after,
                "relative_change": _relative_change(before, after),
                "worse_by": relative_worsening(before, after, lower),
                "margin": margin,
                "threshold": threshold,
                "absolute_margin": absolute_margin,
                "alpha": alpha,
            }
            pending.append((record, change))
        taught = entry.get("taught")
        taught_score = _score(metrics.get(taught)) if taught else None
        if taught_score is not None and math.isfinite(taught_score):
            reference[str(taught)] = (stage, metrics[taught])
    tested = [(r, c) for r, c in pending if c is not None]
    raw = [c.p_greater if r["lower_is_better"] else c.p_less for r, c in tested]
    adjusted = dict(zip((id(r) for r, _ in tested), stats.holm(raw)))
    records = []
    for record, change in pending:
        if change is None:
            record.update(_untested())
            if record["lower_is_better"] and math.isinf(record["after"]):
                record["verdict"] = stats.FORGOTTEN  # some text became impossible: nothing to test
        else:
            record.update(_tested(record, change, adjusted[id(record)], power, max(1, len(tested))))
        record["message"] = describe(record)
        records.append(record)
    return records


def _untested() -> dict:
    return {
        "change": None,
        "change_units": None,
        "ci": None,
        "level": None,
        "p_value": None,
        "p_two_sided": None,
        "p_holm": None,
        "items": None,
        "clusters": None,
        "lost": None,
        "gained": None,
        "min_detectable_drop": None,
        "verdict": stats.INCONCLUSIVE,
    }


def _tested(record: dict, change: stats.PairedChange, p_holm: float, power: float, m: int) -> dict:
    lower = record["lower_is_better"]
    return {
        "change": change.change,
        "change_units": change.measure,
        "ci": list(change.ci),
        "level": change.level,
        "p_value": change.p_greater if lower else change.p_less,
        "p_two_sided": change.p_two_sided,
        "p_holm": p_holm,
        "items": change.items,
        "clusters": change.clusters,
        "lost": change.lost,
        "gained": change.gained,
        "min_detectable_drop": stats.min_detectable_change(change, record["alpha"] / m, power),
        "verdict": stats.forgetting_verdict(change, record["margin"], p_holm, record["alpha"], lower),
    }


def forgotten(records: list[dict]) -> list[dict]:
    """The records whose verdict is FORGOTTEN (records without a verdict count: the old flag format)."""
    return [r for r in records or [] if r.get("verdict", stats.FORGOTTEN) == stats.FORGOTTEN]


def any_forgotten(records: list[dict]) -> bool:
    """True when some record is FORGOTTEN: the only verdict that ``fail_on_forgetting`` acts on."""
    return bool(forgotten(records))


# ----------------------------------------------------------------------------- the message


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3g}"


def describe(record: dict) -> str:
    """One line a person can read: what changed, how sure, and the verdict with its reason."""
    cap, lower = record["capability"], record["lower_is_better"]
    before, after = record["before"], record["after"]
    moved = ("rose" if after > before else "fell") if after != before else "stayed"
    shown = (lambda v: f"{v:.4g}") if lower else (lambda v: f"{100 * v:.1f}%")
    head = (
        f"{cap} {record['metric']} {moved} from {shown(before)} after {record['taught_at']} "
        f"to {shown(after)} at {record['stage']}"
    )
    verdict = record["verdict"]
    if record["p_value"] is None:
        if verdict == stats.FORGOTTEN:
            return f"{head}: {verdict} (infinite perplexity: the model diverged)"
        return f"{head}: {verdict} (no per-item data to test)"
    margin, low, high = record["margin"], *record["ci"]
    if lower:  # log-perplexity change shown as a percent change of perplexity

        def size(v: float) -> str:
            return f"{100 * math.expm1(v):+.1f}%"

        amount, margin_text = size(record["change"]), f"{100 * math.expm1(margin):.1f}%"
        sample = f"{record['items']} texts"
    else:

        def size(v: float) -> str:
            return f"{100 * v:+.1f} points"

        amount, margin_text = size(record["change"]), f"{100 * margin:.1f} points"
        sample = f"{record['lost']:.3g} lost, {record['gained']:.3g} gained of {record['items']}"
    evidence = (
        f"{amount}, {100 * record['level']:.0f}% CI {size(low)} to {size(high)}; {sample}; "
        f"{_p(record['p_value'])}, Holm {_p(record['p_holm'])}"
    )
    if verdict == stats.FORGOTTEN:
        reason = f"a significant worsening beyond the {margin_text} margin"
    elif verdict == stats.RETAINED:
        reason = f"a worsening beyond the {margin_text} margin is excluded"
    else:
        mdd = record["min_detectable_drop"]
        detect = (
            f"; this N detects a worsening of about {size(mdd if lower else -mdd).lstrip('+-')}"
            if mdd
            else ""
        )
        reason = f"neither a significant worsening beyond the {margin_text} margin nor excluded{detect}"
    return f"{head} ({evidence}): {verdict}, {reason}"


# ----------------------------------------------------------------------------- what each phase learned


def learning_gains(
    history: list[dict], *, alpha: float = 0.05, level: float = 0.95, n_boot: int = 4000, seed: int = 0
) -> list[dict]:
    """Each phase's own capability right after it against the base model, on the same items.

    The one-sided p tests an improvement (accuracy up, perplexity down); ``p_holm`` corrects over
    the phases; ``significant`` is ``p_holm < alpha``. Phases without per-item data are left out.

    >>> def entry(x): return {"reasoning": {"score": float(x), "credits": [x] * 10}}
    >>> base = {"stage": "base", "taught": None, "metrics": entry(0)}
    >>> after = {"stage": "phase0", "taught": "reasoning", "metrics": entry(1)}
    >>> [(g["stage"], g["gained"], round(g["p_value"], 6)) for g in learning_gains([base, after])]
    [('phase0', 10.0, 0.000977)]
    """
    _check_history(history)
    if len(history) < 2 or history[0].get("taught"):
        return []
    base = history[0]["metrics"]
    gains = []
    for entry in history[1:]:
        cap = entry.get("taught")
        before, after = base.get(cap), entry["metrics"].get(cap) if cap else None
        if not cap or _score(before) is None or _score(after) is None:
            continue
        lower = lower_is_better(cap, after)
        change = paired_change(before, after, lower, level=level, n_boot=n_boot, seed=seed)
        if change is None:
            continue
        gains.append(
            {
                "capability": cap,
                "stage": entry["stage"],
                "metric": "perplexity" if lower else "accuracy",
                "lower_is_better": lower,
                "before": _score(before),
                "after": _score(after),
                "change": change.change,
                "ci": list(change.ci),
                "level": change.level,
                "p_value": change.p_less if lower else change.p_greater,
                "items": change.items,
                "lost": change.lost,
                "gained": change.gained,
            }
        )
    for gain, p_holm in zip(gains, stats.holm([g["p_value"] for g in gains])):
        gain["p_holm"] = p_holm
        gain["significant"] = p_holm < alpha
        gain["message"] = _describe_gain(gain)
    return gains


def _describe_gain(gain: dict) -> str:
    lower, low, high = gain["lower_is_better"], *gain["ci"]
    if lower:

        def size(v: float) -> str:
            return f"{100 * math.expm1(v):+.1f}%"

        shown, sample = (lambda v: f"{v:.4g}"), f"{gain['items']} texts"
    else:

        def size(v: float) -> str:
            return f"{100 * v:+.1f} points"

        shown = lambda v: f"{100 * v:.1f}%"  # noqa: E731
        sample = f"{gain['gained']:.3g} gained, {gain['lost']:.3g} lost of {gain['items']}"
    better = gain["after"] < gain["before"] if lower else gain["after"] > gain["before"]
    moved = ("fell" if lower else "rose") if better else ("rose" if lower else "fell")
    verdict = "a significant gain" if gain["significant"] else "no significant gain"
    return (
        f"{gain['capability']} {gain['metric']} {moved} from {shown(gain['before'])} (base) to "
        f"{shown(gain['after'])} after {gain['stage']} ({size(gain['change'])}, "
        f"{100 * gain['level']:.0f}% CI {size(low)} to {size(high)}; {sample}; one-sided "
        f"{_p(gain['p_value'])}, Holm {_p(gain['p_holm'])}): {verdict}"
    )


# ----------------------------------------------------------------------------- continual-learning matrix


def entry_interval(
    capability: str, entry: dict, level: float = 0.95, n_boot: int = 4000, seed: int = 0
) -> tuple[float, float] | None:
    """A 95% interval for one entry's score: exact binomial / bootstrap for accuracies, bootstrap
    over texts for perplexity; None without per-item data.

    >>> [round(v, 4) for v in entry_interval("reasoning", {"score": 0.5, "credits": [1, 0] * 12})]
    [0.2912, 0.7088]
    """
    if lower_is_better(capability, entry):
        rows = entry.get("per_text_nll")
        if not rows or not _finite(rows):
            return None
        return stats.perplexity_interval(rows, level=level, n_boot=n_boot, seed=seed)
    credits = entry.get("credits")
    if not credits:
        return None
    return stats.accuracy_interval(credits, entry.get("clusters"), level=level, n_boot=n_boot, seed=seed)


def capability_matrix(history: list[dict], level: float = 0.95) -> dict:
    """R[stage][capability] from a history whose first stage is the base and each later stage
    teaches the next capability, with each cell's interval.

    Returns ``stages``, ``capabilities`` (in teaching order), ``scores`` (None where not
    measured), ``intervals`` (``[low, high]`` or None) and ``lower_is_better``.
    """
    _check_history(history)
    caps: list[str] = []
    for entry in history[1:]:
        taught = entry.get("taught")
        if not taught or taught in caps:
            raise ValueError(
                f"stage {entry['stage']!r} must teach a new capability (got {taught!r}): the matrix "
                "needs the base stage, then one phase per capability"
            )
        caps.append(str(taught))
    lower = []
    for cap in caps:
        lower.append(any(lower_is_better(cap, e["metrics"].get(cap)) for e in history))
    scores, intervals = [], []
    for entry in history:
        metrics = entry["metrics"]
        scores.append([_score(metrics.get(cap)) for cap in caps])
        row = []
        for cap in caps:
            cell = metrics.get(cap)
            interval = entry_interval(cap, cell, level) if isinstance(cell, dict) else None
            row.append(list(interval) if interval else None)
        intervals.append(row)
    return {
        "stages": [str(e["stage"]) for e in history],
        "capabilities": caps,
        "scores": scores,
        "intervals": intervals,
        "lower_is_better": lower,
    }


def continual_learning(history: list[dict], level: float = 0.95) -> dict:
    """The capability matrix with ACC, BWT, FWT and forgetting (see ``stats.continual_learning_summary``).

    >>> def acc(x): return {"score": x}
    >>> h = [{"stage": "base", "taught": None, "metrics": {"a": acc(0.2), "b": acc(0.2)}},
    ...      {"stage": "phase0", "taught": "a", "metrics": {"a": acc(0.6), "b": acc(0.3)}},
    ...      {"stage": "phase1", "taught": "b", "metrics": {"a": acc(0.5), "b": acc(0.7)}}]
    >>> s = continual_learning(h)
    >>> round(s["acc"], 6), round(s["bwt"], 6), round(s["fwt"], 6)
    (0.6, -0.1, 0.1)
    """
    matrix = capability_matrix(history, level)
    summary = stats.continual_learning_summary(matrix["scores"], matrix["lower_is_better"])
    return {**matrix, **summary}
