"""Iris: 3-class flower classification with a 4-16-3 network, softmax cross-entropy and Adam.

Run: ``puredl example iris_classification`` or ``python -m puredl.examples.iris_classification``.
The 150 flowers are split 80/20 (stratified); features are standardised with statistics fitted
on the training split only.
"""

from __future__ import annotations

import argparse

import puredl as pd
from puredl import data, datasets, nn, optim
from puredl.train import Trainer

EPOCHS = 60
BATCH_SIZE = 16
LEARNING_RATE = 0.01
HIDDEN = 16
SEED = 0


def run(epochs: int = EPOCHS, seed: int = SEED, verbose: bool = True) -> dict:
    """Train and evaluate; returns {"test_accuracy", "train_accuracy", "confusion", "history"}."""
    say = print if verbose else (lambda *a, **k: None)
    pd.manual_seed(seed)
    x, y = datasets.iris()
    x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=0.2, seed=seed, stratify=y)
    scaler = data.StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

    say("=== Iris Classification - 3 classes ===\n")
    say(f"Data: {x_train.shape[0]} training and {x_test.shape[0]} test flowers, 4 features (standardised)")
    say(f"Classes: {', '.join(datasets.IRIS_CLASS_NAMES)}\n")
    model = nn.Sequential(nn.Linear(4, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 3))
    say("Architecture:")
    say(str(model) + "\n")

    trainer = Trainer(
        model, optim.Adam(model.parameters(), lr=LEARNING_RATE), nn.CrossEntropyLoss(), metrics=["accuracy"]
    )
    say(f"Training for {epochs} epochs (Adam lr={LEARNING_RATE}, batch {BATCH_SIZE})...")
    history = trainer.fit(
        (x_train, y_train), epochs=epochs, batch_size=BATCH_SIZE, val_data=(x_test, y_test), verbose=verbose
    )

    train_acc = trainer.evaluate((x_train, y_train))["accuracy"]
    test = trainer.evaluate((x_test, y_test))
    predicted = trainer.predict(x_test).argmax(-1).tolist()
    confusion = [[0] * 3 for _ in range(3)]
    for t, p in zip(y_test.tolist(), predicted):
        confusion[t][p] += 1
    say("\n=== Evaluation ===")
    say(f"Train accuracy: {train_acc:.2%}")
    say(f"Test accuracy:  {test['accuracy']:.2%} (loss {test['loss']:.4f})\n")
    say("Confusion matrix (rows: true class, columns: predicted):")
    names = datasets.IRIS_CLASS_NAMES
    say(" " * 12 + "".join(f"{n[:10]:>12}" for n in names))
    for name, row in zip(names, confusion):
        say(f"{name:>12}" + "".join(f"{v:>12}" for v in row))
    return {
        "test_accuracy": test["accuracy"],
        "train_accuracy": train_acc,
        "confusion": confusion,
        "history": history,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="puredl example iris_classification", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    return 0 if run(args.epochs, args.seed)["test_accuracy"] >= 0.93 else 1


if __name__ == "__main__":
    raise SystemExit(main())
