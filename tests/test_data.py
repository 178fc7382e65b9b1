"""puredl.data: shuffling, splits, scalers, one-hot and DataLoader, against hand-checkable references."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import Counter

import pytest

import puredl
from puredl import data

# --------------------------------------------------------------------------- permutation / shuffle


def test_permutation_is_a_reproducible_permutation():
    p = data.permutation(100, seed=7)
    assert sorted(p) == list(range(100))
    assert p == data.permutation(100, seed=7)
    assert p != data.permutation(100, seed=8)
    assert p != list(range(100))
    assert data.permutation(0, seed=1) == [] and data.permutation(1, seed=1) == [0]


def test_permutation_is_uniform():
    # Fisher–Yates gives each of the 6 orders of 3 items probability 1/6; the naive
    # "swap each slot with any slot" shuffle gives 4/27 or 5/27 (4000 or 5000 of 27000 here).
    rng = random.Random(0)
    counts = Counter(tuple(data.permutation(3, generator=rng)) for _ in range(27_000))
    assert set(counts) == set(itertools.permutations(range(3)))
    for order, count in counts.items():
        assert 4200 < count < 4800, (order, count)


def test_permutation_without_seed_follows_manual_seed():
    puredl.manual_seed(123)
    a = data.permutation(20)
    puredl.manual_seed(123)
    assert data.permutation(20) == a


def test_permutation_rejects_bad_n():
    with pytest.raises(ValueError, match="non-negative int"):
        data.permutation(-1)


def test_shuffle_keeps_tensors_and_lists_paired():
    x = puredl.tensor([[float(i), float(-i)] for i in range(10)], dtype=puredl.float64)
    y = list(range(10))
    xs, ys = data.shuffle(x, y, seed=3)
    assert xs.shape == (10, 2) and xs.dtype is puredl.float64
    assert isinstance(ys, list) and sorted(ys) == y and ys != y
    assert xs.tolist() == [[float(i), float(-i)] for i in ys]
    assert data.shuffle(y, seed=3) == ys, "one permutation per seed, whatever is shuffled with it"


def test_shuffle_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"same number of rows, got \[3, 2\]"):
        data.shuffle([1, 2, 3], [1, 2], seed=0)


# --------------------------------------------------------------------------- train_test_split


def test_split_is_disjoint_and_covering():
    idx = list(range(23))
    train, test = data.train_test_split(idx, test_size=0.25, seed=0)
    assert len(test) == math.ceil(0.25 * 23) and len(train) == 23 - len(test)
    assert not set(train) & set(test)
    assert sorted(train + test) == idx
    assert data.train_test_split(idx, test_size=0.25, seed=0) == [train, test]


def test_split_keeps_rows_aligned_across_arrays():
    x = puredl.tensor([[float(i)] * 3 for i in range(30)])
    y = puredl.tensor(list(range(30)))
    x_tr, x_te, y_tr, y_te = data.train_test_split(x, y, test_size=6, seed=1)
    assert x_tr.shape == (24, 3) and x_te.shape == (6, 3) and y_tr.shape == (24,)
    assert y_tr.dtype is puredl.int64
    assert [row[0] for row in x_tr.tolist()] == [float(v) for v in y_tr.tolist()]
    assert [row[0] for row in x_te.tolist()] == [float(v) for v in y_te.tolist()]
    assert sorted(y_tr.tolist() + y_te.tolist()) == list(range(30))


def test_split_without_shuffle_keeps_order():
    assert data.train_test_split(list(range(10)), test_size=0.3, shuffle=False) == [
        list(range(7)),
        [7, 8, 9],
    ]


def test_stratified_split_keeps_class_shares():
    labels = [0] * 50 + [1] * 50 + [2] * 50
    idx = list(range(150))
    tr, te, ytr, yte = data.train_test_split(idx, labels, test_size=0.2, seed=4, stratify=labels)
    assert Counter(yte) == {0: 10, 1: 10, 2: 10}
    assert Counter(ytr) == {0: 40, 1: 40, 2: 40}
    assert sorted(tr + te) == idx and all(labels[i] == y for i, y in zip(te, yte))
    # Uneven classes: shares rounded so that the totals still add up.
    labels = [0] * 7 + [1] * 3
    _, te = data.train_test_split(list(range(10)), test_size=0.5, seed=0, stratify=labels)
    assert len(te) == 5 and Counter(labels[i] for i in te) in ({0: 4, 1: 1}, {0: 3, 1: 2})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"test_size": 0.0}, "in \\(0, 1\\)"),
        ({"test_size": 1.5}, "in \\(0, 1\\)"),
        ({"test_size": 10}, "0 train rows"),
        ({"test_size": "a"}, "fraction or a count"),
        ({"stratify": [0] * 10, "shuffle": False}, "stratify needs shuffle=True"),
        ({"stratify": [0] * 9}, "9 labels for 10 rows"),
    ],
)
def test_split_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.train_test_split(list(range(10)), **kwargs)


# --------------------------------------------------------------------------- scalers

TRAIN = [[1.0, 10.0, 5.0], [2.0, 30.0, 5.0], [4.0, 20.0, 5.0], [9.0, 0.0, 5.0]]
TEST = [[3.0, 15.0, 5.0], [10.0, -10.0, 6.0]]


def _column(rows, j):
    return [r[j] for r in rows]


def test_standard_scaler_matches_population_statistics():
    scaler = data.StandardScaler().fit(TRAIN)
    means = [statistics.fmean(_column(TRAIN, j)) for j in range(3)]
    stds = [statistics.pstdev(_column(TRAIN, j)) for j in range(3)]
    assert scaler.mean_ == pytest.approx(means)
    assert scaler.scale_[:2] == pytest.approx(stds[:2])
    assert scaler.scale_[2] == 1.0, "a constant feature is only centred"
    got = scaler.transform(TEST)
    want = [[(v - means[j]) / (stds[j] or 1.0) for j, v in enumerate(row)] for row in TEST]
    assert got == [pytest.approx(r) for r in want]
    train_scaled = scaler.transform(TRAIN)
    for j in range(2):
        assert statistics.fmean(_column(train_scaled, j)) == pytest.approx(0.0, abs=1e-12)
        assert statistics.pstdev(_column(train_scaled, j)) == pytest.approx(1.0)
    assert scaler.inverse_transform(got) == [pytest.approx(r) for r in TEST]


def test_min_max_scaler_matches_hand_formula():
    scaler = data.MinMaxScaler(feature_range=(-1.0, 1.0)).fit(TRAIN)
    lo = [min(_column(TRAIN, j)) for j in range(3)]
    hi = [max(_column(TRAIN, j)) for j in range(3)]
    assert scaler.data_min_ == lo and scaler.data_max_ == hi
    got = scaler.transform(TEST)
    want = [[-1.0 + 2.0 * (v - lo[j]) / ((hi[j] - lo[j]) or 1.0) for j, v in enumerate(row)] for row in TEST]
    assert got == [pytest.approx(r) for r in want]
    assert got[1][0] > 1.0, "test data outside the training range is not clipped"
    train_scaled = scaler.fit_transform(TRAIN)
    assert [min(_column(train_scaled, j)) for j in range(2)] == [-1.0, -1.0]
    assert [max(_column(train_scaled, j)) for j in range(2)] == [1.0, 1.0]
    assert scaler.inverse_transform(got) == [pytest.approx(r) for r in TEST]


@pytest.mark.parametrize("dtype", [puredl.float32, puredl.float64])
def test_scalers_on_tensors_keep_shape_and_dtype(dtype):
    x_train = puredl.tensor(TRAIN, dtype=dtype)
    x_test = puredl.tensor(TEST, dtype=dtype)
    for scaler in (data.StandardScaler(), data.MinMaxScaler()):
        out = scaler.fit(x_train).transform(x_test)
        assert out.shape == (2, 3) and out.dtype is dtype
        ref = type(scaler)().fit(x_train.tolist()).transform(x_test.tolist())
        tol = 1e-6 if dtype is puredl.float32 else 1e-12
        assert out.tolist() == [pytest.approx(r, rel=tol, abs=tol) for r in ref]
        back = scaler.inverse_transform(out)
        assert back.tolist() == [pytest.approx(r, rel=tol, abs=tol) for r in TEST]


def test_scalers_turn_integer_tensors_into_float_and_accept_1d():
    pixels = puredl.tensor([[0, 16], [8, 4]])
    out = data.MinMaxScaler().fit_transform(pixels)
    assert out.dtype is puredl.float32 and out.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert data.StandardScaler().fit_transform([1.0, 3.0]) == [-1.0, 1.0]
    t = data.StandardScaler().fit_transform(puredl.tensor([1.0, 3.0]))
    assert t.shape == (2,) and t.tolist() == [-1.0, 1.0]


def test_scaler_errors_are_clear():
    with pytest.raises(RuntimeError, match="call fit"):
        data.StandardScaler().transform(TRAIN)
    scaler = data.MinMaxScaler().fit(TRAIN)
    with pytest.raises(ValueError, match="fitted on 3 features, got 2"):
        scaler.transform([[1.0, 2.0]])
    with pytest.raises(ValueError, match="row 1 has 2 values, row 0 has 3"):
        scaler.transform([[1.0, 2.0, 3.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match="low < high"):
        data.MinMaxScaler((1.0, 1.0))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        scaler.fit(puredl.tensor([[[1.0]]]))


# --------------------------------------------------------------------------- one_hot


def test_one_hot_by_hand():
    assert data.one_hot([2, 0, 1]).tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    out = data.one_hot(puredl.tensor([1, 3]), num_classes=5, dtype=puredl.int64)
    assert out.dtype is puredl.int64 and out.tolist() == [[0, 1, 0, 0, 0], [0, 0, 0, 1, 0]]


def test_one_hot_matches_torch():
    torch = pytest.importorskip("torch")
    labels = [[3, 0, 2], [1, 1, 4]]
    ours = data.one_hot(puredl.tensor(labels), num_classes=6, dtype=puredl.int64)
    theirs = torch.nn.functional.one_hot(torch.tensor(labels), num_classes=6)
    assert ours.shape == tuple(theirs.shape) and ours.tolist() == theirs.tolist()
    inferred = data.one_hot(puredl.tensor(labels), dtype=puredl.int64)
    assert inferred.tolist() == torch.nn.functional.one_hot(torch.tensor(labels)).tolist()


@pytest.mark.parametrize(
    "labels, num_classes, error, message",
    [
        ([0, 3], 3, ValueError, "label 3 at position 1 is outside 0..2"),
        ([0, -1], 3, ValueError, "label -1 at position 1"),
        ([0.0, 1.0], None, TypeError, "labels must be ints"),
        ([], None, ValueError, "cannot infer num_classes"),
    ],
)
def test_one_hot_rejects_bad_labels(labels, num_classes, error, message):
    with pytest.raises(error, match=message):
        data.one_hot(labels, num_classes=num_classes)


def test_one_hot_rejects_float_tensor():
    with pytest.raises(TypeError, match="integer Tensor"):
        data.one_hot(puredl.tensor([0.0, 1.0]))


# --------------------------------------------------------------------------- DataLoader


def _xy(n=10):
    x = puredl.tensor([[float(i), float(10 * i)] for i in range(n)])
    y = puredl.tensor(list(range(n)))
    return x, y


def test_dataloader_batches_in_order():
    x, y = _xy(10)
    loader = data.DataLoader((x, y), batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [tuple(b[0].shape) for b in batches] == [(4, 2), (4, 2), (2, 2)]
    assert [tuple(b[1].shape) for b in batches] == [(4,), (4,), (2,)]
    assert batches[0][1].dtype is puredl.int64 and batches[0][0].dtype is puredl.float32
    assert [v for _, yb in batches for v in yb.tolist()] == list(range(10))
    assert batches[2][0].tolist() == [[8.0, 80.0], [9.0, 90.0]]


def test_dataloader_drop_last():
    x, y = _xy(10)
    loader = data.DataLoader((x, y), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [tuple(xb.shape) for xb, _ in loader] == [(4, 2), (4, 2)]
    assert len(data.DataLoader((x, y), batch_size=5, drop_last=True)) == 2
    assert len(data.DataLoader((x, y), batch_size=11, drop_last=True)) == 0


def test_dataloader_shuffle_is_seeded_per_epoch():
    x, y = _xy(50)
    a = data.DataLoader((x, y), batch_size=8, shuffle=True, seed=5)
    b = data.DataLoader((x, y), batch_size=8, shuffle=True, seed=5)

    def epoch(loader):
        return [v for _, yb in loader for v in yb.tolist()]

    first, second = epoch(a), epoch(a)
    assert sorted(first) == list(range(50)) and sorted(second) == list(range(50))
    assert first != list(range(50)) and first != second, "a new order every epoch"
    assert [epoch(b), epoch(b)] == [first, second], "same seed, same sequence of epochs"
    b.set_epoch(0)
    assert epoch(b) == first
    c = data.DataLoader((x, y), batch_size=8, shuffle=True, seed=6)
    assert epoch(c) != first
    # Rows and labels stay paired after shuffling.
    for xb, yb in data.DataLoader((x, y), batch_size=7, shuffle=True, seed=1):
        assert [row[0] for row in xb.tolist()] == [float(v) for v in yb.tolist()]


def test_dataloader_without_seed_follows_manual_seed():
    x, y = _xy(20)
    loader = data.DataLoader((x, y), batch_size=20, shuffle=True)
    puredl.manual_seed(9)
    first = next(iter(loader))[1].tolist()
    puredl.manual_seed(9)
    assert next(iter(loader))[1].tolist() == first


def test_dataloader_accepts_lists_and_sample_sequences():
    rows = [[0.5, 1.5], [2.5, 3.5], [4.5, 5.5]]
    labels = [0, 1, 2]
    xb, yb = next(iter(data.DataLoader((rows, labels), batch_size=2)))
    assert xb.tolist() == rows[:2] and xb.dtype is puredl.float32
    assert yb.tolist() == [0, 1] and yb.dtype is puredl.int64
    pairs = list(zip(rows, labels))
    batches = list(data.DataLoader(pairs, batch_size=2))
    assert [b[1].tolist() for b in batches] == [[0, 1], [2]]
    tensor_pairs = [(puredl.tensor(r), puredl.tensor(float(c))) for r, c in pairs]
    xb, yb = next(iter(data.DataLoader(tensor_pairs, batch_size=3)))
    assert xb.shape == (3, 2) and yb.shape == (3,) and yb.tolist() == [0.0, 1.0, 2.0]
    ds = data.TensorDataset(*_xy(6))
    assert [tuple(b[0].shape) for b in data.DataLoader(ds, batch_size=4)] == [(4, 2), (2, 2)]


def test_dataloader_errors_are_clear():
    x, y = _xy(4)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        data.DataLoader((x, y), batch_size=0)
    with pytest.raises(ValueError, match=r"same number of rows, got \[4, 3\]"):
        data.DataLoader((x, y[:3]))
    ragged = [(puredl.tensor([1.0, 2.0]), 0), (puredl.tensor([1.0]), 1)]
    with pytest.raises(ValueError, match=r"cannot stack field 0: item 1 is \(1,\)"):
        list(data.DataLoader(ragged, batch_size=2))
    with pytest.raises(TypeError, match="must be a tuple such as"):
        list(data.DataLoader([1, 2, 3], batch_size=2))
    with pytest.raises(TypeError, match="tuple of fields"):
        data.DataLoader(42)
