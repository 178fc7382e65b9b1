"""AUTO with and without its per-size torch thread policy, against TORCH, in one process.

`benchmarks/accel.py` sweeps sizes with each setting in its own rounds; a ratio there moves by
10-40% between runs on a noisy machine, and where AUTO and TORCH run the same kernel it measures
that noise. This benchmark asks one question of the thread policy (`puredl/adaptive_threads.py`):
at the parallel sizes, what does AUTO cost with it ("policy") and without it ("no policy", the
cost model alone) and TORCH mode, in blocks of ~2 ms taking turns in a shuffled order, 40 blocks
each, medians. Each setting first runs untimed for 0.3 s (AUTO learns the size: its steady state
is timed). Inputs are pure-resident, as in `benchmarks/accel.py`.

With --load a busy process of the benchmark's own spins on one core for the whole run.

Usage: python benchmarks/accel_threads.py [--load] [--blocks N] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import time

try:
    import torch

    from puredl import accel, adaptive, adaptive_threads
    from puredl.accel import dispatch
    from puredl.accel.calibration import BENCH_OPS
except ImportError as exc:  # pragma: no cover - a message, not a traceback
    sys.exit(f"accel_threads.py needs puredl and torch ({exc}); pip install -e '.[torch]'")

from busy import busy_core, load_average  # beside this file

# the parallel-sized cases of benchmarks/accel.py's sweep (work >= torch's grain, 32768)
CASES = [
    ("matmul", 1_000),  # (a matmul's size: elements of each square input, as in accel.py: 32x32)
    ("matmul", 10_000),
    ("matmul", 100_000),
    ("matmul", 300_000),
    ("relu", 300_000),
    ("relu", 4_000_000),
    ("add", 1_000_000),
    ("add", 4_000_000),
    ("sum", 100_000),
    ("sum", 1_000_000),
    ("train step", 0),  # AUTO on a whole training step (its parameters stay where AUTO puts them)
]
SETTINGS = ("policy", "no policy", "torch")


class TrainStep:
    """One SGD step of an MLP 64-512-10 on a batch of 256 (random data): matmuls of 8.4M
    multiply-adds and activations of 131k elements, parallel-sized ops of a real step."""

    name = "train step"

    def __init__(self):
        import puredl as pd
        from puredl import nn, optim

        pd.manual_seed(0)
        self.x, self.y = pd.rand(256, 64), pd.randint(0, 10, (256,))
        self.model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
        self.opt = optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.loss = nn.CrossEntropyLoss()

    def make(self, size: int) -> tuple:
        return ()

    def size_label(self, size: int) -> str:
        return "MLP 64-512-10, batch 256"

    def work(self, size: int) -> int:
        return 256 * 64 * 512

    def run(self) -> None:
        self.opt.zero_grad()
        self.loss(self.model(self.x), self.y).backward()
        self.opt.step()


def measure(name: str, size: int, blocks: int, rng: random.Random) -> dict:
    op = TrainStep() if name == "train step" else BENCH_OPS[name]
    tensors = op.make(size)
    accel.reset_stats()  # (its moves list: the thread policy's moves for this case)
    models = {
        "policy": adaptive.CostModel(threads=adaptive_threads.ThreadPolicy()),
        "no policy": adaptive.CostModel(),
    }

    countdown = dict.fromkeys(models, 1)  # each model's calls until its next timed one

    @contextlib.contextmanager
    def enter(setting: str):
        if setting == "torch":
            with accel.using("torch"):
                yield
            return
        # swap the model in with its own countdown (reset_adaptive alone restarts it at 1, and
        # a timed call, maybe a try, at the start of every block is not AUTO's steady state)
        accel.reset_adaptive(models[setting])
        dispatch._sample_in = countdown[setting]
        with accel.using("auto"):
            yield
        countdown[setting] = dispatch._sample_in

    for setting in SETTINGS:  # learning, untimed
        with enter(setting):
            begun = time.perf_counter()
            while time.perf_counter() - begun < 0.3:
                op.run(*tensors)
    with accel.using("torch"):
        start = time.perf_counter()
        op.run(*tensors)
        one = time.perf_counter() - start
    n = max(1, int(2e-3 / max(one, 1e-7)))
    times = {s: [] for s in SETTINGS}
    for _ in range(blocks):
        order = list(SETTINGS)
        rng.shuffle(order)
        for setting in order:
            with enter(setting):
                start = time.perf_counter()
                for _ in range(n):
                    op.run(*tensors)
                times[setting].append((time.perf_counter() - start) / n)
    policy = models["policy"].threads
    moves = [str(m) for m in accel.get_stats().moves if type(m).__name__ == "ThreadMove"]
    accel.reset_adaptive()
    med = {s: statistics.median(v) for s, v in times.items()}
    return {
        "op": name,
        "size": op.size_label(size),
        "work": op.work(size),
        "calls_per_block": n,
        **{s: med[s] for s in SETTINGS},
        # the keys on one thread: (op, size bucket); a training step has several ops
        "one_thread": sorted(f"{k[0]} {k[1]}" for k in policy.single if name in (k[0], "train step")),
        "thread_moves": moves,  # in order, learning included
    }


def on_one_thread(row: dict) -> str:
    if row["op"] != "train step":
        return "yes" if row["one_thread"] else ""
    ops = sorted({k.split()[0] for k in row["one_thread"]})
    return f"{len(row['one_thread'])} sizes ({', '.join(ops)})" if ops else "none"


def fmt(s: float) -> str:
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", action="store_true", help="keep one core busy with a spinning process")
    ap.add_argument("--blocks", type=int, default=40)
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args(argv)
    rng = random.Random(0)
    started = time.perf_counter()
    up0 = load_average()
    rows = []
    with busy_core(3600) if args.load else contextlib.nullcontext("quiet") as condition:
        for name, size in CASES:
            row = measure(name, size, args.blocks, rng)
            rows.append(row)
            print(
                f"  {name:10s} {row['size']:>10s}  policy {fmt(row['policy']):>9s}  no policy "
                f"{fmt(row['no policy']):>9s}  torch {fmt(row['torch']):>9s}  policy/no policy "
                f"{row['policy'] / row['no policy']:.2f}  policy/torch {row['policy'] / row['torch']:.2f}"
                + (f"  (one thread: {on_one_thread(row)})" if row["one_thread"] else ""),
                flush=True,
            )
    elapsed = time.perf_counter() - started
    print(
        f"\n# AUTO's torch thread policy ({time.strftime('%Y-%m-%d')}, {condition.split(':')[0]})\n\n"
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads). "
        f"Run took {elapsed:.0f} s. Condition: {condition}. Load average at the start: {up0}; at the "
        f"end: {load_average()}.\n\nMedian seconds per call of {args.blocks} blocks of ~2 ms, the three "
        "settings taking turns in a shuffled order; AUTO learned each size untimed first (its steady "
        "state). 'thread moves': how often the policy moved a size between torch's count and one "
        "thread (learning included; the list is in the JSON). 'policy': AUTO's cost model with the "
        "per-size thread policy (the default); 'no "
        "policy': the cost model alone (torch's own thread count always); 'on one thread': the "
        "policy runs this size's torch calls on one thread.\n"
    )
    print(
        "| op | size | policy | no policy | torch | policy / no policy | policy / torch | on one thread "
        "at the end | thread moves |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|:---:|---:|")
    for r in rows:
        print(
            f"| {r['op']} | {r['size']} | {fmt(r['policy'])} | {fmt(r['no policy'])} | {fmt(r['torch'])} "
            f"| {r['policy'] / r['no policy']:.2f} | {r['policy'] / r['torch']:.2f} | "
            f"{on_one_thread(r)} | {len(r['thread_moves'])} |"
        )
    ratios = [r["policy"] / r["no policy"] for r in rows]
    print(
        f"\npolicy / no policy: geometric mean {statistics.geometric_mean(ratios):.3f}, "
        f"worst {max(ratios):.2f}, best {min(ratios):.2f}"
    )
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"condition": condition, "rows": rows}, f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
