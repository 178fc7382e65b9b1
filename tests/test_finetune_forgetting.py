"""Forgetting verdicts on hand-made histories with per-item data (puredl.finetune.forgetting)."""

from __future__ import annotations

import math

import pytest

from puredl.finetune import stats
from puredl.finetune.forgetting import (
    any_forgotten,
    capability_matrix,
    check_catastrophic_forgetting,
    continual_learning,
    entry_interval,
    forgotten,
    relative_worsening,
)

PATTERN = [0.3, -0.1, -0.2, 0.25, -0.15, -0.1]  # per-text spread of nll/token around ln(ppl); sums to 0


def ppl(x: float, texts: int = 36, tokens: int = 10) -> dict:
    """A fluency entry of perplexity exactly ``x``: per-text NLLs spread around ln(x)."""
    rows = [[tokens * (math.log(x) + PATTERN[i % len(PATTERN)]), tokens] for i in range(texts)]
    return {"perplexity": x, "nll_per_token": math.log(x), "score": x, "per_text_nll": rows}


def acc(x: float, n: int = 200, **extra) -> dict:
    """An accuracy entry: the first round(x * n) items right, so two stages differ by items lost or gained."""
    right = round(x * n)
    credits = [1] * right + [0] * (n - right)
    return {"accuracy": right / n, "score": right / n, "credits": credits, **extra}


def history(*stages: tuple[str, str | None, dict]) -> list[dict]:
    return [{"stage": s, "taught": t, "metrics": m} for s, t, m in stages]


def three_phase_history(fluency_after_2: float = 41.0, terms_after_2: float = 0.40) -> list[dict]:
    return history(
        ("base", None, {"fluency": ppl(60.0), "terminology": acc(0.20), "reasoning": acc(0.20)}),
        ("phase0", "fluency", {"fluency": ppl(40.0)}),
        ("phase1", "terminology", {"fluency": ppl(40.5), "terminology": acc(0.40)}),
        (
            "phase2",
            "reasoning",
            {"fluency": ppl(fluency_after_2), "terminology": acc(terms_after_2), "reasoning": acc(0.30)},
        ),
    )


def verdicts(records: list[dict]) -> dict[tuple[str, str], str]:
    return {(r["capability"], r["stage"]): r["verdict"] for r in records}


# ----------------------------------------------------------------------------- verdicts


def test_one_record_per_capability_and_later_stage_all_retained():
    records = check_catastrophic_forgetting(three_phase_history())
    # fluency 40 -> 40.5 -> 41: every text a little worse (significant), but well inside 5%: retained
    assert verdicts(records) == {
        ("fluency", "phase1"): "RETAINED",
        ("fluency", "phase2"): "RETAINED",
        ("terminology", "phase2"): "RETAINED",
    }
    assert not any_forgotten(records) and forgotten(records) == []
    fluency = records[1]
    assert fluency["p_value"] < 1e-3 and fluency["change"] == pytest.approx(math.log(41 / 40))
    assert fluency["ci"] == [pytest.approx(math.log(41 / 40))] * 2  # every text moved the same
    assert "RETAINED, a worsening beyond the 5.0% margin is excluded" in fluency["message"]


def test_an_accuracy_drop_beyond_the_margin_and_significant_after_holm_is_forgotten():
    records = check_catastrophic_forgetting(three_phase_history(terms_after_2=0.37))
    (flag,) = forgotten(records)
    assert (flag["capability"], flag["taught_at"], flag["stage"]) == ("terminology", "phase1", "phase2")
    assert (flag["before"], flag["after"], flag["metric"]) == (0.40, 0.37, "accuracy")
    assert flag["relative_change"] == pytest.approx(-0.075) and flag["worse_by"] == pytest.approx(0.075)
    assert flag["change"] == pytest.approx(-0.03) and flag["margin"] == pytest.approx(0.02)
    # 6 of 80 right answers lost, none gained: exact one-sided p = 2**-6; Holm over three checks
    assert (flag["lost"], flag["gained"], flag["items"]) == (6, 0, 200)
    assert flag["p_value"] == 2**-6 and flag["p_two_sided"] == 2**-5
    assert flag["p_holm"] == pytest.approx(min(1.0, 2**-6 * 1))  # the two fluency p's are smaller
    assert flag["ci"][0] < -0.03 < flag["ci"][1] <= 0
    assert not flag["lower_is_better"] and any_forgotten(records)
    assert flag["message"].startswith("terminology accuracy fell from 40.0% after phase1 to 37.0% at phase2")
    assert "FORGOTTEN, a significant worsening beyond the 2.0 points margin" in flag["message"]


def test_holm_counts_every_check_of_the_history():
    # 5 of 100 right answers lost: one-sided p = 1/32 alone, 3/32 over three equal checks (> 0.05)
    hist = history(
        ("phase0", "reasoning", {"reasoning": acc(0.5), "terminology": acc(0.5)}),
        ("phase1", "terminology", {"reasoning": acc(0.475), "terminology": acc(0.5)}),
        ("phase2", "other", {"reasoning": acc(0.475), "terminology": acc(0.475)}),
    )
    records = check_catastrophic_forgetting(hist, absolute_margin=0.01)
    assert [r["p_value"] for r in records] == [1 / 32] * 3
    assert [r["p_holm"] for r in records] == [pytest.approx(3 / 32)] * 3
    assert [r["verdict"] for r in records] == ["INCONCLUSIVE"] * 3
    (alone,) = check_catastrophic_forgetting(hist[:2], absolute_margin=0.01)
    assert alone["p_holm"] == 1 / 32 and alone["verdict"] == "FORGOTTEN"


def test_perplexity_counts_an_increase_as_worse_and_a_decrease_as_better():
    records = check_catastrophic_forgetting(three_phase_history(fluency_after_2=44.0))
    (flag,) = forgotten(records)
    assert (flag["capability"], flag["stage"], flag["metric"]) == ("fluency", "phase2", "perplexity")
    assert flag["relative_change"] == pytest.approx(0.10) and flag["lower_is_better"]
    assert flag["change"] == pytest.approx(math.log(44 / 40)) and flag["change_units"] == "log_perplexity"
    assert flag["margin"] == pytest.approx(math.log(1.05))
    assert "fluency perplexity rose from 40 after phase0 to 44 at phase2 (+10.0%" in flag["message"]
    improved = check_catastrophic_forgetting(three_phase_history(fluency_after_2=30.0))
    assert verdicts(improved)[("fluency", "phase2")] == "RETAINED"
    # an accuracy rise never counts as forgetting
    risen = check_catastrophic_forgetting(three_phase_history(terms_after_2=0.9))
    assert verdicts(risen)[("terminology", "phase2")] == "RETAINED" and not any_forgotten(risen)


@pytest.mark.parametrize(
    "metric, before, at_margin, just_over",
    [(ppl, 100.0, 105.0, 105.001), (acc, 0.5, 0.475, 0.47), (ppl, 40.0, 42.0, 42.01)],
)
def test_exactly_the_margin_is_not_forgotten_but_just_over_is(metric, before, at_margin, just_over):
    cap = "fluency" if metric is ppl else "reasoning"
    for after, flagged in ((at_margin, False), (just_over, True)):
        hist = history(("phase0", cap, {cap: metric(before)}), ("phase1", "other", {cap: metric(after)}))
        records = check_catastrophic_forgetting(hist, threshold=0.05)
        assert any_forgotten(records) is flagged, (before, after, records[0]["message"])


def test_changes_before_a_capability_is_taught_are_not_checked():
    hist = history(
        ("base", None, {"reasoning": acc(0.5)}),
        (
            "phase0",
            "fluency",
            {"fluency": ppl(40.0), "reasoning": acc(0.2)},
        ),  # worse than base: not taught yet
    )
    assert check_catastrophic_forgetting(hist) == []


def test_reteaching_a_capability_moves_the_reference_and_missing_scores_are_skipped():
    hist = history(
        ("phase0", "reasoning", {"reasoning": acc(0.50)}),
        ("phase1", "reasoning", {"reasoning": acc(0.30)}),  # re-taught, 40 of 100 lost: forgotten
        ("phase2", "other", {"reasoning": acc(0.29)}),  # 2 of 60 lost since phase1: not forgotten
        ("phase3", "other", {"fluency": ppl(50.0)}),  # reasoning not measured: nothing to compare
        ("phase4", "other", {"reasoning": {"score": float("nan")}}),  # no usable score
    )
    records = check_catastrophic_forgetting(hist)
    assert [(r["stage"], r["taught_at"], r["verdict"]) for r in records] == [
        ("phase1", "phase0", "FORGOTTEN"),
        ("phase2", "phase1", "INCONCLUSIVE"),
    ]


def test_a_larger_margin_tolerates_more_and_every_later_stage_is_checked():
    hist = history(
        ("phase0", "reasoning", {"reasoning": acc(0.5)}),
        ("phase1", "a", {"reasoning": acc(0.44)}),
        ("phase2", "b", {"reasoning": acc(0.40)}),
    )
    assert [f["stage"] for f in forgotten(check_catastrophic_forgetting(hist))] == ["phase1", "phase2"]
    assert [f["stage"] for f in forgotten(check_catastrophic_forgetting(hist, threshold=0.15))] == ["phase2"]
    assert forgotten(check_catastrophic_forgetting(hist, threshold=0.25)) == []
    # an absolute margin (score units) replaces the relative one
    records = check_catastrophic_forgetting(hist, threshold=0.0, absolute_margin=0.08)
    assert [f["stage"] for f in forgotten(records)] == ["phase2"] and records[0]["margin"] == 0.08


def test_a_small_drop_is_inconclusive_with_the_drop_this_n_could_detect():
    def terms(credits):
        mean = sum(credits) / len(credits)
        return {"terminology": {"accuracy": mean, "score": mean, "credits": credits}}

    taught = [1.0] * 12 + [0.0] * 12
    small = [1.0] * 10 + [0.0] * 14  # 2 of the 12 right answers lost
    large = [0.0] * 24  # all 12 lost
    for after, lost, verdict in ((small, 2, "INCONCLUSIVE"), (large, 12, "FORGOTTEN")):
        hist = [
            {"stage": "base", "taught": None, "metrics": terms([0.0] * 24)},
            {"stage": "phase1", "taught": "terminology", "metrics": terms(taught)},
            {"stage": "phase2", "taught": "reasoning", "metrics": terms(after)},
        ]
        (record,) = check_catastrophic_forgetting(hist, threshold=0.05)
        assert (record["verdict"], record["items"], record["lost"]) == (verdict, 24, lost)
    # Connor's normal approximation with psi = 2/24, one-sided alpha 0.05, power 0.8
    assert record["p_value"] == 2**-12
    (small_record,) = check_catastrophic_forgetting(hist[:2] + [{**hist[2], "metrics": terms(small)}])
    mdd = small_record["min_detectable_drop"]
    za, zb, psi, n = 1.6448536269514722, 0.8416212335729143, 2 / 24, 24
    assert math.sqrt(n) * mdd == pytest.approx(za * math.sqrt(psi) + zb * math.sqrt(psi - mdd**2), abs=1e-9)
    assert f"this N detects a worsening of about {100 * mdd:.1f} points" in small_record["message"]


def test_clusters_from_the_entries_are_used():
    def terms(credits):
        mean = sum(credits) / len(credits)
        clusters = [i // 2 for i in range(len(credits))]  # the two directions of one entry
        return {"terminology": {"score": mean, "credits": credits, "clusters": clusters}}

    taught, after = [1, 1] * 6 + [0] * 12, [0, 0] * 3 + [1, 1] * 3 + [0] * 12  # 3 entries lost both ways
    hist = [
        {"stage": "phase1", "taught": "terminology", "metrics": terms(taught)},
        {"stage": "phase2", "taught": "x", "metrics": terms(after)},
    ]
    (record,) = check_catastrophic_forgetting(hist)
    assert record["clusters"] == 12 and record["p_value"] == 2**-3  # three clusters, not six items
    bad = [
        hist[0],
        {**hist[1], "metrics": {"terminology": {**terms(after)["terminology"], "clusters": list(range(24))}}},
    ]
    with pytest.raises(ValueError, match="clusters differ"):
        check_catastrophic_forgetting(bad)


def test_entries_without_per_item_data_are_inconclusive():
    hist = history(
        ("phase0", "reasoning", {"reasoning": {"score": 0.5}}),
        ("phase1", "x", {"reasoning": {"score": 0.1}}),
    )
    (record,) = check_catastrophic_forgetting(hist)
    assert record["verdict"] == "INCONCLUSIVE" and record["p_value"] is None and record["ci"] is None
    assert record["message"].endswith("INCONCLUSIVE (no per-item data to test)")
    assert not any_forgotten([record])


def test_a_different_item_count_is_not_paired():
    # e.g. max_eval changed between stages: the items are not the same, so nothing is tested
    hist = history(
        ("phase0", "reasoning", {"reasoning": acc(0.5, n=100)}),
        ("phase1", "x", {"reasoning": acc(0.1, n=90)}),
    )
    (record,) = check_catastrophic_forgetting(hist)
    assert record["p_value"] is None and record["verdict"] == "INCONCLUSIVE"


def test_a_diverged_model_is_forgotten_and_a_diverged_teaching_is_no_reference():
    diverged = ppl(40.0)
    diverged.update(perplexity=math.inf, score=math.inf)
    diverged["per_text_nll"][3][0] = math.inf
    hist = history(("phase0", "fluency", {"fluency": ppl(40.0)}), ("phase1", "x", {"fluency": diverged}))
    (record,) = check_catastrophic_forgetting(hist)
    assert record["verdict"] == "FORGOTTEN" and record["p_value"] is None and any_forgotten([record])
    assert record["message"].endswith("FORGOTTEN (infinite perplexity: the model diverged)")
    hist = history(("phase0", "fluency", {"fluency": diverged}), ("phase1", "x", {"fluency": ppl(40.0)}))
    assert check_catastrophic_forgetting(hist) == []


def test_a_capability_taught_to_zero_accuracy_is_still_a_reference():
    hist = history(("phase0", "reasoning", {"reasoning": acc(0.0)}), ("phase1", "x", {"reasoning": acc(0.1)}))
    (record,) = check_catastrophic_forgetting(hist)
    assert (record["before"], record["relative_change"], record["verdict"]) == (0.0, math.inf, "RETAINED")


def test_old_flags_without_a_verdict_still_count_as_forgotten():
    assert any_forgotten([{"capability": "fluency", "stage": "phase1"}])
    assert not any_forgotten([])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="threshold"):
        check_catastrophic_forgetting([], threshold=-0.1)
    with pytest.raises(ValueError, match="alpha"):
        check_catastrophic_forgetting([], alpha=1.5)
    with pytest.raises(ValueError, match="absolute_margin must be a number >= 0"):
        check_catastrophic_forgetting([], absolute_margin=-0.01)
    with pytest.raises(ValueError, match=r"history\[1\]"):
        check_catastrophic_forgetting([{"stage": "base", "metrics": {}}, {"stage": "phase0"}])
    assert relative_worsening(0.0, 0.0, lower_better=False) == 0.0
    assert relative_worsening(0.0, 0.1, lower_better=False) == -math.inf  # from 0% accuracy only up


# ----------------------------------------------------------------------------- matrix and summary


def test_capability_matrix_and_continual_learning_summary():
    hist = three_phase_history(fluency_after_2=44.0, terms_after_2=0.37)
    matrix = capability_matrix(hist)
    assert matrix["stages"] == ["base", "phase0", "phase1", "phase2"]
    assert matrix["capabilities"] == ["fluency", "terminology", "reasoning"]
    assert matrix["lower_is_better"] == [True, False, False]
    assert matrix["scores"][1] == [40.0, None, None] and matrix["scores"][3] == [44.0, 0.37, 0.30]
    assert matrix["intervals"][3][1] == list(stats.binomial_ci(74, 200))
    low, high = matrix["intervals"][3][0]
    assert low < 44.0 < high
    summary = continual_learning(hist)
    assert summary["acc"] == pytest.approx((0.37 + 0.30) / 2)
    assert summary["bwt"] == pytest.approx(0.37 - 0.40)  # the accuracies' BWT; fluency has its own units
    assert summary["per_capability"][0]["bwt"] == pytest.approx(-math.log(44.0 / 40.0))
    # FWT needs each capability measured before its phase (R[j][j]); this run measures only what it taught
    assert summary["fwt"] is None and summary["per_capability"][2]["fwt"] is None


def test_capability_matrix_needs_one_new_capability_per_phase():
    hist = history(("base", None, {}), ("phase0", "a", {}), ("phase1", "a", {}))
    with pytest.raises(ValueError, match="must teach a new capability"):
        capability_matrix(hist)


def test_entry_interval():
    assert entry_interval("reasoning", acc(0.3, n=50)) == stats.binomial_ci(15, 50)
    assert entry_interval("reasoning", {"score": 0.3}) is None
    low, high = entry_interval("fluency", ppl(40.0))
    assert low < 40.0 < high
    diverged = ppl(40.0)
    diverged["per_text_nll"][0][0] = math.inf
    assert entry_interval("fluency", diverged) is None


def test_learning_gains_match_an_exact_one_sided_mcnemar_and_holm():
    from scipy.stats import binomtest
    from statsmodels.stats.multitest import multipletests

    from puredl.finetune.forgetting import learning_gains

    # reasoning: 7 items wrong -> right, 2 right -> wrong, 11 unchanged; terminology: 3 up, 3 down
    before_r, after_r = [0] * 7 + [1] * 2 + [1] * 5 + [0] * 6, [1] * 7 + [0] * 2 + [1] * 5 + [0] * 6
    before_t, after_t = [0, 0, 0, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0, 1, 0]

    def entry(credits):
        return {"score": sum(credits) / len(credits), "credits": credits}

    history = [
        {
            "stage": "base",
            "taught": None,
            "metrics": {"reasoning": entry(before_r), "terminology": entry(before_t)},
        },
        {"stage": "phase1", "taught": "terminology", "metrics": {"terminology": entry(after_t)}},
        {"stage": "phase2", "taught": "reasoning", "metrics": {"reasoning": entry(after_r)}},
    ]
    gains = learning_gains(history)
    assert [(g["capability"], g["gained"], g["lost"]) for g in gains] == [
        ("terminology", 3, 3),
        ("reasoning", 7, 2),
    ]
    raw = [
        binomtest(3, 6, 0.5, alternative="greater").pvalue,
        binomtest(7, 9, 0.5, alternative="greater").pvalue,
    ]
    assert [g["p_value"] for g in gains] == pytest.approx(raw, abs=1e-12)
    assert [g["p_holm"] for g in gains] == pytest.approx(
        list(multipletests(raw, method="holm")[1]), abs=1e-12
    )
    assert [g["significant"] for g in gains] == [False, False]
    assert "no significant gain" in gains[1]["message"] and "(base)" in gains[1]["message"]


def test_learning_gains_of_perplexity_test_a_fall():
    from puredl.finetune.forgetting import learning_gains

    texts = 12
    before = [[2.0 * (1 + i % 3), 2] for i in range(texts)]
    after = [[1.0 * (1 + i % 3), 2] for i in range(texts)]  # every text halves its NLL
    history = [
        {
            "stage": "base",
            "taught": None,
            "metrics": {"fluency": {"score": 9.0, "perplexity": 9.0, "per_text_nll": before}},
        },
        {
            "stage": "phase0",
            "taught": "fluency",
            "metrics": {"fluency": {"score": 3.0, "perplexity": 3.0, "per_text_nll": after}},
        },
    ]
    (gain,) = learning_gains(history)
    assert gain["change"] < 0 and gain["ci"][1] < 0
    assert gain["p_value"] == pytest.approx(
        0.5**texts, rel=0.2
    )  # every sign flip but the observed one is larger
    assert gain["significant"] and "fell from 9 (base) to 3" in gain["message"]
