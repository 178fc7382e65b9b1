"""``puredl finetune run-all | phase N | merge | validate | defaults``.

Imports nothing heavy at module level, so ``puredl --help`` works without the ``llm`` extra.

    puredl finetune run-all --config configs/embedded.sdn
    puredl finetune run-all --config configs/embedded.sdn --resume --compare sequential,replay,olora
    puredl finetune phase 1 --config configs/embedded.sdn --device cpu
    puredl finetune merge --config configs/embedded.sdn --out merged/
    puredl finetune validate --config configs/embedded.sdn --phase 2

Every failure ends with one line on stderr naming the file, key or step, and exit code 2;
``--debug`` (or ``PUREDL_DEBUG=1``) also prints the traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys
import traceback
from pathlib import Path

EXIT_ERROR = 2
MESSAGE_LIMIT = 600  # characters of an error message shown (the rest is in --debug's traceback)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands of ``puredl finetune``."""
    sub = parser.add_subparsers(dest="finetune_command", metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True, help="run config (.sdn, .yaml or .yml)")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (overrides training.device)")
        p.add_argument(
            "--model", default=None, help="override model.name (HF id, local folder, embedded:...)"
        )
        p.add_argument("--debug", action="store_true", help="on failure also print the traceback")

    p = sub.add_parser("run-all", help="train every phase in order, validate after each, write the report")
    common(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoints")
    p.add_argument(
        "--restart", action="store_true", help="start over, discarding an interrupted run's checkpoints"
    )
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
    p.add_argument("--restart", action="store_true", help="start the phase over, discarding its checkpoints")

    p = sub.add_parser("merge", help="write base + adapters merged as a Hugging Face model folder")
    common(p)
    p.add_argument("--out", required=True, help="output folder (new, empty, or one puredl wrote)")
    p.add_argument(
        "--force", action="store_true", help="write into a non-empty --out (same names replaced, rest kept)"
    )
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

    from puredl.finetune.benchmark_eval import add_eval_parser, run_eval_command

    add_eval_parser(sub)
    sub.choices["eval"].set_defaults(finetune_handler=run_eval_command)


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
    debug = bool(getattr(args, "debug", False)) or os.environ.get("PUREDL_DEBUG", "") not in ("", "0")
    try:
        return _run(command, args)
    except KeyboardInterrupt:
        print("\ninterrupted; continue with --resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line and exit 2
        if debug:
            traceback.print_exc()
        known = isinstance(exc, (FinetuneError, MissingDependencyError, OSError, ValueError))
        hint = "" if debug or known else " (unexpected; rerun with --debug for the traceback)"
        print(f"error: {describe_failure(exc)}{hint}", file=sys.stderr)
        return EXIT_ERROR


def describe_failure(exc: BaseException) -> str:
    """One bounded line for a failure: the library's message, or what an OS error hit and what to do.

    >>> describe_failure(OSError(errno.ENOSPC, "No space left on device", "runs/x/.summary.json.tmp-7"))[:50]
    'no space left on the device writing runs/x/summary'
    """
    from puredl._optional import MissingDependencyError
    from puredl.finetune.errors import FinetuneError

    if isinstance(exc, OSError) and not isinstance(exc, FinetuneError) and exc.errno is not None:
        where = _shown_path(exc.filename) if exc.filename else "a file"
        if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
            text = (
                f"no space left on the device writing {where}: free some space (or set output.dir "
                "elsewhere) and rerun with --resume"
            )
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            text = (
                f"permission denied: {where} ({exc.strerror}); check the folder's permissions or output.dir"
            )
        else:
            text = f"{exc.strerror or exc}: {where}"
    elif isinstance(exc, (FinetuneError, MissingDependencyError, OSError, ValueError)):
        text = str(exc) or type(exc).__name__
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def _shown_path(name: object) -> str:
    """The file a user knows: a temporary ``.NAME.tmp-PID`` is shown as ``NAME``."""
    path = Path(os.fsdecode(name)) if isinstance(name, (str, bytes, os.PathLike)) else Path(str(name))
    match = re.match(r"^\.(.+)\.tmp-\d+$", path.name)
    return str(path.with_name(match.group(1)) if match else path)


def _out(text: str) -> None:
    print(text, flush=True)


def _run(command: str, args: argparse.Namespace) -> int:
    if getattr(args, "finetune_handler", None):  # subcommands that bring their own handler (eval)
        return args.finetune_handler(args)
    from puredl.finetune.config import describe_defaults, load_config

    if command == "defaults":
        print(describe_defaults())
        return 0
    from puredl.finetune import pipeline
    from puredl.finetune.errors import FinetuneError
    from puredl.finetune.preflight import check_output_folder
    from puredl.finetune.run_state import RunLock

    cfg = load_config(args.config)
    if args.model:
        cfg.model.name = args.model
    resume = bool(getattr(args, "resume", False))
    if resume and getattr(args, "restart", False):
        raise FinetuneError("--resume and --restart contradict each other; pass one")
    if command == "validate" and args.max_eval is not None and args.max_eval < 1:
        raise FinetuneError(f"--max-eval must be >= 1, got {args.max_eval}")
    if command == "merge":
        check_output_folder(Path(args.out), getattr(args, "force", False))  # before loading anything
    ctx = pipeline.make_context(cfg, device=args.device, resume=resume, out=_out)
    ctx.restart = bool(getattr(args, "restart", False))
    if command == "run-all":
        with RunLock(ctx.run_dir):
            _, code = pipeline.run_all(ctx, compare=args.compare)
        return code
    if command == "phase":
        with RunLock(ctx.run_dir):
            pipeline.run_phase_only(ctx, args.index)
        return 0
    adapters = [Path(a) for a in args.adapter] if args.adapter else None
    if command == "merge":
        chosen = adapters or pipeline.adapters_of_run(ctx, args.upto)
        pipeline.merge_to_folder(ctx, chosen, Path(args.out), force=getattr(args, "force", False))
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
