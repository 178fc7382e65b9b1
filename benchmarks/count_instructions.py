"""The pure-tier train steps of benchmarks/train_step.py, marked for callgrind to count per step.

Run under ``valgrind --tool=callgrind --dump-before=getppid``: callgrind writes its counters to a
new file, and zeroes them, each time ``os.getppid`` is called, so each case's setup and its steps
land in separate files. Instruction counts do not depend on other load on the machine, which makes
them a second opinion beside the timings. Prints one JSON line: the steps per case and the name
of the stretch that each dump closes ("setup" for the unmeasured ones).

Usage (benchmarks/compare_commits.py --instructions runs it):
    PUREDL_ACCEL=pure PYTHONHASHSEED=0 valgrind --tool=callgrind --dump-before=getppid \\
        python benchmarks/count_instructions.py [--steps 3] [--warmup 2]
"""

from __future__ import annotations

import argparse
import json
import os

from train_step import CASES  # beside this file

MARK = os.getppid  # callgrind dumps before each call (--dump-before=getppid); nothing else calls it


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="counted steps per case")
    ap.add_argument("--warmup", type=int, default=2, help="uncounted steps first (optimizer state, caches)")
    args = ap.parse_args(argv)
    segments = []
    for name, make, _goal_kind, _goal in CASES:
        step, _torch_setup = make()
        for _ in range(args.warmup):
            step()
        MARK()
        segments.append("setup")
        for _ in range(args.steps):
            step()
        MARK()
        segments.append(name)
    print(json.dumps({"steps": args.steps, "segments": segments}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
