"""`puredl example NAME`: run one of the bundled examples."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import puredl.examples as _examples_pkg


def available_examples() -> list[str]:
    """Names of the bundled examples, sorted."""
    skip = {"cli"}
    return sorted(
        m.name for m in pkgutil.iter_modules(_examples_pkg.__path__) if m.name not in skip and not m.ispkg
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="example to run")
    parser.add_argument("--list", action="store_true", help="list the examples")
    parser.add_argument("example_args", nargs=argparse.REMAINDER, help="arguments passed to the example")


def run(args: argparse.Namespace) -> int:
    names = available_examples()
    if args.list or not args.name:
        for name in names:
            module = importlib.import_module(f"puredl.examples.{name}")
            summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
            print(f"  {name:24s} {summary}")
        return 0
    if args.name not in names:
        print(f"puredl: unknown example {args.name!r}; available: {', '.join(names)}")
        return 2
    module = importlib.import_module(f"puredl.examples.{args.name}")
    return int(module.main(args.example_args) or 0)
