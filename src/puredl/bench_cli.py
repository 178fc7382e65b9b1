"""`puredl bench`: a quick table of pure against torch (and auto) for a few ops and sizes.

Times come from one run, side by side, with the ratio torch/pure speed-up; the full study is
``benchmarks/accel.py``.

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> p.parse_args(["--ops", "add"]).ops
['add']
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_SIZES = (100, 10_000, 1_000_000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ops", nargs="+", default=["matmul", "add", "relu", "sum"], help="ops: matmul add relu sum cat"
    )
    parser.add_argument(
        "--sizes", nargs="+", type=int, default=list(DEFAULT_SIZES), help="sizes in elements (matmul: n*n)"
    )
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds of timing per cell")
    parser.add_argument(
        "--pure-budget", type=float, default=2.0, help="skip pure where one call would take longer (seconds)"
    )


def _fmt(s: float | None) -> str:
    if s is None:
        return "skipped"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def run(args: argparse.Namespace) -> int:
    from puredl import accel

    if not accel.torch_available():
        print("puredl bench compares pure with torch: pip install 'puredl[torch]'", file=sys.stderr)
        return 1
    from puredl.accel.calibration import BENCH_OPS, time_modes

    unknown = [o for o in args.ops if o not in BENCH_OPS]
    if unknown:
        print(f"puredl bench: unknown op(s) {unknown}; choose from {sorted(BENCH_OPS)}", file=sys.stderr)
        return 2
    print(f"{'op':<8}{'size':>12}{'pure':>13}{'torch':>13}{'auto':>13}{'torch speed-up':>16}  auto ran on")
    for name in args.ops:
        op = BENCH_OPS[name]
        rate = None
        for size in args.sizes:
            tensors = op.make(size)
            est = rate * op.work(size) if rate else 0.0
            settings = {"torch": ("torch", None), "auto": ("auto", None)}
            if est <= args.pure_budget:
                settings["pure"] = ("pure", None)
            t = time_modes(op, tensors, settings, args.min_time)
            pure, torch_t, auto_t = t.get("pure"), t["torch"], t["auto"]
            if pure is not None:
                rate = pure / op.work(size)
            with accel.using("auto"):
                where = op.run(*tensors)._be.NAME
            speedup = f"{pure / torch_t:.1f}x" if pure is not None else f">{est / torch_t:.0f}x (est.)"
            print(
                f"{name:<8}{op.size_label(size):>12}{_fmt(pure):>13}{_fmt(torch_t):>13}{_fmt(auto_t):>13}"
                f"{speedup:>16}  {where}"
            )
    print(
        f"(auto thresholds from {accel.threshold_source()}; `puredl accel calibrate` measures this machine)"
    )
    return 0
