"""``puredl finetune eval``: score a model (plus adapters) on a benchmark file, write OUT.json.

    puredl finetune eval --model embedded:gemma-3-270m --benchmark kmmlu_health.csv \\
        --format kmmlu --scoring letter --shots 5 --dev kmmlu_health_dev.csv --output out.json

The result holds ``accuracy`` with its exact (Clopper-Pearson) 95% interval ``ci95``, ``n``, the
per-category macro average when the file has categories, and one entry per question.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from puredl.finetune.benchmarks import (
    DEFAULT_SAMPLER,
    BenchmarkError,
    BenchmarkItem,
    fewshot_sets,
    load_benchmark,
)
from puredl.finetune.scoring import METHODS, request_count, score_questions


def evaluate_items(
    model: Any,
    tokenizer: Any,
    items: Sequence[BenchmarkItem],
    scoring: str = "letter",
    shots: Sequence[Sequence[BenchmarkItem]] | None = None,
    batch_size: int = 8,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Accuracy, its 95% interval, per-category macro average and per-item records of ``items``."""
    from puredl.finetune.stats import binomial_ci

    bar = _progress_bar(request_count(items, scoring), f"{scoring} scoring", show_progress)
    try:
        scored = score_questions(
            model, tokenizer, items, scoring, shots, batch_size, bar.update if bar else None
        )
    finally:
        if bar:
            bar.close()
    records = [
        {
            "id": item.id,
            "category": item.category,
            "prompt": s.prompt,
            "choices": s.choices,
            "loglikelihoods": s.loglikelihoods,
            "scores": s.scores,
            "pred": s.pred,
            "gold": s.gold,
            "correct": s.correct,
        }
        for item, s in zip(items, scored)
    ]
    n = len(records)
    hits = sum(r["correct"] for r in records)
    lo, hi = binomial_ci(hits, n, level=0.95)
    result: dict[str, Any] = {"accuracy": hits / n, "ci95": [lo, hi], "n": n, "correct": hits}
    categories = sorted({r["category"] for r in records if r["category"]})
    if categories:
        per = {}
        for c in categories:
            rows = [r for r in records if r["category"] == c]
            per[c] = {"accuracy": sum(r["correct"] for r in rows) / len(rows), "n": len(rows)}
        result["per_category"] = per
        result["macro_accuracy"] = sum(v["accuracy"] for v in per.values()) / len(per)
    result["items"] = records
    return result


def evaluate_benchmark(
    model_name: str,
    benchmark: str | Path,
    fmt: str,
    scoring: str = "letter",
    adapters: Sequence[str | Path] = (),
    shots: int = 0,
    dev: str | Path | None = None,
    split: str | None = None,
    dev_split: str | None = None,
    limit: int | None = None,
    sampler: str | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Load ``model_name`` (+ ``adapters`` merged in order), score ``benchmark`` and return the result.

    Few-shot examples come from ``dev`` (a file in the same format) or from the rows of
    ``dev_split`` (of ``dev``, else of the benchmark file); ``sampler`` defaults to the harness
    task's (``random`` for kmmlu, ``first_n`` otherwise). ``limit`` keeps the first N questions.

    >>> evaluate_benchmark("embedded:gemma-3-270m", "kmmlu.csv", "kmmlu")  # doctest: +SKIP
    {'accuracy': 0.25, 'ci95': [0.2, 0.3], 'n': 400, ...}
    """
    if scoring not in METHODS:
        raise BenchmarkError(f"unknown scoring method {scoring!r}; expected one of {', '.join(METHODS)}")
    items = load_benchmark(benchmark, fmt, split)
    if limit is not None:
        items = items[:limit]
    sampler = sampler or DEFAULT_SAMPLER[fmt]
    shot_sets = None
    if shots > 0:
        if dev is None and dev_split is None:
            raise BenchmarkError(
                f"--shots {shots} needs few-shot examples: give --dev FILE or --dev-split NAME"
            )
        pool = load_benchmark(dev if dev is not None else benchmark, fmt, dev_split)
        shot_sets = fewshot_sets(items, pool, shots, sampler)
    model, tokenizer = load_scoring_model(model_name, adapters, device)
    result = evaluate_items(model, tokenizer, items, scoring, shot_sets, batch_size, show_progress)
    header = {
        "benchmark": str(benchmark),
        "format": fmt,
        "scoring": scoring,
        "metric": {"letter": "acc", "cloze": "acc_norm", "pmi": "acc_mutual_info"}[scoring],
        "model": model_name,
        "adapters": [str(a) for a in adapters],
        "shots": shots,
        "fewshot_sampler": sampler if shots else None,
        "dev": str(dev) if dev is not None else None,
    }
    return {**header, **result}


def load_scoring_model(model_name: str, adapters: Sequence[str | Path] = (), device: str = "cpu") -> Any:
    """``(model, tokenizer)`` in eval mode: the base model with each adapter merged in, in order."""
    from puredl.finetune.devices import resolve_device
    from puredl.finetune.loading import load_model_and_tokenizer
    from puredl.finetune.lora import add_lora, load_lora, merge_lora

    model, tokenizer = load_model_and_tokenizer(model_name, device=resolve_device(device))
    for path in adapters:
        model = merge_lora(add_lora(model, load_lora(path), trainable=False))
    model.eval()
    return model, tokenizer


def write_result(path: str | Path, result: dict[str, Any]) -> Path:
    """Write the result as JSON atomically (a temporary name beside ``path``, then renamed)."""
    from puredl._atomic import write_json

    return write_json(path, result)


def summary_line(result: dict[str, Any]) -> str:
    """``kmmlu letter 5-shot: accuracy 0.312 (95% CI 0.27-0.36), n=400``."""
    lo, hi = result["ci95"]
    line = (
        f"{result['format']} {result['scoring']} {result['shots']}-shot: accuracy {result['accuracy']:.3f} "
        f"(95% CI {lo:.3f}-{hi:.3f}), n={result['n']}"
    )
    if "macro_accuracy" in result:
        line += f"; macro over {len(result['per_category'])} categories {result['macro_accuracy']:.3f}"
    return line


def _progress_bar(total: int, desc: str, show: bool) -> Any:
    if not show:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is part of the llm extra
        return None
    return tqdm(total=total, desc=desc, unit="req", file=sys.stderr)


# ----------------------------------------------------------------------------- the CLI


def add_eval_parser(sub: Any) -> None:
    """``puredl finetune eval`` (registered by ``finetune/cli.py``)."""
    p = sub.add_parser("eval", help="score a model (+ adapters) on a KMMLU / KorMedMCQA / MCQ JSONL file")
    p.add_argument("--model", default=None, help="HF id, local folder or embedded:gemma-3-270m")
    p.add_argument(
        "--adapter", action="append", default=[], help="adapter folder, merged in order (repeatable)"
    )
    p.add_argument(
        "--config", default=None, help="run config supplying model.name (and, with --phase, adapters)"
    )
    p.add_argument(
        "--phase", type=int, default=None, help="with --config: the run's adapters of phases 0..PHASE"
    )
    p.add_argument("--benchmark", required=True, help="questions file (.jsonl, .json or .csv)")
    p.add_argument("--format", required=True, choices=["kmmlu", "kormedmcqa", "jsonl"], dest="fmt")
    p.add_argument(
        "--scoring", default="letter", choices=list(METHODS), help="letter (acc), cloze (acc_norm), pmi"
    )
    p.add_argument("--shots", type=int, default=0, help="few-shot examples before each question")
    p.add_argument("--dev", default=None, help="file of few-shot examples (same format)")
    p.add_argument("--split", default=None, help="score only rows whose split field is SPLIT")
    p.add_argument("--dev-split", default=None, help="take few-shot examples from rows of this split")
    p.add_argument("--sampler", default=None, choices=["random", "first_n"], help="few-shot draw (harness's)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N questions")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--batch-size", type=int, default=8, help="rows per forward pass")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (1 is fastest on a busy CPU)"
    )
    p.add_argument("--output", required=True, help="result JSON (written atomically)")


def run_eval_command(args: Any) -> int:
    """Resolve model and adapters (flags beat ``--config``), evaluate, write ``--output``, print a summary."""
    model, adapters = args.model, list(args.adapter)
    if args.config:
        from puredl.finetune.config import load_config

        cfg = load_config(args.config)
        model = model or cfg.model.name
        if args.phase is not None and not adapters:
            from puredl.finetune import pipeline

            adapters = pipeline.adapters_of_run(pipeline.make_context(cfg, device="cpu"), args.phase)
    if not model:
        raise BenchmarkError("give --model NAME_OR_DIR (or --config F whose model.name is used)")
    for name, value in (("--shots", args.shots), ("--limit", args.limit), ("--batch-size", args.batch_size)):
        if value is not None and value < (1 if name == "--batch-size" else 0):
            raise BenchmarkError(
                f"{name} must be {'positive' if name == '--batch-size' else '>= 0'}, got {value}"
            )
    if args.threads:
        from puredl._optional import require

        require("torch", "llm", "scoring").set_num_threads(args.threads)
    result = evaluate_benchmark(
        model,
        args.benchmark,
        args.fmt,
        args.scoring,
        adapters,
        shots=args.shots,
        dev=args.dev,
        split=args.split,
        dev_split=args.dev_split,
        limit=args.limit,
        sampler=args.sampler,
        device=args.device,
        batch_size=args.batch_size,
    )
    write_result(args.output, result)
    print(summary_line(result))
    print(f"results written to {args.output}")
    return 0
