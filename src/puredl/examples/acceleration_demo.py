"""Acceleration demo: train the digits classifier with AUTO and print where each op ran.

Run: ``puredl example acceleration_demo [--epochs N] [--log-steps N]``. With torch installed
the mode is AUTO (each op goes to torch when its size passes its category's threshold, small
ones stay on pure); without torch it runs on pure and says so. It logs the decisions of the
first training step, then prints the statistics and one epoch's time in PURE and in AUTO.
"""

from __future__ import annotations

import argparse
import io
import time

import puredl as pd
from puredl import accel, data, datasets, nn, optim

HIDDEN = 256
BATCH_SIZE = 64
SEED = 0


def _epoch(model, opt, loss_fn, x, y, batch_size: int) -> float:
    n = x.shape[0]
    total = 0.0
    for i in range(0, n, batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        total += loss.item() * xb.shape[0]
    return total / n


def run(epochs: int = 2, log_steps: int = 1, limit: int | None = None, verbose: bool = True) -> dict:
    """Returns {"mode", "stats", "torch_fraction", "seconds": {mode: s per epoch}, "test_accuracy"}."""
    say = print if verbose else (lambda *a, **k: None)
    have_torch = accel.torch_available()
    mode = "auto" if have_torch else "pure"
    say("=== Acceleration demo: digits 64-256-10 ===\n")
    say(
        "torch available: "
        + ("yes - using AUTO" if have_torch else "no - using PURE (pip install 'puredl[torch]')")
    )
    th = accel.get_thresholds()
    say(
        "thresholds ("
        + accel.threshold_source()
        + "): "
        + ", ".join(f"{k} {accel.format_work(v)}" for k, v in th.items())
    )

    pd.manual_seed(SEED)
    x, y = datasets.digits()
    x = x / 16.0
    x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=0.2, seed=SEED, stratify=y)
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    model = nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    accel.set_acceleration(mode)
    if log_steps and verbose:
        buf = io.StringIO()
        accel.enable_logging(True, file=buf)
        xb, yb = x_train[:BATCH_SIZE], y_train[:BATCH_SIZE]
        for _ in range(log_steps):
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
        accel.enable_logging(False)
        lines = buf.getvalue().splitlines()
        shown = "" if len(lines) <= 12 else "; the first 12"
        say(f"\nDecisions of {log_steps} training step(s) ({len(lines)} ops{shown}):")
        for line in lines[:12]:
            say("  " + line)

    accel.reset_stats()
    seconds = {}
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        loss = _epoch(model, opt, loss_fn, x_train, y_train, BATCH_SIZE)
        seconds[mode] = time.perf_counter() - start
        say(f"  epoch {epoch}  loss {loss:.4f}  ({seconds[mode]:.2f} s)")
    stats = accel.get_stats().copy()  # the PURE comparison below must not count
    with pd.no_grad():
        acc = (model(x_test).argmax(-1) == y_test).float().mean().item()
    say(f"\nTest accuracy: {acc:.2%}\n")
    accel.print_stats(stats)
    frac = stats.torch_fraction
    if frac < 0.2:
        say("Tip: mostly pure - expected for small models or without torch")
    elif frac > 0.8:
        say("Tip: mostly torch - this model's ops are large enough that torch wins")
    else:
        say("Tip: a balance - AUTO keeps small ops on pure and sends large ones to torch")
    if stats.fallback_count:
        say(
            f"Warning: {stats.fallback_count} torch failures ran on pure instead "
            "(see the [accel] fallback lines)"
        )
    if have_torch:  # one epoch in PURE for comparison, same model
        with accel.using("pure"):
            start = time.perf_counter()
            _epoch(model, opt, loss_fn, x_train, y_train, BATCH_SIZE)
            seconds["pure"] = time.perf_counter() - start
        say(
            f"\nOne epoch: PURE {seconds['pure']:.2f} s, AUTO {seconds['auto']:.2f} s "
            f"({seconds['pure'] / seconds['auto']:.1f}x faster with AUTO)"
        )
    return {"mode": mode, "stats": stats, "torch_fraction": frac, "seconds": seconds, "test_accuracy": acc}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--log-steps", type=int, default=1, help="training steps whose decisions are printed")
    p.add_argument("--limit", type=int, default=None, help="use only this many training images")
    args = p.parse_args(argv)
    run(args.epochs, args.log_steps, args.limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
