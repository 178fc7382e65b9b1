"""Complete workflow: tensors, activations, a 2-4-1 network, training, saving and reloading.

Run: ``puredl example complete_demo``. Every step of a small project in one script: build data,
look at untrained predictions, train with a checkpoint callback, reload the best checkpoint
(a safetensors file) into a fresh model and check it predicts the same.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import puredl as pd
import puredl.io
from puredl import datasets, nn, optim
from puredl.train import ModelCheckpoint, Trainer

SEED = 12
EPOCHS = 100


def _rows(name: str, t: pd.Tensor, say) -> None:
    say(f"{name} ({'x'.join(str(n) for n in t.shape)}):")
    for row in t.tolist():
        say("  [" + ", ".join(f"{v:.4f}" for v in row) + "]")


def run(epochs: int = EPOCHS, seed: int = SEED, verbose: bool = True, workdir: str | None = None) -> dict:
    """Run the demos; returns {"accuracy", "reloaded_equal", "best_epoch"}.

    The checkpoint goes to ``workdir`` (kept) or to a temporary directory (removed at the end).
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="puredl-demo-") as tmp:
            return run(epochs, seed, verbose, tmp)
    say = print if verbose else (lambda *a, **k: None)
    pd.manual_seed(seed)
    say("=== puredl Complete Demo ===\n")

    say("Demo 1: Tensor operations")
    a = pd.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = pd.tensor([[0.5, -1.0], [2.0, 0.0]])
    _rows("a + b", a + b, say)
    _rows("a @ b", a @ b, say)
    say(f"a.sum() = {a.sum().item()}, a.mean(dim=0) = {a.mean(dim=0).tolist()}, a.T = {a.T.tolist()}\n")

    say("Demo 2: Activations on [-2, 0, 2]")
    z = pd.tensor([-2.0, 0.0, 2.0])
    for name in ("relu", "sigmoid", "tanh"):
        say(f"  {name:8s} {[round(v, 4) for v in getattr(z, name)().tolist()]}")
    say(f"  softmax  {[round(v, 4) for v in z.softmax(0).tolist()]}\n")

    say("Demo 3: Neural Network (2 -> 4 -> 1)\n")
    x, y = datasets.xor()
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())
    say(str(model) + "\n")
    say("Testing on XOR inputs:")
    with pd.no_grad():
        _rows("Predictions (before training)", model(x), say)

    path = os.path.join(workdir, "xor_best.safetensors")
    trainer = Trainer(
        model, optim.SGD(model.parameters(), lr=0.5, momentum=0.9), nn.MSELoss(), metrics=["accuracy"]
    )
    checkpoint = ModelCheckpoint(path, monitor="loss")
    say(f"\nTraining for {epochs} epochs, keeping the best weights in {path}")
    history = trainer.fit(
        (x, y), epochs=epochs, callbacks=[checkpoint], verbose=verbose, log_every=max(1, epochs // 5)
    )
    with pd.no_grad():
        after = model(x)
    _rows("\nPredictions (after training)", after, say)

    say("\nDemo 4: Save and reload")
    fresh = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())
    fresh.load_state_dict(puredl.io.load(path))
    meta = puredl.io.load_metadata(path)
    with pd.no_grad():
        reloaded = fresh(x)
    best_epoch = int(meta["epoch"])
    # the checkpoint holds the best epoch's weights: equal to the final ones when the last epoch was best
    same = reloaded.tolist() == after.tolist()
    say(
        f"Checkpoint from epoch {best_epoch} (loss {float(meta['value']):.5f}); {os.path.getsize(path)} bytes"
    )
    say(f"Reloaded model predicts the same as the trained one: {'yes' if same else 'no'}")
    accuracy = trainer.evaluate((x, y))["accuracy"]
    say(f"\nFinal accuracy: {accuracy:.2%} (best training loss {min(history.losses):.5f})")
    return {"accuracy": accuracy, "reloaded_equal": same, "best_epoch": best_epoch}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="puredl example complete_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--workdir", help="where to write the checkpoint (default: a temporary directory)")
    args = parser.parse_args(argv)
    result = run(args.epochs, args.seed, workdir=args.workdir)
    return 0 if result["accuracy"] == 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
