"""The strategies report: R matrices with intervals, ACC/BWT, paired differences (vs scipy/statsmodels)."""

from __future__ import annotations

import math

import pytest

from puredl.finetune import compare
from puredl.finetune.report import CAPABILITY_PLOT, LOSS_PLOT, format_table, write_report

scipy_stats = pytest.importorskip("scipy.stats")
sm_contingency = pytest.importorskip("statsmodels.stats.contingency_tables")


def acc(credits: list[int], **extra) -> dict:
    value = sum(credits) / len(credits)
    return {"accuracy": value, "score": value, "credits": list(credits), **extra}


def ppl(nlls: list[float], tokens: int = 10) -> dict:
    rows = [[v, tokens] for v in nlls]
    value = math.exp(sum(nlls) / (tokens * len(nlls)))
    return {"perplexity": value, "score": value, "per_text_nll": rows}


def run(terms_final: list[int], mcq_final: list[int], fluency_final: list[float], name: str = "x") -> dict:
    """Base, then fluency, terminology and reasoning taught in turn; 40 items / 30 texts each."""
    base_terms, base_mcq = [1] * 8 + [0] * 32, [1] * 8 + [0] * 32
    terms_taught = [1] * 30 + [0] * 10
    history = [
        {
            "stage": "base",
            "taught": None,
            "metrics": {
                "fluency": ppl([40.0] * 30),
                "terminology": acc(base_terms),
                "reasoning": acc(base_mcq),
            },
        },
        {"stage": "phase0", "taught": "fluency", "metrics": {"fluency": ppl([30.0] * 30)}},
        {
            "stage": "phase1",
            "taught": "terminology",
            "metrics": {"fluency": ppl([30.5] * 30), "terminology": acc(terms_taught)},
        },
        {
            "stage": "phase2",
            "taught": "reasoning",
            "metrics": {
                "fluency": ppl(fluency_final),
                "terminology": acc(terms_final),
                "reasoning": acc(
                    mcq_final,
                    chance=0.2,
                    primary="taught",
                    measures={"taught_longest": {"accuracy": 0.275}},
                ),
            },
        },
    ]
    from puredl.finetune.forgetting import check_catastrophic_forgetting

    return {
        "name": name,
        "phases": [],
        "history": history,
        "forgetting": check_catastrophic_forgetting(history),
    }


def three_strategies() -> dict:
    progressive = run([1] * 28 + [0] * 12, [1] * 30 + [0] * 10, [31.0 + 0.1 * (i % 3) for i in range(30)])
    # sequential loses 8 taught terms progressive keeps and gains 1; replay keeps them all and gains 2
    sequential = run([1] * 20 + [0] * 8 + [1] + [0] * 11, [1] * 30 + [0] * 10, [33.0] * 30)
    replay = run([1] * 28 + [1, 1] + [0] * 10, [1] * 29 + [0] * 11, [31.0] * 30)
    return {**progressive, "name": "demo", "compare": {"sequential": sequential, "replay": replay}}


def test_matrix_cells_carry_the_exact_binomial_interval_and_the_baselines():
    table = compare.matrix_table(three_strategies())
    lo, hi = scipy_stats.binomtest(30, 40).proportion_ci(0.95, method="exact")
    assert f"75.0% [{100 * lo:.1f}, {100 * hi:.1f}] *" in table  # terminology right after teaching
    lo, hi = scipy_stats.binomtest(8, 40).proportion_ci(0.95, method="exact")
    assert f"20.0% [{100 * lo:.1f}, {100 * hi:.1f}]" in table
    baselines = next(line for line in table.splitlines() if line.startswith("| baselines"))
    assert "chance 20.0%, longest option 27.5%" in baselines
    # a perplexity of identical texts has a zero-width bootstrap interval
    assert f"{math.exp(3.0):.2f} [{math.exp(3.0):.2f}, {math.exp(3.0):.2f}] *" in table
    # an entry's own ci95 wins over the computed one, unless its items are clustered
    own = compare.value_with_interval("reasoning", {"accuracy": 0.5, "ci95": [0.1, 0.9]})
    assert own == "50.0% [10.0, 90.0]"
    clustered = {
        "accuracy": 0.5,
        "ci95": [0.1, 0.9],
        "credits": [1, 1, 0, 0] * 5,
        "clusters": [i // 2 for i in range(20)],  # the two directions of one entry
    }
    from puredl.finetune.stats import accuracy_interval

    expected = accuracy_interval(clustered["credits"], clustered["clusters"])
    assert compare.interval("terminology", clustered) == expected != (0.1, 0.9)


def test_acc_and_bwt_per_strategy_are_the_hand_computed_values():
    table = compare.strategy_table(three_strategies())
    rows = {line.split("|")[1].strip(): line.split("|") for line in table.splitlines()[2:]}
    assert list(rows) == ["progressive", "sequential", "replay"]
    # progressive: ACC = mean(28/40, 30/40) = 72.5%; BWT over accuracies = terminology 28/40 - 30/40
    assert rows["progressive"][2].strip() == "72.5%" and rows["progressive"][3].strip() == "-5.0"
    seq_acc = 100 * (21 / 40 + 30 / 40) / 2  # 21 terms right at the end (20 kept + 1 gained)
    assert rows["sequential"][2].strip() == f"{seq_acc:.1f}%" and rows["sequential"][3].strip() == "-22.5"
    assert rows["replay"][3].strip() == "+0.0"
    # fluency BWT as a perplexity change since phase 0: exp(3.3)/exp(3.0) - 1 for sequential
    assert rows["sequential"][4].strip() == f"{100 * math.expm1(0.3):+.1f}%"
    assert rows["progressive"][5].strip() == "n/a"  # FWT needs untaught capabilities measured
    assert rows["progressive"][7].strip() == "n/a"  # no phase records in this summary
    assert compare._seconds([{"seconds": 50.0}, {"seconds": 10.4}, {"seconds": 2.0}]) == "12"  # not phase 0


def test_final_differences_are_paired_exact_mcnemar_with_holm():
    records = {(r["strategy"], r["capability"]): r for r in compare.final_differences(three_strategies())}
    seq = records[("sequential", "terminology")]
    # progressive right & sequential wrong: 8 items; the reverse: 1 item
    assert (seq["lost"], seq["gained"], seq["test"]) == (8.0, 1.0, "exact McNemar")
    table = [[32 - 8 - 0, 8], [1, 40 - 32 - 1 + 0]]
    assert seq["p_two_sided"] == pytest.approx(sm_contingency.mcnemar(table, exact=True).pvalue)
    assert seq["change"] == pytest.approx(-7 / 40)
    low, high = seq["ci"]
    assert low < seq["change"] < high
    rep = records[("replay", "reasoning")]
    assert (rep["lost"], rep["gained"]) == (1.0, 0.0) and rep["p_two_sided"] == pytest.approx(1.0)
    fl = records[("sequential", "fluency")]
    assert fl["measure"] == "log_perplexity" and fl["change"] > 0  # sequential's perplexity is higher
    from statsmodels.stats.multitest import multipletests

    all_records = compare.final_differences(three_strategies())
    expected = multipletests([r["p_two_sided"] for r in all_records], method="holm")[1]
    assert [r["p_holm"] for r in all_records] == pytest.approx(list(expected))


def test_run_all_table_and_report_show_the_strategies_side_by_side(tmp_path):
    summary = three_strategies()
    printed = format_table(summary)
    assert "Strategies (same base model, same LoRA_0; single training seed" in printed
    assert "Final stage, each strategy minus progressive on the same items" in printed
    assert "exact McNemar" in printed
    path = write_report(tmp_path, summary)
    text = path.read_text(encoding="utf-8")
    assert printed in text and text.count(printed) == 1 and "single training seed" in text
    assert "Forgetting flags: progressive 2, sequential 3, replay 2." in text
    for heading in (
        "## R[stage][capability] with 95% intervals",
        "### progressive",
        "### sequential",
        "### replay",
        "## Capabilities after each stage, strategies side by side",
        "## Baseline: one LoRA trained sequentially",
        "## Strategy: replay",
        "## Forgetting verdicts",
    ):
        assert heading in text, heading
    assert "RETAINED" in text or "INCONCLUSIVE" in text
    assert (tmp_path / CAPABILITY_PLOT).is_file() and not (tmp_path / LOSS_PLOT).exists()


def test_without_compare_there_is_no_strategy_block():
    single = run([1] * 28 + [0] * 12, [1] * 30 + [0] * 10, [31.0] * 30)
    assert compare.format_comparison(single) == "" and "Strategies" not in format_table(single)
    # cells carry the verdict of their record: 28/40 after 30/40 is neither a significant drop nor excluded
    assert "70.0% INCONCLUSIVE, 6.7% worse" in format_table(single)
    assert "22.20 FORGOTTEN, 10.5% worse" in format_table(single)  # 30 texts, all 10.5% worse
    assert compare.final_differences(single) == []
