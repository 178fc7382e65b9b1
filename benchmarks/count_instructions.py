"""Instruction counts per step and per op call, marked for callgrind to count each stretch apart.

Run under ``valgrind --tool=callgrind --dump-before=getppid``: callgrind writes its counters to a
new file, and zeroes them, each time ``os.getppid`` is called, so each case's setup and its counted
calls land in separate files. Instruction counts do not depend on other load on the machine, which
makes them a second opinion beside the timings (benchmarks/compare_commits.py --instructions).

Cases (``--cases``, comma-separated):
- ``train``: the pure-tier train steps of benchmarks/train_step.py (PUREDL_ACCEL=pure);
- ``ops``: one op call through the public API, as benchmarks/accel.py times it (matmul, add, relu,
  sum at 10, 1,000 and 100,000 elements; PURE, TORCH and AUTO with the default thresholds, AUTO
  after a long warm-up: its steady state, with its cost model and without it ("thresholds-only":
  the old tree's AUTO, which had none); torch on one thread, so that no second thread's
  spinning is counted);
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
import math
import os
import sys
from random import Random

MARK = os.getppid  # callgrind dumps before each call (--dump-before=getppid); nothing else calls it
CASES = ("train", "ops", "torch_training")
MODES = ("pure", "torch", "auto", "auto thresholds-only")  # the last: AUTO without its cost model
SIZES = (10, 1000, 100_000)
CALLS = {10: 200, 1000: 100, 100_000: 30}  # counted calls per op, size and mode
WARMUP_CALLS = 20
# AUTO learns a new size in its first calls (benchmarks/accel.py warms each size up for 50 ms or
# more, ~10,000 calls of a 10-element op) and then times one call in 32-380 and tries the other
# backend at most once in 8 timed calls: enough calls that tries and timed calls average out
AUTO_WARMUP = {10: 5000, 1000: 2000, 100_000: 300}
AUTO_CALLS = {10: 3000, 1000: 2000, 100_000: 600}


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


def reference_loop_s() -> float:
    """Seconds of a fixed pure-Python loop (the best of 3): run natively and under callgrind, the
    ratio is how much slower callgrind runs this code."""
    import time

    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        total = 0.0
        for i in range(100_000):
            total += i * 0.5
        best = min(best, time.perf_counter() - start)
    return best


def op_cases(segments: list, steps: int, modes: tuple = MODES, native_loop_s: float | None = None) -> None:
    import torch

    import puredl as pd
    from puredl import accel

    torch.set_num_threads(1)
    if native_loop_s and hasattr(accel, "adaptive_model"):
        # AUTO's cost model reads a clock; under callgrind everything runs ~85x slower (measured
        # 2026-12-01), so a 5 us op would look like a 0.4 ms one and be timed far more often. Its
        # clock runs slower by the measured factor, so that it sees (roughly) native times.
        import time

        slowdown = max(1.0, reference_loop_s() / native_loop_s)
        accel.adaptive_model().clock = lambda: time.perf_counter() / slowdown
        print(f"callgrind runs ~{slowdown:.0f}x slower: the cost model's clock too", file=sys.stderr)
    for mode in modes:
        accel.set_acceleration(mode.split()[0])
        if hasattr(accel, "set_adaptive"):  # (the old tree has no cost model: its AUTO is the thresholds)
            accel.set_adaptive(mode == "auto")
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
                if mode == "pure" and size >= 100_000:
                    calls, warmup = steps, 1
                elif mode.startswith("auto") and not (op == "matmul" and size >= 100_000):
                    calls, warmup = AUTO_CALLS[size], AUTO_WARMUP[size]  # steady state, tries included
                else:
                    calls, warmup = CALLS[size], WARMUP_CALLS
                label = f"{side}x{side}" if op == "matmul" else f"{size}"
                for _ in range(warmup):
                    fn(*tensors)
                counted(segments, f"{op} {label}: {mode}", calls, lambda: fn(*tensors))  # noqa: B023
    accel.set_acceleration("pure")
    if hasattr(accel, "set_adaptive"):
        accel.set_adaptive(True)


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
    ap.add_argument("--modes", default=",".join(MODES), help=f"the ops case's modes: {', '.join(MODES)}")
    ap.add_argument(
        "--native-loop-s",
        type=float,
        help="reference_loop_s() measured outside callgrind: AUTO's cost model then sees native times",
    )
    ap.add_argument("--reference-loop", action="store_true", help="print reference_loop_s() and stop")
    args = ap.parse_args(argv)
    if args.reference_loop:
        print(json.dumps({"reference_loop_s": reference_loop_s()}))
        return 0
    cases = [c for c in args.cases.split(",") if c]
    modes = tuple(m for m in args.modes.split(",") if m)
    for given, known, what in ((cases, CASES, "case"), (modes, MODES, "mode")):
        unknown = sorted(set(given) - set(known))
        if unknown:
            ap.error(f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    segments: list = []
    if "train" in cases:
        train_cases(segments, args.steps, args.warmup)
    if "ops" in cases:
        op_cases(segments, args.steps, modes, args.native_loop_s)
    if "torch_training" in cases:
        torch_training_case(segments, args.steps, args.warmup)
    print(json.dumps({"segments": segments}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
