"""Training pipeline: optimizers (SGD, momentum, Adam) compared on two moons, with early stopping.

Run: ``puredl example training_demo``. Trains the same 2-16-16-1 network from the same start
with three optimizers, prints their loss curves side by side, then shows validation, early
stopping and a learning-rate schedule.
"""

from __future__ import annotations

import argparse

import puredl as pd
from puredl import data, datasets, nn, optim
from puredl.train import EarlyStopping, Trainer, metrics

EPOCHS = 60
SEED = 0


def make_model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))


def run(epochs: int = EPOCHS, seed: int = SEED, verbose: bool = True) -> dict:
    """Compare optimizers; returns {optimizer name: final validation accuracy, ...}."""
    say = print if verbose else (lambda *a, **k: None)
    x, y = datasets.two_moons(n=200, noise=0.1, seed=seed)
    y = y.float().reshape(-1, 1)
    x_train, x_val, y_train, y_val = data.train_test_split(x, y, test_size=0.25, seed=seed)
    say("=== Training Demo: optimizers on two moons ===\n")
    say(f"Data: {x_train.shape[0]} training / {x_val.shape[0]} validation points, 2 features, 2 classes")
    pd.manual_seed(seed)
    start = make_model().state_dict()
    say(f"Model: 2-16-16-1 ReLU MLP, {make_model().num_parameters()} parameters, BCEWithLogitsLoss\n")

    recipes = {
        "SGD": lambda p: optim.SGD(p, lr=0.1),
        "SGD+momentum": lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
        "Adam": lambda p: optim.Adam(p, lr=0.01),
    }
    results, curves = {}, {}
    accuracy = [metrics.Accuracy(threshold=0.0)]  # logits: class 1 when > 0
    for name, make_opt in recipes.items():
        model = make_model()
        model.load_state_dict(start)  # every optimizer starts from the same weights
        trainer = Trainer(model, make_opt(model.parameters()), nn.BCEWithLogitsLoss(), metrics=accuracy)
        history = trainer.fit(
            (x_train, y_train), epochs=epochs, batch_size=32, val_data=(x_val, y_val), verbose=False
        )
        curves[name] = history.losses
        results[name] = history.val_accuracies[-1]
    say("Training loss by epoch:")
    say(f"  {'epoch':>5}" + "".join(f"{n:>14}" for n in recipes))
    for e in sorted({1, 5, 10, 20, 40, epochs} & set(range(1, epochs + 1))):
        say(f"  {e:>5}" + "".join(f"{curves[n][e - 1]:>14.4f}" for n in recipes))
    say("Validation accuracy:  " + "   ".join(f"{n}: {a:.2%}" for n, a in results.items()))

    say("\nAdam with a cosine schedule and early stopping on validation loss:")
    model = make_model()
    model.load_state_dict(start)
    opt = optim.Adam(model.parameters(), lr=0.02)
    trainer = Trainer(
        model,
        opt,
        nn.BCEWithLogitsLoss(),
        metrics=accuracy,
        scheduler=optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs),
    )
    stopper = EarlyStopping(patience=8, restore_best_weights=True, verbose=verbose)
    history = trainer.fit(
        (x_train, y_train),
        epochs=epochs,
        batch_size=32,
        val_data=(x_val, y_val),
        callbacks=[stopper],
        verbose=verbose,
        log_every=10,
    )
    final = trainer.evaluate((x_val, y_val))
    say(f"Ran {len(history.epochs)} epochs; best val loss {stopper.best:.4f} at epoch {stopper.best_epoch}")
    say(f"Learning rate went {history.lrs[0]:.4f} -> {history.lrs[-1]:.4f}")
    say(f"Validation accuracy of the restored best model: {final['accuracy']:.2%}")
    results["early_stopping"] = final["accuracy"]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="puredl example training_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    run(args.epochs, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
