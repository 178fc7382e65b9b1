"""Linear regression: a single Linear(1 -> 1) layer learns y = 2x + 1 from 100 noisy samples.

Run: ``puredl example simple_regression`` or ``python -m puredl.examples.simple_regression``.
"""

from __future__ import annotations

import argparse

import puredl as pd
from puredl import datasets, nn, optim
from puredl.train import Trainer

EPOCHS = 100
LEARNING_RATE = 0.1
NOISE = 0.1
SEED = 0


def run(epochs: int = EPOCHS, lr: float = LEARNING_RATE, seed: int = SEED, verbose: bool = True) -> dict:
    """Fit y = w x + b by full-batch SGD on MSE; returns {"weight", "bias", "loss", "history"}."""
    say = print if verbose else (lambda *a, **k: None)
    pd.manual_seed(seed)
    x, y = datasets.linear_regression(n=100, noise=NOISE, seed=seed)

    say("=== Linear Regression - learn y = 2x + 1 ===\n")
    say(f"Data: {x.shape[0]} points, x uniform in [-1, 1], noise std {NOISE}")
    model = nn.Linear(1, 1)
    say(f"Model: {model} ({model.num_parameters()} parameters)")
    w0, b0 = model.weight.item(), model.bias.item()
    say(f"Initial: y = {w0:.4f} x + {b0:.4f}\n")

    trainer = Trainer(model, optim.SGD(model.parameters(), lr=lr), nn.MSELoss(), metrics=["mae"])
    say(f"Training for {epochs} epochs (full-batch SGD, lr={lr})...")
    history = trainer.fit((x, y), epochs=epochs, verbose=verbose)

    w, b = model.weight.item(), model.bias.item()
    say("\n=== Result ===")
    say(f"Learned: y = {w:.4f} x + {b:.4f}")
    say("Target:  y = 2.0000 x + 1.0000")
    say(f"Errors:  |w - 2| = {abs(w - 2):.4f}, |b - 1| = {abs(b - 1):.4f}")
    say(f"Final MSE: {history.losses[-1]:.5f} (noise variance {NOISE**2:.5f})")
    test_x = pd.tensor([[-2.0], [0.0], [3.0]])
    for xi, pred in zip(test_x.reshape(-1).tolist(), trainer.predict(test_x).reshape(-1).tolist()):
        say(f"  f({xi:+.1f}) = {pred:.4f}   (true {2 * xi + 1:.1f})")
    return {"weight": w, "bias": b, "loss": history.losses[-1], "history": history}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="puredl example simple_regression", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--lr", type=float, default=LEARNING_RATE)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    result = run(args.epochs, args.lr, args.seed)
    return 0 if abs(result["weight"] - 2) < 0.1 and abs(result["bias"] - 1) < 0.1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
