"""Torch's CPU thread settings, quiet and with one core busy: which avoid stalls, at what cost.

One run prints both conditions side by side: the whole grid runs quiet, then with one core kept
busy by a spinning process of this benchmark's own (benchmarks/busy.py; stopped at the end).
Each setting runs in a fresh interpreter (the OpenMP variables must be set before torch loads):

- torch's default intra-op threads (one per core);
- one thread (``torch.set_num_threads(1)``);
- one thread set around every call (``set_num_threads(1)``, the op, ``set_num_threads(k)``):
  what switching per op would cost, the pool's re-sizing included;
- ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep at once instead of spinning) and
  ``GOMP_SPINCOUNT=1000`` (they spin briefly, then sleep): torch's pip wheels use GNU OpenMP
  (libgomp), so Intel's ``KMP_BLOCKTIME`` / ``KMP_AFFINITY`` do nothing here;
- ``torch.set_num_interop_threads(1)`` (inter-op pool: used by TorchScript forks, not by one op);
- puredl AUTO (its cost model and thread policy, ``puredl.adaptive_threads``) on torch-resident
  tensors, through puredl's API (a few us per call more than torch directly), after a warm-up.

Each times ops call by call and reports the median and the 90th percentile (a stall shows in the
tail): sum, add and relu from 10k to 1M float32 elements (torch splits an op across threads
from ~32k elements, its internal grain size), and n x n matmuls. Then a summary per setting:
geometric-mean ratio of its medians (and 90th percentiles) to the default's, quiet and loaded,
so the trade-off (quiet speed given up, loaded stalls avoided) is one line. It also times a
``set_num_threads`` round trip and a ``get_num_threads`` call.

Usage: python benchmarks/torch_threads.py [--quick] [--only SETTING,...] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys

from busy import busy_core, load_average  # beside this file

SETTINGS = {
    "default threads": {},
    "1 thread": {"threads": 1},
    "1 thread set per call": {"switch": True},
    "OMP_WAIT_POLICY=PASSIVE": {"env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "GOMP_SPINCOUNT=1000": {"env": {"GOMP_SPINCOUNT": "1000"}},
    "interop threads 1": {"interop": 1},
    "puredl AUTO": {"puredl": True},
}
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
SIZES = [10_000, 30_000, 100_000, 300_000, 1_000_000]
MATMUL = [32, 64, 128, 256]

WORKER = r"""
import json, sys, time
import torch
cfg = json.loads(sys.argv[1])
if cfg.get("interop"):
    torch.set_num_interop_threads(cfg["interop"])
if cfg.get("threads"):
    torch.set_num_threads(cfg["threads"])
own = torch.get_num_threads()
out = {"threads": own, "rows": []}
wrap = lambda f: f
if cfg.get("switch"):
    def wrap(f):
        def one_thread():
            torch.set_num_threads(1); r = f(); torch.set_num_threads(own); return r
        return one_thread
tensor = lambda t: t
if cfg.get("puredl"):
    import puredl as pd
    from puredl import accel
    accel.set_acceleration("auto")
    tensor = pd.from_torch

def percentiles(fn, budget=cfg["budget"]):
    fn = wrap(fn)
    fn(); fn()
    if cfg.get("puredl"):  # let AUTO time its calls and settle
        t0 = time.perf_counter()
        for _ in range(cfg["warmup"]):
            fn()
            if time.perf_counter() - t0 > budget:
                break
    times, spent = [], 0.0
    while len(times) < 30 or (spent < budget and len(times) < 3000):
        t = time.perf_counter(); fn(); dt = time.perf_counter() - t
        times.append(dt); spent += dt
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.9)], len(times)

for n in cfg["sizes"]:
    a, b = tensor(torch.rand(n)), tensor(torch.rand(n))
    for name, fn in (("sum", lambda: a.sum()), ("add", lambda: a + b), ("relu", lambda: a.relu())):
        out["rows"].append([name, n, *percentiles(fn)])
for n in cfg["matmul"]:
    a = tensor(torch.rand(n, n))
    out["rows"].append(["matmul", n, *percentiles(lambda: a @ a)])
k = torch.get_num_threads()
t = time.perf_counter()
for _ in range(2000):
    torch.set_num_threads(1); torch.set_num_threads(k)
out["switch_s"] = (time.perf_counter() - t) / 2000
t = time.perf_counter()
for _ in range(2000):
    torch.get_num_threads()
out["get_s"] = (time.perf_counter() - t) / 2000
if cfg.get("puredl"):
    out["moves"] = [str(m) for m in accel.get_stats().moves]
    out["threads_end"] = torch.get_num_threads()
print(json.dumps(out))
"""


def run_setting(cfg: dict, sizes: list, matmul: list, budget: float, warmup: int) -> dict:
    env = dict(os.environ, **cfg.get("env", {}))
    if cfg.get("puredl"):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    arg = json.dumps({**cfg, "sizes": sizes, "matmul": matmul, "budget": budget, "warmup": warmup})
    done = subprocess.run(
        [sys.executable, "-c", WORKER, arg], capture_output=True, text=True, env=env, timeout=900
    )
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    return json.loads(done.stdout)


def us(s: float) -> str:
    if s < 1e-5:
        return f"{s * 1e6:.2f} us"
    return f"{s * 1e6:.0f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def geomean(xs: list) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def grid(results: dict, condition: str, labels: list) -> list:
    """One condition's table: a row per op and size, a column per setting (median / p90)."""
    lines = [f"\n## {condition}: per call, median / 90th percentile\n"]
    lines += ["| op | size | " + " | ".join(labels) + " |", "|---|---:|" + "---:|" * len(labels)]
    for i, (name, n, *_rest) in enumerate(results[(condition, labels[0])]["rows"]):
        cells = []
        for lab in labels:
            _, _, med, p90, _count = results[(condition, lab)]["rows"][i]
            cells.append(f"{us(med)} / {us(p90)}")
        lines.append(f"| {name} | {n if name != 'matmul' else f'{n}x{n}'} | " + " | ".join(cells) + " |")
    return lines


def summary(results: dict, conditions: list, labels: list) -> list:
    """Per setting, geometric mean over the ops of its median (and p90) over the default's quiet
    ones: below 1 is faster than torch's default on a quiet machine."""
    base = results[(conditions[0], labels[0])]["rows"]
    head = " | ".join(f"{c}: median | {c}: p90" for c in conditions)
    lines = [
        f"\n## Summary: geometric mean over the ops of each setting's time / {labels[0]} {conditions[0]}\n",
        f"| setting | {head} |",
        "|---|" + "---:|" * (2 * len(conditions)),
    ]
    for lab in labels:
        cells = []
        for c in conditions:
            rows = results[(c, lab)]["rows"]
            cells.append(f"{geomean([r[2] / b[2] for r, b in zip(rows, base)]):.2f}")
            cells.append(f"{geomean([r[3] / b[3] for r, b in zip(rows, base)]):.2f}")
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and a shorter budget per op")
    ap.add_argument("--only", help="comma-separated settings to run (default: all): " + "; ".join(SETTINGS))
    ap.add_argument("--conditions", default="quiet,loaded", help="quiet, loaded or both (default)")
    ap.add_argument(
        "--budget", type=float, help="seconds of timing per op and size (default 0.4; --quick 0.1)"
    )
    ap.add_argument("--warmup", type=int, default=2000, help="calls before puredl AUTO is timed")
    ap.add_argument(
        "--load-limit", type=float, default=3600, help="seconds after which the busy process ends itself"
    )
    ap.add_argument("--out", help="also write the tables to this markdown file")
    args = ap.parse_args(argv)
    sizes = [10_000, 100_000, 1_000_000] if args.quick else SIZES
    matmul = [64, 256] if args.quick else MATMUL
    budget = args.budget or (0.1 if args.quick else 0.4)
    labels = [lab.strip() for lab in args.only.split(",")] if args.only else list(SETTINGS)
    for lab in labels:
        if lab not in SETTINGS:
            ap.error(f"unknown setting {lab!r}; expected one of: " + "; ".join(SETTINGS))
    if labels[0] != "default threads":
        labels.insert(0, "default threads")  # the reference of every ratio
    conditions = [c.strip() for c in args.conditions.split(",")]
    if any(c not in ("quiet", "loaded") for c in conditions):
        ap.error(f"--conditions: expected quiet and/or loaded, got {args.conditions!r}")
    results, uptimes = {}, {}
    for condition in conditions:
        with busy_core(args.load_limit) if condition == "loaded" else _nothing() as what:
            uptimes[condition] = f"{what}; at the start: `{load_average()}`"
            for label in labels:
                print(f"{condition}: {label}...", file=sys.stderr)
                results[(condition, label)] = run_setting(SETTINGS[label], sizes, matmul, budget, args.warmup)
            uptimes[condition] += f"; at the end: `{load_average()}`"
    ref = results[(conditions[0], labels[0])]
    lines = [
        "# Torch CPU threads, quiet and with one core busy\n",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch's default {ref['threads']} threads.\n",
        *(f"- {c}: {u}" for c, u in uptimes.items()),
        "",
        "Torch directly, each setting in a fresh interpreter; puredl AUTO through puredl's API.",
    ]
    for c in conditions:
        lines += grid(results, c, labels)
    lines += summary(results, conditions, labels)
    lines.append(
        f"\nA set_num_threads(1) / set_num_threads({ref['threads']}) round trip costs {us(ref['switch_s'])}, "
        f"a get_num_threads() {us(ref['get_s'])} ({conditions[0]}, {labels[0]})."
    )
    for c in conditions:
        auto = results.get((c, "puredl AUTO"))
        if auto is not None:
            moved = "; ".join(auto["moves"]) or "nothing"
            lines.append(f"\npuredl AUTO, {c}: ended on {auto['threads_end']} thread(s); moved: {moved}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, args.out)
    return 0


class _nothing:
    def __enter__(self):
        return "quiet (no busy process of ours)"

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    raise SystemExit(main())
