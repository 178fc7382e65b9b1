"""The `puredl` command.

Each subcommand lives in its own module (one room each) exposing
``add_arguments(parser)`` and ``run(args) -> int``; modules must import without any
optional dependency so that ``puredl --help`` always works.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "example": ("puredl.examples.cli", "run a bundled example (puredl example --list)"),
    "accel": ("puredl.accel.cli", "acceleration layer: calibrate thresholds, show settings"),
    "cuda": ("puredl.cuda.cli", "CUDA runtime: device table"),
    "finetune": ("puredl.finetune.cli", "progressive LoRA fine-tuning"),
    "bench": ("puredl.bench_cli", "quick pure vs torch micro-benchmarks"),
}


def build_parser() -> argparse.ArgumentParser:
    from puredl import __version__

    parser = argparse.ArgumentParser(
        prog="puredl",
        description="puredl: pure-Python deep learning, PyTorch/CUDA acceleration, progressive LoRA.",
    )
    parser.add_argument("--version", action="version", version=f"puredl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sp)
        sp.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
