"""AUTO against PURE and TORCH: matmul, add, relu and sum from 10 to 4,000,000 elements, in one run.

For every op and size the same pure-resident inputs are timed in PURE mode, in TORCH mode and in
AUTO mode, first with the built-in default thresholds and then with the thresholds that
``calibrate()`` measures in this run (not saved to the user config). Goal: AUTO within 1.1x of
the faster of pure and torch at every size. Inputs are detached before each call, so every call
pays the zero-copy conversion that an op on a fresh intermediate pays.

Pure matmul is not run where it would take more than --pure-budget seconds per call; its time
there is extrapolated from the largest size it ran at (multiply-adds scale as n**3) and marked
"est." (such sizes are hours of pure Python).

With --load the benchmark starts a busy process of its own, spinning on one core for the whole
run (stopped at the end, and by its own time limit if the benchmark dies), so that a machine with
one core taken by something else is reproducible anywhere. AUTO is timed with its cost model
(it times a few calls and leaves a backend that observes slow, docs/acceleration.md "AUTO on a
busy machine") and, for comparison, on the thresholds alone.

Every decision parameter of the cost model (``puredl/adaptive.py``) and of AUTO's torch thread
policy (``puredl/adaptive_threads.py``) can be set for a run with ``--set NAME=VALUE`` (repeat it;
e.g. ``--set MARGIN=1.3 --set SAMPLE_GAP=16,48 --set THREAD_MARGIN=2``); the report lists the values
used, every choice the cost model moved and why, and the thread count AUTO ended on.

``--ops sum,add`` and ``--sizes 1000000,4000000`` time a subset of the sweep (its files end in
``_subset``); pure's time at a size is extrapolated only from a size it ran before, so start a
subset where pure is affordable.

Usage: python benchmarks/accel.py [--quick] [--load] [--threads N] [--set NAME=VALUE ...]
                                  [--ops OPS] [--sizes SIZES]
                                  [--out-dir benchmarks/results] [--json FILE]
(--json FILE: the numbers to FILE too; benchmarks/compare_commits.py reads them)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from datetime import date

from busy import busy_core, load_average  # beside this file

from puredl import accel

try:
    from puredl import adaptive, adaptive_threads
except ImportError:  # an older puredl: benchmarks/compare_commits.py runs this script against one
    adaptive = adaptive_threads = None
from puredl.accel.calibration import BENCH_OPS, plot_series, time_modes

SIZES = [10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000, 4_000_000]
QUICK_SIZES = [10, 100, 1_000, 10_000, 100_000]
OPS = ("matmul", "add", "relu", "sum")
GOAL = 1.1
# untimed calls per setting and size first (at least 30 calls and 50 ms, at most 1 s): AUTO's
# cost model learns each new size in its first calls, and the table shows the steady state
WARMUP = (30, 0.05)


AUTO_KEYS = ("auto_default", "auto_calibrated", "auto_static")
PARAM_MODULES = tuple(m for m in (adaptive, adaptive_threads) if m is not None)


def set_params(pairs: list) -> None:
    """``NAME=VALUE`` for a module constant of puredl.adaptive or puredl.adaptive_threads (a
    tuple as comma-separated values), before the cost model is made."""
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        module = next((m for m in PARAM_MODULES if name.isupper() and hasattr(m, name)), None)
        if not sep or module is None:
            raise SystemExit(
                f"--set {pair!r}: expected NAME=VALUE with NAME one of {', '.join(param_names())}"
            )
        old = getattr(module, name)
        try:
            if isinstance(old, tuple):
                new = tuple(type(old[0])(v) for v in value.split(","))
            else:
                new = type(old)(value)
        except ValueError:
            raise SystemExit(f"--set {pair!r}: {name} takes a {type(old).__name__}, got {value!r}") from None
        setattr(module, name, new)


def param_names() -> list:
    return [
        n
        for m in PARAM_MODULES
        for n, v in vars(m).items()
        if n.isupper() and isinstance(v, (int, float, tuple))
    ]


def params_text() -> str:
    names = param_names()
    text = ", ".join(f"{n}={getattr(m, n)}" for m in PARAM_MODULES for n in vars(m) if n in names)
    return text or "none (this puredl has no cost model)"


def cost_model_report(moves: list) -> str:
    """Which choices AUTO's cost model moved and why (the timings that decided), in order."""
    threads = [m for m in moves if type(m).__name__ == "ThreadMove"]
    backend = [m for m in moves if type(m).__name__ != "ThreadMove"]
    model = accel.adaptive_model() if hasattr(accel, "adaptive_model") else None
    policy = getattr(model, "threads", None)
    end = policy.threads() if policy is not None else None
    ended = "1 thread" if end == 1 else "torch's own thread count" + (f" ({end})" if end else "")
    lines = [
        f"\n\nThe cost model moved {len(backend)} choices of backend and {len(threads)} of torch's "
        f"thread count (AUTO ended on {ended}), in order" + (":\n" if moves else ": none.")
    ]
    lines += [f"- {m}" for m in moves]
    return "\n".join(lines)


def fmt(s: float | None, est: bool = False) -> str:
    if s is None:
        return "-"
    mark = " est." if est else ""
    if s < 1e-3:
        return f"{s * 1e6:.1f} us{mark}"
    if s < 1:
        return f"{s * 1e3:.2f} ms{mark}"
    return f"{s:.1f} s{mark}"


def measure_op(
    name: str, sizes: list, thresholds: dict, pure_budget: float, min_time: float, stat: str = "best"
) -> list:
    """pure, torch, auto (default) and auto (calibrated) for each size, timed interleaved."""
    op = BENCH_OPS[name]
    rows = []
    pure_rate = None  # seconds per unit of work at the largest size pure ran
    for size in sizes:
        tensors = op.make(size)
        work = op.work(size)
        row = {"size": size, "label": op.size_label(size), "work": work, "pure_est": False}
        settings = {
            "torch": ("torch", None),
            "auto_default": ("auto", thresholds["default"], True),
            "auto_calibrated": ("auto", thresholds["calibrated"], True),
            "auto_static": ("auto", thresholds["default"], False),  # the thresholds alone
        }
        est = pure_rate * work if pure_rate is not None else 0.0
        if est > pure_budget:
            row["pure"], row["pure_est"] = est, True
        else:
            settings["pure"] = ("pure", None)
        # big ops run one call per round: more rounds, so that some run undisturbed on a busy machine;
        # with the median (--load) more still: a stalled torch op takes one of two times (1.6 or 5.6
        # ms at 548x548, 2026-12-01), and a median of 15 landed on either mode for the same kernel
        big = est > 0.01 or work >= 1e8
        rounds = (31 if stat == "median" else 15) if big else 3
        row.update(time_modes(op, tensors, settings, min_time, rounds=rounds, stat=stat, warmup=WARMUP))
        for key in AUTO_KEYS:  # which backend AUTO picks now (after what it observed)
            # the most calls' backend, of 9 (3 for a slow op): one call may be a timed try of the other
            calls = 9 if row[key] * 9 < 1.0 else 3
            with accel.using(*settings[key]):
                ran = [op.run(*tensors)._be.NAME for _ in range(calls)]
            row[key + "_on"] = max(("pure", "torch"), key=ran.count)
        if not row["pure_est"]:
            pure_rate = row["pure"] / work
        rows.append(row)
        print(
            f"  {name:<7}{row['label']:>12}  pure {fmt(row['pure'], row['pure_est']):>14}"
            f"  torch {fmt(row['torch']):>10}  auto {fmt(row['auto_default']):>10}"
            f" / {fmt(row['auto_calibrated'])} / thresholds only {fmt(row['auto_static'])}",
            file=sys.stderr,
        )
    return rows


def ratio(row: dict, key: str) -> float:
    return row[key] / min(row["pure"], row["torch"])


def table(results: dict, thresholds: dict) -> str:
    lines = []
    for name, rows in results.items():
        cat = BENCH_OPS[name].category
        lines.append(
            f"\n### {name} ({cat}; thresholds: default {accel.format_work(thresholds['default'][cat])}, "
            f"calibrated {accel.format_work(thresholds['calibrated'][cat])})\n"
        )
        lines.append(
            "| size | work | pure | torch | auto (default) | ran on | ratio "
            "| auto (calibrated) | ran on | ratio | thresholds only | ran on | ratio |"
        )
        lines.append("|---:|---:|---:|---:|---:|:---|---:|---:|:---|---:|---:|:---|---:|")
        for r in rows:
            cells = [r["label"], accel.format_work(r["work"]), fmt(r["pure"], r["pure_est"]), fmt(r["torch"])]
            for key in AUTO_KEYS:
                rk = ratio(r, key)
                cells += [fmt(r[key]), r[key + "_on"], f"{rk:.2f}" + (" **over**" if rk > GOAL else "")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chosen_ops(text: str | None) -> tuple:
    """The ops named in ``--ops``, in the sweep's order (all of them without the option)."""
    if not text:
        return OPS
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPS]
    if unknown or not names:
        raise ValueError(f"--ops: choose from {', '.join(OPS)} (got {text!r})")
    return tuple(n for n in OPS if n in names)


def chosen_sizes(text: str | None) -> list | None:
    """The sizes of ``--sizes``, smallest first (None without the option)."""
    if not text:
        return None
    try:
        sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--sizes: whole numbers separated by commas (got {text!r})") from None
    if not sizes or sizes[0] < 1:
        raise ValueError(f"--sizes: at least one size, each at least 1 (got {text!r})")
    return sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="sizes 10..100,000 only")
    ap.add_argument("--ops", help=f"comma-separated subset of {','.join(OPS)} (default: all)")
    ap.add_argument(
        "--sizes",
        help="comma-separated sizes in elements (default: the sweep's); pure's time is extrapolated "
        "only from a size it ran, so start where pure is affordable",
    )
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--pure-budget", type=float, default=3.0, help="longest pure call to run, in seconds")
    ap.add_argument("--min-time", type=float, default=0.1, help="seconds of timing per mode and size")
    ap.add_argument("--load", action="store_true", help="keep one core busy with a spinning process")
    ap.add_argument(
        "--stat",
        choices=("best", "median"),
        help="which round each setting keeps (default: best; median with --load, where stalls are the point)",
    )
    ap.add_argument(
        "--load-limit", type=float, default=3 * 3600, help="seconds after which the busy process ends itself"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a decision parameter of the cost model or the thread policy for this run (repeatable)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: torch's default); 1 avoids stalls on a busy machine",
    )
    ap.add_argument("--json", help="also write the numbers (the .json file's content) to this file")
    args = ap.parse_args(argv)
    try:
        args.ops = chosen_ops(args.ops)
        args.sizes = chosen_sizes(args.sizes)
    except ValueError as exc:
        ap.error(str(exc))
    args.subset = bool(args.sizes) or args.ops != OPS
    set_params(args.set)
    accel.torch_backend()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    with busy_core(args.load_limit) if args.load else contextlib.nullcontext("quiet") as condition:
        print(f"{condition}; {load_average()}", file=sys.stderr)
        return run(args, torch, condition)


def run(args, torch, condition: str) -> int:
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    uptime_start = load_average()
    accel.reset_thresholds()  # the built-in defaults, whatever the user config says
    accel.reset_adaptive()
    accel.set_adaptive(True)
    thresholds = {"default": accel.get_thresholds()}
    start = time.time()
    print("calibrating (not saved)...", file=sys.stderr)
    with accel.using():
        cal = accel.calibrate(save=False, verbose=False)
        thresholds["calibrated"] = accel.get_thresholds()
    accel.reset_thresholds()
    print("timing pure, torch, auto (default) and auto (calibrated), interleaved...", file=sys.stderr)
    stat = args.stat or ("median" if args.load else "best")
    results = {
        name: measure_op(name, sizes, thresholds, args.pure_budget, args.min_time, stat) for name in args.ops
    }
    elapsed = time.time() - start
    uptime_end = load_average()
    moves = accel.get_stats().moves

    choice = {}
    for key in AUTO_KEYS:
        rows_all = [r for rows in results.values() for r in rows]
        wrong = [r for r in rows_all if r[key + "_on"] != ("pure" if r["pure"] < r["torch"] else "torch")]
        cost = max((max(r["pure"], r["torch"]) / min(r["pure"], r["torch"]) for r in wrong), default=1.0)
        choice[key] = (len(rows_all) - len(wrong), len(rows_all), cost)
    worst = {key: max(ratio(r, key) for rows in results.values() for r in rows) for key in AUTO_KEYS}
    names = {
        "auto_default": "default",
        "auto_calibrated": "calibrated",
        "auto_static": "default, no cost model",
    }
    header = (
        f"# AUTO vs PURE vs TORCH ({date.today().isoformat()}, {'loaded' if args.load else 'quiet'})\n\n"
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads). Run took {elapsed:.0f} s.\n\n"
        f"Condition: {condition}.\n\n"
        + (
            f"A subset of the sweep: ops {', '.join(args.ops)}; sizes {', '.join(map(str, sizes))}.\n\n"
            if args.subset
            else ""
        )
        + f"Cost model and thread policy parameters: {params_text()}.\n\n"
        f"uptime at start: `{uptime_start}`; at the end: `{uptime_end}`.\n\n"
        f"Times are per op through the public API: the {stat} of at least 3 rounds ("
        f"{31 if stat == 'median' else 15} for ops of 10 ms or 1e8 units of work), the five settings "
        "taking turns round by round (so load from other processes hits them alike); inputs are "
        "pure-resident and detached before each call. Before its rounds each setting runs untimed "
        f"for at least {WARMUP[0]} calls and {WARMUP[1] * 1e3:.0f} ms (at most {WARMUP[1] * 20:.0f} s): "
        "AUTO's learning of a new size is not in the table, its steady state is. "
        "ratio = auto / min(pure, torch); goal <= 1.1.\n\n"
        "AUTO (default) and AUTO (calibrated) run with the cost model (they time a few calls and "
        "override a threshold that observes slow); 'thresholds only' is AUTO with the default "
        "thresholds and no cost model, for comparison.\n\n"
        f"Worst ratio: {worst['auto_default']:.2f} with the default thresholds, "
        f"{worst['auto_calibrated']:.2f} after calibrate(), "
        f"{worst['auto_static']:.2f} on the default thresholds alone.\n\n"
        "AUTO (the backend most of 9 calls after each size's rounds ran on) picked the faster backend at "
        + "; ".join(
            f"{n}/{total} sizes with the {names[k]} thresholds"
            + (f" (where it did not, the other backend was at most {c:.2f}x faster)" if n < total else "")
            for k, (n, total, c) in choice.items()
        )
        + ". Where AUTO and TORCH run the same code path (large sizes), a ratio above 1 is load from "
        "other processes during that setting's rounds, not AUTO's cost.\n\n"
        "Calibrated crossovers: "
        + ", ".join(
            f"{c} {accel.format_work(r.threshold)}"
            + (f" (median of 3 grids: {', '.join(map(accel.format_work, r.attempts))})" if r.attempts else "")
            for c, r in cal.categories.items()
        )
        + cost_model_report(moves)
    )
    text = header + "\n" + table(results, thresholds) + "\n"
    print(text)
    os.makedirs(args.out_dir, exist_ok=True)
    # named by date and machine, as benchmarks/results/README.md asks; _tN: torch at N threads
    suffix = (
        ("_quick" if args.quick else "")
        + ("_subset" if args.subset else "")  # never mistaken for a full sweep
        + (f"_t{args.threads}" if args.threads else "")
        + ("_load" if args.load else "")
    )
    stem = os.path.join(args.out_dir, f"accel_{date.today().isoformat()}_{os.cpu_count()}cpu{suffix}")
    numbers = json.dumps(
        {
            "results": results,
            "thresholds": thresholds,
            "condition": condition,
            "uptime": [uptime_start, uptime_end],
            "moves": [str(m) for m in moves],
            "params": params_text(),
        }
    )
    for path, content in ((stem + ".md", text), (stem + ".json", numbers), (args.json, numbers)):
        if path:
            tmp = f"{path}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(content)
            os.replace(tmp, path)
    panels = []
    for name, rows in results.items():
        s = [r["size"] for r in rows]
        panels.append(
            (
                name,
                s,
                {
                    "pure": [None if r["pure_est"] else r["pure"] for r in rows],
                    "torch": [r["torch"] for r in rows],
                    "auto (default)": [r["auto_default"] for r in rows],
                    "auto (calibrated)": [r["auto_calibrated"] for r in rows],
                    "auto (thresholds only)": [r["auto_static"] for r in rows],
                },
                None,
            )
        )
    png = plot_series(panels, stem + ".png", "puredl AUTO vs PURE vs TORCH (time per op)")
    print(f"wrote {stem}.md, {stem}.json" + (f", {png}" if png else ""), file=sys.stderr)
    ok = worst["auto_default"] <= GOAL and worst["auto_calibrated"] <= GOAL
    print(f"goal auto <= {GOAL}x the faster backend: {'met' if ok else 'NOT met'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
