"""puredl.utils.data against torch.utils.data: same batches, same collation, same errors."""

from __future__ import annotations

import collections
import random

import pytest

import puredl as pd
import puredl.utils.data as pdata

torch = pytest.importorskip("torch")
tdata = torch.utils.data


def _as_lists(x):
    if hasattr(x, "tolist"):
        return (
            "tensor",
            str(x.dtype).replace("torch.", "").replace("puredl.", ""),
            tuple(x.shape),
            x.tolist(),
        )
    if isinstance(x, dict):
        return {k: _as_lists(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [_as_lists(v) for v in x])
    return x


class Squares:  # a plain map-style dataset, written the way tutorials write them
    def __init__(self, lib, n):
        self.lib, self.n = lib, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": self.lib.tensor([float(i), float(i * i)]), "y": i % 3, "w": i / 2, "name": f"s{i}"}


@pytest.mark.parametrize("batch_size, drop_last", [(1, False), (3, False), (3, True), (7, False), (20, True)])
def test_sequential_batches_match_torch(batch_size, drop_last):
    mine = pdata.DataLoader(Squares(pd, 7), batch_size=batch_size, drop_last=drop_last)
    theirs = tdata.DataLoader(Squares(torch, 7), batch_size=batch_size, drop_last=drop_last)
    assert len(mine) == len(theirs)
    assert [_as_lists(b) for b in mine] == [_as_lists(b) for b in theirs]


def test_tensor_dataset_and_tuples_match_torch():
    xs = [[random.Random(i).uniform(-1, 1) for _ in range(3)] for i in range(10)]
    ys = [i % 2 for i in range(10)]
    mine = pdata.DataLoader(pdata.TensorDataset(pd.tensor(xs), pd.tensor(ys)), batch_size=4)
    theirs = tdata.DataLoader(tdata.TensorDataset(torch.tensor(xs), torch.tensor(ys)), batch_size=4)
    got, want = [_as_lists(b) for b in mine], [_as_lists(b) for b in theirs]
    assert [g[0] for g in got] == [w[0] for w in want] == ["list"] * 3  # torch collates tuples into a list
    assert got == want


def test_default_collate_matches_torch_on_nested_samples():
    Point = collections.namedtuple("Point", "a b")
    samples = [
        {"p": Point(i, float(i)), "seq": [i, i + 1], "flag": i % 2 == 0, "t": (i, "x")} for i in range(3)
    ]
    assert _as_lists(pdata.default_collate(samples)) == _as_lists(tdata.default_collate(samples))
    assert type(pdata.default_collate([Point(1, 2.0)])).__name__ == "Point"


def test_batch_sampler_and_sampler_arguments_match_torch():
    data = list(range(10))
    order = [3, 1, 4, 1, 5, 9, 2, 6]
    for kwargs in (
        dict(sampler=order, batch_size=3),
        dict(batch_sampler=[[0, 1], [5], [9, 8, 7]]),
        dict(batch_size=None),
        dict(batch_size=4, collate_fn=lambda b: sum(b)),
    ):
        mine = [_as_lists(b) for b in pdata.DataLoader(data, **kwargs)]
        theirs = [_as_lists(b) for b in tdata.DataLoader(data, **kwargs)]
        assert mine == theirs, kwargs
    sampler = pdata.BatchSampler(pdata.SequentialSampler(range(10)), batch_size=4, drop_last=False)
    assert list(sampler) == list(tdata.BatchSampler(tdata.SequentialSampler(range(10)), 4, False))
    assert len(sampler) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(batch_size=0),
        dict(sampler=[0, 1], shuffle=True),
        dict(batch_sampler=[[0]], batch_size=2),
        dict(batch_size=None, drop_last=True),
        dict(num_workers=-1),
    ],
)
def test_bad_arguments_raise_value_error_like_torch(kwargs):
    with pytest.raises(ValueError):
        tdata.DataLoader(list(range(4)), **kwargs)
    with pytest.raises(ValueError):
        pdata.DataLoader(list(range(4)), **kwargs)


def test_num_workers_and_pin_memory_are_accepted_and_change_nothing():
    ds = pdata.TensorDataset(pd.arange(6.0))
    plain = [b[0].tolist() for b in pdata.DataLoader(ds, batch_size=4)]
    busy = [
        b[0].tolist()
        for b in pdata.DataLoader(
            ds, batch_size=4, num_workers=4, pin_memory=True, persistent_workers=True, prefetch_factor=2
        )
    ]
    assert plain == busy == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0]]


def test_shuffle_is_a_permutation_and_follows_the_seed():
    ds = list(range(50))
    pd.manual_seed(3)
    a = [x for b in pdata.DataLoader(ds, batch_size=8, shuffle=True) for x in b.tolist()]
    pd.manual_seed(3)
    b = [x for b in pdata.DataLoader(ds, batch_size=8, shuffle=True) for x in b.tolist()]
    assert a == b and sorted(a) == ds and a != ds
    loader = pdata.DataLoader(ds, batch_size=50, shuffle=True, generator=random.Random(0))
    assert next(iter(loader)).tolist() != next(iter(loader)).tolist()  # a new order each epoch


def test_random_sampler_replacement_and_num_samples():
    s = pdata.RandomSampler(range(5), replacement=True, num_samples=20, generator=random.Random(1))
    draws = list(s)
    assert len(draws) == len(s) == 20 and set(draws) <= set(range(5))
    s = pdata.RandomSampler(range(5), num_samples=12, generator=random.Random(1))
    draws = list(s)
    assert len(draws) == 12 and sorted(draws[:5]) == list(range(5))
    with pytest.raises(ValueError):
        pdata.RandomSampler(range(5), num_samples=0)


@pytest.mark.parametrize("lengths", [[3, 7], [0.3, 0.7], [0.5, 0.25, 0.25], [0.33, 0.33, 0.34]])
def test_random_split_sizes_match_torch(lengths):
    mine = pdata.random_split(range(10), lengths, generator=random.Random(0))
    theirs = tdata.random_split(range(10), lengths, generator=torch.Generator().manual_seed(0))
    assert [len(s) for s in mine] == [len(s) for s in theirs]
    assert sorted(i for s in mine for i in s) == list(range(10))
    with pytest.raises(ValueError):
        pdata.random_split(range(10), [3, 3])


def test_subset_concat_and_iterable_datasets():
    class Stream(pdata.IterableDataset):
        def __iter__(self):
            return iter(range(5))

    assert [b.tolist() for b in pdata.DataLoader(Stream(), batch_size=2)] == [[0, 1], [2, 3], [4]]
    both = pdata.Subset(list("abcdef"), [5, 0]) + pdata.TensorDataset(pd.tensor([7, 8]))
    assert len(both) == 4 and both[1] == "a" and both[-1][0].item() == 8
    with pytest.raises(ValueError, match="IterableDataset"):
        pdata.DataLoader(Stream(), shuffle=True)


def test_user_subclass_of_dataset_trains_like_the_tutorials():
    class Pairs(pdata.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return pd.tensor([float(i)]), pd.tensor(float(2 * i))

    x, y = next(iter(pdata.DataLoader(Pairs(), batch_size=4)))
    assert x.shape == (4, 1) and y.tolist() == [0.0, 2.0, 4.0, 6.0]
