"""Torch's CPU thread settings, quiet and with one core busy: which keep ops from stalling.

Each setting runs in a fresh interpreter (OMP_WAIT_POLICY must be set before torch loads):
torch's default intra-op threads; one thread (``torch.set_num_threads(1)``); the default threads
with ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning). Each times torch
ops directly, call by call, and reports the median and the 90th percentile (a stall shows in
the tail): sum, add and relu from 10k to 1M float32 elements (torch splits an op across threads
from ~32k elements, its internal grain size), and n x n matmuls. The whole grid runs quiet and
then with one core kept busy by a spinning process (benchmarks/busy.py). It also times a
``set_num_threads`` round trip, the price of switching threads per op.

Usage: python benchmarks/torch_threads.py [--quick] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

from busy import busy_core, load_average  # beside this file

SETTINGS = {
    "default threads": {},
    "1 thread": {"threads": 1},
    "default threads, OMP_WAIT_POLICY=PASSIVE": {"env": {"OMP_WAIT_POLICY": "PASSIVE"}},
}
SIZES = [10_000, 30_000, 100_000, 300_000, 1_000_000]
MATMUL = [32, 64, 128, 256]

WORKER = r"""
import json, sys, time
import torch
cfg = json.loads(sys.argv[1])
if cfg.get("threads"):
    torch.set_num_threads(cfg["threads"])
out = {"threads": torch.get_num_threads(), "rows": []}

def percentiles(fn, budget=cfg["budget"]):
    fn(); fn()
    times, spent = [], 0.0
    while len(times) < 30 or (spent < budget and len(times) < 3000):
        t = time.perf_counter(); fn(); dt = time.perf_counter() - t
        times.append(dt); spent += dt
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.9)], len(times)

for n in cfg["sizes"]:
    a, b = torch.rand(n), torch.rand(n)
    for name, fn in (("sum", lambda: a.sum()), ("add", lambda: a + b), ("relu", lambda: a.relu())):
        out["rows"].append([name, n, *percentiles(fn)])
for n in cfg["matmul"]:
    a = torch.rand(n, n)
    out["rows"].append(["matmul", n, *percentiles(lambda: a @ a)])
t = time.perf_counter()
k = torch.get_num_threads()
for _ in range(200):
    torch.set_num_threads(1); torch.set_num_threads(k)
out["switch_s"] = (time.perf_counter() - t) / 200
print(json.dumps(out))
"""


def run_setting(cfg: dict, sizes: list, matmul: list, budget: float) -> dict:
    env = dict(os.environ, **cfg.get("env", {}))
    arg = json.dumps({"threads": cfg.get("threads"), "sizes": sizes, "matmul": matmul, "budget": budget})
    done = subprocess.run(
        [sys.executable, "-c", WORKER, arg], capture_output=True, text=True, env=env, timeout=900
    )
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    return json.loads(done.stdout)


def us(s: float) -> str:
    return f"{s * 1e6:.0f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and a shorter budget per op")
    ap.add_argument("--out", help="also write the table to this markdown file")
    args = ap.parse_args(argv)
    sizes = [10_000, 100_000, 1_000_000] if args.quick else SIZES
    matmul = [64, 256] if args.quick else MATMUL
    budget = 0.1 if args.quick else 0.4
    results = {}
    uptimes = {}
    for condition in ("quiet", "loaded"):
        with busy_core(3600) if condition == "loaded" else _nothing() as what:
            uptimes[condition] = f"{what}; `{load_average()}`"
            for label, cfg in SETTINGS.items():
                print(f"{condition}: {label}...", file=sys.stderr)
                results[(condition, label)] = run_setting(cfg, sizes, matmul, budget)
    lines = [
        "# Torch CPU threads, quiet and with one core busy\n",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.\n",
        *(f"- {c}: {u}" for c, u in uptimes.items()),
        "",
        "Per call, torch directly: median / 90th percentile.\n",
    ]
    labels = list(SETTINGS)
    header = (
        "| op | size | " + " | ".join(f"{c}: {lab}" for c in ("quiet", "loaded") for lab in labels) + " |"
    )
    lines += [header, "|---|---:|" + "---:|" * (2 * len(labels))]
    first = results[("quiet", labels[0])]["rows"]
    for i, (name, n, *_rest) in enumerate(first):
        cells = []
        for c in ("quiet", "loaded"):
            for lab in labels:
                _, _, med, p90, _count = results[(c, lab)]["rows"][i]
                cells.append(f"{us(med)} / {us(p90)}")
        lines.append(f"| {name} | {n if name != 'matmul' else f'{n}x{n}'} | " + " | ".join(cells) + " |")
    switch = results[("quiet", labels[0])]["switch_s"]
    threads = results[("quiet", labels[0])]["threads"]
    lines.append(
        f"\nTorch's default here: {threads} threads. A set_num_threads(1) / set_num_threads({threads})"
    )
    lines.append(f"round trip costs {us(switch)} (quiet).")
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
