"""Time per training step of an MNIST-shaped CNN: puredl's pure tier beside torch eager, one run.

The model (the same weights in both libraries): 28x28 input, Conv2d(1, 8, 3) -> ReLU -> MaxPool2d(2)
-> Conv2d(8, 16, 3) -> ReLU -> MaxPool2d(2) -> Flatten -> Linear(400, 10); cross-entropy; SGD with
momentum; a batch of 8 random images. puredl runs in PURE mode (im2col + the pure matmul) and
then in TORCH mode (torch's convolution kernels under puredl's autograd); torch runs eagerly
with 1 thread. Each number is the best mean over a few rounds, in CPU time of this
process (``time.process_time``), so other load inflates it less; the header shows the load average.

Usage: python benchmarks/cnn_step.py [--batch 8] [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from datetime import date

import puredl as pd
from puredl import accel, nn


def best_step_time(step, rounds: int, min_round: float) -> float:
    clock = time.process_time
    step()  # warm up
    n = 1
    while True:
        t = clock()
        for _ in range(n):
            step()
        if clock() - t >= min_round or n >= 64:
            break
        n *= 2
    best = float("inf")
    for _ in range(rounds):
        t = clock()
        for _ in range(n):
            step()
        best = min(best, (clock() - t) / n)
    return best


def build(lib, nn_mod):
    return nn_mod.Sequential(
        nn_mod.Conv2d(1, 8, 3),
        nn_mod.ReLU(),
        nn_mod.MaxPool2d(2),
        nn_mod.Conv2d(8, 16, 3),
        nn_mod.ReLU(),
        nn_mod.MaxPool2d(2),
        nn_mod.Flatten(),
        nn_mod.Linear(16 * 5 * 5, 10),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-round", type=float, default=1.0, help="seconds of steps per round")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    accel.set_acceleration(accel.AccelMode.PURE)
    r = random.Random(0)
    images = [r.random() for _ in range(args.batch * 28 * 28)]
    labels = [r.randrange(10) for _ in range(args.batch)]

    model = build(pd, nn)
    tmodel = build(torch, torch.nn)
    with torch.no_grad():  # the same weights in both
        for p, tp in zip(model.parameters(), tmodel.parameters()):
            tp.copy_(torch.tensor(p.reshape(-1).tolist()).reshape(tp.shape))
    x, y = pd.tensor(images).reshape(args.batch, 1, 28, 28), pd.tensor(labels)
    tx, ty = torch.tensor(images).reshape(args.batch, 1, 28, 28), torch.tensor(labels)
    opt = pd.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    loss_fn, tloss_fn = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    def tstep():
        topt.zero_grad()
        loss = tloss_fn(tmodel(tx), ty)
        loss.backward()
        topt.step()
        return loss

    first, tfirst = step().item(), tstep().item()  # the same first loss: the same model
    load_before = os.getloadavg()[0]
    pure_s = best_step_time(step, args.rounds, args.min_round)
    torch_s = best_step_time(tstep, args.rounds, args.min_round)
    accel.set_acceleration(accel.AccelMode.TORCH)  # the same puredl step on torch's kernels
    accel_s = best_step_time(step, args.rounds, args.min_round)
    accel.set_acceleration(accel.AccelMode.PURE)
    load_after = os.getloadavg()[0]
    lines = [
        f"# cnn_step: MNIST-shaped CNN train step, batch {args.batch} ({date.today()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs)",
        f"# load average during the run: {load_before:.1f} -> {load_after:.1f} "
        "(times are CPU time of this process; a loaded machine still slows both)",
        f"first loss: puredl {first:.6f}, torch {tfirst:.6f}",
        f"pure tier   {pure_s * 1e3:10.1f} ms/step",
        f"torch eager {torch_s * 1e3:10.1f} ms/step",
        f"puredl TORCH mode {accel_s * 1e3:5.1f} ms/step",
        f"ratio pure/torch: {pure_s / torch_s:.0f}x; puredl TORCH mode/torch: {accel_s / torch_s:.1f}x",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(report + "\n")
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
