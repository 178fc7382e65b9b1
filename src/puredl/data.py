"""Data tools: seeded shuffling, splits, scaling, one-hot labels and mini-batch loading.

>>> import puredl
>>> from puredl import data, datasets
>>> x, y = datasets.iris()
>>> x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=0.2, seed=0, stratify=y)
>>> scaler = data.StandardScaler().fit(x_train)
>>> x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
>>> loader = data.DataLoader((x_train, y_train), batch_size=32, shuffle=True, seed=0)
>>> len(loader), [tuple(xb.shape) for xb, _ in loader][-1]
(4, (24, 4))

The loaders (iris, digits, ...) live in :mod:`puredl.datasets`. Everything here works on
Tensors (rows along dimension 0) and on plain Python lists. Results are data, not part of an
autograd graph: gathered rows never carry ``requires_grad``.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterator, Sequence
from typing import Any

# --------------------------------------------------------------------------- shuffling


def permutation(n: int, seed: int | None = None, generator: random.Random | None = None) -> list[int]:
    """A uniformly random permutation of ``range(n)`` by the Fisher–Yates shuffle.

    ``seed`` makes it reproducible; otherwise ``generator`` (a ``random.Random``) or puredl's
    global generator (set by ``puredl.manual_seed``) supplies the randomness.

    >>> permutation(5, seed=0) == permutation(5, seed=0)
    True
    >>> sorted(permutation(5, seed=0))
    [0, 1, 2, 3, 4]
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"permutation: n must be a non-negative int, got {n!r}")
    rng = _rng(seed, generator)
    order = list(range(n))
    # Walk down from the end, swapping each slot with a uniformly chosen slot at or below it.
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def shuffle(*arrays: Any, seed: int | None = None, generator: random.Random | None = None) -> Any:
    """Shuffle one or more equally long Tensors/sequences with one shared permutation.

    Returns one result for one input and a tuple for several; Tensors stay Tensors (rows are
    permuted along dimension 0), other sequences come back as lists.

    >>> shuffle([1, 2, 3, 4], seed=0) == shuffle([1, 2, 3, 4], seed=0)
    True
    >>> xs, ys = shuffle([10, 20, 30], ["a", "b", "c"], seed=1)
    >>> [(x, y) for x, y in zip(xs, ys)] == [(x, "abc"[x // 10 - 1]) for x in xs]
    True
    """
    if not arrays:
        raise ValueError("shuffle: give at least one Tensor or sequence")
    n = _common_length("shuffle", arrays)
    order = permutation(n, seed, generator)
    out = tuple(take(a, order) for a in arrays)
    return out[0] if len(out) == 1 else out


def take(values: Any, indices: Sequence[int]) -> Any:
    """Rows ``indices`` of a Tensor (a new Tensor) or items of a sequence (a list).

    >>> take(["a", "b", "c"], [2, 0])
    ['c', 'a']
    """
    if _is_tensor(values):
        return _take_rows(values, indices)
    return [values[i] for i in indices]


# --------------------------------------------------------------------------- splitting


def train_test_split(
    *arrays: Any,
    test_size: float | int = 0.25,
    shuffle: bool = True,
    seed: int | None = None,
    stratify: Any = None,
) -> list[Any]:
    """Split equally long Tensors/sequences into train and test parts (scikit-learn's order).

    ``test_size`` is a fraction in (0, 1) (rounded up to whole rows) or a row count. With
    ``stratify=labels`` each class keeps its share in both parts. Returns
    ``[a_train, a_test, b_train, b_test, ...]``.

    >>> x_tr, x_te, y_tr, y_te = train_test_split(list(range(10)), list(range(10)), test_size=0.3, seed=0)
    >>> len(x_tr), len(x_te), sorted(x_tr + x_te) == list(range(10)), x_tr == y_tr
    (7, 3, True, True)
    """
    if not arrays:
        raise ValueError("train_test_split: give at least one Tensor or sequence")
    n = _common_length("train_test_split", arrays)
    n_test = _test_count(test_size, n)
    if stratify is not None:
        if not shuffle:
            raise ValueError("train_test_split: stratify needs shuffle=True")
        train_idx, test_idx = _stratified_indices(_labels_list("train_test_split", stratify, n), n_test, seed)
    elif shuffle:
        order = permutation(n, seed)
        train_idx, test_idx = order[: n - n_test], order[n - n_test :]
    else:
        train_idx, test_idx = list(range(n - n_test)), list(range(n - n_test, n))
    out = []
    for a in arrays:
        out += [take(a, train_idx), take(a, test_idx)]
    return out


def _test_count(test_size: float | int, n: int) -> int:
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
        raise ValueError(f"train_test_split: test_size must be a fraction or a count, got {test_size!r}")
    if isinstance(test_size, float):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"train_test_split: a fractional test_size must be in (0, 1), got {test_size}")
        n_test = math.ceil(test_size * n)
    else:
        n_test = test_size
    if not 0 < n_test < n:
        raise ValueError(
            f"train_test_split: test_size={test_size!r} leaves {n_test} test and {n - n_test} train rows "
            f"of {n}; both parts need at least one"
        )
    return n_test


def _stratified_indices(labels: list, n_test: int, seed: int | None) -> tuple[list[int], list[int]]:
    rng = _rng(seed, None)
    by_class: dict[Any, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    n = len(labels)
    # Each class gets its proportional share of test rows; leftover rows go to the largest remainders.
    shares = {c: n_test * len(idx) / n for c, idx in by_class.items()}
    quota = {c: math.floor(s) for c, s in shares.items()}
    leftover = n_test - sum(quota.values())
    for c in sorted(shares, key=lambda c: quota[c] - shares[c])[:leftover]:
        quota[c] += 1
    train_idx, test_idx = [], []
    for c, idx in by_class.items():
        order = [idx[k] for k in permutation(len(idx), generator=rng)]
        test_idx += order[: quota[c]]
        train_idx += order[quota[c] :]
    # Mix the classes so that neither part is grouped by label.
    train_idx = [train_idx[k] for k in permutation(len(train_idx), generator=rng)]
    test_idx = [test_idx[k] for k in permutation(len(test_idx), generator=rng)]
    return train_idx, test_idx


# --------------------------------------------------------------------------- scaling


class _Scaler:
    """fit on training data, then transform train and test with the same statistics."""

    _n_features: int | None = None

    def fit(self, x: Any) -> _Scaler:
        columns, _ = _columns(type(self).__name__ + ".fit", x)
        if not columns or not columns[0]:
            raise ValueError(f"{type(self).__name__}.fit: need at least one row")
        self._n_features = len(columns)
        self._fit_columns(columns)
        return self

    def fit_transform(self, x: Any) -> Any:
        return self.fit(x).transform(x)

    def transform(self, x: Any) -> Any:
        return self._apply(x, self._forward)

    def inverse_transform(self, x: Any) -> Any:
        return self._apply(x, self._backward)

    def _apply(self, x: Any, fn: Any) -> Any:
        name = type(self).__name__
        if self._n_features is None:
            raise RuntimeError(f"{name}: call fit() on the training data before transforming")
        columns, rebuild = _columns(name, x)
        if len(columns) != self._n_features:
            raise ValueError(f"{name}: fitted on {self._n_features} features, got {len(columns)}")
        return rebuild([fn(j, col) for j, col in enumerate(columns)])

    def _fit_columns(self, columns: list) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _forward(self, j: int, col: Any) -> list[float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward(self, j: int, col: Any) -> list[float]:  # pragma: no cover - abstract
        raise NotImplementedError


class MinMaxScaler(_Scaler):
    """Scale each feature linearly so that the training data spans ``feature_range``.

    A constant feature maps to the low end of the range. Test data may fall outside it.

    >>> s = MinMaxScaler().fit([[0.0, 10.0], [2.0, 30.0]])
    >>> s.transform([[1.0, 20.0], [4.0, 10.0]])
    [[0.5, 0.5], [2.0, 0.0]]
    """

    def __init__(self, feature_range: tuple[float, float] = (0.0, 1.0)):
        lo, hi = feature_range
        if not lo < hi:
            raise ValueError(
                f"MinMaxScaler: feature_range must be (low, high) with low < high, got {feature_range}"
            )
        self.feature_range = (float(lo), float(hi))

    def _fit_columns(self, columns: list) -> None:
        self.data_min_ = [min(c) for c in columns]
        self.data_max_ = [max(c) for c in columns]
        lo, hi = self.feature_range
        # A zero range would divide by zero; like scikit-learn, treat it as a range of 1.
        self.scale_ = [(hi - lo) / ((b - a) or 1.0) for a, b in zip(self.data_min_, self.data_max_)]
        self.min_ = [lo - a * s for a, s in zip(self.data_min_, self.scale_)]

    def _forward(self, j: int, col: Any) -> list[float]:
        a, s, lo = self.data_min_[j], self.scale_[j], self.feature_range[0]
        return [(v - a) * s + lo for v in col]

    def _backward(self, j: int, col: Any) -> list[float]:
        a, s, lo = self.data_min_[j], self.scale_[j], self.feature_range[0]
        return [(v - lo) / s + a for v in col]


class StandardScaler(_Scaler):
    """Centre each feature on the training mean and divide by the training population std.

    The population std (divide by n) matches scikit-learn; a constant feature is only centred.

    >>> s = StandardScaler().fit([[1.0], [3.0]])
    >>> s.mean_, s.scale_, s.transform([[1.0], [3.0], [5.0]])
    ([2.0], [1.0], [[-1.0], [1.0], [3.0]])
    """

    def __init__(self, with_mean: bool = True, with_std: bool = True):
        self.with_mean = with_mean
        self.with_std = with_std

    def _fit_columns(self, columns: list) -> None:
        n = len(columns[0])
        self.mean_ = [math.fsum(c) / n for c in columns]
        self.var_ = [math.fsum((v - m) ** 2 for v in c) / n for c, m in zip(columns, self.mean_)]
        self.scale_ = [math.sqrt(v) or 1.0 for v in self.var_]

    def _shift_scale(self, j: int) -> tuple[float, float]:
        return (self.mean_[j] if self.with_mean else 0.0), (self.scale_[j] if self.with_std else 1.0)

    def _forward(self, j: int, col: Any) -> list[float]:
        m, s = self._shift_scale(j)
        return [(v - m) / s for v in col]

    def _backward(self, j: int, col: Any) -> list[float]:
        m, s = self._shift_scale(j)
        return [v * s + m for v in col]


def _columns(where: str, x: Any) -> tuple[list, Any]:
    """Split a 1-D/2-D Tensor or a list (of rows) into per-feature columns, plus a rebuilder."""
    if _is_tensor(x):
        shape = tuple(x.shape)
        if len(shape) not in (1, 2):
            raise ValueError(f"{where}: expected a 1-D or 2-D Tensor (rows x features), got shape {shape}")
        n_cols = shape[1] if len(shape) == 2 else 1
        flat = x.to_array()
        dtype = x.dtype if x.dtype.is_floating_point else _default_float()

        def rebuild_tensor(cols: list) -> Any:
            out = array(dtype.typecode, bytes(array(dtype.typecode).itemsize * len(flat)))
            for j, col in enumerate(cols):
                out[j::n_cols] = array(dtype.typecode, col)
            return _tensor_class().from_array(out, shape, dtype=dtype)

        return [flat[j::n_cols] for j in range(n_cols)], rebuild_tensor
    if not isinstance(x, Sequence) or isinstance(x, (str, bytes)):
        raise TypeError(f"{where}: expected a Tensor or a list of rows, got {type(x).__name__}")
    if x and isinstance(x[0], Sequence):
        n_cols = len(x[0])
        for i, row in enumerate(x):
            if len(row) != n_cols:
                raise ValueError(f"{where}: row {i} has {len(row)} values, row 0 has {n_cols}")
        return [[float(row[j]) for row in x] for j in range(n_cols)], lambda cols: [
            list(r) for r in zip(*cols)
        ]
    return [[float(v) for v in x]], lambda cols: cols[0]


# --------------------------------------------------------------------------- labels


def one_hot(labels: Any, num_classes: int | None = None, dtype: Any = None) -> Any:
    """Class indices -> one-hot rows: shape ``labels.shape + (num_classes,)``.

    ``dtype`` defaults to the default float dtype (float32) so that the result can serve as a
    regression target; pass ``puredl.int64`` for PyTorch's integer one-hot.

    >>> one_hot([2, 0], num_classes=3).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    from puredl import dtypes

    if _is_tensor(labels):
        shape = tuple(labels.shape)
        if labels.dtype.is_floating_point:
            raise TypeError(f"one_hot: labels must be an integer Tensor, got {labels.dtype.name}")
        flat = list(labels.to_array())
    else:
        flat = _labels_list("one_hot", labels, None)
        shape = (len(flat),)
        for i, v in enumerate(flat):
            if isinstance(v, float) or not isinstance(v, int):
                raise TypeError(f"one_hot: label {i} is {v!r}; labels must be ints")
    if num_classes is None:
        if not flat:
            raise ValueError("one_hot: cannot infer num_classes from no labels; pass num_classes")
        num_classes = max(flat) + 1
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"one_hot: num_classes must be a positive int, got {num_classes!r}")
    for i, v in enumerate(flat):
        if not 0 <= v < num_classes:
            raise ValueError(f"one_hot: label {v} at position {i} is outside 0..{num_classes - 1}")
    dt = dtypes.get_default_dtype() if dtype is None else dtypes.as_dtype(dtype)
    out = array(dt.typecode, bytes(array(dt.typecode).itemsize * len(flat) * num_classes))
    for i, v in enumerate(flat):
        out[i * num_classes + v] = 1
    return _tensor_class().from_array(out, shape + (num_classes,), dtype=dt)


# --------------------------------------------------------------------------- batching


class TensorDataset:
    """Rows of equally long Tensors/sequences, indexed together: ``ds[i] == (a[i], b[i], ...)``.

    >>> ds = TensorDataset([1, 2, 3], [4, 5, 6])
    >>> len(ds), ds[1]
    (3, (2, 5))
    """

    def __init__(self, *fields: Any):
        if not fields:
            raise ValueError("TensorDataset: give at least one Tensor or sequence")
        self._n = _common_length("TensorDataset", fields)
        self.fields = fields

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> tuple:
        return tuple(f[i] for f in self.fields)


class DataLoader:
    """Iterate over a dataset in mini-batches of stacked rows.

    ``dataset`` is either a tuple of equally long fields, e.g. ``(x, y)`` with Tensors or lists
    (a tuple always means fields), or any other sequence of samples, e.g. a list of ``(x, y)``
    pairs or a :class:`TensorDataset`. Each batch is a tuple with one Tensor per field: rows
    stacked along a new first dimension. ``shuffle=True`` draws a new order every epoch; with a
    ``seed``, epoch ``e`` always gets the same order (``set_epoch`` picks the epoch), without
    one the order comes from puredl's global generator (``puredl.manual_seed``).

    >>> loader = DataLoader(([[0.0], [1.0], [2.0]], [0, 1, 0]), batch_size=2)
    >>> [(xb.shape, yb.tolist()) for xb, yb in loader]
    [((2, 1), [0, 1]), ((1, 1), [0])]
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
    ):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if isinstance(dataset, tuple):
            if not dataset:
                raise ValueError("DataLoader: the dataset tuple has no fields")
            self._fields: tuple | None = dataset
            self._n = _common_length("DataLoader", dataset)
        elif isinstance(dataset, Sequence) or (
            hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")
        ):
            self._fields = None
            self._n = len(dataset)
        else:
            raise TypeError(
                "DataLoader: expected a tuple of fields (x, y) or a sequence of samples, "
                f"got {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        """Number of batches per epoch."""
        return self._n // self.batch_size if self.drop_last else math.ceil(self._n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the order of ``epoch`` (seeded loaders only differ by epoch)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple]:
        order = self._order()
        self.epoch += 1
        stop = len(self) * self.batch_size
        if self._fields is not None:
            # Copy each Tensor's storage once per epoch, then slice rows out of the flat copy.
            sources = [_RowSource(f) for f in self._fields]
            for start in range(0, stop, self.batch_size):
                idx = order[start : min(start + self.batch_size, self._n)]
                yield tuple(s.rows(idx) for s in sources)
        else:
            for start in range(0, stop, self.batch_size):
                idx = order[start : min(start + self.batch_size, self._n)]
                samples = [self.dataset[i] for i in idx]
                yield _collate(samples, idx)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self._n))
        if self.seed is None:
            return permutation(self._n)
        # A string seed is hashed deterministically (independent of PYTHONHASHSEED).
        return permutation(self._n, generator=random.Random(f"puredl.DataLoader:{self.seed}:{self.epoch}"))

    def __repr__(self) -> str:
        return (
            f"DataLoader({self._n} samples, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, {len(self)} batches)"
        )


class _RowSource:
    """One field of a tuple dataset, ready to hand out stacked rows."""

    def __init__(self, field: Any):
        self.field = field
        if _is_tensor(field):
            self.flat = field.to_array()
            self.shape = tuple(field.shape)
            self.dtype = field.dtype

    def rows(self, idx: list[int]) -> Any:
        if _is_tensor(self.field):
            return _gather(self.flat, self.shape, self.dtype, idx)
        return _stack([self.field[i] for i in idx], "field")


def _collate(samples: list, idx: list[int]) -> tuple:
    width = _sample_width(samples[0], idx[0])
    for s, i in zip(samples, idx):
        if _sample_width(s, i) != width:
            raise ValueError(
                f"DataLoader: sample {i} has {_sample_width(s, i)} fields, sample {idx[0]} has {width}"
            )
    return tuple(_stack([s[k] for s in samples], f"field {k}") for k in range(width))


def _sample_width(sample: Any, i: int) -> int:
    if _is_tensor(sample) or not isinstance(sample, Sequence) or isinstance(sample, (str, bytes)):
        raise TypeError(f"DataLoader: sample {i} must be a tuple such as (x, y), got {type(sample).__name__}")
    return len(sample)


def _stack(items: list, what: str) -> Any:
    """Stack Tensors (or nested lists / numbers) along a new first dimension."""
    if _is_tensor(items[0]):
        first = items[0]
        shape, dtype = tuple(first.shape), first.dtype
        out = array(dtype.typecode)
        for k, t in enumerate(items):
            if not _is_tensor(t) or tuple(t.shape) != shape or t.dtype is not dtype:
                got = f"{tuple(t.shape)} {t.dtype.name}" if _is_tensor(t) else type(t).__name__
                raise ValueError(
                    f"DataLoader: cannot stack {what}: item {k} is {got}, item 0 is {shape} {dtype.name}"
                )
            out += t.to_array()
        return _tensor_class().from_array(out, (len(items),) + shape, dtype=dtype)
    import puredl

    return puredl.tensor(items)


# --------------------------------------------------------------------------- helpers


def _is_tensor(x: Any) -> bool:
    return isinstance(x, _tensor_class())


def _tensor_class() -> type:
    from puredl.tensor import Tensor

    return Tensor


def _default_float() -> Any:
    from puredl import dtypes

    return dtypes.get_default_dtype()


def _rng(seed: int | None, generator: random.Random | None) -> random.Random:
    if seed is not None:
        return random.Random(seed)
    if generator is not None:
        return generator
    from puredl.random import default_generator

    return default_generator


def _length(where: str, a: Any) -> int:
    if _is_tensor(a):
        if not a.shape:
            raise ValueError(f"{where}: a 0-d Tensor has no rows")
        return a.shape[0]
    try:
        return len(a)
    except TypeError:
        raise TypeError(f"{where}: expected Tensors or sequences, got {type(a).__name__}") from None


def _common_length(where: str, arrays: Sequence) -> int:
    lengths = [_length(where, a) for a in arrays]
    if len(set(lengths)) > 1:
        raise ValueError(f"{where}: inputs must have the same number of rows, got {lengths}")
    return lengths[0]


def _labels_list(where: str, labels: Any, n: int | None) -> list:
    if _is_tensor(labels):
        if len(labels.shape) != 1:
            raise ValueError(f"{where}: labels must be 1-D, got shape {tuple(labels.shape)}")
        values = list(labels.to_array())
    else:
        values = list(labels)
    if n is not None and len(values) != n:
        raise ValueError(f"{where}: {len(values)} labels for {n} rows")
    return values


def _take_rows(t: Any, indices: Sequence[int]) -> Any:
    return _gather(t.to_array(), tuple(t.shape), t.dtype, indices)


def _gather(flat: array, shape: tuple[int, ...], dtype: Any, indices: Sequence[int]) -> Any:
    if not shape:
        raise ValueError("cannot take rows of a 0-d Tensor")
    n, row = shape[0], math.prod(shape[1:])
    for i in indices:
        if not -n <= i < n:
            raise IndexError(f"row {i} is out of range for {n} rows")
    if row == 1:
        out = array(flat.typecode, [flat[i] for i in indices])
    else:
        out = array(flat.typecode)
        for i in indices:
            i %= n
            out += flat[i * row : (i + 1) * row]
    return _tensor_class().from_array(out, (len(indices),) + shape[1:], dtype=dtype)


__all__ = [
    "DataLoader",
    "MinMaxScaler",
    "StandardScaler",
    "TensorDataset",
    "one_hot",
    "permutation",
    "shuffle",
    "take",
    "train_test_split",
]
