"""History: what ``Trainer.fit`` records per epoch (loss, metrics, validation, learning rate, time)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class History:
    """Per-epoch records of a training run.

    ``epochs`` are 1-based epoch numbers; ``losses`` the mean training loss of each; ``metrics``
    maps a metric name to its per-epoch values (``accuracies`` is ``metrics["accuracy"]``);
    ``val_losses`` / ``val_metrics`` the same on validation data; ``stop_reason`` says why
    training ended early (None when it ran all epochs).
    """

    epochs: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    val_losses: list[float] = field(default_factory=list)
    val_metrics: dict[str, list[float]] = field(default_factory=dict)
    lrs: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    stop_reason: str | None = None

    @property
    def accuracies(self) -> list[float]:
        return self.metrics.get("accuracy", [])

    @property
    def val_accuracies(self) -> list[float]:
        return self.val_metrics.get("accuracy", [])

    def record(self, epoch: int, logs: dict[str, float], lr: float | None, seconds: float) -> None:
        self.epochs.append(epoch)
        self.times.append(seconds)
        if lr is not None:
            self.lrs.append(lr)
        for key, value in logs.items():
            if key == "loss":
                self.losses.append(value)
            elif key == "val_loss":
                self.val_losses.append(value)
            elif key.startswith("val_"):
                self.val_metrics.setdefault(key[4:], []).append(value)
            else:
                self.metrics.setdefault(key, []).append(value)

    def best(self, key: str = "val_loss") -> tuple[int, float]:
        """(epoch, value) of the best ``key`` (lowest loss/error, highest accuracy)."""
        values = self.series(key)
        if not values:
            raise KeyError(f"history has no values for {key!r}")
        finite = [(v, e) for e, v in zip(self.epochs, values) if not math.isnan(v)]
        v, e = (max if "acc" in key else min)(finite)
        return e, v

    def series(self, key: str) -> list[float]:
        """The per-epoch values of ``key`` ("loss", "val_loss", "accuracy", "val_accuracy", ...)."""
        if key == "loss":
            return self.losses
        if key == "val_loss":
            return self.val_losses
        if key.startswith("val_"):
            return self.val_metrics.get(key[4:], [])
        return self.metrics.get(key, [])

    def as_dict(self) -> dict[str, Any]:
        return {
            "epochs": list(self.epochs),
            "losses": list(self.losses),
            "metrics": {k: list(v) for k, v in self.metrics.items()},
            "val_losses": list(self.val_losses),
            "val_metrics": {k: list(v) for k, v in self.val_metrics.items()},
            "lrs": list(self.lrs),
            "stop_reason": self.stop_reason,
        }

    def plot(self, path: str, title: str = "Training history") -> str:
        """Plot loss (and metrics) per epoch to a PNG at ``path`` (needs matplotlib); returns the path."""
        import os
        import tempfile

        from puredl._optional import require

        matplotlib = require("matplotlib", "dev", "History.plot")
        matplotlib.use("Agg")
        plt = require("matplotlib.pyplot", "dev", "History.plot")
        panels = [("loss", self.losses, self.val_losses)]
        for name, values in self.metrics.items():
            panels.append((name, values, self.val_metrics.get(name, [])))
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
        for ax, (name, train, val) in zip(axes[0], panels):
            ax.plot(self.epochs[: len(train)], train, label=f"train {name}")
            if val:
                ax.plot(self.epochs[: len(val)], val, label=f"validation {name}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(title)
        fig.tight_layout()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".png", dir=directory)
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=100)
            os.replace(tmp, path)
        finally:
            plt.close(fig)
            if os.path.exists(tmp):
                os.remove(tmp)
        return path
