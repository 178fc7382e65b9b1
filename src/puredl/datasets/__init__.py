"""Small bundled datasets: XOR, noisy linear regression, two moons, iris and 8x8 digits.

Every loader returns ``(x, y)`` Tensors: ``x`` has one row per sample in the default float
dtype (float32 unless changed; pass ``dtype=puredl.float64`` for double), ``y`` holds class
indices as int64 for classification sets and float targets for regression-style sets.

>>> from puredl import datasets
>>> x, y = datasets.iris()
>>> x.shape, y.shape, y.dtype.name
((150, 4), (150,), 'int64')

Iris and digits are read from files shipped in this package (see README.md here for their
source and licence); the generated sets are reproducible from their ``seed``.
"""

from __future__ import annotations

import functools
import gzip
import math
import random
from array import array
from importlib import resources
from typing import Any

IRIS_FEATURE_NAMES = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")
IRIS_CLASS_NAMES = ("setosa", "versicolor", "virginica")
DIGITS_CLASS_NAMES = tuple(str(d) for d in range(10))


def xor(dtype: Any = None) -> tuple[Any, Any]:
    """The four XOR points: x of shape (4, 2), y of shape (4, 1) with 0.0/1.0 targets.

    >>> x, y = xor()
    >>> x.tolist(), y.tolist()
    ([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [[0.0], [1.0], [1.0], [0.0]])
    """
    points = [(a, b) for a in (0.0, 1.0) for b in (0.0, 1.0)]
    x = [v for p in points for v in p]
    y = [float(int(a) ^ int(b)) for a, b in points]
    return _floats(x, (4, 2), dtype), _floats(y, (4, 1), dtype)


def linear_regression(
    n: int = 100,
    noise: float = 0.1,
    seed: int | None = 0,
    x_range: tuple[float, float] = (-1.0, 1.0),
    dtype: Any = None,
) -> tuple[Any, Any]:
    """Samples of y = 2x + 1 + N(0, noise^2), x uniform in ``x_range``: shapes (n, 1) and (n, 1).

    ``seed=None`` draws from puredl's global generator (``puredl.manual_seed``).

    >>> x, y = linear_regression(n=3, noise=0.0)
    >>> [abs(b[0] - (2 * a[0] + 1)) < 1e-6 for a, b in zip(x.tolist(), y.tolist())]
    [True, True, True]
    """
    _check_count("linear_regression", n)
    _check_noise("linear_regression", noise)
    rng = _rng(seed)
    lo, hi = x_range
    xs = [rng.uniform(lo, hi) for _ in range(n)]
    ys = [2.0 * x + 1.0 + (rng.gauss(0.0, noise) if noise else 0.0) for x in xs]
    return _floats(xs, (n, 1), dtype), _floats(ys, (n, 1), dtype)


def two_moons(n: int = 100, noise: float = 0.1, seed: int | None = 0, dtype: Any = None) -> tuple[Any, Any]:
    """Two interleaving half circles (scikit-learn's ``make_moons``): x (n, 2), y (n,) in {0, 1}.

    The upper moon (label 0) has ``n // 2`` points on the unit circle; the lower moon (label 1)
    the rest, on the circle of radius 1 centred at (1, 0.5). Gaussian ``noise`` is added to both
    coordinates and the rows are shuffled, all from ``seed``.

    >>> x, y = two_moons(n=10)
    >>> x.shape, sorted(y.tolist())
    ((10, 2), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    """
    _check_count("two_moons", n)
    _check_noise("two_moons", noise)
    rng = _rng(seed)
    n_upper = n // 2
    n_lower = n - n_upper
    points: list[tuple[float, float, int]] = []
    for i in range(n_upper):
        t = math.pi * i / (n_upper - 1) if n_upper > 1 else 0.0
        points.append((math.cos(t), math.sin(t), 0))
    for i in range(n_lower):
        t = math.pi * i / (n_lower - 1) if n_lower > 1 else 0.0
        points.append((1.0 - math.cos(t), 0.5 - math.sin(t), 1))
    rng.shuffle(points)
    if noise:
        points = [(a + rng.gauss(0.0, noise), b + rng.gauss(0.0, noise), c) for a, b, c in points]
    x = [v for a, b, _ in points for v in (a, b)]
    y = [c for _, _, c in points]
    return _floats(x, (n, 2), dtype), _ints(y)


def iris(dtype: Any = None) -> tuple[Any, Any]:
    """Fisher's iris flowers: x (150, 4) in cm, y (150,) with 0=setosa, 1=versicolor, 2=virginica.

    Column names are in ``IRIS_FEATURE_NAMES``, class names in ``IRIS_CLASS_NAMES``.

    >>> x, y = iris()
    >>> [round(v, 2) for v in x[0].tolist()], IRIS_CLASS_NAMES[int(y[0])]
    ([5.1, 3.5, 1.4, 0.2], 'setosa')
    """
    rows, labels = _iris_rows()
    return _floats([v for row in rows for v in row], (len(rows), 4), dtype), _ints(labels)


def digits(dtype: Any = None) -> tuple[Any, Any]:
    """The 1,797 8x8 handwritten digits (UCI test set, as in scikit-learn): x (1797, 64), y (1797,).

    Pixels are integers 0..16 (counts of ink in 4x4 blocks) stored row-major per image; scale
    them yourself, e.g. ``x / 16``. Labels are the digits 0..9. Read from the copy shipped in
    this package, so scikit-learn is never needed and every install sees the same bytes.

    >>> x, y = digits()
    >>> x.shape, int(y[0].item())
    ((1797, 64), 0)
    """
    pixels, labels = _digits_rows()
    return _floats(pixels, (len(labels), 64), dtype), _ints(labels)


# --------------------------------------------------------------------------- file parsing (cached)


@functools.lru_cache(maxsize=1)
def _iris_rows() -> tuple[tuple[tuple[float, ...], ...], tuple[int, ...]]:
    text = resources.files(__name__).joinpath("iris.csv").read_text(encoding="ascii")
    lines = text.split()
    n_rows, n_features, *_ = lines[0].split(",")
    rows, labels = [], []
    for line in lines[1:]:
        *features, label = line.split(",")
        rows.append(tuple(float(v) for v in features))
        labels.append(int(label))
    if len(rows) != int(n_rows) or any(len(r) != int(n_features) for r in rows):
        raise ValueError(f"puredl/datasets/iris.csv is damaged: expected {n_rows} rows of {n_features}")
    return tuple(rows), tuple(labels)


@functools.lru_cache(maxsize=1)
def _digits_rows() -> tuple[array, tuple[int, ...]]:
    raw = resources.files(__name__).joinpath("digits.csv.gz").read_bytes()
    pixels = array("b")
    labels = []
    for line in gzip.decompress(raw).decode("ascii").split():
        values = [int(float(v)) for v in line.split(",")]
        if len(values) != 65:
            raise ValueError(f"puredl/datasets/digits.csv.gz is damaged: a row has {len(values)} values")
        pixels.extend(values[:64])
        labels.append(values[64])
    return pixels, tuple(labels)


# --------------------------------------------------------------------------- helpers


def _rng(seed: int | None) -> random.Random:
    if seed is None:
        from puredl.random import default_generator

        return default_generator
    return random.Random(seed)


def _check_count(where: str, n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{where}: n must be a positive int, got {n!r}")


def _check_noise(where: str, noise: float) -> None:
    if not isinstance(noise, (int, float)) or noise < 0 or math.isnan(noise):
        raise ValueError(f"{where}: noise must be a non-negative number, got {noise!r}")


def _floats(values: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    from puredl import dtypes
    from puredl.tensor import Tensor

    dt = dtypes.get_default_dtype() if dtype is None else dtypes.as_dtype(dtype)
    if not dt.is_floating_point:
        raise ValueError(f"datasets: features need a floating dtype, got {dt!r}")
    return Tensor.from_array(array(dt.typecode, values), shape, dtype=dt)


def _ints(values: Any) -> Any:
    from puredl import dtypes
    from puredl.tensor import Tensor

    return Tensor.from_array(array("q", values), (len(values),), dtype=dtypes.int64)


__all__ = [
    "DIGITS_CLASS_NAMES",
    "IRIS_CLASS_NAMES",
    "IRIS_FEATURE_NAMES",
    "digits",
    "iris",
    "linear_regression",
    "two_moons",
    "xor",
]
