"""Bundled datasets: shapes, dtypes, label ranges, class counts and published statistics."""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

import puredl
from puredl import datasets


def _columns(x):
    rows = x.tolist()
    return [[r[j] for r in rows] for j in range(len(rows[0]))]


def test_xor():
    x, y = datasets.xor()
    assert x.shape == (4, 2) and y.shape == (4, 1)
    assert x.dtype is puredl.float32 and y.dtype is puredl.float32
    for (a, b), (t,) in zip(x.tolist(), y.tolist()):
        assert t == float(int(a) != int(b))
    assert datasets.xor(dtype=puredl.float64)[0].dtype is puredl.float64


def test_linear_regression_without_noise_is_exact():
    x, y = datasets.linear_regression(n=50, noise=0.0, seed=1)
    assert x.shape == (50, 1) and y.shape == (50, 1)
    for (a,), (b,) in zip(x.tolist(), y.tolist()):
        assert -1.0 <= a <= 1.0
        assert b == pytest.approx(2 * a + 1, abs=1e-6)


def test_linear_regression_noise_has_the_requested_size():
    x, y = datasets.linear_regression(n=2000, noise=0.1, seed=0, dtype=puredl.float64)
    xs = [r[0] for r in x.tolist()]
    ys = [r[0] for r in y.tolist()]
    # Least squares by hand recovers y = 2x + 1; the residuals have the noise's spread.
    slope, intercept = statistics.linear_regression(xs, ys)
    assert abs(slope - 2.0) < 0.03 and abs(intercept - 1.0) < 0.02
    residuals = [b - (2 * a + 1) for a, b in zip(xs, ys)]
    assert statistics.pstdev(residuals) == pytest.approx(0.1, rel=0.08)


def test_generated_sets_are_reproducible():
    assert datasets.linear_regression(seed=3)[1].tolist() == datasets.linear_regression(seed=3)[1].tolist()
    assert datasets.linear_regression(seed=3)[1].tolist() != datasets.linear_regression(seed=4)[1].tolist()
    assert datasets.two_moons(seed=3)[0].tolist() == datasets.two_moons(seed=3)[0].tolist()
    assert datasets.two_moons(seed=3)[0].tolist() != datasets.two_moons(seed=4)[0].tolist()
    puredl.manual_seed(11)
    a = datasets.two_moons(seed=None)[0].tolist()
    puredl.manual_seed(11)
    assert datasets.two_moons(seed=None)[0].tolist() == a


def test_two_moons_geometry():
    x, y = datasets.two_moons(n=101, noise=0.0, seed=0, dtype=puredl.float64)
    assert x.shape == (101, 2) and y.shape == (101,) and y.dtype is puredl.int64
    assert Counter(y.tolist()) == {0: 50, 1: 51}
    for (a, b), label in zip(x.tolist(), y.tolist()):
        if label == 0:  # upper moon: unit circle, upper half
            assert math.hypot(a, b) == pytest.approx(1.0) and b >= -1e-12
        else:  # lower moon: unit circle around (1, 0.5), lower half
            assert math.hypot(a - 1.0, b - 0.5) == pytest.approx(1.0) and b <= 0.5 + 1e-12
    assert y.tolist() != sorted(y.tolist()), "rows are shuffled"
    noisy, labels = datasets.two_moons(n=200, noise=0.1, seed=0)
    assert Counter(labels.tolist()) == {0: 100, 1: 100}
    assert max(abs(v) for row in noisy.tolist() for v in row) < 3.0


@pytest.mark.parametrize(
    "call", [lambda: datasets.two_moons(n=0), lambda: datasets.linear_regression(noise=-1)]
)
def test_generated_sets_reject_bad_arguments(call):
    with pytest.raises(ValueError, match="must be"):
        call()


def test_iris_matches_its_documentation():
    x, y = datasets.iris()
    assert x.shape == (150, 4) and x.dtype is puredl.float32
    assert y.shape == (150,) and y.dtype is puredl.int64
    assert Counter(y.tolist()) == {0: 50, 1: 50, 2: 50}
    assert len(datasets.IRIS_FEATURE_NAMES) == 4 and datasets.IRIS_CLASS_NAMES[2] == "virginica"
    # Summary statistics as published with the dataset (min, max, mean, sample SD), 2 decimals.
    published = [
        (4.3, 7.9, 5.84, 0.83),
        (2.0, 4.4, 3.05, 0.43),
        (1.0, 6.9, 3.76, 1.76),
        (0.1, 2.5, 1.20, 0.76),
    ]
    for col, (lo, hi, mean, sd) in zip(_columns(x), published):
        assert min(col) == pytest.approx(lo) and max(col) == pytest.approx(hi)
        assert abs(statistics.fmean(col) - mean) < 0.01
        assert abs(statistics.stdev(col) - sd) < 0.01
    assert x[0].tolist() == pytest.approx([5.1, 3.5, 1.4, 0.2]) and int(y[0].item()) == 0


def test_digits_shape_range_and_classes():
    x, y = datasets.digits()
    assert x.shape == (1797, 64) and x.dtype is puredl.float32
    assert y.shape == (1797,) and y.dtype is puredl.int64
    values = x.to_array()
    assert min(values) == 0.0 and max(values) == 16.0
    assert all(v == int(v) for v in values)
    # Class sizes of the UCI optdigits test set (scikit-learn's load_digits).
    counts = Counter(y.tolist())
    assert [counts[d] for d in range(10)] == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # The first image is a 0; its top row as printed in scikit-learn's documentation.
    assert x[0].tolist()[:8] == [0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0] and int(y[0].item()) == 0
    assert datasets.digits(dtype=puredl.float64)[0].dtype is puredl.float64


def test_shipped_files_match_the_recorded_checksums():
    readme = (Path(__file__).parents[1] / "src" / "puredl" / "datasets" / "README.md").read_text(
        encoding="utf-8"
    )
    for name in ("iris.csv", "digits.csv.gz"):
        digest = hashlib.sha256(resources.files("puredl.datasets").joinpath(name).read_bytes()).hexdigest()
        assert f"`{name}` | `{digest}`" in readme, name


def test_digits_match_scikit_learn_when_installed():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    ref = sklearn_datasets.load_digits()
    x, y = datasets.digits(dtype=puredl.float64)
    assert x.tolist() == ref.data.tolist() and y.tolist() == ref.target.tolist()


def test_iris_and_two_moons_match_scikit_learn_when_installed():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    ref = sklearn_datasets.load_iris()
    x, y = datasets.iris(dtype=puredl.float64)
    assert x.tolist() == ref.data.tolist() and y.tolist() == ref.target.tolist()
    # Without noise the moons are the same point sets (scikit-learn orders them, puredl shuffles).
    ref_x, ref_y = sklearn_datasets.make_moons(n_samples=31, noise=0.0, shuffle=False)
    x, y = datasets.two_moons(n=31, noise=0.0, dtype=puredl.float64)

    def points(rows, labels):
        return sorted((round(a, 12), round(b, 12), int(c)) for (a, b), c in zip(rows, labels))

    assert points(x.tolist(), y.tolist()) == points(ref_x.tolist(), ref_y.tolist())
