"""Trainer: the training loop (fit, fit_epoch, evaluate, predict) with metrics, callbacks and NaN guards.

>>> import puredl as pd
>>> from puredl import nn, optim, datasets
>>> from puredl.train import Trainer
>>> pd.manual_seed(0)  # doctest: +ELLIPSIS
<random.Random object at ...>
>>> model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1), nn.Sigmoid())
>>> opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
>>> trainer = Trainer(model, opt, nn.MSELoss(), metrics=["accuracy"])
>>> history = trainer.fit(datasets.xor(), epochs=200, verbose=False)
>>> trainer.evaluate(datasets.xor())["accuracy"]
1.0
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from puredl import autograd
from puredl.tensor import Tensor
from puredl.train import metrics as metrics_mod
from puredl.train.callbacks import Callback, ModelCheckpoint, ProgressLogger
from puredl.train.history import History


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite (raised only with ``on_nonfinite="raise"``)."""


class _NonFinite(Exception):
    def __init__(self, epoch: int, step: int, steps: int | None, value: float) -> None:
        self.epoch, self.step, self.steps, self.value = epoch, step, steps, value


class Trainer:
    """Train ``model`` with ``optimizer`` on ``loss_fn(output, target)``.

    ``metrics``: names ("accuracy", "mae", "mse"), Metric objects or ``fn(output, target)``.
    ``scheduler``: an lr scheduler stepped once per epoch. ``grad_clip``: max gradient norm.
    ``on_nonfinite``: "stop" (default: end training with a message naming the epoch and step,
    parameters untouched by the bad batch) or "raise" (NonFiniteLossError).

    Data (``train_data``, ``val_data``, ``evaluate``) may be a tuple ``(x, y)`` of Tensors (split
    into mini-batches when ``batch_size`` is given, else one full batch), a list of ``(x, y)``
    batches, or any iterable of ``(x, y)`` batches such as a ``puredl.data.DataLoader``.
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        metrics: Sequence[Any] = (),
        scheduler: Any = None,
        grad_clip: float | None = None,
        on_nonfinite: str = "stop",
    ) -> None:
        if on_nonfinite not in ("stop", "raise"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'raise', got {on_nonfinite!r}")
        if isinstance(metrics, (str, metrics_mod.Metric)) or callable(metrics):
            metrics = [metrics]
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.metrics = [metrics_mod.get(m) for m in metrics]
        self.scheduler = scheduler
        self.grad_clip = grad_clip
        self.on_nonfinite = on_nonfinite
        self.history = History()
        self.stop_training = False
        self.stop_reason: str | None = None
        self._logger: ProgressLogger | None = None

    # ------------------------------------------------------------------ one step
    def train_step(self, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
        """Forward, loss, backward and one optimizer step on a batch; returns (loss, output)."""
        self.optimizer.zero_grad()
        output = self.model(x)
        loss = self.loss_fn(output, y)
        value = loss.item()
        if not math.isfinite(value):
            return value, output  # the caller stops before any parameter changes
        loss.backward()
        if self.grad_clip is not None:
            from puredl.nn.utils import clip_grad_norm_

            clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return value, output

    # ------------------------------------------------------------------ epochs
    def fit_epoch(
        self,
        train_data: Any,
        batch_size: int | None = None,
        shuffle: bool = True,
        epoch: int = 1,
        callbacks: Sequence[Callback] = (),
    ) -> dict[str, float]:
        """One pass over ``train_data``; returns ``{"loss": mean loss, metric: value, ...}``."""
        self.model.train()
        for m in self.metrics:
            m.reset()
        total, count = 0.0, 0
        batches = _batches(train_data, batch_size, shuffle)
        steps = len(batches) if hasattr(batches, "__len__") else None
        for step, (x, y) in enumerate(batches, start=1):
            value, output = self.train_step(x, y)
            if not math.isfinite(value):
                raise _NonFinite(epoch, step, steps, value)
            n = _batch_len(x)
            total += value * n
            count += n
            for m in self.metrics:
                m.update(output, y)
            for cb in callbacks:
                cb.on_batch_end(self, epoch, step, value)
        if count == 0:
            raise ValueError("fit: the training data produced no batches")
        logs = {"loss": total / count}
        for m in self.metrics:
            logs[m.name] = m.compute()
        return logs

    def fit(
        self,
        train_data: Any,
        epochs: int = 1,
        batch_size: int | None = None,
        val_data: Any = None,
        verbose: bool = True,
        callbacks: Iterable[Callback] = (),
        shuffle: bool = True,
        log_every: int | None = None,
    ) -> History:
        """Train for ``epochs`` epochs and return the History (also kept as ``self.history``).

        ``verbose`` prints ``Epoch 10/100 - Loss: 0.2451 - Acc: 75.00%`` lines about ten times
        per run (every ``log_every`` epochs when given) and shows a tqdm bar on a terminal.
        """
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"fit: epochs must be a positive int, got {epochs!r}")
        callbacks = list(callbacks)
        self._logger = ProgressLogger(log_every) if verbose else None
        if self._logger is not None:
            callbacks.insert(0, self._logger)
        self.stop_training = False
        self.stop_reason = None
        start_epoch = self.history.epochs[-1] if self.history.epochs else 0
        for cb in callbacks:
            cb.on_train_begin(self, epochs)
        try:
            for i in range(1, epochs + 1):
                epoch = start_epoch + i
                for cb in callbacks:
                    cb.on_epoch_begin(self, i)
                t0 = time.perf_counter()
                lr = (
                    self.optimizer.param_groups[0].get("lr")
                    if hasattr(self.optimizer, "param_groups")
                    else None
                )
                try:
                    logs = self.fit_epoch(train_data, batch_size, shuffle, epoch, callbacks)
                except _NonFinite as bad:
                    self._stop_on_nonfinite(bad, callbacks)
                    break
                if val_data is not None:
                    for key, value in self.evaluate(val_data, batch_size).items():
                        logs["val_" + key] = value
                self.history.record(epoch, logs, lr, time.perf_counter() - t0)
                if self.scheduler is not None:
                    self.scheduler.step()
                for cb in callbacks:
                    cb.on_epoch_end(self, i, logs)
                if self.stop_training:
                    break
        finally:
            if self.stop_reason:
                self.history.stop_reason = self.stop_reason
                if verbose and "early stopping" in self.stop_reason:
                    self.log(self.stop_reason[0].upper() + self.stop_reason[1:])
            for cb in callbacks:
                cb.on_train_end(self, self.history)
            self._logger = None
        return self.history

    def _stop_on_nonfinite(self, bad: _NonFinite, callbacks: list) -> None:
        of = f" of {bad.steps}" if bad.steps else ""
        msg = (
            f"Training stopped: the loss became {bad.value} at epoch {bad.epoch}, step {bad.step}{of}; "
            "the parameters were not updated with that batch"
        )
        saved = [cb for cb in callbacks if isinstance(cb, ModelCheckpoint) and cb.last_saved]
        if saved:
            msg += "; last good checkpoint: " + ", ".join(
                f"{cb.last_saved} (epoch {cb.last_saved_epoch})" for cb in saved
            )
        msg += ". Try a lower learning rate, gradient clipping (grad_clip=) or scaled inputs."
        self.stop_reason = msg
        self.stop_training = True
        if self.on_nonfinite == "raise":
            self.history.stop_reason = msg
            raise NonFiniteLossError(msg)
        self.log(msg, err=True)

    def log(self, text: str, err: bool = False) -> None:
        """Print a line (through the progress bar when one is showing)."""
        if self._logger is not None and not err:
            self._logger.write(text)
        else:
            print(text, file=sys.stderr if err else sys.stdout, flush=True)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, data: Any, batch_size: int | None = None) -> dict[str, float]:
        """Mean loss and metrics on ``data`` (eval mode, no gradients): ``{"loss": ..., "accuracy": ...}``."""
        was_training = getattr(self.model, "training", False)
        self.model.eval()
        fresh = [_copy_metric(m) for m in self.metrics]  # training's running values stay untouched
        total, count = 0.0, 0
        try:
            with autograd.no_grad():
                for x, y in _batches(data, batch_size, shuffle=False):
                    output = self.model(x)
                    n = _batch_len(x)
                    total += self.loss_fn(output, y).item() * n
                    count += n
                    for m in fresh:
                        m.update(output, y)
        finally:
            self.model.train(was_training)
        if count == 0:
            raise ValueError("evaluate: the data produced no batches")
        out = {"loss": total / count}
        for m in fresh:
            out[m.name] = m.compute()
        return out

    def predict(self, x: Tensor | Any, batch_size: int | None = None) -> Tensor:
        """Model outputs for ``x`` (a Tensor, or (x, y) data) in eval mode without gradients."""
        from puredl.ops import cat

        was_training = getattr(self.model, "training", False)
        self.model.eval()
        try:
            with autograd.no_grad():
                if isinstance(x, Tensor):
                    if batch_size is None:
                        return self.model(x)
                    return cat([self.model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])
                return cat([self.model(xb) for xb, _ in _batches(x, batch_size, shuffle=False)])
        finally:
            self.model.train(was_training)

    def get_history(self) -> History:
        """The History of every ``fit`` so far (the seed documents' name)."""
        return self.history


def _copy_metric(m: metrics_mod.Metric) -> metrics_mod.Metric:
    import copy

    fresh = copy.copy(m)
    fresh.reset()
    return fresh


def _batch_len(x: Any) -> int:
    if isinstance(x, Tensor):
        return x.shape[0] if x.ndim else 1
    return len(x)


def _batches(data: Any, batch_size: int | None, shuffle: bool) -> Any:
    """Normalise the accepted data forms to something iterable over (x, y) batches."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        x, y = data
        if x.shape[0] != (y.shape[0] if y.ndim else 1):
            raise ValueError(f"data: x has {x.shape[0]} rows but y has {y.shape[0] if y.ndim else 1}")
        if batch_size is None or batch_size >= x.shape[0] and not shuffle:
            return [(x, y)]
        from puredl.data import DataLoader

        return DataLoader((x, y), batch_size=batch_size, shuffle=shuffle)
    if isinstance(data, list):
        if batch_size is not None:
            from puredl.data import DataLoader

            return DataLoader(data, batch_size=batch_size, shuffle=shuffle)
        if shuffle and len(data) > 1:
            from puredl.data import shuffle as shuffled

            return shuffled(list(data))
        return data
    if isinstance(data, Iterable):
        return data
    raise TypeError(
        f"data must be a tuple (x, y) of Tensors, a list of (x, y) batches or an iterable of batches, "
        f"got {type(data).__name__}"
    )


__all__ = ["NonFiniteLossError", "Trainer"]
