"""Strategies side by side: R matrices with intervals, ACC/BWT/FWT and paired final-stage differences.

A run's summary holds the config's run (``progressive``) at the top level and each ``--compare``
strategy under ``summary["compare"][name]`` (the older ``summary["sequential"]`` form is read
too); each has its own ``history`` of stages measured on the same items. Three views:

- ``matrix_table(run)``: R[stage][capability] with 95% intervals (the entry's ``ci95``, else
  exact binomial / bootstrap over items or texts), chance and the longest-option baseline
  beside accuracies where the entry carries them;
- ``strategy_table(summary)``: per strategy ACC, BWT (accuracies, in points), the fluency BWT
  (perplexity change), FWT where the untaught capabilities were measured, and verdict counts;
- ``difference_table(summary)``: each strategy against progressive at the final stage, paired
  on the same items: accuracy difference with a bootstrap interval and an exact McNemar /
  sign-flip p (Holm-adjusted over the table), perplexity ratio with a bootstrap interval.

All numbers come from one training seed: the intervals cover the sampling of test items, not
the variation between training runs.

>>> def acc(c): return {"accuracy": sum(c) / len(c), "score": sum(c) / len(c), "credits": c}
>>> run = {"history": [{"stage": "base", "taught": None, "metrics": {"reasoning": acc([0, 1] * 10)}},
...                    {"stage": "phase0", "taught": "reasoning", "metrics": {"reasoning": acc([1] * 20)}}]}
>>> print(matrix_table(run))
| stage  | reasoning (accuracy)   |
|--------|------------------------|
| base   | 50.0% [27.2, 72.8]     |
| phase0 | 100.0% [83.2, 100.0] * |
"""

from __future__ import annotations

import math
from typing import Any

from puredl.finetune import forgetting, stats

SEED_NOTE = (
    "single training seed: the intervals and tests cover the sampling of test items, not the "
    "variation between training runs"
)
_PROGRESSIVE = "progressive"


# ----------------------------------------------------------------------------- reading a summary


def strategy_runs(summary: dict) -> list[tuple[str, dict]]:
    """``[(name, run), ...]``: the config's run first, then the compared strategies in run order."""
    runs = [(_PROGRESSIVE, summary)]
    for name, run in (summary.get("compare") or {}).items():
        if isinstance(run, dict):
            runs.append((name, run))
    legacy = summary.get("sequential")
    if isinstance(legacy, dict) and "sequential" not in dict(runs):
        runs.append(("sequential", legacy))
    return runs


def capabilities_of(history: list[dict]) -> list[str]:
    """Capabilities in the order they were taught, then any only measured."""
    caps: list[str] = []
    for entry in history:
        for cap in ([entry["taught"]] if entry.get("taught") else []) + list(entry.get("metrics", {})):
            if cap not in caps:
                caps.append(cap)
    return caps


def _lower(cap: str, entry: Any) -> bool:
    return forgetting.lower_is_better(cap, entry if isinstance(entry, dict) else None)


def interval(cap: str, entry: dict) -> tuple[float, float] | None:
    """The entry's 95% interval: its own ``ci95`` for independent items, else computed from its items.

    Clustered items (the two directions of one dictionary entry) get the cluster bootstrap: an
    exact binomial interval would treat them as independent and come out too narrow.
    """
    ci = entry.get("ci95")
    own = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci)
    if own and not entry.get("clusters"):
        return float(ci[0]), float(ci[1])
    try:
        found = forgetting.entry_interval(cap, entry)
    except (ValueError, TypeError):
        return None
    return tuple(found) if found else None


def baselines(entry: dict) -> dict[str, float]:
    """``{"chance": .., "longest option": ..}`` for an accuracy entry, where it carries them."""
    found: dict[str, float] = {}
    if isinstance(entry.get("chance"), (int, float)):
        found["chance"] = float(entry["chance"])
    measures = entry.get("measures") or {}
    primary = entry.get("primary")
    longest = measures.get(f"{primary}_longest") if primary else None
    if isinstance(longest, dict) and isinstance(longest.get("accuracy"), (int, float)):
        found["longest option"] = float(longest["accuracy"])
    return found


# ----------------------------------------------------------------------------- cells


def _num(cap: str, entry: dict) -> str:
    if "perplexity" in entry:
        return f"{entry['perplexity']:.2f}"
    value = entry.get("accuracy", entry.get("score"))
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.1f}%" if "accuracy" in entry else f"{value:.4g}"


def value_with_interval(cap: str, entry: dict) -> str:
    """``45.8% [31.4, 60.8]`` (accuracy, points) or ``20.94 [19.80, 22.13]`` (perplexity).

    >>> value_with_interval("reasoning", {"accuracy": 0.5, "ci95": [0.3, 0.7]})
    '50.0% [30.0, 70.0]'
    """
    text = _num(cap, entry)
    ci = interval(cap, entry)
    if ci is None:
        return text
    if "perplexity" in entry:
        return f"{text} [{ci[0]:.2f}, {ci[1]:.2f}]"
    return f"{text} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


# ----------------------------------------------------------------------------- R matrix


def matrix_table(run: dict) -> str:
    """R[stage][capability] with 95% intervals; ``*`` marks the stage that taught the capability."""
    history = run.get("history") or []
    if not history:
        return "(no measurements)"
    caps = capabilities_of(history)
    header = ["stage"] + [
        f"{c} ({'perplexity' if any(_lower(c, h['metrics'].get(c)) for h in history) else 'accuracy'})"
        for c in caps
    ]
    rows = []
    for entry in history:
        row = [str(entry.get("stage"))]
        for cap in caps:
            cell = entry.get("metrics", {}).get(cap)
            if not isinstance(cell, dict):
                row.append("-")
                continue
            row.append(value_with_interval(cap, cell) + (" *" if entry.get("taught") == cap else ""))
        rows.append(row)
    base_row = ["baselines"]
    for cap in caps:
        last = next((h["metrics"][cap] for h in reversed(history) if cap in h.get("metrics", {})), {})
        found = baselines(last) if isinstance(last, dict) else {}
        base_row.append(", ".join(f"{k} {100 * v:.1f}%" for k, v in found.items()) or "")
    if any(base_row[1:]):
        rows.append(base_row)
    return _markdown(header, rows)


# ----------------------------------------------------------------------------- ACC / BWT / FWT


def continual_summary(run: dict) -> dict | None:
    """ACC, BWT, FWT and per-capability terms of one run (``forgetting.continual_learning``).

    None when the history is not one base stage then one new capability per phase.
    """
    history = run.get("history") or []
    if len(history) < 2:
        return None
    try:
        return forgetting.continual_learning(history)
    except ValueError:
        return None


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f}"


def _ppl_change(neg_log_ratio: float | None) -> str:
    """A ``-ln(ppl ratio)`` term as the perplexity's percent change (``+5.0%`` = worse)."""
    return "n/a" if neg_log_ratio is None else f"{100 * math.expm1(-neg_log_ratio):+.1f}%"


def _verdict_counts(run: dict) -> dict[str, int]:
    counts = {stats.FORGOTTEN: 0, stats.RETAINED: 0, stats.INCONCLUSIVE: 0}
    for record in run.get("forgetting") or []:
        verdict = record.get("verdict", stats.FORGOTTEN)
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts


def _seconds(phases: list[dict]) -> str:
    """Training seconds after the shared phase 0 (what the strategy itself cost)."""
    times = [p.get("seconds") for p in phases[1:]]
    return f"{sum(times):.0f}" if times and all(isinstance(t, (int, float)) for t in times) else "n/a"


def strategy_table(summary: dict) -> str:
    """One row per strategy: ACC, BWT (points), the perplexity BWT, FWT, verdict counts, training time."""
    header = ["strategy", "ACC", "BWT (points)", "fluency BWT (ppl)", "FWT (points)", "verdicts F/R/I"]
    header.append("train s, phases 1..")
    rows = []
    for name, run in strategy_runs(summary):
        cl = continual_summary(run)
        ppl_bwt = "n/a"
        if cl:
            terms = [
                c["bwt"]
                for c, low in zip(cl["per_capability"], cl["lower_is_better"])
                if low and c["bwt"] is not None
            ]
            ppl_bwt = _ppl_change(terms[0]) if len(terms) == 1 else ppl_bwt
        acc = "n/a" if not cl or cl["acc"] is None else f"{100 * cl['acc']:.1f}%"
        counts = _verdict_counts(run)
        rows.append(
            [
                name,
                acc,
                _points(cl["bwt"]) if cl else "n/a",
                ppl_bwt,
                _points(cl["fwt"]) if cl else "n/a",
                f"{counts[stats.FORGOTTEN]}/{counts[stats.RETAINED]}/{counts[stats.INCONCLUSIVE]}",
                _seconds(run.get("phases") or []),
            ]
        )
    return _markdown(header, rows)


# ----------------------------------------------------------------------------- paired differences


def final_differences(summary: dict) -> list[dict]:
    """Each strategy minus progressive at the final stage, per capability, paired on the same items.

    Records: ``strategy``, ``capability``, ``measure`` (``accuracy`` or ``log_perplexity``),
    ``progressive`` / ``other`` (scores), ``change``, ``ci``, ``p_two_sided``, ``p_holm`` (over
    the records), ``lost`` / ``gained`` (items progressive had right and the strategy wrong, and
    the reverse; NLL for perplexity) and ``test``. Empty without per-item data.
    """
    runs = strategy_runs(summary)
    if len(runs) < 2 or not summary.get("history"):
        return []
    final = summary["history"][-1]
    records = []
    for name, run in runs[1:]:
        history = run.get("history") or []
        if not history or history[-1].get("stage") != final.get("stage"):
            continue
        for cap, mine in final.get("metrics", {}).items():
            theirs = history[-1].get("metrics", {}).get(cap)
            lower = _lower(cap, mine)
            try:
                change = forgetting.paired_change(mine, theirs, lower)
            except ValueError:
                change = None
            if change is None:
                continue
            credits = (mine.get("credits") or []) + (theirs.get("credits") or [])
            exact = not lower and not mine.get("clusters") and all(c in (0, 1) for c in credits)
            records.append(
                {
                    "strategy": name,
                    "capability": cap,
                    "measure": change.measure,
                    "progressive": forgetting._score(mine),
                    "other": forgetting._score(theirs),
                    "change": change.change,
                    "ci": list(change.ci),
                    "p_two_sided": change.p_two_sided,
                    "lost": change.lost,
                    "gained": change.gained,
                    "items": change.items,
                    "test": "exact McNemar"
                    if exact
                    else ("sign-flip, clustered" if not lower else "sign-flip"),
                }
            )
    for record, p in zip(records, stats.holm([r["p_two_sided"] for r in records])):
        record["p_holm"] = p
    return records


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3g}"


def difference_table(summary: dict) -> str:
    """The final-stage paired differences as a table ('' when there is nothing to compare)."""
    records = final_differences(summary)
    if not records:
        return ""
    header = ["strategy - progressive", "capability", "progressive", "strategy", "difference [95% CI]"]
    header += ["lost/gained", "p (test)", "p Holm"]
    rows = []
    for r in records:
        if r["measure"] == "log_perplexity":
            shown = [f"{r['progressive']:.2f}", f"{r['other']:.2f}"]
            diff = f"{_ppl_change(-r['change'])} ppl [{_ppl_change(-r['ci'][0])}, {_ppl_change(-r['ci'][1])}]"
            moved = f"{r['lost']:.3g}/{r['gained']:.3g} nats"
        else:
            shown = [f"{100 * r['progressive']:.1f}%", f"{100 * r['other']:.1f}%"]
            diff = f"{_points(r['change'])} [{_points(r['ci'][0])}, {_points(r['ci'][1])}]"
            moved = f"{r['lost']:.3g}/{r['gained']:.3g} of {r['items']}"
        rows.append(
            [r["strategy"], r["capability"], *shown, diff, moved, f"{_p(r['p_two_sided'])} ({r['test']})"]
            + [_p(r["p_holm"])]
        )
    return _markdown(header, rows)


def format_comparison(summary: dict) -> str:
    """What ``run-all --compare`` prints last: the strategy table and the paired differences."""
    if len(strategy_runs(summary)) < 2:
        return ""
    parts = [
        "Strategies (same base model, same LoRA_0; " + SEED_NOTE + "):",
        "",
        strategy_table(summary),
    ]
    diffs = difference_table(summary)
    if diffs:
        parts += ["", "Final stage, each strategy minus progressive on the same items:", "", diffs]
    return "\n".join(parts)
