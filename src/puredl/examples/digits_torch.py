"""Handwritten digits on the torch backend: the 64-256-10 classifier trained in TORCH mode.

Run: ``puredl example digits_torch [--device cuda:0] [--epochs N]`` (needs ``pip install 'puredl[torch]'``).
The seed catalog's MNIST classifier, on the 8x8 digits shipped with puredl; the training loop
is plain PyTorch style, every op runs on torch.
"""

from __future__ import annotations

import argparse
import time

import puredl as pd
from puredl import accel, data, datasets, nn, optim

EPOCHS = 10
BATCH_SIZE = 64
HIDDEN = 256
LEARNING_RATE = 0.001
SEED = 0


def load(device: str, seed: int = SEED):
    x, y = datasets.digits()
    x = x / 16.0
    x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=0.2, seed=seed, stratify=y)
    return [t.to(device) for t in (x_train, x_test, y_train, y_test)]


def accuracy(model: nn.Module, x: pd.Tensor, y: pd.Tensor) -> float:
    with pd.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def run(
    epochs: int = EPOCHS,
    device: str = "cpu",
    seed: int = SEED,
    batch_size: int = BATCH_SIZE,
    verbose: bool = True,
) -> dict:
    """Train and evaluate; returns {"test_accuracy", "losses", "ms_per_step", "stats"}."""
    say = print if verbose else (lambda *a, **k: None)
    accel.set_acceleration("torch")
    accel.reset_stats()
    pd.manual_seed(seed)
    x_train, x_test, y_train, y_test = load(device, seed)
    model = nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10)).to(device)
    opt = optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    say(f"=== Digits 64-{HIDDEN}-10 on torch ({device}) ===\n")
    say(
        f"{x_train.shape[0]} training and {x_test.shape[0]} test images; "
        f"batch {batch_size}, Adam lr={LEARNING_RATE}"
    )
    say(str(model) + "\n")
    n = x_train.shape[0]
    losses, steps = [], 0
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = pd.tensor(data.permutation(n, seed=seed + epoch), device=device)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            total += loss.item() * idx.shape[0]
            steps += 1
        losses.append(total / n)
        if verbose:
            say(
                f"  epoch {epoch:3d}  loss {losses[-1]:.4f}"
                f"  test accuracy {accuracy(model, x_test, y_test):.2%}"
            )
    seconds = time.perf_counter() - start
    test_acc = accuracy(model, x_test, y_test)
    stats = accel.get_stats()
    say(f"\nTest accuracy: {test_acc:.2%}")
    say(f"Training: {seconds:.1f} s, {1000 * seconds / max(steps, 1):.2f} ms per step ({steps} steps)")
    say(f"{stats.torch_count} ops on torch, {stats.pure_count} on pure, {stats.fallback_count} fallbacks")
    return {
        "test_accuracy": test_acc,
        "losses": losses,
        "ms_per_step": 1000 * seconds / max(steps, 1),
        "stats": stats,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--device", default="cpu", help="cpu or cuda:N")
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args(argv)
    return 0 if run(args.epochs, args.device, args.seed)["test_accuracy"] >= 0.9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
