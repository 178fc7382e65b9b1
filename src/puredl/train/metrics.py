"""Training metrics: accuracy (binary or multi-class) and regression errors, averaged over an epoch.

A metric accumulates over batches (``update``) and reports one number (``compute``), so an
epoch's value is exact however the data is batched.

>>> import puredl as pd
>>> from puredl.train import metrics
>>> metrics.accuracy(pd.tensor([[0.2, 0.8], [0.9, 0.1]]), pd.tensor([1, 1]))
0.5
>>> metrics.accuracy(pd.tensor([[0.9], [0.2]]), pd.tensor([[1.0], [1.0]]))
0.5
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from puredl.tensor import Tensor


class Metric:
    """Base class: ``update(output, target)`` per batch, ``compute()`` for the epoch, ``reset()``.

    ``name`` is the key in History and logs; ``label`` is how progress lines show it.
    """

    name = "metric"
    label = "Metric"
    percent = False

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0

    def __init__(self) -> None:
        self.reset()

    def update(self, output: Tensor, target: Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def format(self, value: float) -> str:
        return f"{value:.2%}" if self.percent else f"{value:.4f}"


def _rows(t: Tensor) -> list:
    return t.detach().tolist()


def _correct_count(output: Tensor, target: Tensor, threshold: float) -> tuple[int, int]:
    if output.ndim >= 2 and output.shape[-1] > 1:
        # multi-class: argmax over the last dim; target is indices or one-hot/probabilities
        pred = output.detach().argmax(-1).reshape(-1).tolist()
        if target.ndim == output.ndim and target.shape == output.shape:
            truth = target.detach().argmax(-1).reshape(-1).tolist()
        else:
            truth = target.detach().reshape(-1).tolist()
    else:
        # binary: one score per sample, compared with the threshold
        pred = [1 if v >= threshold else 0 for v in output.detach().reshape(-1).tolist()]
        truth = [1 if v >= 0.5 else 0 for v in target.detach().reshape(-1).tolist()]
    if len(pred) != len(truth):
        raise ValueError(
            f"accuracy: {len(pred)} predictions from output shape {tuple(output.shape)} but "
            f"{len(truth)} targets from target shape {tuple(target.shape)}"
        )
    return sum(1 for p, t in zip(pred, truth) if p == int(t)), len(pred)


def accuracy(output: Tensor, target: Tensor, threshold: float = 0.5) -> float:
    """Fraction of correct predictions.

    Multi-class outputs (N, C) are compared by argmax with class indices (N,) or one-hot targets;
    single-score outputs (N, 1) or (N,) count ``output >= threshold`` as class 1 (use
    ``threshold=0.0`` for logits).
    """
    correct, n = _correct_count(output, target, threshold)
    return correct / n if n else float("nan")


class Accuracy(Metric):
    """Running accuracy (see :func:`accuracy`)."""

    name = "accuracy"
    label = "Acc"
    percent = True

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        super().__init__()

    def update(self, output: Tensor, target: Tensor) -> None:
        correct, n = _correct_count(output, target, self.threshold)
        self.total += correct
        self.count += n


class MeanAbsoluteError(Metric):
    """Mean of ``|output - target|`` over every element."""

    name = "mae"
    label = "MAE"

    def update(self, output: Tensor, target: Tensor) -> None:
        diff = (output.detach() - target.detach()).abs()
        self.total += diff.sum().item()
        self.count += diff.numel()


class MeanSquaredError(Metric):
    """Mean of ``(output - target)^2`` over every element."""

    name = "mse"
    label = "MSE"

    def update(self, output: Tensor, target: Tensor) -> None:
        diff = output.detach() - target.detach()
        self.total += (diff * diff).sum().item()
        self.count += diff.numel()


class FunctionMetric(Metric):
    """Wrap ``fn(output, target) -> float``; the epoch value is the batch-size-weighted mean."""

    def __init__(self, fn: Callable[[Tensor, Tensor], float], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "metric")
        self.label = self.name
        super().__init__()

    def update(self, output: Tensor, target: Tensor) -> None:
        n = output.shape[0] if output.ndim else 1
        self.total += float(self.fn(output.detach(), target.detach())) * n
        self.count += n


_BY_NAME = {"accuracy": Accuracy, "acc": Accuracy, "mae": MeanAbsoluteError, "mse": MeanSquaredError}


def get(spec: Any) -> Metric:
    """A fresh Metric from a name ("accuracy", "mae", "mse"), a Metric, or a function."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str):
        cls = _BY_NAME.get(spec.lower())
        if cls is None:
            raise ValueError(f"unknown metric {spec!r}; known: {sorted(_BY_NAME)} (or pass a function)")
        return cls()
    if callable(spec):
        return FunctionMetric(spec)
    raise TypeError(f"a metric must be a name, a Metric or a function, got {type(spec).__name__}")


__all__ = ["Accuracy", "FunctionMetric", "MeanAbsoluteError", "MeanSquaredError", "Metric", "accuracy", "get"]
