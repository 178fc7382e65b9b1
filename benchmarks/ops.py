"""Per-op timings: puredl's pure tier against torch (CPU), ratios measured in one run.

Also checks the issue-2 targets on this machine:
  * pure matmul 100x100 within 1.2x of the bare ``sum(map(operator.mul, row, col))`` idiom,
  * contiguous add of 10,000 elements under 1 ms,
  * relu of 1,000 elements under 0.1 ms.

Usage: python benchmarks/ops.py [--quick] [--out benchmarks/results/ops.txt]
"""

from __future__ import annotations

import argparse
import operator
import os
import platform
import sys
import timeit
from datetime import date

import puredl as pd


def best_time(fn, min_total: float = 0.2, repeat: int = 5) -> float:
    """Best per-call time in seconds over ``repeat`` rounds of an auto-sized loop."""
    number = 1
    while True:
        t = timeit.timeit(fn, number=number)
        if t >= min_total / repeat or number >= 1 << 20:
            break
        number *= 4
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def interpreter() -> str:
    """The Python that ran, e.g. "CPython 3.13.0": the pure tier's speed depends on it."""
    return f"{platform.python_implementation()} {platform.python_version()}"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (as ``uptime`` shows): other work on the machine."""
    return "{:.2f}, {:.2f}, {:.2f} (1, 5, 15 min)".format(*os.getloadavg())


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:8.1f} us"
    if s < 1:
        return f"{s * 1e3:8.2f} ms"
    return f"{s:8.2f} s "


def op_cases(quick: bool):
    sizes = [100, 10_000] if quick else [100, 10_000, 100_000]
    for n in sizes:
        yield "add", f"{n}", lambda n=n: (pd.randn(n), pd.randn(n)), lambda a, b: a + b, lambda a, b: a + b
        yield (
            "mul (broadcast)",
            f"{n // 10}x10 * 10",
            lambda n=n: (pd.randn(n // 10, 10), pd.randn(10)),
            (lambda a, b: a * b),
            lambda a, b: a * b,
        )
        yield "relu", f"{n}", lambda n=n: (pd.randn(n),), lambda a: a.relu(), lambda a: a.relu()
        yield "sigmoid", f"{n}", lambda n=n: (pd.randn(n),), lambda a: a.sigmoid(), lambda a: a.sigmoid()
        yield "sum", f"{n}", lambda n=n: (pd.randn(n),), lambda a: a.sum(), lambda a: a.sum()
        yield (
            "softmax(dim=1)",
            f"{n // 10}x10",
            lambda n=n: (pd.randn(n // 10, 10),),
            (lambda a: a.softmax(1)),
            lambda a: a.softmax(1),
        )
    for m in [10, 50, 100] if quick else [10, 50, 100, 200]:
        yield (
            "matmul",
            f"{m}x{m} @ {m}x{m}",
            lambda m=m: (pd.randn(m, m), pd.randn(m, m)),
            (lambda a, b: a @ b),
            lambda a, b: a @ b,
        )
    yield (
        "matmul (batched)",
        "8x32x32 @ 32x32",
        lambda: (pd.randn(8, 32, 32), pd.randn(32, 32)),
        (lambda a, b: a @ b),
        lambda a, b: a @ b,
    )
    yield (
        "transpose+contiguous",
        "200x200",
        lambda: (pd.randn(200, 200),),
        (lambda a: a.T.contiguous()),
        lambda a: a.T.contiguous(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes")
    parser.add_argument("--out", default=None, help="also write the report to this file")
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)  # one core each: a like-for-like comparison of the kernels
    except ImportError:
        torch = None
    torch_text = (
        f"torch {torch.__version__} (1 thread)"
        if torch
        else f"torch not installed for Python {platform.python_version()}: pure column only"
    )
    lines = [
        f"puredl ops benchmark, {date.today()}, {interpreter()}, {os.cpu_count()} CPU cores, {torch_text}",
        f"load average at start {load_average()}",
        "",
        f"{'op':22s} {'size':18s} {'pure':>11s} {'torch':>11s} {'pure/torch':>11s}",
    ]
    print("\n".join(lines))
    pd.manual_seed(0)
    for name, size, make, pure_fn, torch_fn in op_cases(args.quick):
        inputs = make()
        t_pure = best_time(lambda f=pure_fn, xs=inputs: f(*xs))
        if torch is not None:
            tins = [torch.tensor(x.tolist()) for x in inputs]
            t_torch = best_time(lambda f=torch_fn, xs=tins: f(*xs))
            row = f"{name:22s} {size:18s} {fmt_time(t_pure)} {fmt_time(t_torch)} {t_pure / t_torch:10.1f}x"
        else:
            row = f"{name:22s} {size:18s} {fmt_time(t_pure)} {'-':>11s} {'-':>11s}"
        print(row)
        lines.append(row)

    # ---- issue-2 targets, measured in the same run
    a, b = pd.randn(100, 100), pd.randn(100, 100)
    rows, cols_src = a.tolist(), b.tolist()

    def bare_idiom():
        cols = list(zip(*cols_src))
        return [[sum(map(operator.mul, r, c)) for c in cols] for r in rows]

    t_mm, t_bare = best_time(lambda: a @ b), best_time(bare_idiom)
    x, y = pd.randn(10_000), pd.randn(10_000)
    t_add = best_time(lambda: x + y)
    r = pd.randn(1_000)
    t_relu = best_time(lambda: r.relu())
    dot = "math.sumprod" if sys.version_info >= (3, 12) else "sum(map(operator.mul))"
    targets = [
        ("pure matmul 100x100 / bare idiom", f"{t_mm / t_bare:.2f}x", "<= 1.20x", t_mm / t_bare <= 1.2),
        ("contiguous add, 10,000 elements", fmt_time(t_add).strip(), "< 1 ms", t_add < 1e-3),
        ("relu, 1,000 elements", fmt_time(t_relu).strip(), "< 0.1 ms", t_relu < 1e-4),
    ]
    tail = ["", f"targets (pure matmul inner loop: {dot})"]
    for what, got, goal, ok in targets:
        tail.append(f"  {what:36s} {got:>10s}  goal {goal:9s} {'PASS' if ok else 'FAIL'}")
    tail += ["", f"load average at end {load_average()}"]
    print("\n".join(tail))
    lines += tail
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
