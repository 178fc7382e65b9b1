"""Catastrophic-forgetting check over a run's history of capability scores.

A history has one entry per stage: the base model first, then the model after each phase::

    {"stage": "phase1", "taught": "terminology", "metrics": {"fluency": {"score": 41.9, ...}, ...}}

A capability is flagged at a later stage when its score is more than ``threshold`` (relative)
worse than right after the phase that taught it. Worse means lower for accuracies and higher
for perplexity (``fluency``, or any metric dict that carries ``perplexity``). Exactly at the
threshold is not flagged.

>>> def ppl(x): return {"fluency": {"perplexity": x, "score": x}}
>>> history = [
...     {"stage": "base", "taught": None, "metrics": ppl(60.0)},
...     {"stage": "phase0", "taught": "fluency", "metrics": ppl(40.0)},
...     {"stage": "phase1", "taught": "terminology", "metrics": ppl(44.0)},
... ]
>>> flags = check_catastrophic_forgetting(history)
>>> [(f["capability"], f["stage"], round(f["relative_change"], 3)) for f in flags]
[('fluency', 'phase1', 0.1)]
"""

from __future__ import annotations

import math
from typing import Any

LOWER_IS_BETTER = frozenset({"fluency", "korean_text"})
_EPS = 1e-9  # relative slack so that a change of exactly the threshold is not flagged by rounding


def lower_is_better(capability: str, entry: dict[str, Any] | None = None) -> bool:
    """True for perplexity-like capabilities (``fluency``) or metric dicts holding ``perplexity``."""
    return capability in LOWER_IS_BETTER or bool(entry and "perplexity" in entry)


def _score(entry: Any) -> float | None:
    if not isinstance(entry, dict):
        return None
    value = entry.get("score")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


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


def check_catastrophic_forgetting(history: list[dict], threshold: float = 0.05) -> list[dict]:
    """Flags for every (capability, later stage) more than ``threshold`` worse than when it was taught.

    Each flag: ``capability``, ``taught_at`` (stage that taught it), ``stage``, ``metric``
    (``perplexity`` or ``accuracy``/``score``), ``before``, ``after``, ``relative_change``
    (``(after - before) / |before|``, signed), ``worse_by`` (the relative worsening),
    ``threshold``, ``lower_is_better`` and a readable ``message``. If a capability is taught
    again, later stages compare with the most recent teaching.
    """
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or threshold < 0:
        raise ValueError(f"threshold must be a number >= 0, got {threshold!r}")
    _check_history(history)
    flags: list[dict] = []
    reference: dict[str, tuple[str, float, Any]] = {}  # capability -> (teaching stage, score, metrics then)
    for entry in history:
        stage, metrics = str(entry["stage"]), entry["metrics"]
        for capability, (taught_at, before, then) in reference.items():
            after = _score(metrics.get(capability))
            if after is None:
                continue
            lower = lower_is_better(capability, metrics.get(capability))
            worse_by = relative_worsening(before, after, lower)
            if worse_by > threshold * (1 + _EPS) + _EPS:
                metric = "perplexity" if lower else "accuracy"
                direction = "rose" if lower else "fell"
                noise = paired_noise(then, metrics.get(capability))
                flags.append(
                    {
                        "capability": capability,
                        "taught_at": taught_at,
                        "stage": stage,
                        "metric": metric,
                        "before": before,
                        "after": after,
                        "relative_change": (after - before) / abs(before) if before else worse_by,
                        "worse_by": worse_by,
                        "threshold": threshold,
                        "lower_is_better": lower,
                        **(noise or {}),
                        "message": (
                            f"{capability} {metric} {direction} from {before:.4g} after {taught_at} to "
                            f"{after:.4g} at {stage} ({100 * worse_by:.1f}% worse; threshold "
                            f"{100 * threshold:.1f}%)" + (describe_noise(noise) if noise else "")
                        ),
                    }
                )
        taught = entry.get("taught")
        if taught:
            score = _score(metrics.get(taught))
            if score is not None:
                reference[str(taught)] = (stage, score, metrics.get(taught))
    return flags


def paired_noise(before: Any, after: Any) -> dict | None:
    """How far a change is from sampling noise, from the same items measured at both stages.

    Accuracy: per-question ``credits`` (1, 0 or a tie's share) in both metric dicts give
    ``net_items_lost`` (questions right before and wrong after, minus the reverse) and the paired
    ``standard_error`` of the accuracy change. Perplexity: per-text ``per_text_nll`` (``[nll,
    tokens]``) give the paired standard error of the change in log-perplexity (about the relative
    change). Both carry ``items`` and ``within_noise``: the change is less than two standard errors
    (about 95% two-sided). None when the dicts lack matching per-item data.

    >>> paired_noise({"credits": [1, 1, 0, 1]}, {"credits": [1, 0, 0, 1]})["within_noise"]
    True
    """
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None
    a, b = before.get("credits"), after.get("credits")
    if _paired(a, b):
        diffs = [float(y) - float(x) for x, y in zip(a, b)]
        mean, se = _mean_and_se(diffs)
        return {
            "items": len(diffs),
            "net_items_lost": -sum(diffs),
            "standard_error": se,
            "within_noise": abs(mean) < 2 * se,
        }
    a, b = before.get("per_text_nll"), after.get("per_text_nll")
    if _paired(a, b) and all(x[1] == y[1] for x, y in zip(a, b)):
        tokens = sum(x[1] for x in a)
        diffs = [y[0] - x[0] for x, y in zip(a, b)]  # nats, text by text
        mean, se = _mean_and_se(diffs)
        n = len(diffs)
        change, se_log_ppl = n * mean / tokens, n * se / tokens  # of the log-perplexity
        return {"items": n, "standard_error": se_log_ppl, "within_noise": abs(change) < 2 * se_log_ppl}
    return None


def _paired(a: Any, b: Any) -> bool:
    return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) >= 2


def _mean_and_se(diffs: list[float]) -> tuple[float, float]:
    n = len(diffs)
    mean = sum(diffs) / n
    return mean, math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n)


def describe_noise(noise: dict) -> str:
    """``; 2 of 48 questions net, within sampling noise (2 SE = 5.1 points)`` (or the perplexity form)."""
    verdict = "within sampling noise" if noise["within_noise"] else "beyond sampling noise"
    if "net_items_lost" in noise:
        return (
            f"; {noise['net_items_lost']:.3g} of {noise['items']} questions net, {verdict} "
            f"(2 SE = {200 * noise['standard_error']:.1f} points)"
        )
    two_se = 200 * noise["standard_error"]
    return f"; over {noise['items']} texts, {verdict} (2 SE = {two_se:.1f}% of perplexity)"
