"""The run report: ``runs/NAME/report.md``, ``metrics.json`` and PNG plots (matplotlib, Agg).

``summary`` is what ``run-all`` collects::

    {"name", "model", "device", "total_seconds",
     "phases": [{"name", "capability", "adapter_dir", "train_losses", "steps", "seconds"}, ...],
     "history": [{"stage", "taught", "metrics": {capability: {..., "score"}}}, ...],
     "forgetting": [record with "verdict", ...],        # puredl.finetune.forgetting
     "compare": {"sequential": <the same for that strategy>, "replay": ..., "olora": ...}}

(a top-level ``"sequential"`` is accepted too). ``format_table`` renders the phase-by-capability
table that ``run-all`` prints last and the report opens with, and the strategies side by side
(``puredl.finetune.compare``) when the run compared some.

>>> def acc(x): return {"reasoning": {"accuracy": x, "score": x}}
>>> summary = {"name": "demo", "phases": [], "forgetting": [], "history": [
...     {"stage": "base", "taught": None, "metrics": acc(0.2)},
...     {"stage": "phase0", "taught": "reasoning", "metrics": acc(0.3)}]}
>>> print(format_table(summary))
| stage  | taught    | reasoning (accuracy) |
|--------|-----------|----------------------|
| base   | -         | 20.0%                |
| phase0 | reasoning | 30.0% [taught]       |
<BLANKLINE>
No catastrophic forgetting.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from puredl._atomic import write_bytes, write_text
from puredl._optional import require
from puredl.finetune import compare
from puredl.finetune.forgetting import (
    _score,
    forgotten,
    learning_gains,
    lower_is_better,
    relative_worsening,
)

REPORT_FILE = "report.md"
METRICS_FILE = "metrics.json"
LOSS_PLOT = "training_loss.png"
CAPABILITY_PLOT = "capabilities.png"

_UNITS = {"fluency": "perplexity, lower is better", "terminology": "accuracy", "reasoning": "accuracy"}


# ----------------------------------------------------------------------------- small helpers


def _jsonable(value: Any) -> Any:
    """Summary -> plain JSON: NaN/inf become null, paths strings, tensors numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return str(value)


def _capabilities(history: list[dict]) -> list[str]:
    return compare.capabilities_of(history)


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _value(cap: str, entry: dict) -> str:
    if "perplexity" in entry:
        return f"{entry['perplexity']:.2f}"
    if "accuracy" in entry:
        text = _pct(entry["accuracy"])
        if "taught_accuracy" in entry or "heldout_accuracy" in entry:
            taught, held = _pct(entry.get("taught_accuracy")), _pct(entry.get("heldout_accuracy"))
            text += f" (taught {taught}, held-out {held})"
        return text
    score = entry.get("score")
    return f"{score:.4g}" if isinstance(score, (int, float)) else "n/a"


def _flag_index(records: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r.get("capability"), r.get("stage")): r for r in records or []}


def _cells(history: list[dict], flags: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the stage-by-capability table, with retained/FORGOTTEN marks."""
    caps = _capabilities(history)
    header = ["stage", "taught"] + [f"{c} ({_UNITS.get(c, 'score')})" for c in caps]
    flagged = _flag_index(flags)
    taught_score: dict[str, float] = {}
    rows = []
    for entry in history:
        stage, taught, metrics = str(entry.get("stage")), entry.get("taught"), entry.get("metrics", {})
        row = [stage, taught or "-"]
        for cap in caps:
            if cap not in metrics:
                row.append("-")
                continue
            cell = _value(cap, metrics[cap])
            score = _score(metrics[cap])
            if cap == taught:
                cell += " [taught]"
            elif cap in taught_score and score is not None:
                worse = relative_worsening(taught_score[cap], score, lower_is_better(cap, metrics[cap]))
                if worse > 0:
                    change = f"{100 * worse:.1f}% worse"
                else:
                    change = f"{100 * -worse:.1f}% better" if worse < 0 else "unchanged"
                record = flagged.get((cap, stage))  # no record: not flagged (an older summary)
                mark = "retained" if record is None else record.get("verdict", "FORGOTTEN")
                cell += f" {mark}, {change}"
            row.append(cell)
        if taught and _score(metrics.get(taught)) is not None:
            taught_score[taught] = _score(metrics[taught])
        rows.append(row)
    return header, rows


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


# ----------------------------------------------------------------------------- tables


def format_table(summary: dict) -> str:
    """The phase-by-capability table (markdown, aligned for the terminal) and the forgetting verdict.

    Each cell holds the capability's value after that stage; at later stages it also gives the
    forgetting verdict (FORGOTTEN / RETAINED / INCONCLUSIVE) against right after the phase that
    taught it. With ``--compare`` the strategies follow, side by side (``compare``).
    """
    history = summary.get("history") or []
    if not history:
        return "(no validation results: evaluation was off or did not run)"
    header, rows = _cells(history, summary.get("forgetting") or [])
    lines = [_markdown(header, rows)]
    if len(history) > 1:
        lines.append("")
        lines.append(forgetting_verdict(summary))
    comparison = compare.format_comparison(summary)
    if comparison:
        lines += ["", comparison]
    return "\n".join(lines)


def forgetting_verdict(summary: dict) -> str:
    """``No catastrophic forgetting (threshold 5.0%).`` or one line per FORGOTTEN record."""
    records = summary.get("forgetting") or []
    flags = forgotten(records)
    threshold = summary.get("forgetting_threshold")
    if threshold is None and records:
        threshold = records[0].get("threshold")
    limit = f" (threshold {100 * threshold:.1f}%)" if isinstance(threshold, (int, float)) else ""
    if not flags:
        return f"No catastrophic forgetting{limit}."
    lines = [f"Catastrophic forgetting flagged{limit}:"]
    lines += [f"- {f.get('message') or f}" for f in flags]
    return "\n".join(lines)


def change_from_base(summary: dict) -> list[str]:
    """One line per capability: base value -> final value, and whether that is better or worse."""
    history = summary.get("history") or []
    if len(history) < 2:
        return []
    base, final = history[0].get("metrics", {}), history[-1].get("metrics", {})
    lines = []
    for cap in _capabilities(history):
        before, after = _score(base.get(cap)), _score(final.get(cap))
        if before is None or after is None:
            continue
        worse = relative_worsening(before, after, lower_is_better(cap, final.get(cap)))
        verdict = (
            "unchanged" if worse == 0 else f"{100 * abs(worse):.1f}% {'worse' if worse > 0 else 'better'}"
        )
        lines.append(f"{cap}: base {_value(cap, base[cap])} -> final {_value(cap, final[cap])} ({verdict})")
    return lines


def _phase_table(phases: list[dict]) -> str:
    if not phases:
        return "(no phases finished)"
    rows = []
    for p in phases:
        losses = [x for x in p.get("train_losses") or [] if isinstance(x, (int, float)) and math.isfinite(x)]
        loss = f"{losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "n/a"
        rows.append(
            [
                str(p.get("index", len(rows))),
                str(p.get("name", "")),
                str(p.get("capability", "")),
                str(p.get("n_examples", "")),
                str(p.get("steps", "")),
                f"{p['seconds']:.0f}" if isinstance(p.get("seconds"), (int, float)) else "",
                loss,
                f"`{p.get('adapter_dir', '')}`",
            ]
        )
    header = ["phase", "name", "capability", "examples", "steps", "seconds", "loss first -> last", "adapter"]
    return _markdown(header, rows)


# ----------------------------------------------------------------------------- plots


def _plt() -> Any:
    matplotlib = require("matplotlib", "llm", "report plots")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "llm", "report plots")


def _save_figure(fig: Any, path: Path) -> None:
    """PNG bytes rendered in memory, then written atomically (the package's one atomic writer)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    write_bytes(path, buffer.getvalue())


def plot_training_loss(summary: dict, path: Path) -> bool:
    """Training loss per phase (steps run on across phases), one panel per strategy."""
    runs = [(name, run.get("phases") or []) for name, run in compare.strategy_runs(summary)]
    if not any(p.get("train_losses") for _, phases in runs for p in phases):
        return False
    plt = _plt()
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 3.2 * len(runs)), squeeze=False)
    for ax, (title, phases) in zip(axes[:, 0], runs):
        start = 0
        for k, p in enumerate(phases):
            losses = list(p.get("train_losses") or [])
            xs = range(start + 1, start + len(losses) + 1)
            ax.plot(
                xs,
                losses,
                label=f"phase {p.get('index', k)}: {p.get('name', '')} ({p.get('capability', '')})",
            )
            if start:
                ax.axvline(start + 0.5, color="grey", linestyle=":", linewidth=1)
            start += len(losses)
        ax.set_title(f"Training loss ({title})")
        ax.set_xlabel("optimizer step (phases run on)")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
    return True


_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")


def plot_capabilities(summary: dict, path: Path) -> bool:
    """Each capability across stages with 95% intervals, a line per strategy; taught, FORGOTTEN marked."""
    history = summary.get("history") or []
    caps = _capabilities(history)
    if not caps:
        return False
    runs = [
        (name, run.get("history") or [], forgotten(run.get("forgetting") or []), color)
        for (name, run), color in zip(compare.strategy_runs(summary), _COLORS)
    ]
    plt = _plt()
    fig, axes = plt.subplots(1, len(caps), figsize=(4.2 * len(caps), 3.6), squeeze=False)
    for ax, cap in zip(axes[0], caps):
        lower = any(lower_is_better(cap, h.get("metrics", {}).get(cap)) for h in history)
        scale = 1.0 if lower else 100.0
        for n_run, (label, hist, flags, color) in enumerate(runs):
            stages = [str(h.get("stage")) for h in hist]
            points, errs = [], [[], []]  # (x, y, stage index); lower and upper error bars
            for i, h in enumerate(hist):
                entry = h.get("metrics", {}).get(cap)
                s = _score(entry)
                if s is None:
                    continue
                ci = compare.interval(cap, entry) or (s, s)
                x = i + 0.06 * (n_run - (len(runs) - 1) / 2)  # side by side, not on top of each other
                points.append((x, scale * s, i))
                errs[0].append(max(0.0, scale * (s - ci[0])))
                errs[1].append(max(0.0, scale * (ci[1] - s)))
            if not points:
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            ax.errorbar(xs, ys, yerr=errs, marker="o", color=color, label=label, capsize=3)
            for x, y, i in points:
                if hist[i].get("taught") == cap:
                    ax.plot([x], [y], marker="*", markersize=14, color=color, linestyle="none")
                if any(f.get("capability") == cap and f.get("stage") == stages[i] for f in flags):
                    ax.plot([x], [y], marker="x", markersize=12, color="red", mew=2, linestyle="none")
            ax.set_xticks(range(len(stages)))
            ax.set_xticklabels(stages, rotation=30)
        chance = next(
            (
                compare.baselines(h["metrics"][cap]).get("chance")
                for h in reversed(history)
                if isinstance(h.get("metrics", {}).get(cap), dict)
            ),
            None,
        )
        if not lower and chance is not None:
            ax.axhline(100 * chance, color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_title(cap)
        ax.set_ylabel("perplexity (lower is better)" if lower else "accuracy % (95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="* taught, x forgotten", title_fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- the report


def _verdict_section(summary: dict) -> list[str]:
    """Every forgetting record of every strategy, one line each (the verdict and its evidence)."""
    lines = []
    for name, run in compare.strategy_runs(summary):
        records = run.get("forgetting") or []
        if not records:
            continue
        lines += [f"{name}:", ""] + [f"- {r.get('message') or r}" for r in records] + [""]
    return ["## Forgetting verdicts", "", *lines] if lines else []


def _strategy_sections(summary: dict) -> list[str]:
    """The R matrix with intervals of every strategy, then each compared strategy's own tables."""
    runs = compare.strategy_runs(summary)
    lines = ["## R[stage][capability] with 95% intervals", "", f"*{compare.SEED_NOTE}.*", ""]
    for name, run in runs:
        described = (run.get("strategy") or {}) if isinstance(run.get("strategy"), dict) else {}
        extra = [f"{k} {v:g}" for k, v in described.items() if k in ("replay_ratio", "olora_lambda") and v]
        lines += [
            f"### {name}" + (f" ({', '.join(extra)})" if extra else ""),
            "",
            compare.matrix_table(run),
            "",
        ]
    if len(runs) < 2:
        return lines
    counts = ", ".join(f"{name} {len(forgotten(run.get('forgetting') or []))}" for name, run in runs)
    lines += [f"Forgetting flags: {counts}.", ""]  # ACC/BWT and the paired differences: first section
    for name, run in runs[1:]:
        title = (
            "## Baseline: one LoRA trained sequentially (no freezing, no merging)"
            if name == "sequential"
            else f"## Strategy: {name}"
        )
        lines += [title, "", format_table(run), "", _phase_table(run.get("phases") or []), ""]
    return lines


def render_report(summary: dict, plots: list[str]) -> str:
    """The markdown text of ``report.md``."""
    name = summary.get("name", "run")
    seconds = summary.get("total_seconds")
    lines = [f"# {name}: progressive LoRA report", ""]
    lines.append(f"- model: `{summary.get('model', '?')}`")
    lines.append(f"- device: {summary.get('device', '?')}")
    if summary.get("config"):
        lines.append(f"- config: `{summary['config']}`")
    if isinstance(seconds, (int, float)):
        lines.append(f"- total time: {seconds:.0f} s ({seconds / 60:.1f} min)")
    lines.append(f"- {compare.SEED_NOTE}")
    title = "## Capabilities after each stage" + (
        ", strategies side by side" if compare.format_comparison(summary) else ""
    )
    lines += ["", title, "", format_table(summary), ""]
    gains = learning_gains(summary.get("history") or [])
    if gains:
        lines += ["## What each phase learned (against the base model, same items)", ""]
        lines += [f"- {g['message']}" for g in gains] + [""]
    changes = change_from_base(summary)
    if changes:
        lines += ["Base model to final model:", ""] + [f"- {c}" for c in changes] + [""]
    lines += _verdict_section(summary)
    lines += ["## Phases", "", _phase_table(summary.get("phases") or []), ""]
    if summary.get("history"):
        lines += _strategy_sections(summary)
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += [
        "## How to read this",
        "",
        "- Each cell is the capability's primary measure after that stage with its 95% interval",
        "  (exact binomial for accuracies, bootstrap over items, entries or texts otherwise);",
        "  `*` marks the stage that taught it; chance and the always-pick-the-longest-option",
        "  baseline sit beside the accuracies.",
        "- Verdicts compare a capability with right after the phase that taught it, on the same",
        "  items: FORGOTTEN = a significant drop (Holm-corrected over all checks) larger than the",
        "  margin; RETAINED = the interval excludes a drop larger than the margin; INCONCLUSIVE =",
        "  neither (the record says which drop this many items could detect).",
        "- ACC = mean final accuracy; BWT = mean of (final - right after teaching) over the",
        "  accuracies, in points (negative = forgetting); the fluency BWT is the perplexity change",
        "  since phase 0; FWT = (just before teaching - base), only when untaught capabilities are",
        "  measured (`evaluation.measure_untaught`).",
        "- Strategies share the base model and LoRA_0. sequential continues one LoRA (phase 0's",
        "  rank) on the modules progressive trains after phase 0; what still differs from",
        "  progressive is fresh factors per phase and total rank. replay adds earlier training",
        "  examples to each epoch; olora adds the O-LoRA orthogonality penalty.",
        "- Strategy differences are paired on the same items at the final stage: exact McNemar on",
        "  the items one strategy got right and the other wrong (sign-flip with clusters or tie",
        "  credits), bootstrap intervals; the perplexity ratio by a bootstrap over texts.",
        f"- {compare.SEED_NOTE[0].upper() + compare.SEED_NOTE[1:]}.",
        "",
        f"Raw numbers: [{METRICS_FILE}]({METRICS_FILE}).",
        "",
    ]
    return "\n".join(lines)


def write_report(run_dir: str | Path, summary: dict) -> Path:
    """Write ``report.md``, ``metrics.json`` and the PNG plots into ``run_dir``; returns the report path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / METRICS_FILE, json.dumps(_jsonable(summary), indent=2, ensure_ascii=False))
    plots = []
    if plot_training_loss(summary, run_dir / LOSS_PLOT):
        plots.append(LOSS_PLOT)
    if plot_capabilities(summary, run_dir / CAPABILITY_PLOT):
        plots.append(CAPABILITY_PLOT)
    report = run_dir / REPORT_FILE
    write_text(report, render_report(summary, plots))
    return report
