"""puredl.finetune.stats against scipy / statsmodels and exact hand-computed values."""

from __future__ import annotations

import itertools
import math
import random

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


# ----------------------------------------------------------------------------- mcnemar_exact


def test_mcnemar_exact_matches_statsmodels_and_scipy():
    contingency = pytest.importorskip("statsmodels.stats.contingency_tables")
    scipy_stats = pytest.importorskip("scipy.stats")
    for b in range(0, 25, 3):
        for c in (0, 1, 2, 5, 9, 17, 40):
            table = [[10, b], [c, 7]]
            expected = contingency.mcnemar(table, exact=True).pvalue
            assert stats.mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12, abs=1e-300), (b, c)
            if b + c:
                for alternative in ("greater", "less"):
                    ref = scipy_stats.binomtest(b, b + c, 0.5, alternative=alternative).pvalue
                    assert stats.mcnemar_exact(b, c, alternative) == pytest.approx(ref, rel=1e-12), (b, c)


def test_mcnemar_exact_hand_values():
    # k discordant items all one way: two-sided 2 * 0.5**k, one-sided 0.5**k
    assert stats.mcnemar_exact(5, 0) == 0.0625
    assert stats.mcnemar_exact(0, 6) == 0.03125
    assert stats.mcnemar_exact(5, 0, "greater") == 0.03125
    assert stats.mcnemar_exact(5, 0, "less") == 1.0
    assert stats.mcnemar_exact(3, 3) == 1.0
    assert stats.mcnemar_exact(0, 0) == 1.0
    # b=1, c=3: P(X <= 1 | 4, 1/2) = 5/16, two-sided 10/16
    assert stats.mcnemar_exact(1, 3) == 10 / 16
    assert stats.mcnemar_exact(1, 3, "less") == 5 / 16
    assert stats.mcnemar_exact(1, 3, "greater") == 15 / 16


def test_mcnemar_exact_rejects_bad_input():
    with pytest.raises(ValueError, match="alternative must be one of"):
        stats.mcnemar_exact(1, 2, "both")
    with pytest.raises(ValueError, match="discordant counts must be >= 0"):
        stats.mcnemar_exact(-1, 2)
    with pytest.raises(ValueError, match="b must be a whole number"):
        stats.mcnemar_exact(1.5, 2)


# ----------------------------------------------------------------------------- sign-flip test


def brute_force_sign_flip(sums: list[float], alternative: str) -> float:
    """The definition: every sign pattern of the cluster sums, equally likely."""
    observed = sum(sums)
    totals = [
        sum(s * v for s, v in zip(signs, sums)) for signs in itertools.product((1, -1), repeat=len(sums))
    ]
    eps = 1e-12
    if alternative == "less":
        hits = sum(t <= observed + eps for t in totals)
    elif alternative == "greater":
        hits = sum(t >= observed - eps for t in totals)
    else:
        hits = sum(abs(t) >= abs(observed) - eps for t in totals)
    return hits / len(totals)


@pytest.mark.parametrize(
    "sums",
    [[1, 1, -1, 2], [-2, -1, 1], [0.5, -1, -1, -2, 1 / 3, -1 / 3], [3, 0, 0, -1, -1, -1, -1], [-1] * 9 + [1]],
)
def test_sign_flip_exact_equals_enumeration(sums):
    for alternative in ("two-sided", "less", "greater"):
        assert stats.sign_flip_test(sums, alternative) == pytest.approx(
            brute_force_sign_flip(sums, alternative), abs=1e-12
        ), alternative


def test_sign_flip_monte_carlo_for_continuous_sums_is_close_to_enumeration_and_seeded():
    rng = random.Random(3)
    sums = [rng.gauss(-0.3, 1.0) for _ in range(14)]  # no small lattice: random sign patterns
    for alternative in ("two-sided", "less", "greater"):
        exact = brute_force_sign_flip(sums, alternative)
        estimate = stats.sign_flip_test(sums, alternative, n_resamples=40_000, seed=1)
        assert estimate == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 40_000) + 1e-4)
        assert stats.sign_flip_test(sums, alternative, n_resamples=2000, seed=5) == stats.sign_flip_test(
            sums, alternative, n_resamples=2000, seed=5
        )


def test_sign_flip_with_singleton_01_items_is_exact_mcnemar():
    for b, c in [(5, 0), (0, 6), (7, 2), (12, 20), (40, 31), (3, 3)]:
        sums = [-1] * b + [1] * c  # lost items go down, gained items up
        assert stats.sign_flip_test(sums) == pytest.approx(stats.mcnemar_exact(b, c), rel=1e-9)
        assert stats.sign_flip_test(sums, "less") == pytest.approx(
            stats.mcnemar_exact(b, c, "greater"), rel=1e-9
        )


# ----------------------------------------------------------------------------- paired accuracy change


def credits_with(lost: int, gained: int, same_right: int, same_wrong: int) -> tuple[list[int], list[int]]:
    before = [1] * lost + [0] * gained + [1] * same_right + [0] * same_wrong
    after = [0] * lost + [1] * gained + [1] * same_right + [0] * same_wrong
    return before, after


def test_paired_accuracy_change_singletons_match_exact_mcnemar():
    contingency = pytest.importorskip("statsmodels.stats.contingency_tables")
    for lost, gained in [(5, 0), (9, 3), (2, 11), (20, 14)]:
        before, after = credits_with(lost, gained, 30, 40)
        change = stats.paired_accuracy_change(before, after)
        table = [[40, gained], [lost, 30]]  # rows: before wrong/right; b = wrong->right
        assert change.p_two_sided == pytest.approx(contingency.mcnemar(table, exact=True).pvalue, rel=1e-9)
        assert change.p_less == pytest.approx(stats.mcnemar_exact(lost, gained, "greater"), rel=1e-9)
        assert change.p_greater == pytest.approx(stats.mcnemar_exact(lost, gained, "less"), rel=1e-9)
        n = len(before)
        assert change.change == pytest.approx((gained - lost) / n)
        assert (change.lost, change.gained, change.items, change.clusters) == (lost, gained, n, n)
        assert change.before == pytest.approx((lost + 30) / n) and change.after == pytest.approx(
            (gained + 30) / n
        )


def test_paired_accuracy_change_interval_is_seeded_and_near_the_paired_normal_interval():
    before, after = credits_with(30, 12, 60, 98)
    first = stats.paired_accuracy_change(before, after, seed=7)
    assert stats.paired_accuracy_change(before, after, seed=7) == first
    few = stats.paired_accuracy_change(before, after, n_boot=25, seed=7).ci
    assert stats.paired_accuracy_change(before, after, n_boot=25, seed=8).ci != few  # the seed matters
    # the paired normal (Wald) interval: mean of d +- 1.96 * sd(d) / sqrt(n), sd with divisor n
    d = [y - x for x, y in zip(before, after)]
    n, mean = len(d), sum(d) / len(d)
    half = 1.959964 * math.sqrt(sum((v - mean) ** 2 for v in d) / n) / math.sqrt(n)
    low, high = stats.paired_accuracy_change(before, after, n_boot=20_000).ci
    assert low == pytest.approx(mean - half, abs=0.006) and high == pytest.approx(mean + half, abs=0.006)
    assert low < first.change < high


def test_paired_accuracy_change_interval_is_the_bootstrap_by_definition():
    before, after = [1, 1, 0, 1, 0, 1, 1, 0, 0, 1], [0, 1, 0, 1, 1, 1, 0, 0, 0, 1]
    clusters = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    change = stats.paired_accuracy_change(before, after, clusters, n_boot=300, seed=9)
    # resample the five clusters plus one all-gained and one all-lost pseudo-cluster of size 2
    rows = [(after[2 * k] + after[2 * k + 1] - before[2 * k] - before[2 * k + 1], 2) for k in range(5)]
    rows += [(2.0, 2.0), (-2.0, 2.0)]
    draw, values = random.Random(9), []
    for _ in range(300):
        idx = draw.choices(range(7), k=7)
        values.append(sum(rows[i][0] for i in idx) / sum(rows[i][1] for i in idx))
    values.sort()
    assert change.ci == (stats.percentile(values, 0.025), stats.percentile(values, 0.975))
    assert (
        change.change == pytest.approx(-0.1)
        and change.clusters == 5
        and (change.lost, change.gained) == (2, 1)
    )


def test_stages_that_agree_on_every_item_do_not_get_a_zero_width_interval():
    """A bootstrap of 24 identical answers alone would give [0, 0] and claim RETAINED from 24 items."""
    small = stats.paired_accuracy_change([1] * 12 + [0] * 12, [1] * 12 + [0] * 12)
    assert small.p_two_sided == 1.0 and small.lost == small.gained == 0.0
    assert small.ci[0] < -0.04 and small.ci[1] > 0.04
    assert stats.forgetting_verdict(small, margin=0.024, p_adjusted=1.0) == stats.INCONCLUSIVE
    large = stats.paired_accuracy_change([1] * 240 + [0] * 260, [1] * 240 + [0] * 260)
    assert -0.024 < large.ci[0] < 0 < large.ci[1] < 0.024
    assert stats.forgetting_verdict(large, margin=0.024, p_adjusted=1.0) == stats.RETAINED


def test_clusters_of_identical_copies_equal_the_uncopied_items():
    """A cluster whose items always agree carries one item's information: exactly the singleton answer."""
    before, after = credits_with(9, 3, 20, 28)
    single = stats.paired_accuracy_change(before, after, seed=4)
    doubled = stats.paired_accuracy_change(
        [v for v in before for _ in (0, 1)],
        [v for v in after for _ in (0, 1)],
        clusters=[i // 2 for i in range(120)],
        seed=4,
    )
    assert doubled.ci == single.ci
    assert doubled.change == single.change
    assert doubled.p_two_sided == pytest.approx(single.p_two_sided, rel=1e-12)
    assert doubled.p_less == pytest.approx(single.p_less, rel=1e-12)
    assert doubled.clusters == 60 and doubled.items == 120
    # ignoring the clusters pretends to have twice the data: a narrower interval and a smaller p
    naive = stats.paired_accuracy_change(
        [v for v in before for _ in (0, 1)], [v for v in after for _ in (0, 1)], seed=4
    )
    assert naive.ci[1] - naive.ci[0] < 0.85 * (single.ci[1] - single.ci[0])
    assert naive.p_two_sided < single.p_two_sided


def test_clustered_p_value_by_hand():
    # clusters (two directions of one entry): A lost both, B lost one, C gained one, D lost one gained one
    before = [1, 1, 1, 0, 0, 0, 1, 0]
    after = [0, 0, 0, 0, 1, 0, 0, 1]
    clusters = ["A", "A", "B", "B", "C", "C", "D", "D"]
    change = stats.paired_accuracy_change(before, after, clusters=clusters)
    # nonzero cluster sums: A -2, B -1, C +1 (D sums to 0); T = -2; sign patterns of (2, 1, 1):
    # totals 4, 2, 2, 0, 0, -2, -2, -4 -> P(T <= -2) = 3/8, P(|T| >= 2) = 6/8, P(T >= -2) = 7/8
    assert change.p_less == 3 / 8 and change.p_two_sided == 6 / 8 and change.p_greater == 7 / 8
    assert change.change == -2 / 8 and change.clusters == 4


def test_fractional_tie_credits_are_exact():
    before = [1, 0.5, 0.2, 1, 1]
    after = [0, 0, 0.2, 0.5, 1]
    change = stats.paired_accuracy_change(before, after)
    assert change.lost == pytest.approx(2.0) and change.gained == 0.0
    assert change.p_less == pytest.approx(brute_force_sign_flip([-1, -0.5, -0.5], "less"))  # 1/8


def test_paired_accuracy_change_rejects_bad_input():
    with pytest.raises(ValueError, match="same number of items"):
        stats.paired_accuracy_change([1, 0], [1])
    with pytest.raises(ValueError, match="same number of items"):
        stats.paired_accuracy_change([], [])
    with pytest.raises(ValueError, match=r"after credits must be numbers in \[0, 1\]"):
        stats.paired_accuracy_change([1, 0], [1, 2])
    with pytest.raises(ValueError, match="clusters must have one id per item"):
        stats.paired_accuracy_change([1, 0], [1, 1], clusters=[0])
    with pytest.raises(ValueError, match="n_boot must be an int >= 1"):
        stats.paired_accuracy_change([1, 0], [1, 1], n_boot=0)


# ----------------------------------------------------------------------------- perplexity


def test_paired_log_ppl_change_is_the_log_ratio_of_token_weighted_perplexities():
    before = [[30.0, 10], [12.0, 4], [50.0, 20]]
    after = [[27.0, 10], [12.5, 4], [41.0, 20]]
    change = stats.paired_log_ppl_change(before, after)
    ppl_before, ppl_after = math.exp(92.0 / 34), math.exp(80.5 / 34)
    assert change.change == pytest.approx(math.log(ppl_after / ppl_before), abs=1e-12)
    # per-text differences -3, +0.5, -9 on a lattice of 1/2: exact sign-flip distribution
    assert change.p_less == pytest.approx(brute_force_sign_flip([-3, 0.5, -9], "less"))  # 2/8
    assert change.p_two_sided == pytest.approx(brute_force_sign_flip([-3, 0.5, -9], "two-sided"))
    assert change.lost == 0.5 and change.gained == 12.0 and change.weight_total == 34


def test_paired_log_ppl_bootstrap_by_hand_and_against_resampling_by_definition():
    rng = random.Random(11)
    before = [[rng.uniform(20, 80), rng.randrange(8, 30)] for _ in range(40)]
    after = [[nll * rng.gauss(0.93, 0.06), k] for nll, k in before]
    change = stats.paired_log_ppl_change(before, after, n_boot=500, seed=2)
    # the same draws, written out: resample texts, token-weighted log-ppl after minus before
    draw = random.Random(2)
    values = []
    for _ in range(500):
        idx = draw.choices(range(40), k=40)
        tokens = sum(before[i][1] for i in idx)
        values.append((sum(after[i][0] for i in idx) - sum(before[i][0] for i in idx)) / tokens)
    numpy = pytest.importorskip("numpy")  # its default percentile is the reference for stats.percentile
    low, high = numpy.percentile(values, [2.5, 97.5])
    assert change.ci == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert change.ci[0] < change.change < change.ci[1] < 0
    # continuous NLLs: random sign patterns; a clear drop is far beyond them
    assert change.p_less < 1e-3 and change.p_greater > 0.999


def test_paired_log_ppl_change_rejects_bad_input():
    with pytest.raises(ValueError, match=r"before\[1\] must be \[nll, tokens\] with tokens > 0"):
        stats.paired_log_ppl_change([[1.0, 2], [1.0, 0]], [[1.0, 2], [1.0, 2]])
    with pytest.raises(ValueError, match="same number of texts"):
        stats.paired_log_ppl_change([[1.0, 2]], [[1.0, 2], [1.0, 2]])


# ----------------------------------------------------------------------------- single-stage intervals


def test_accuracy_interval_exact_for_01_and_bootstrap_for_ties_or_clusters():
    assert stats.accuracy_interval([1] * 7 + [0] * 17) == stats.binomial_ci(7, 24)
    low, high = stats.accuracy_interval([1, 0.5, 0, 1] * 10)
    assert low < 0.625 < high and 0 < low and high < 1
    credits = [1, 1, 0, 0] * 10
    clustered = stats.accuracy_interval(credits, clusters=[i // 2 for i in range(40)], n_boot=300, seed=3)
    # by definition: resample the 20 clusters plus an all-right and an all-wrong pseudo-cluster
    rows = [credits[2 * i] + credits[2 * i + 1] for i in range(20)] + [2, 0]
    draw, values = random.Random(3), []
    for _ in range(300):
        idx = draw.choices(range(22), k=22)
        values.append(sum(rows[i] for i in idx) / 44)
    values.sort()
    assert clustered == (stats.percentile(values, 0.025), stats.percentile(values, 0.975))
    exact = stats.binomial_ci(20, 40)  # treats the 40 items as independent: too narrow
    assert clustered[1] - clustered[0] > 1.2 * (exact[1] - exact[0])
    # all right, in clusters: not the zero-width [1, 1]
    low, high = stats.accuracy_interval([1] * 48, clusters=[i // 2 for i in range(48)])
    assert low < 0.95 and high == 1.0


def test_perplexity_interval_contains_the_perplexity():
    rows = [[float(10 + i % 7), 5] for i in range(30)]
    ppl = math.exp(sum(r[0] for r in rows) / sum(r[1] for r in rows))
    low, high = stats.perplexity_interval(rows)
    assert low < ppl < high


# ----------------------------------------------------------------------------- holm


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = random.Random(0)
    for m in (1, 2, 3, 7, 20):
        p = [rng.random() ** 3 for _ in range(m)]
        p[0] = p[-1]  # a tie
        expected = multitest.multipletests(p, method="holm")[1]
        assert stats.holm(p) == pytest.approx(list(expected), abs=1e-15)
    assert stats.holm([]) == []
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    with pytest.raises(ValueError, match=r"p-values must lie in \[0, 1\]"):
        stats.holm([0.5, 1.2])


# ----------------------------------------------------------------------------- minimum detectable change


def connor_sample_size(delta: float, psi: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Connor (1987): n = (z_a sqrt(psi) + z_b sqrt(psi - delta^2))^2 / delta^2, one-sided alpha."""
    za, zb = 1.6448536269514722, 0.8416212335729143
    return (za * math.sqrt(psi) + zb * math.sqrt(psi - delta**2)) ** 2 / delta**2


def test_min_detectable_change_inverts_connors_sample_size():
    for n, psi in [(122, 0.05), (246, 0.10), (60, 0.10), (184, 0.30), (1000, 0.2)]:
        discordant = round(n * psi)
        before, after = credits_with(discordant // 2, discordant - discordant // 2, 10, n - discordant - 10)
        change = stats.paired_accuracy_change(before, after, n_boot=10)
        delta = stats.min_detectable_change(change)
        assert connor_sample_size(delta, discordant / n) == pytest.approx(n, rel=1e-9)
    # the research note's table (one-sided, power 0.8): 5 points at psi 0.05 needs 122 items
    before, after = credits_with(3, 3, 10, 106)  # psi = 6/122 ~ 0.05
    assert stats.min_detectable_change(
        stats.paired_accuracy_change(before, after, n_boot=10)
    ) == pytest.approx(0.05, abs=0.002)


def test_min_detectable_change_without_discordance_is_none_and_clusters_raise_it():
    assert stats.min_detectable_change(stats.paired_accuracy_change([1, 0], [1, 0], n_boot=10)) is None
    before, after = credits_with(6, 6, 20, 28)
    single = stats.min_detectable_change(stats.paired_accuracy_change(before, after, n_boot=10))
    doubled = stats.paired_accuracy_change(
        [v for v in before for _ in (0, 1)],
        [v for v in after for _ in (0, 1)],
        [i // 2 for i in range(120)],
        n_boot=10,
    )
    assert stats.min_detectable_change(doubled) == pytest.approx(single, rel=1e-12)
    with pytest.raises(ValueError, match="power must lie strictly between 0 and 1"):
        stats.min_detectable_change(doubled, power=1.0)


# ----------------------------------------------------------------------------- verdicts


def test_practical_margin():
    assert stats.practical_margin(0.48) == pytest.approx(0.024)
    assert stats.practical_margin(0.48, absolute=0.03) == 0.03
    assert stats.practical_margin(40.0, lower_is_better=True) == pytest.approx(math.log(1.05))
    assert stats.practical_margin(40.0, absolute=4.0, lower_is_better=True) == pytest.approx(math.log(1.1))
    with pytest.raises(ValueError, match="absolute margin must be >= 0"):
        stats.practical_margin(0.5, absolute=-1)


def test_verdicts_on_accuracy():
    # 30 of 40 lost: a big, significant drop
    before, after = credits_with(30, 0, 10, 0)
    big = stats.paired_accuracy_change(before, after)
    assert stats.forgetting_verdict(big, margin=0.05, p_adjusted=big.p_less) == stats.FORGOTTEN
    # significant but smaller than the margin: not forgotten; the interval still reaches past the margin
    assert big.change == -0.75 and -big.ci[0] > 0.8
    assert stats.forgetting_verdict(big, margin=0.8, p_adjusted=big.p_less) == stats.INCONCLUSIVE
    assert stats.forgetting_verdict(big, margin=-big.ci[0] + 0.01, p_adjusted=big.p_less) == stats.RETAINED
    # the same change, not significant after correction: not forgotten
    assert stats.forgetting_verdict(big, margin=0.05, p_adjusted=0.2) == stats.INCONCLUSIVE
    # 5 of 96 lost one way: exact two-sided p 0.0625, one-sided 0.03125, interval reaches past 5%
    before, after = credits_with(5, 0, 40, 51)
    small = stats.paired_accuracy_change(before, after)
    assert small.p_less == 0.03125
    assert (
        stats.forgetting_verdict(small, margin=0.05 * small.before, p_adjusted=small.p_less * 6)
        == "INCONCLUSIVE"
    )
    # many items, nothing lost on balance: the interval excludes a drop bigger than 5 points
    before, after = credits_with(10, 10, 200, 280)
    same = stats.paired_accuracy_change(before, after)
    assert same.ci[0] > -0.05
    assert stats.forgetting_verdict(same, margin=0.05, p_adjusted=1.0) == stats.RETAINED


def test_a_worsening_of_exactly_the_margin_is_not_larger_than_it():
    before, after = credits_with(7, 0, 133, 60)  # 0.7 -> 0.665: a drop of exactly 5% of 0.7
    change = stats.paired_accuracy_change(before, after)
    margin = stats.practical_margin(change.before)
    assert -change.change > margin  # 0.035 > 0.05 * 0.7 = 0.034999999999999996 in floating point
    assert stats.forgetting_verdict(change, margin, p_adjusted=1e-9) == stats.INCONCLUSIVE
    same = stats.paired_accuracy_change([1] * 20, [1] * 19 + [0])  # a point interval would sit on the margin
    fixed = stats.PairedChange(**{**same.to_dict(), "ci": (-0.05, -0.05), "change": -0.05})
    assert stats.forgetting_verdict(fixed, 0.05, p_adjusted=1e-9) == stats.RETAINED


def test_paired_change_to_dict_is_json_ready():
    import json

    data = stats.paired_accuracy_change([1, 0, 1], [0, 0, 1], n_boot=20).to_dict()
    assert (
        json.loads(json.dumps(data)) == data
        and data["ci"] == list(data["ci"])
        and data["measure"] == "accuracy"
    )


def test_verdicts_on_perplexity_use_the_upper_end():
    rng = random.Random(5)
    before = [[rng.uniform(30, 60), 12] for _ in range(60)]
    worse = stats.paired_log_ppl_change(before, [[v * 1.2 + rng.gauss(0, 0.5), k] for v, k in before])
    assert worse.change > 0.15 and worse.p_greater < 1e-3
    margin = stats.practical_margin(40.0, lower_is_better=True)
    assert stats.forgetting_verdict(worse, margin, worse.p_greater, lower_is_better=True) == stats.FORGOTTEN
    better = stats.paired_log_ppl_change(before, [[v * 0.8, k] for v, k in before])
    assert stats.forgetting_verdict(better, margin, better.p_greater, lower_is_better=True) == stats.RETAINED
    # read as an accuracy (higher is better) the perplexity fall would be the worsening
    assert stats.forgetting_verdict(better, margin, better.p_less, lower_is_better=False) == stats.FORGOTTEN


# ----------------------------------------------------------------------------- continual-learning summary


def test_continual_learning_summary_by_hand():
    # base, after phase 1, 2, 3; capability j taught in phase j+1
    R = [
        [0.10, 0.20, 0.20],
        [0.60, 0.25, 0.20],
        [0.50, 0.70, 0.30],
        [0.40, 0.65, 0.80],
    ]
    s = stats.continual_learning_summary(R)
    assert s["acc"] == pytest.approx((0.40 + 0.65 + 0.80) / 3)
    assert s["bwt"] == pytest.approx(((0.40 - 0.60) + (0.65 - 0.70)) / 2)
    assert s["fwt"] == pytest.approx(((0.25 - 0.20) + (0.30 - 0.20)) / 2)
    # forgetting: cap 0 best after phases 1-2 is 0.60 -> 0.20; cap 1 best after phase 2 is 0.70 -> 0.05
    assert s["forgetting"] == pytest.approx((0.20 + 0.05) / 2)
    per = s["per_capability"]
    assert per[2]["bwt"] is None and per[2]["forgetting"] is None and per[0]["fwt"] is None


def test_continual_learning_summary_perplexity_as_negative_log_ratio():
    R = [[60.0, 0.2], [40.0, 0.2], [44.0, 0.5]]
    s = stats.continual_learning_summary(R, lower_is_better=[True, False])
    fluency = s["per_capability"][0]
    assert fluency["bwt"] == pytest.approx(-math.log(44.0 / 40.0))
    assert fluency["forgetting"] == pytest.approx(math.log(44.0 / 40.0))
    assert fluency["final"] == pytest.approx(-math.log(44.0))
    # averages are over the accuracies only
    assert s["acc"] == 0.5 and s["bwt"] is None and s["fwt"] == pytest.approx(0.0)


def test_continual_learning_summary_missing_cells_and_bad_shapes():
    R = [[None, None], [0.6, None], [0.5, 0.7]]
    s = stats.continual_learning_summary(R)
    assert s["fwt"] is None and s["bwt"] == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="T\\+1 rows of T capabilities"):
        stats.continual_learning_summary([[0.1, 0.2], [0.3, 0.4]])
    with pytest.raises(ValueError, match="lower_is_better needs one flag per capability"):
        stats.continual_learning_summary([[0.1], [0.3]], lower_is_better=[True, False])
