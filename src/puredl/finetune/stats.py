"""Statistics that decide: exact intervals and paired tests for fine-tune evaluation.

Standard library only (``math``, ``random``): the results are checked against scipy and
statsmodels in ``tests/test_finetune_stats.py``, but neither is needed at run time.

>>> low, high = binomial_ci(12, 24)
>>> round(low, 4), round(high, 4)
(0.2912, 0.7088)
"""

from __future__ import annotations

import math
from numbers import Integral, Real

# ----------------------------------------------------------------------------- input checks


def _count(value: object, name: str) -> int:
    """``value`` as an int; a whole-number float (12.0) is accepted, 12.5 or True is not."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, Integral):
        return int(value)
    if not math.isfinite(float(value)) or not float(value).is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _level(level: object) -> float:
    if isinstance(level, bool) or not isinstance(level, Real) or not 0 < float(level) < 1:
        raise ValueError(f"level must be a number strictly between 0 and 1, got {level!r}")
    return float(level)


# ----------------------------------------------------------------------------- incomplete beta


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """Continued fraction of the incomplete beta (modified Lentz; converges for x < (a+1)/(a+b+2))."""
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 10_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return result


def regularized_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (``scipy.special.betainc(a, b, x)``).

    >>> round(regularized_beta(0.5, 2.0, 2.0), 12), regularized_beta(1.0, 3.0, 4.0)
    (0.5, 1.0)
    """
    if a <= 0 or b <= 0:
        raise ValueError(f"regularized_beta needs a > 0 and b > 0, got a={a!r}, b={b!r}")
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = a * math.log(x) + b * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(1.0 - x, b, a) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = q (``scipy.stats.beta.ppf(q, a, b)``), by bisection to float precision.

    >>> round(beta_quantile(0.5, 3.0, 3.0), 12)
    0.5
    """
    if not 0 <= q <= 1:
        raise ValueError(f"beta_quantile needs 0 <= q <= 1, got {q!r}")
    low, high = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        if regularized_beta(mid, a, b) < q:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


# ----------------------------------------------------------------------------- one proportion


def binomial_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) confidence interval for a proportion ``successes / n``.

    Equal to ``scipy.stats.binomtest(k, n).proportion_ci(level, method="exact")``. It is
    conservative: its coverage is at least ``level`` for every true proportion.

    >>> [round(v, 4) for v in binomial_ci(0, 10)]
    [0.0, 0.3085]
    >>> binomial_ci(2.5, 10)
    Traceback (most recent call last):
    ...
    ValueError: successes must be a whole number, got 2.5
    """
    k, total, level = _count(successes, "successes"), _count(n, "n"), _level(level)
    if total <= 0:
        raise ValueError(f"n must be >= 1, got {n!r}")
    if not 0 <= k <= total:
        raise ValueError(f"successes must be between 0 and n={total}, got {successes!r}")
    alpha = 1.0 - level
    low = 0.0 if k == 0 else beta_quantile(alpha / 2, k, total - k + 1)
    high = 1.0 if k == total else beta_quantile(1 - alpha / 2, k + 1, total - k)
    return low, high
