"""Time per training step: puredl's pure tier against torch eager, ratios measured in one run.

Cases (the same model, data, loss and optimizer in both libraries):
  (a) XOR 2-4-1 (ReLU, Sigmoid), MSE, SGD momentum, full batch of 4       goal: <= 1.5x torch eager
  (b) micrograd's demo MLP 2-16-16-1 (ReLU) on 100 two-moons points, full batch, max-margin
      loss, L2 as SGD weight decay (the gradient of micrograd's 1e-4 * sum(p^2) term)
                                                                             goal: < 5 ms per step
  (c) digits 64-128-10 (ReLU), cross-entropy, Adam, batch 64                 (reported)

torch runs eagerly with 1 thread (its fastest setting for tensors this small; ``--torch-threads``
changes it). Each number is the best mean over several rounds of back-to-back steps, in CPU
time of this process (``time.process_time``), so other load on a shared machine does not
inflate it; the header shows the load average during the run.

Usage: python benchmarks/train_step.py [--quick] [--profile] [--out benchmarks/results/train_step.txt]
       [--json FILE]  (also the numbers, machine-readable: benchmarks/compare_commits.py reads them)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import sys
import time
from datetime import date

import puredl as pd
from puredl import datasets, nn, optim


def best_step_time(step, rounds: int, min_round: float) -> float:
    """Best mean seconds per call of ``step`` over ``rounds`` rounds of at least ``min_round`` s."""
    clock = time.process_time
    for _ in range(3):
        step()  # warm up (first-call allocations, optimizer state)
    n = 1
    while True:
        t = clock()
        for _ in range(n):
            step()
        if clock() - t >= min_round or n >= 1 << 16:
            break
        n *= 2
    best = float("inf")
    for _ in range(rounds):
        t = clock()
        for _ in range(n):
            step()
        best = min(best, (clock() - t) / n)
    return best


# --------------------------------------------------------------------------- the three cases


def xor_case():
    x, y = datasets.xor()
    pd.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())
    opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    loss_fn = nn.MSELoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    def torch_setup(torch):
        tm = torch.nn.Sequential(
            torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1), torch.nn.Sigmoid()
        )
        tx, ty = torch.tensor(x.tolist()), torch.tensor(y.tolist())
        topt = torch.optim.SGD(tm.parameters(), lr=0.5, momentum=0.9)
        tloss = torch.nn.MSELoss()

        def tstep():
            topt.zero_grad()
            loss = tloss(tm(tx), ty)
            loss.backward()
            topt.step()

        return tstep

    return step, torch_setup


def moons_case():
    x, labels = datasets.two_moons(n=100, noise=0.1, seed=0)
    y = (labels.float() * 2.0 - 1.0).reshape(-1, 1)  # micrograd's demo uses labels -1 / +1
    pd.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = optim.SGD(model.parameters(), lr=0.1, weight_decay=2e-4)  # d/dp of 1e-4 * sum(p^2)

    def step():
        opt.zero_grad()
        loss = (1.0 - y * model(x)).relu().mean()  # max-margin loss, as in micrograd's demo
        loss.backward()
        opt.step()

    def torch_setup(torch):
        tm = torch.nn.Sequential(
            torch.nn.Linear(2, 16),
            torch.nn.ReLU(),
            torch.nn.Linear(16, 16),
            torch.nn.ReLU(),
            torch.nn.Linear(16, 1),
        )
        tx, ty = torch.tensor(x.tolist()), torch.tensor(y.tolist())
        topt = torch.optim.SGD(tm.parameters(), lr=0.1, weight_decay=2e-4)

        def tstep():
            topt.zero_grad()
            loss = (1.0 - ty * tm(tx)).relu().mean()
            loss.backward()
            topt.step()

        return tstep

    return step, torch_setup


def digits_case():
    x, y = datasets.digits()
    xb, yb = x[:64] / 16.0, y[:64]
    pd.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()

    def torch_setup(torch):
        tm = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        tx, ty = torch.tensor(xb.tolist()), torch.tensor(yb.tolist())
        topt = torch.optim.Adam(tm.parameters(), lr=1e-3)
        tloss = torch.nn.CrossEntropyLoss()

        def tstep():
            topt.zero_grad()
            loss = tloss(tm(tx), ty)
            loss.backward()
            topt.step()

        return tstep

    return step, torch_setup


CASES = [
    ("(a) XOR 2-4-1, SGD momentum", xor_case, "ratio", 1.5),
    ("(b) micrograd MLP 2-16-16-1, 100 moons", moons_case, "ms", 5.0),
    ("(c) digits 64-128-10, Adam, batch 64", digits_case, None, None),
]


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (as ``uptime`` shows): other work on the machine."""
    return "{:.2f}, {:.2f}, {:.2f} (1, 5, 15 min)".format(*os.getloadavg())


def fmt(s: float) -> str:
    return f"{s * 1e6:9.1f} us" if s < 1e-3 else f"{s * 1e3:9.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--profile", action="store_true", help="append a cProfile of the XOR step")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--out", help="also write the report to this file")
    parser.add_argument("--json", help="also write the times (seconds per step) to this JSON file")
    args = parser.parse_args(argv)
    rounds, min_round = (3, 0.1) if args.quick else (7, 0.3)
    try:
        import torch

        torch.set_num_threads(args.torch_threads)
    except ImportError:
        torch = None

    python = f"{platform.python_implementation()} {platform.python_version()}"
    lines = [
        f"puredl train-step benchmark ({date.today().isoformat()})",
        f"{python} on {platform.machine()}, {os.cpu_count()} CPUs; "
        + (
            f"torch {torch.__version__} eager, {args.torch_threads} thread(s)"
            if torch
            else f"torch not installed for Python {platform.python_version()}: pure column only"
        ),
        f"CPU time per step, best mean of {rounds} rounds; pure and torch measured in this one run; "
        f"load average at start {load_average()}",
        "",
        f"{'case':42s} {'puredl pure':>13} {'torch eager':>13} {'pure/torch':>10}  goal",
    ]
    print("\n".join(lines), flush=True)
    ok = True
    load_start = os.getloadavg()
    cases = []  # what --json writes
    for name, make, goal_kind, goal in CASES:
        step, torch_setup = make()
        pure = best_step_time(step, rounds, min_round)
        ref = best_step_time(torch_setup(torch), rounds, min_round) if torch else float("nan")
        ratio = pure / ref if torch else float("nan")
        if goal_kind == "ratio" and not torch:
            met, goal_text = True, f"<= {goal}x torch: not measured (no torch)"
        elif goal_kind == "ratio":
            met = ratio <= goal
            goal_text = f"<= {goal}x torch: {'met' if met else 'NOT met'}"
        elif goal_kind == "ms":
            met = pure * 1e3 < goal
            goal_text = f"< {goal:g} ms: {'met' if met else 'NOT met'}"
        else:
            met, goal_text = True, "(reported)"
        ok = ok and met
        cases.append({"name": name, "pure_s": pure, "torch_s": ref if torch else None, "goal_met": met})
        ref_text, ratio_text = (fmt(ref), f"{ratio:.2f}x") if torch else ("-", "-")
        line = f"{name:42s} {fmt(pure):>13} {ref_text:>13} {ratio_text:>10}  {goal_text}"
        lines.append(line)
        print(line, flush=True)
    lines.append("")
    lines.append("(micrograd's own demo step takes about 1.4 s on this kind of machine, per the issue.)")
    lines.append(f"load average at end {load_average()}")
    print("\n".join(lines[-3:]), flush=True)

    if args.profile:
        step, _ = xor_case()
        for _ in range(50):
            step()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(2000):
            step()
        prof.disable()
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf).sort_stats("tottime")
        stats.print_stats(20)
        text = buf.getvalue()
        lines += ["", "cProfile of 2000 XOR steps (sorted by own time):", text[text.index("ncalls") - 3 :]]
        print("\n".join(lines[-3:]))

    if args.json:
        record = {
            "cases": cases,
            "python": python,
            "torch": torch.__version__ if torch else None,
            "rounds": rounds,
            "load_start": list(load_start),
            "load_end": list(os.getloadavg()),
        }
        write_atomic(args.json, json.dumps(record, indent=1) + "\n")
    if args.out:
        write_atomic(args.out, "\n".join(lines).rstrip() + "\n")
    return 0 if ok else 1


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary name, so a reader never sees half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
