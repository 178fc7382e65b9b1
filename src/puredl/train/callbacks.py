"""Training callbacks: progress output, early stopping and checkpointing.

Each hook receives the Trainer as an argument (callbacks never keep a reference to it, so no
reference cycle forms). ``logs`` maps "loss", metric names and their "val_" forms to floats.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any


class Callback:
    """Override any of the hooks; set ``trainer.stop_training = True`` to end training."""

    def on_train_begin(self, trainer: Any, epochs: int) -> None: ...

    def on_epoch_begin(self, trainer: Any, epoch: int) -> None: ...

    def on_batch_end(self, trainer: Any, epoch: int, step: int, loss: float) -> None: ...

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None: ...

    def on_train_end(self, trainer: Any, history: Any) -> None: ...


def format_logs(epoch: int, epochs: int, logs: dict[str, float], metrics: list) -> str:
    """``Epoch 10/100 - Loss: 0.2451 - Acc: 75.00%`` (plus validation values when present)."""
    parts = [f"Epoch {epoch}/{epochs}", f"Loss: {logs['loss']:.4f}"]
    for m in metrics:
        if m.name in logs:
            parts.append(f"{m.label}: {m.format(logs[m.name])}")
    if "val_loss" in logs:
        parts.append(f"Val Loss: {logs['val_loss']:.4f}")
        for m in metrics:
            if "val_" + m.name in logs:
                parts.append(f"Val {m.label}: {m.format(logs['val_' + m.name])}")
    return " - ".join(parts)


def _tqdm_if_terminal(stream) -> Any:
    if not getattr(stream, "isatty", lambda: False)():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: plain lines are printed instead
        return None
    return tqdm


class ProgressLogger(Callback):
    """Print an epoch line every ``log_every`` epochs (and the last); a tqdm bar on a terminal.

    ``log_every=None`` picks about ten lines per run.
    """

    def __init__(self, log_every: int | None = None, stream: Any = None, bar: bool | None = None) -> None:
        self.log_every = log_every
        self.stream = stream
        self.bar = bar
        self._bar = None

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self._out())
        else:
            print(text, file=self._out(), flush=True)

    def on_train_begin(self, trainer: Any, epochs: int) -> None:
        self.epochs = epochs
        self.every = self.log_every or max(1, epochs // 10)
        tqdm = _tqdm_if_terminal(self._out()) if self.bar is not False else None
        self._bar = tqdm(total=epochs, unit="epoch", file=self._out(), leave=False) if tqdm else None

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
        if epoch % self.every == 0 or epoch == self.epochs:
            self.write(format_logs(epoch, self.epochs, logs, trainer.metrics))

    def on_train_end(self, trainer: Any, history: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _mode_for(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if "acc" in monitor else "min"


def _resolve_monitor(monitor: str | None, logs: dict[str, float]) -> str:
    if monitor is not None:
        if monitor not in logs:
            raise KeyError(f"monitored value {monitor!r} is not in the epoch logs {sorted(logs)}")
        return monitor
    return "val_loss" if "val_loss" in logs else "loss"


class _Monitor:
    def __init__(self, monitor: str | None, mode: str, min_delta: float) -> None:
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None

    def improved(self, logs: dict[str, float]) -> tuple[bool, float]:
        key = self.key = _resolve_monitor(self.monitor, logs)
        value = logs[key]
        if not math.isfinite(value):
            return False, value
        mode = _mode_for(key, self.mode)
        if self.best is None:
            return True, value
        if mode == "min":
            return value < self.best - self.min_delta, value
        return value > self.best + self.min_delta, value


class EarlyStopping(Callback):
    """Stop when the monitored value has not improved for ``patience`` epochs.

    ``monitor`` defaults to "val_loss" when there is validation data, else "loss".
    ``restore_best_weights`` puts the best epoch's parameters back at the end.
    """

    def __init__(
        self,
        monitor: str | None = None,
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = False,
        verbose: bool = True,
    ) -> None:
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        self._watch = _Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.verbose = verbose
        self.wait = 0
        self.stopped_epoch: int | None = None
        self._best_state: dict | None = None

    @property
    def best(self) -> float | None:
        return self._watch.best

    @property
    def best_epoch(self) -> int | None:
        return self._watch.best_epoch

    def on_train_begin(self, trainer: Any, epochs: int) -> None:
        self.wait = 0
        self.stopped_epoch = None
        self._watch.best = self._watch.best_epoch = None
        self._best_state = None

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        better, value = self._watch.improved(logs)
        if better:
            self._watch.best, self._watch.best_epoch = value, epoch
            self.wait = 0
            if self.restore_best_weights:
                self._best_state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.stop_training = True
            trainer.stop_reason = (
                f"early stopping at epoch {epoch}: {self._watch.key} did not improve "
                f"for {self.patience} epochs "
                f"(best {self._watch.best:.4g} at epoch {self._watch.best_epoch})"
            )

    def on_train_end(self, trainer: Any, history: Any) -> None:
        if self.restore_best_weights and self._best_state is not None:
            trainer.model.load_state_dict(self._best_state)
            if self.verbose:
                trainer.log(
                    f"Restored the weights of epoch {self._watch.best_epoch} (best {self._watch.key})"
                )


class ModelCheckpoint(Callback):
    """Save the model's ``state_dict`` to ``path`` (safetensors; written to a temp file and renamed).

    ``save_best_only`` (default) saves when the monitored value improves; otherwise every epoch.
    ``path`` may contain ``{epoch}``. Nothing is saved for an epoch with a non-finite loss or
    non-finite parameters, so the last good checkpoint survives a diverging run.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        monitor: str | None = None,
        mode: str = "auto",
        save_best_only: bool = True,
        verbose: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self._watch = _Monitor(monitor, mode, 0.0)
        self.save_best_only = save_best_only
        self.verbose = verbose
        self.last_saved: str | None = None
        self.last_saved_epoch: int | None = None

    @property
    def best(self) -> float | None:
        return self._watch.best

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        better, value = self._watch.improved(logs)
        if not math.isfinite(logs.get("loss", 0.0)) or not math.isfinite(value):
            return
        if better:
            self._watch.best, self._watch.best_epoch = value, epoch
        if self.save_best_only and not better:
            return
        state = trainer.model.state_dict()
        if not _all_finite(state):
            return
        from puredl.io import save

        path = self.path.format(epoch=epoch)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        meta = {"epoch": str(epoch), "monitor": self._watch.key, "value": repr(value)}
        save(state, path, metadata=meta)
        self.last_saved, self.last_saved_epoch = path, epoch
        if self.verbose:
            trainer.log(f"Saved checkpoint {path} (epoch {epoch}, {self._watch.key} {value:.4f})")


def _all_finite(state: dict) -> bool:
    for t in state.values():
        if t.dtype.is_floating_point:
            for v in t.reshape(-1).tolist():
                if not math.isfinite(v):
                    return False
    return True


__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "ProgressLogger", "format_logs"]
