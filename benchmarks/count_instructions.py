"""Instruction counts per step and per op call, marked for callgrind to count each stretch apart.

Run under ``valgrind --tool=callgrind --dump-before=getppid``: callgrind writes its counters to a
new file, and zeroes them, each time ``os.getppid`` is called, so each case's setup and its counted
calls land in separate files. Instruction counts do not depend on other load on the machine, which
makes them a second opinion beside the timings (benchmarks/compare_commits.py --instructions).

Cases (``--cases``, comma-separated):
- ``train``: the pure-tier train steps of benchmarks/train_step.py (PUREDL_ACCEL=pure);
- ``ops``: one op call through the public API, as benchmarks/accel.py times it (matmul, add, relu,
  sum at 10, 1,000 and 100,000 elements; PURE, TORCH and AUTO with the default thresholds; torch
  on one thread, so that no second thread's spinning is counted);
- ``torch_training``: benchmarks/torch_training.py's TORCH-mode step (digits 64-256-10, SGD
  momentum, one torch thread).

Prints one JSON line: ``segments``, a list of [name, calls] in dump order (calls 0: an uncounted
setup stretch). Importing torch under callgrind takes ~2 minutes, once per run.

Usage:
    PUREDL_ACCEL=pure PYTHONHASHSEED=0 valgrind --tool=callgrind --dump-before=getppid \\
        python benchmarks/count_instructions.py [--cases train,ops,torch_training] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
from random import Random

MARK = os.getppid  # callgrind dumps before each call (--dump-before=getppid); nothing else calls it
CASES = ("train", "ops", "torch_training")
MODES = ("pure", "torch", "auto")
SIZES = (10, 1000, 100_000)
WARMUP_CALLS = 20


def counted(segments: list, name: str, calls: int, fn) -> None:
    """Mark the end of the setup, run ``fn`` ``calls`` times, mark the end of the counted stretch."""
    MARK()
    segments.append(["setup", 0])
    for _ in range(calls):
        fn()
    MARK()
    segments.append([name, calls])


def train_cases(segments: list, steps: int, warmup: int) -> None:
    from train_step import CASES as TRAIN  # beside this file

    for name, make, _goal_kind, _goal in TRAIN:
        step, _torch_setup = make()
        for _ in range(warmup):
            step()
        counted(segments, name, steps, step)


def _vector(pd, n: int, seed: int):
    rng = Random(seed)
    return pd.tensor([rng.random() * 2.0 - 1.0 for _ in range(n)])


def op_cases(segments: list, steps: int) -> None:
    import torch

    import puredl as pd
    from puredl import accel

    torch.set_num_threads(1)
    for mode in MODES:
        accel.set_acceleration(mode)
        for size in SIZES:
            side = max(1, round(size**0.5))
            ops = {
                "matmul": ((_vector(pd, side * side, 1).reshape(side, side),) * 2, lambda a, b: a @ b),
                "add": ((_vector(pd, size, 1), _vector(pd, size, 2)), lambda a, b: a + b),
                "relu": ((_vector(pd, size, 4),), lambda a: a.relu()),
                "sum": ((_vector(pd, size, 3),), lambda a: a.sum()),
            }
            for op, (tensors, fn) in ops.items():
                if mode == "pure" and size >= 100_000 and op == "matmul":
                    continue  # a pure 316x316 matmul is seconds even outside callgrind
                slow = mode == "pure" and size >= 100_000
                calls = steps if slow else {10: 200, 1000: 100}.get(size, 30)
                label = f"{side}x{side}" if op == "matmul" else f"{size}"
                for _ in range(1 if slow else WARMUP_CALLS):
                    fn(*tensors)
                counted(segments, f"{op} {label}: {mode}", calls, lambda: fn(*tensors))  # noqa: B023
    accel.set_acceleration("pure")


def torch_training_case(segments: list, steps: int, warmup: int) -> None:
    from torch_training import build  # beside this file

    step_pd, _step_t, _drift = build(threads=1)
    for i in range(warmup):
        step_pd(i)
    calls = iter(range(warmup, warmup + 10 * steps))
    counted(segments, "digits 64-256-10 step: puredl TORCH mode", 10 * steps, lambda: step_pd(next(calls)))
    from puredl import accel

    accel.set_acceleration("pure")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--steps", type=int, default=3, help="counted train steps per case (and slow op calls)")
    ap.add_argument("--warmup", type=int, default=2, help="uncounted steps first (optimizer state, caches)")
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    segments: list = []
    if "train" in cases:
        train_cases(segments, args.steps, args.warmup)
    if "ops" in cases:
        op_cases(segments, args.steps)
    if "torch_training" in cases:
        torch_training_case(segments, args.steps, args.warmup)
    print(json.dumps({"segments": segments}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
