"""puredl.finetune.stats against scipy / statsmodels and exact hand-computed values."""

from __future__ import annotations

import pytest

from puredl.finetune import stats

# ----------------------------------------------------------------------------- binomial_ci


def test_binomial_ci_matches_scipy_exact_interval():
    scipy_stats = pytest.importorskip("scipy.stats")
    for n in (1, 2, 3, 5, 10, 24, 48, 96, 144, 300, 1000, 10_000):
        for k in sorted({0, 1, 2, n // 3, n // 2, n - 1, n} & set(range(n + 1))):
            for level in (0.9, 0.95, 0.99):
                ref = scipy_stats.binomtest(k, n).proportion_ci(level, method="exact")
                low, high = stats.binomial_ci(k, n, level)
                assert low == pytest.approx(ref.low, abs=1e-10), (k, n, level)
                assert high == pytest.approx(ref.high, abs=1e-10), (k, n, level)


def test_binomial_ci_exact_hand_values():
    # k = 0: the upper bound solves (1 - p)^n = alpha / 2; k = n mirrors it
    low, high = stats.binomial_ci(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12)
    low, high = stats.binomial_ci(10, 10)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 10), abs=1e-12)
    # n = 1, k = 1 at 90%: the lower bound solves p = 0.05
    assert stats.binomial_ci(1, 1, 0.9) == (pytest.approx(0.05, abs=1e-12), 1.0)
    # symmetric around one half for k = n / 2
    low, high = stats.binomial_ci(12, 24)
    assert low + high == pytest.approx(1.0, abs=1e-12)


def test_binomial_ci_accepts_whole_floats_and_rejects_bad_input():
    assert stats.binomial_ci(12.0, 24) == stats.binomial_ci(12, 24)
    for args, words in [
        ((2.5, 10), "successes must be a whole number"),
        ((True, 10), "successes must be a whole number"),
        ((1, 0), "n must be >= 1"),
        ((1, -3), "n must be >= 1"),
        ((11, 10), "successes must be between 0 and n=10"),
        ((-1, 10), "successes must be between 0 and n=10"),
        ((1, 10, 1.0), "level must be a number strictly between 0 and 1"),
        ((1, 10, 0), "level must be a number strictly between 0 and 1"),
        (("3", 10), "successes must be a whole number"),
    ]:
        with pytest.raises(ValueError, match=words):
            stats.binomial_ci(*args)


def test_regularized_beta_and_quantile_match_scipy():
    special = pytest.importorskip("scipy.special")
    scipy_stats = pytest.importorskip("scipy.stats")
    for a, b in [(0.5, 0.5), (1, 1), (2, 5), (30, 7), (200.5, 310), (1, 9999)]:
        for x in (1e-6, 0.01, 0.3, 0.5, 0.77, 0.999):
            assert stats.regularized_beta(x, a, b) == pytest.approx(special.betainc(a, b, x), abs=1e-12)
        for q in (0.001, 0.025, 0.5, 0.975):
            assert stats.beta_quantile(q, a, b) == pytest.approx(scipy_stats.beta.ppf(q, a, b), abs=1e-10)
