"""``torch.utils.data`` for puredl: datasets, samplers, ``DataLoader`` and ``default_collate``.

Written to behave like torch's, so a training loop written for torch runs unchanged:

>>> import puredl as pd
>>> from puredl.utils.data import DataLoader, TensorDataset
>>> ds = TensorDataset(pd.arange(6).reshape(3, 2), pd.tensor([0, 1, 0]))
>>> [(x.shape, y.tolist()) for x, y in DataLoader(ds, batch_size=2)]
[((2, 2), [0, 1]), ((1, 2), [0])]

Differences from torch: ``num_workers`` is accepted but batches are always made in the
calling process (the pure tier has no worker processes); ``pin_memory`` is accepted and does
nothing (there is no pinned memory on the pure tier); random order comes from puredl's
generator (``puredl.manual_seed``, or ``generator=`` a ``puredl.Generator`` / ``random.Random``),
so it is not torch's order.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from puredl import data as _data

# --------------------------------------------------------------------------- datasets


class Dataset:
    """Map-style dataset: subclasses define ``__getitem__(i)`` and ``__len__``."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """Stream-style dataset: subclasses define ``__iter__``."""

    def __iter__(self) -> Iterator:
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")


class TensorDataset(Dataset):
    """Rows of tensors that share their first dimension: ``ds[i] == (a[i], b[i], ...)``."""

    def __init__(self, *tensors: Any):
        if not tensors:
            raise ValueError("TensorDataset: give at least one tensor")
        n = [t.shape[0] if t.shape else None for t in tensors]
        if None in n or len(set(n)) != 1:
            raise ValueError(f"TensorDataset: size mismatch between tensors (first dimensions {n})")
        self.tensors = tuple(tensors)

    def __getitem__(self, index: int) -> tuple:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Any, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = list(indices)

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return [self.dataset[self.indices[i]] for i in idx]
        return self.dataset[self.indices[idx]]

    def __len__(self) -> int:
        return len(self.indices)


class ConcatDataset(Dataset):
    """Several datasets one after another."""

    def __init__(self, datasets: Iterable[Any]):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        self.cumulative_sizes = []
        total = 0
        for d in self.datasets:
            total += len(d)
            self.cumulative_sizes.append(total)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1] if self.cumulative_sizes else 0

    def __getitem__(self, idx: int):
        n = len(self)
        if idx < 0:
            if -idx > n:
                raise ValueError("absolute value of index should not exceed dataset length")
            idx += n
        if idx >= n:
            raise IndexError(f"index {idx} is out of range for a dataset of {n} samples")
        start = 0
        for d, end in zip(self.datasets, self.cumulative_sizes):
            if idx < end:
                return d[idx - start]
            start = end
        raise IndexError(idx)  # pragma: no cover - unreachable


def random_split(dataset: Any, lengths: Sequence[float | int], generator: Any = None) -> list[Subset]:
    """Split into non-overlapping random subsets of the given lengths (or fractions summing to 1)."""
    n = len(dataset)
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1 and any(isinstance(x, float) for x in lengths):
        counts = []
        for i, frac in enumerate(lengths):
            if not 0 <= frac <= 1:
                raise ValueError(f"random_split: fraction at index {i} is not between 0 and 1")
            counts.append(int(math.floor(n * frac)))
        for i in range(n - sum(counts)):  # hand the remainder out round-robin, as torch does
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError("Sum of input lengths does not equal the length of the input dataset!")
    order = _permutation(n, generator)
    out, start = [], 0
    for k in lengths:
        out.append(Subset(dataset, order[start : start + k]))
        start += k
    return out


# --------------------------------------------------------------------------- samplers


class Sampler:
    """Yields dataset indices."""

    def __iter__(self) -> Iterator[int]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source: Any):
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random permutation each pass (or ``num_samples`` draws with replacement)."""

    def __init__(
        self,
        data_source: Any,
        replacement: bool = False,
        num_samples: int | None = None,
        generator: Any = None,
    ):
        if not isinstance(replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got replacement={replacement}")
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if (
            not isinstance(self.num_samples, int)
            or isinstance(self.num_samples, bool)
            or self.num_samples <= 0
        ):
            raise ValueError(
                f"num_samples should be a positive integer value, but got num_samples={self.num_samples}"
            )

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        rng = _rng(self.generator)
        if self.replacement:
            return iter([rng.randrange(n) for _ in range(self.num_samples)])
        order: list[int] = []
        while len(order) < self.num_samples:
            order += _permutation(n, rng)
        return iter(order[: self.num_samples])

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order each pass."""

    def __init__(self, indices: Sequence[int], generator: Any = None):
        self.indices = list(indices)
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        return iter([self.indices[i] for i in _permutation(len(self.indices), self.generator)])

    def __len__(self) -> int:
        return len(self.indices)


class BatchSampler(Sampler):
    """Groups another sampler's indices into lists of ``batch_size``."""

    def __init__(self, sampler: Iterable[int], batch_size: int, drop_last: bool):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(
                f"batch_size should be a positive integer value, but got batch_size={batch_size}"
            )
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


# --------------------------------------------------------------------------- collation


def default_collate(batch: list) -> Any:
    """Stack a list of samples the way torch's ``default_collate`` does.

    Tensors stack along a new first dimension; Python floats become a float64 tensor, ints an
    int64 tensor, bools a bool tensor; strings stay as given; dicts and namedtuples are
    collated field by field, tuples and lists into a list of collated columns.

    >>> import puredl as pd
    >>> out = default_collate([{"x": pd.tensor([1.0]), "y": 1}, {"x": pd.tensor([2.0]), "y": 0}])
    >>> out["x"].tolist(), out["y"].tolist(), out["y"].dtype
    ([[1.0], [2.0]], [1, 0], puredl.int64)
    """
    import puredl

    first = batch[0]
    if isinstance(first, puredl.Tensor):
        return _data._stack(list(batch), "batch")
    if isinstance(first, bool):
        return puredl.tensor(list(batch), dtype=puredl.bool)  # torch.tensor(batch)
    if isinstance(first, int):
        return puredl.tensor(list(batch), dtype=puredl.int64)
    if isinstance(first, float):
        return puredl.tensor(list(batch), dtype=puredl.float64)
    if isinstance(first, (str, bytes)):
        return batch  # as torch: the list itself, or a tuple when it is a column of a sequence
    if isinstance(first, Mapping):
        out = {k: default_collate([d[k] for d in batch]) for k in first}
        return out if type(first) is dict else type(first)(out)
    if isinstance(first, tuple) and hasattr(first, "_fields"):  # namedtuple
        return type(first)(*(default_collate(column) for column in zip(*batch)))
    if isinstance(first, Sequence):
        size = len(first)
        if any(len(s) != size for s in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        return [default_collate(column) for column in zip(*batch)]  # torch gives a list, also for tuples
    raise TypeError(
        f"default_collate: batch must contain tensors, numbers, dicts or lists; found {type(first).__name__}"
    )


def default_convert(sample: Any) -> Any:
    """What ``batch_size=None`` yields: the sample itself (puredl has no NumPy arrays to convert)."""
    return sample


# --------------------------------------------------------------------------- loader


class DataLoader:
    """Iterate over a dataset in batches, like ``torch.utils.data.DataLoader``.

    ``shuffle=True`` uses a :class:`RandomSampler`; ``sampler=`` or ``batch_sampler=`` take
    over the order; ``collate_fn`` builds a batch from a list of samples (default:
    :func:`default_collate`). ``num_workers`` is accepted but every batch is made in this
    process; ``pin_memory`` is accepted and does nothing on the pure tier.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Any = None,
        batch_sampler: Any = None,
        num_workers: int = 0,
        collate_fn: Callable[[list], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable | None = None,
        generator: Any = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
    ):
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(
                "num_workers option should be non-negative; use num_workers=0 to disable multiprocessing."
            )
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        self.dataset = dataset
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.generator = generator
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle not in (None, False):
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified shuffle option, "
                    f"but got shuffle={shuffle}"
                )
            if sampler is not None or batch_sampler is not None:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified sampler/batch_sampler option"
                )
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive with "
                    "batch_size, shuffle, sampler, and drop_last"
                )
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError(
                "batch_size=None option disables auto-batching and is mutually exclusive with drop_last"
            )
        if batch_size is not None and (
            not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0
        ):
            raise ValueError(
                f"batch_size should be a positive integer value, but got batch_size={batch_size}"
            )
        if sampler is None and not self._iterable:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self._auto_collation = batch_sampler is not None or (self._iterable and batch_size is not None)
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn

    def __iter__(self) -> Iterator[Any]:
        if self._iterable:
            yield from self._iter_stream()
        elif self.batch_sampler is not None:
            for indices in self.batch_sampler:
                yield self.collate_fn([self.dataset[i] for i in indices])
        else:
            for i in self.sampler:
                yield self.collate_fn(self.dataset[i])

    def _iter_stream(self) -> Iterator[Any]:
        if self.batch_size is None:
            for sample in self.dataset:
                yield self.collate_fn(sample)
            return
        batch: list = []
        for sample in self.dataset:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                batch = []
        if batch and not self.drop_last:
            yield self.collate_fn(batch)

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self.batch_sampler if self.batch_sampler is not None else self.sampler)


# --------------------------------------------------------------------------- helpers


def _rng(generator: Any) -> _random.Random:
    """A ``random.Random`` to draw from: the given one, or a fresh one seeded from puredl's."""
    if isinstance(generator, _random.Random):
        return generator
    if generator is not None:
        raise TypeError(f"generator must be a puredl.Generator, got {type(generator).__name__}")
    from puredl.random import default_generator

    return _random.Random(default_generator.getrandbits(63))  # like torch: one draw per pass


def _permutation(n: int, generator: Any = None) -> list[int]:
    return _data.permutation(n, generator=_rng(generator))


__all__ = [
    "BatchSampler",
    "ConcatDataset",
    "DataLoader",
    "Dataset",
    "IterableDataset",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "Subset",
    "SubsetRandomSampler",
    "TensorDataset",
    "default_collate",
    "random_split",
]
