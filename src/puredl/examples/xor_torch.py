"""XOR on the torch backend: a 2-4-1 network in PyTorch style (zero_grad, backward, step).

Run: ``puredl example xor_torch [--device cuda:0] [--epochs N]`` (needs ``pip install 'puredl[torch]'``).
The same puredl code as the pure XOR example; TORCH mode runs every op on torch.
"""

from __future__ import annotations

import argparse
import time

import puredl as pd
from puredl import accel, datasets, nn, optim

EPOCHS = 300
LEARNING_RATE = 0.5
MOMENTUM = 0.9
SEED = 12


def run(epochs: int = EPOCHS, device: str = "cpu", seed: int = SEED, verbose: bool = True) -> dict:
    """Train; returns {"accuracy", "loss", "predictions", "seconds", "stats"}."""
    say = print if verbose else (lambda *a, **k: None)
    accel.set_acceleration("torch")
    accel.reset_stats()
    pd.manual_seed(seed)
    x, y = datasets.xor()
    x, y = x.to(device), y.to(device)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid()).to(device)
    loss_fn = nn.MSELoss()
    opt = optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)

    say(f"=== XOR on torch ({device}) ===\n")
    say(str(model) + "\n")
    start = time.perf_counter()
    loss = None
    for epoch in range(1, epochs + 1):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if verbose and (epoch == 1 or epoch % max(1, epochs // 6) == 0 or epoch == epochs):
            say(f"  epoch {epoch:4d}  loss {loss.item():.6f}")
    seconds = time.perf_counter() - start
    with pd.no_grad():
        predictions = model(x).reshape(-1).tolist()
    targets = y.reshape(-1).tolist()
    correct = sum((p >= 0.5) == (t >= 0.5) for p, t in zip(predictions, targets))
    say("\nPredictions:")
    for inputs, p, t in zip(x.tolist(), predictions, targets):
        say(f"  {inputs} -> {p:.4f} (target {t:.0f}) {'ok' if (p >= 0.5) == (t >= 0.5) else 'WRONG'}")
    accuracy = correct / len(targets)
    stats = accel.get_stats()
    say(f"\nAccuracy {accuracy:.0%}; {seconds:.2f} s ({1000 * seconds / epochs:.2f} ms per step)")
    say(f"{stats.torch_count} ops on torch, {stats.pure_count} on pure, {stats.fallback_count} fallbacks")
    return {
        "accuracy": accuracy,
        "loss": loss.item(),
        "predictions": predictions,
        "seconds": seconds,
        "stats": stats,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--device", default="cpu", help="cpu or cuda:N")
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args(argv)
    return 0 if run(args.epochs, args.device, args.seed)["accuracy"] == 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
