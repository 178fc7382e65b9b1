"""Statistics that decide: exact intervals and paired tests for fine-tune evaluation.

Standard library only (``math``, ``random``): the results are checked against scipy and
statsmodels in ``tests/test_finetune_stats.py``, but neither is needed at run time.

>>> low, high = binomial_ci(12, 24)
>>> round(low, 4), round(high, 4)
(0.2912, 0.7088)
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields
from fractions import Fraction
from numbers import Integral, Real
from statistics import NormalDist

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


# ----------------------------------------------------------------------------- paired tests

ALTERNATIVES = ("two-sided", "greater", "less")


def _alternative(alternative: str) -> str:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {', '.join(ALTERNATIVES)}, got {alternative!r}")
    return alternative


def _half_binomial_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (integer sums, one rounding at the end)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return float(Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2**n))


def mcnemar_exact(b: int, c: int, alternative: str = "two-sided") -> float:
    """Exact (binomial) McNemar p-value from the two discordant counts of a paired 2x2 table.

    ``b`` counts pairs that were right at the first stage and wrong at the second (``[0][1]``
    of statsmodels' table), ``c`` the reverse. Under no change each discordant pair goes either
    way with probability 1/2. ``"two-sided"`` equals statsmodels' ``mcnemar(table,
    exact=True).pvalue``; ``"greater"`` tests b > c (more lost than gained: a drop) and ``"less"``
    b < c, as ``scipy.stats.binomtest(b, b + c, 0.5, alternative)``. No discordant pair: 1.

    >>> mcnemar_exact(5, 0), mcnemar_exact(5, 0, "greater"), mcnemar_exact(0, 6)
    (0.0625, 0.03125, 0.03125)
    """
    b, c, alternative = _count(b, "b"), _count(c, "c"), _alternative(alternative)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if alternative == "greater":
        return 1.0 - _half_binomial_cdf(b - 1, n) if b else 1.0
    if alternative == "less":
        return _half_binomial_cdf(b, n)
    return min(1.0, 2.0 * _half_binomial_cdf(min(b, c), n))


def _as_lattice(values: Sequence[float], max_denominator: int = 360) -> tuple[list[int], int] | None:
    """``values`` as integer multiples of one small unit 1/L (0/1 credits, ties of 1/2..1/5), or None."""
    fractions = []
    for v in values:
        f = Fraction(v).limit_denominator(max_denominator)
        if abs(float(f) - v) > 1e-9 * max(1.0, abs(v)):
            return None
        fractions.append(f)
    unit = math.lcm(*(f.denominator for f in fractions)) if fractions else 1
    return [int(f * unit) for f in fractions], unit


def _sign_flip_exact(steps: list[int]) -> tuple[list[float], int]:
    """Distribution of sum(s_k * steps_k) over equally likely signs: probabilities indexed from -S."""
    total = sum(abs(v) for v in steps)
    probs = [0.0] * (2 * total + 1)
    probs[total] = 1.0
    for v in (abs(v) for v in steps):
        if v:
            up, down = probs[v:] + [0.0] * v, [0.0] * v + probs[:-v]
            probs = [0.5 * (x + y) for x, y in zip(up, down)]
    return probs, total


def sign_flip_test(
    cluster_sums: Sequence[float], alternative: str = "two-sided", n_resamples: int = 20_000, seed: int = 0
) -> float:
    """Permutation p-value of a paired change, flipping the sign of whole clusters' differences.

    ``cluster_sums`` holds, per cluster (an item, or the items that share a cluster id), the sum
    of the per-item differences ``after - before``. Under no change the two stages of a cluster
    are exchangeable, so every sign pattern is equally likely; the statistic is the total
    difference (the accuracy change times the item count). ``"less"``: the change is negative;
    ``"greater"``: positive. Exact when the sums lie on a small lattice (0/1 credits, tie shares)
    and the distribution fits in ~4 million cells; otherwise ``n_resamples`` seeded random sign
    patterns give ``(1 + hits) / (1 + n_resamples)``. With one item per cluster and 0/1 credits
    it equals the exact McNemar test.

    >>> sign_flip_test([-1, -1, -1, -1, -1]), sign_flip_test([-2, -1, 1], "less")
    (0.0625, 0.375)
    """
    return sign_flip_pvalues(cluster_sums, n_resamples, seed)[_alternative(alternative)]


def sign_flip_pvalues(
    cluster_sums: Sequence[float], n_resamples: int = 20_000, seed: int = 0
) -> dict[str, float]:
    """:func:`sign_flip_test` for all three alternatives at once (one distribution, one set of draws).

    >>> sign_flip_pvalues([-2, -1, 1])
    {'two-sided': 0.75, 'less': 0.375, 'greater': 0.875}
    """
    values = [float(v) for v in cluster_sums if v != 0]  # a zero flips to itself
    if not values:
        return dict.fromkeys(ALTERNATIVES, 1.0)
    lattice = _as_lattice(values)
    if lattice is not None and len(values) * (2 * sum(abs(v) for v in lattice[0]) + 1) <= 4_000_000:
        steps = lattice[0]
        probs, offset = _sign_flip_exact(steps)
        observed = sum(steps) + offset
        distance = abs(observed - offset)  # |T| >= 0 always holds
        two_sided = sum(probs[: offset - distance + 1]) + sum(probs[offset + distance :]) if distance else 1.0
        less, greater = sum(probs[: observed + 1]), sum(probs[observed:])
        return {"two-sided": min(1.0, two_sided), "less": min(1.0, less), "greater": min(1.0, greater)}
    return _sign_flip_monte_carlo(values, n_resamples, seed)


def _sign_flip_monte_carlo(values: list[float], n_resamples: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    observed = sum(values)
    tolerance = 1e-9 * sum(abs(v) for v in values)  # equal sums must count as "as extreme"
    # subset sums of each group of 8 clusters: one random byte picks which of them flip
    tables = []
    for g in range(0, len(values), 8):
        group = values[g : g + 8]
        tables.append([sum(v for i, v in enumerate(group) if mask >> i & 1) for mask in range(256)])
    two_sided = less = greater = 0
    for _ in range(n_resamples):
        bits = rng.getrandbits(len(values))
        statistic = observed - 2 * sum(table[(bits >> (8 * g)) & 255] for g, table in enumerate(tables))
        less += statistic <= observed + tolerance
        greater += statistic >= observed - tolerance
        two_sided += abs(statistic) >= abs(observed) - tolerance
    return {k: (1 + hits) / (1 + n_resamples) for k, hits in zip(ALTERNATIVES, (two_sided, greater, less))}


# ----------------------------------------------------------------------------- paired bootstrap


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) with linear interpolation between order statistics (numpy's default).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.25)
    1.75
    """
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (position - low) * (sorted_values[high] - sorted_values[low])


def _bootstrap_ratio_difference(
    parts: list[tuple[float, float, float, float]], level: float, n_boot: int, seed: int
) -> tuple[float, float]:
    """Percentile interval of sum(a)/sum(a_w) - sum(b)/sum(b_w), resampling the rows (clusters)."""
    rng = random.Random(seed)
    k = len(parts)
    a, aw, b, bw = (list(column) for column in zip(*parts))
    same_weights = aw == bw
    rows = range(k)
    draws = []
    for _ in range(n_boot):
        idx = rng.choices(rows, k=k)
        if same_weights:  # accuracy, or perplexity on the same tokens: one ratio of differences
            weight = sum(map(aw.__getitem__, idx))
            draws.append((sum(map(a.__getitem__, idx)) - sum(map(b.__getitem__, idx))) / weight)
        else:
            draws.append(
                sum(map(a.__getitem__, idx)) / sum(map(aw.__getitem__, idx))
                - sum(map(b.__getitem__, idx)) / sum(map(bw.__getitem__, idx))
            )
    draws.sort()
    alpha = 1 - level
    return percentile(draws, alpha / 2), percentile(draws, 1 - alpha / 2)


def _group(clusters: Sequence[object] | None, n: int) -> list[list[int]]:
    """Item indices per cluster, in order of first appearance (one item per cluster when None)."""
    if clusters is None:
        return [[i] for i in range(n)]
    if len(clusters) != n:
        raise ValueError(f"clusters must have one id per item: got {len(clusters)} ids for {n} items")
    groups: dict[object, list[int]] = {}
    for i, cid in enumerate(clusters):
        groups.setdefault(cid, []).append(i)
    return list(groups.values())


@dataclass(frozen=True)
class PairedChange:
    """A change between two stages measured on the same items, with its interval and p-values.

    ``change = after - before``: accuracy (a fraction) or log-perplexity (nats per token, so
    ``exp(change)`` is the perplexity ratio). ``ci`` is the percentile bootstrap interval at
    ``level``; ``p_two_sided``, ``p_less`` (the change is negative) and ``p_greater`` come from
    the cluster sign-flip test. ``lost`` / ``gained`` sum the per-item decreases / increases
    (for 0/1 credits: McNemar's b and c). ``null_sum_squares`` (sum of squared cluster
    differences) and ``weight_sum_squares`` (sum of squared cluster weights) size the minimum
    detectable change; ``weight_total`` is the item (or token) count.
    """

    before: float
    after: float
    change: float
    ci: tuple[float, float]
    p_two_sided: float
    p_less: float
    p_greater: float
    items: int
    clusters: int
    lost: float
    gained: float
    level: float
    null_sum_squares: float
    weight_sum_squares: float
    weight_total: float
    measure: str  # "accuracy" or "log_perplexity"

    def to_dict(self) -> dict:
        """JSON-ready fields (the interval as a two-item list)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["ci"] = list(self.ci)
        return out


def _checked_samples(n_boot: int, n_resamples: int) -> None:
    for name, value in (("n_boot", n_boot), ("n_resamples", n_resamples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def paired_accuracy_change(
    before: Sequence[float],
    after: Sequence[float],
    clusters: Sequence[object] | None = None,
    level: float = 0.95,
    n_boot: int = 4000,
    n_resamples: int = 20_000,
    seed: int = 0,
) -> PairedChange:
    """Accuracy change between two stages on the same items, from per-item credits (0..1).

    The interval is a percentile bootstrap over clusters (items when ``clusters`` is None): each
    replicate draws clusters with replacement and takes the accuracy change on the drawn items.
    Two pseudo-clusters of the mean cluster size, one all gained and one all lost, join the
    draws (as Agresti and Min add to the 2x2 table): without them, stages that agree on every
    item would give a zero-width interval, and "retained" would be claimed from 24 items.
    The p-values come from :func:`sign_flip_test` on per-cluster sums of ``after - before``
    (exact McNemar for 0/1 credits and one item per cluster). Seeded: the same input gives the
    same result.

    >>> c = paired_accuracy_change([1, 1, 1, 1, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0, 1])
    >>> c.change, c.lost, c.gained, c.p_two_sided, c.p_less
    (-0.625, 5.0, 0.0, 0.0625, 0.03125)
    """
    level = _level(level)
    _checked_samples(n_boot, n_resamples)
    if len(before) != len(after) or not before:
        raise ValueError(
            f"before and after need the same number of items (>= 1), got {len(before)} and {len(after)}"
        )
    for name, credits in (("before", before), ("after", after)):
        bad = next(
            (c for c in credits if isinstance(c, bool) or not isinstance(c, Real) or not 0 <= c <= 1), None
        )
        if bad is not None:
            raise ValueError(f"{name} credits must be numbers in [0, 1], got {bad!r}")
    groups = _group(clusters, len(before))
    diffs = [float(y) - float(x) for x, y in zip(before, after)]
    sums = [sum(diffs[i] for i in g) for g in groups]
    parts = [
        (sum(float(after[i]) for i in g), len(g), sum(float(before[i]) for i in g), len(g)) for g in groups
    ]
    n = len(before)
    size = n / len(groups)  # pseudo-clusters of the mean size: one all gained, one all lost
    parts += [(size, size, 0.0, size), (0.0, size, size, size)]
    p = sign_flip_pvalues(sums, n_resamples, seed)
    return PairedChange(
        before=sum(map(float, before)) / n,
        after=sum(map(float, after)) / n,
        change=sum(diffs) / n,
        ci=_bootstrap_ratio_difference(parts, level, n_boot, seed),
        p_two_sided=p["two-sided"],
        p_less=p["less"],
        p_greater=p["greater"],
        items=n,
        clusters=len(groups),
        lost=-sum(d for d in diffs if d < 0) + 0.0,
        gained=sum(d for d in diffs if d > 0) + 0.0,
        level=level,
        null_sum_squares=sum(s * s for s in sums),
        weight_sum_squares=float(sum(len(g) ** 2 for g in groups)),
        weight_total=float(n),
        measure="accuracy",
    )


def _nll_pairs(per_text_nll: Sequence[Sequence[float]], name: str) -> list[tuple[float, float]]:
    pairs = []
    for i, row in enumerate(per_text_nll):
        if (
            len(row) != 2
            or not all(isinstance(v, Real) and not isinstance(v, bool) for v in row)
            or row[1] <= 0
        ):
            raise ValueError(f"{name}[{i}] must be [nll, tokens] with tokens > 0, got {row!r}")
        pairs.append((float(row[0]), float(row[1])))
    return pairs


def paired_log_ppl_change(
    before: Sequence[Sequence[float]],
    after: Sequence[Sequence[float]],
    clusters: Sequence[object] | None = None,
    level: float = 0.95,
    n_boot: int = 4000,
    n_resamples: int = 20_000,
    seed: int = 0,
) -> PairedChange:
    """Change in token-weighted log-perplexity between two stages on the same texts.

    ``before`` / ``after`` hold ``[nll, tokens]`` per text (the run's ``per_text_nll``). The
    change is ``ln(ppl_after / ppl_before) = sum(nll_after)/tokens - sum(nll_before)/tokens``;
    the interval is a percentile bootstrap over texts (or clusters of texts) of that ratio, and
    the p-values a sign-flip test on per-text NLL differences (random sign patterns: NLLs are
    continuous). Positive = perplexity rose (worse).

    >>> c = paired_log_ppl_change([[10.0, 5], [20.0, 5]], [[11.0, 5], [22.0, 5]])
    >>> round(c.change, 6), c.p_greater
    (0.3, 0.25)
    """
    level = _level(level)
    _checked_samples(n_boot, n_resamples)
    b, a = _nll_pairs(before, "before"), _nll_pairs(after, "after")
    if len(a) != len(b) or not a:
        raise ValueError(f"before and after need the same number of texts (>= 1), got {len(b)} and {len(a)}")
    groups = _group(clusters, len(a))
    parts = [
        (sum(a[i][0] for i in g), sum(a[i][1] for i in g), sum(b[i][0] for i in g), sum(b[i][1] for i in g))
        for g in groups
    ]
    tokens_a, tokens_b = sum(p[1] for p in parts), sum(p[3] for p in parts)
    log_ppl_a, log_ppl_b = sum(p[0] for p in parts) / tokens_a, sum(p[2] for p in parts) / tokens_b
    # per-cluster NLL change, the before side rescaled to the after side's tokens (equal in practice)
    sums = [p[0] - p[2] * p[1] / p[3] for p in parts]
    diffs = [x[0] - y[0] for x, y in zip(a, b)]
    p = sign_flip_pvalues(sums, n_resamples, seed)
    return PairedChange(
        before=log_ppl_b,
        after=log_ppl_a,
        change=log_ppl_a - log_ppl_b,
        ci=_bootstrap_ratio_difference(parts, level, n_boot, seed),
        p_two_sided=p["two-sided"],
        p_less=p["less"],
        p_greater=p["greater"],
        items=len(a),
        clusters=len(groups),
        lost=sum(d for d in diffs if d > 0) + 0.0,  # NLL added by the texts that got worse
        gained=-sum(d for d in diffs if d < 0) + 0.0,
        level=level,
        null_sum_squares=sum(s * s for s in sums),
        weight_sum_squares=sum(p[1] ** 2 for p in parts),
        weight_total=tokens_a,
        measure="log_perplexity",
    )


# ----------------------------------------------------------------------------- one stage's interval


def accuracy_interval(
    credits: Sequence[float],
    clusters: Sequence[object] | None = None,
    level: float = 0.95,
    n_boot: int = 4000,
    seed: int = 0,
) -> tuple[float, float]:
    """Interval for one accuracy: exact Clopper–Pearson for 0/1 credits on independent items,
    else (tie shares, or clusters of several items) a percentile bootstrap over clusters, with
    one all-right and one all-wrong pseudo-cluster so that 48 right answers do not give [1, 1].

    >>> [round(v, 4) for v in accuracy_interval([1, 0] * 12)]
    [0.2912, 0.7088]
    """
    level = _level(level)
    _checked_samples(n_boot, 1)
    if not credits:
        raise ValueError("accuracy_interval needs at least one credit")
    groups = _group(clusters, len(credits))
    if all(c in (0, 1) for c in credits) and len(groups) == len(credits):
        return binomial_ci(int(sum(credits)), len(credits), level)
    parts = [(sum(float(credits[i]) for i in g), len(g), 0.0, len(g)) for g in groups]
    size = len(credits) / len(groups)  # one all-right and one all-wrong pseudo-cluster (as Agresti-Coull)
    parts += [(size, size, 0.0, size), (0.0, size, 0.0, size)]
    return _bootstrap_ratio_difference(parts, level, n_boot, seed)


def perplexity_interval(
    per_text_nll: Sequence[Sequence[float]],
    clusters: Sequence[object] | None = None,
    level: float = 0.95,
    n_boot: int = 4000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval over texts of the token-weighted perplexity.

    >>> perplexity_interval([[2.0, 1], [2.0, 1]]) == (math.exp(2.0), math.exp(2.0))
    True
    """
    level = _level(level)
    _checked_samples(n_boot, 1)
    pairs = _nll_pairs(per_text_nll, "per_text_nll")
    if not pairs:
        raise ValueError("perplexity_interval needs at least one text")
    groups = _group(clusters, len(pairs))
    parts = [
        (sum(pairs[i][0] for i in g), sum(pairs[i][1] for i in g), 0.0, sum(pairs[i][1] for i in g))
        for g in groups
    ]
    low, high = _bootstrap_ratio_difference(parts, level, n_boot, seed)
    return math.exp(low), math.exp(high)


# ----------------------------------------------------------------------------- many checks


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order (statsmodels ``multipletests(method="holm")``).

    Rejecting where the adjusted p is below alpha keeps the family-wise error rate at alpha.

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    values = [float(p) for p in pvalues]
    bad = next((p for p in values if not 0 <= p <= 1), None)
    if bad is not None:
        raise ValueError(f"p-values must lie in [0, 1], got {bad!r}")
    m = len(values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=values.__getitem__)):
        running = max(running, min(1.0, (m - rank) * values[i]))
        adjusted[i] = running
    return adjusted


def min_detectable_change(change: PairedChange, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Smallest worsening a one-sided paired test at ``alpha`` detects with ``power``, at this N.

    Normal approximation to the paired (McNemar-type) test, after Connor (1987): with cluster
    differences D_k and weights w_k (items, or tokens), a true change d is detected when
    ``d * sum(w) = z(1-alpha) * sqrt(sum(D^2)) + z(power) * sqrt(sum(D^2) - d^2 * sum(w^2))``.
    ``sum(D^2)`` is the observed discordance (for 0/1 credits, the number of discordant items:
    Connor's n*psi). In the units of ``change`` (accuracy fraction, or log-perplexity). None when
    nothing changed at all (no discordance to scale by).

    >>> c = paired_accuracy_change([1] * 10 + [0] * 90, [0] * 5 + [1] * 5 + [1] * 5 + [0] * 85)
    >>> round(min_detectable_change(c), 4)
    0.0778
    """
    for name, value in (("alpha", alpha), ("power", power)):
        if not 0 < value < 1:
            raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    s, w2, total = change.null_sum_squares, change.weight_sum_squares, change.weight_total
    if s <= 0:
        return None
    normal = NormalDist()
    z_alpha, z_power = normal.inv_cdf(1 - alpha), normal.inv_cdf(power)

    def excess(d: float) -> float:  # left side minus right side; increases with d
        return d * total - z_alpha * math.sqrt(s) - z_power * math.sqrt(max(0.0, s - d * d * w2))

    low, high = 0.0, (z_alpha + max(z_power, 0.0)) * math.sqrt(s) / total + 1e-12
    for _ in range(200):
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        low, high = (mid, high) if excess(mid) < 0 else (low, mid)
    return 0.5 * (low + high)


# ----------------------------------------------------------------------------- forgetting verdict

FORGOTTEN, RETAINED, INCONCLUSIVE = "FORGOTTEN", "RETAINED", "INCONCLUSIVE"


def practical_margin(
    before: float, relative: float | None = 0.05, absolute: float | None = None, lower_is_better: bool = False
) -> float:
    """The smallest worsening that matters, in the units of a :class:`PairedChange`.

    ``absolute`` (in the score's own units: accuracy as a fraction, so 0.03 = 3 points, or
    perplexity) wins over ``relative`` (a fraction of ``before``). Accuracy: the margin is
    ``absolute`` or ``relative * before``. Perplexity (``lower_is_better``; ``before`` is the
    perplexity): the change is in log-perplexity, so the margin is ``ln(1 + relative)`` or
    ``ln((before + absolute) / before)``.

    >>> practical_margin(0.48), round(practical_margin(40.0, lower_is_better=True), 4)
    (0.024, 0.0488)
    >>> practical_margin(0.48, absolute=0.03), round(practical_margin(40.0, None, 2.0, True), 4)
    (0.03, 0.0488)
    """
    if absolute is not None:
        if absolute < 0:
            raise ValueError(f"absolute margin must be >= 0, got {absolute!r}")
        if not lower_is_better:
            return float(absolute)
        if before <= 0:
            raise ValueError(f"a perplexity must be > 0, got {before!r}")
        return math.log((before + absolute) / before)
    if relative is None or relative < 0:
        raise ValueError(f"give a relative margin >= 0 or an absolute one, got relative={relative!r}")
    return math.log1p(relative) if lower_is_better else relative * abs(before)


def worsening(change: PairedChange, lower_is_better: bool) -> tuple[float, float]:
    """The point worsening and the interval's worst end, both as 'how much worse' (positive = worse).

    >>> c = paired_accuracy_change([1, 1, 0, 0], [0, 1, 0, 0])
    >>> worsening(c, lower_is_better=False)[0]
    0.25
    """
    if lower_is_better:
        return change.change, change.ci[1]
    return -change.change, -change.ci[0]


def forgetting_verdict(
    change: PairedChange, margin: float, p_adjusted: float, alpha: float = 0.05, lower_is_better: bool = False
) -> str:
    """``FORGOTTEN``, ``RETAINED`` or ``INCONCLUSIVE`` for a capability between two stages.

    - FORGOTTEN: the one-sided test for a worsening is significant after Holm correction
      (``p_adjusted < alpha``) *and* the point worsening exceeds ``margin``;
    - RETAINED: the interval's worst end lies within the margin (worsening <= ``margin``):
      a drop larger than the margin is excluded (non-inferiority);
    - INCONCLUSIVE: neither; the data cannot tell.

    >>> c = paired_accuracy_change([1] * 10 + [0] * 10, [1] * 10 + [0] * 10)
    >>> forgetting_verdict(c, margin=0.05, p_adjusted=1.0)  # 20 agreeing items cannot exclude 5 points
    'INCONCLUSIVE'
    >>> c = paired_accuracy_change([1] * 200 + [0] * 200, [1] * 200 + [0] * 200)
    >>> forgetting_verdict(c, margin=0.05, p_adjusted=1.0)
    'RETAINED'
    >>> c = paired_accuracy_change([1] * 8 + [0] * 2, [0] * 8 + [0] * 2)
    >>> forgetting_verdict(c, margin=0.05, p_adjusted=c.p_less)
    'FORGOTTEN'
    """
    point, worst = worsening(change, lower_is_better)
    slack = 1e-9 * max(1.0, abs(margin))  # a change of exactly the margin is not "larger", despite rounding
    if p_adjusted < alpha and point > margin + slack:
        return FORGOTTEN
    if worst <= margin + slack:
        return RETAINED
    return INCONCLUSIVE


# ----------------------------------------------------------------------------- continual-learning summary


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def continual_learning_summary(
    matrix: Sequence[Sequence[float | None]], lower_is_better: Sequence[bool] | None = None
) -> dict:
    """ACC, BWT, FWT and the forgetting measure from R[stage][capability] (GEM; Chaudhry et al. 2018).

    Row 0 is the base model, row k the model after phase k (1..T), and capability j (0..T-1) is
    taught in phase j+1, i.e. its own row is j+1. Perplexities (``lower_is_better``) are first
    mapped to ``-ln(ppl)``, so each of their terms is ``-ln(ppl_later / ppl_earlier)``. Per
    capability j:

    - ``final`` = R[T][j];
    - ``bwt`` = R[T][j] - R[j+1][j] for j < T-1 (negative = forgot);
    - ``fwt`` = R[j][j] - R[0][j] for j >= 1 (what the phases before taught it, vs the base);
    - ``forgetting`` = max over rows j+1..T-1 of R[l][j], minus R[T][j], for j < T-1.

    ``acc``, ``bwt``, ``fwt``, ``forgetting`` average these over the higher-is-better capabilities
    (accuracies; perplexity terms are in other units and are reported per capability only); a
    missing (None) cell drops that term. None where nothing is left to average.

    >>> R = [[0.2, 0.2], [0.6, 0.3], [0.5, 0.7]]
    >>> s = continual_learning_summary(R)
    >>> round(s["acc"], 6), round(s["bwt"], 6), round(s["fwt"], 6), round(s["forgetting"], 6)
    (0.6, -0.1, 0.1, 0.1)
    """
    rows = [list(r) for r in matrix]
    if len(rows) < 2:
        raise ValueError("the matrix needs the base row and at least one phase row")
    width = len(rows[0])
    if width != len(rows) - 1 or any(len(r) != width for r in rows):
        raise ValueError(
            f"the matrix must have T+1 rows of T capabilities (base, then one row per phase), got "
            f"{len(rows)} rows of lengths {[len(r) for r in rows]}"
        )
    lower = list(lower_is_better) if lower_is_better is not None else [False] * width
    if len(lower) != width:
        raise ValueError(f"lower_is_better needs one flag per capability ({width}), got {len(lower)}")
    for r in rows:
        for j in range(width):
            if r[j] is not None and lower[j]:
                if r[j] <= 0:
                    raise ValueError(f"a perplexity must be > 0, got {r[j]!r}")
                r[j] = -math.log(r[j])
    last = len(rows) - 1

    def diff(x: float | None, y: float | None) -> float | None:
        return None if x is None or y is None else x - y

    per_capability = []
    for j in range(width):
        earlier = [rows[l][j] for l in range(j + 1, last) if rows[l][j] is not None]
        per_capability.append(
            {
                "final": rows[last][j],
                "bwt": diff(rows[last][j], rows[j + 1][j]) if j < width - 1 else None,
                "fwt": diff(rows[j][j], rows[0][j]) if j >= 1 else None,
                "forgetting": (diff(max(earlier), rows[last][j]) if j < width - 1 and earlier else None),
                "units": "-ln(ppl)" if lower[j] else "score",
            }
        )
    accuracies = [c for c, low in zip(per_capability, lower) if not low]

    def average(key: str) -> float | None:
        return _mean([c[key] for c in accuracies if c[key] is not None])

    return {
        "acc": average("final"),
        "bwt": average("bwt"),
        "fwt": average("fwt"),
        "forgetting": average("forgetting"),
        "per_capability": per_capability,
    }
