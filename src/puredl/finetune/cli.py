"""``puredl finetune run-all | phase N | merge | validate | defaults``.

Imports nothing heavy at module level, so ``puredl --help`` works without the ``llm`` extra.

    puredl finetune run-all --config configs/embedded.sdn
    puredl finetune run-all --config configs/embedded.sdn --resume --compare sequential,replay,olora
    puredl finetune phase 1 --config configs/embedded.sdn --device cpu
    puredl finetune merge --config configs/embedded.sdn --out merged/
    puredl finetune validate --config configs/embedded.sdn --phase 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_ERROR = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands of ``puredl finetune``."""
    sub = parser.add_subparsers(dest="finetune_command", metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True, help="run config (.sdn, .yaml or .yml)")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (overrides training.device)")
        p.add_argument(
            "--model", default=None, help="override model.name (HF id, local folder, embedded:...)"
        )

    p = sub.add_parser("run-all", help="train every phase in order, validate after each, write the report")
    common(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoints")
    p.add_argument(
        "--compare",
        default=None,
        metavar="STRATEGIES",
        help="also run these strategies on the same base and LoRA_0 and report them side by side: any of "
        "sequential (one LoRA continued), replay (+ replay_ratio, 0.25 unless set), olora (+ O-LoRA "
        "penalty, lambda 0.5 unless set), comma-separated",
    )

    p = sub.add_parser("phase", help="train one phase on base + the earlier phases' adapters")
    p.add_argument("index", type=int, help="phase number (0-based)")
    common(p)
    p.add_argument("--resume", action="store_true", help="continue this phase from its last checkpoint")

    p = sub.add_parser("merge", help="write base + adapters merged as a Hugging Face model folder")
    common(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--upto", type=int, default=None, help="merge phases 0..UPTO of the run (default: all)")
    p.add_argument(
        "--adapter",
        action="append",
        default=None,
        help="merge these adapter folders instead of the run's (repeatable, in order)",
    )

    p = sub.add_parser("validate", help="measure capabilities of base + adapters")
    common(p)
    p.add_argument("--phase", type=int, default=None, help="use the run's adapters of phases 0..PHASE")
    p.add_argument("--adapter", action="append", default=None, help="adapter folders (repeatable, in order)")
    p.add_argument(
        "--capabilities", nargs="+", default=None, help="fluency terminology reasoning (default all)"
    )
    p.add_argument("--max-eval", type=int, default=None, help="items per capability (overrides the config)")
    p.add_argument("--output", default=None, help="also write the metrics to this JSON file")

    sub.add_parser("defaults", help="print every config key with its default and meaning")


def run(args: argparse.Namespace) -> int:
    """Dispatch; user-facing failures print one clear message and return exit code 2."""
    from puredl._optional import MissingDependencyError
    from puredl.finetune.errors import FinetuneError

    command = getattr(args, "finetune_command", None)
    if command is None:
        print(
            "usage: puredl finetune {run-all,phase,merge,validate,defaults} ... (see --help)", file=sys.stderr
        )
        return EXIT_ERROR
    try:
        return _run(command, args)
    except (FinetuneError, MissingDependencyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted; continue with --resume", file=sys.stderr)
        return 130


def _out(text: str) -> None:
    print(text, flush=True)


def _run(command: str, args: argparse.Namespace) -> int:
    from puredl.finetune.config import describe_defaults, load_config

    if command == "defaults":
        print(describe_defaults())
        return 0
    from puredl.finetune import pipeline

    cfg = load_config(args.config)
    if args.model:
        cfg.model.name = args.model
    resume = bool(getattr(args, "resume", False))
    ctx = pipeline.make_context(cfg, device=args.device, resume=resume, out=_out)
    if command == "run-all":
        _, code = pipeline.run_all(ctx, compare=args.compare)
        return code
    if command == "phase":
        pipeline.run_phase_only(ctx, args.index)
        return 0
    adapters = [Path(a) for a in args.adapter] if args.adapter else None
    if command == "merge":
        pipeline.merge_to_folder(ctx, adapters or pipeline.adapters_of_run(ctx, args.upto), Path(args.out))
        return 0
    if command == "validate":
        if args.max_eval is not None:
            cfg.evaluation.max_eval = args.max_eval
        if adapters is None:
            adapters = pipeline.adapters_of_run(ctx, args.phase) if args.phase is not None else []
        metrics = pipeline.validate(ctx, adapters, args.capabilities)
        try:
            from puredl.finetune.metrics import format_metrics

            print(format_metrics(metrics))
        except ImportError:
            print(json.dumps(metrics, indent=2, ensure_ascii=False))
        if args.output:
            pipeline.write_json(Path(args.output), metrics)
            print(f"metrics written to {args.output}")
        return 0
    raise AssertionError(command)
