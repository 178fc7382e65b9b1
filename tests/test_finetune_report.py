"""Forgetting flags on hand-made histories, and the run report (table, metrics.json, PNGs)."""

from __future__ import annotations

import json
import math

import pytest

from puredl.finetune.forgetting import check_catastrophic_forgetting, relative_worsening
from puredl.finetune.report import (
    CAPABILITY_PLOT,
    LOSS_PLOT,
    forgetting_verdict,
    format_table,
    write_report,
)


def ppl(x: float) -> dict:
    return {"perplexity": x, "nll_per_token": math.log(x), "score": x}


def acc(x: float, **extra: float) -> dict:
    return {"accuracy": x, "score": x, **extra}


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


# ----------------------------------------------------------------------------- forgetting


def test_no_flags_when_everything_is_retained():
    assert check_catastrophic_forgetting(three_phase_history()) == []


def test_an_accuracy_drop_of_more_than_5_percent_is_flagged_with_its_details():
    (flag,) = check_catastrophic_forgetting(three_phase_history(terms_after_2=0.37))
    assert (flag["capability"], flag["taught_at"], flag["stage"]) == ("terminology", "phase1", "phase2")
    assert (flag["before"], flag["after"], flag["metric"]) == (0.40, 0.37, "accuracy")
    assert flag["relative_change"] == pytest.approx(-0.075) and flag["worse_by"] == pytest.approx(0.075)
    assert not flag["lower_is_better"] and "terminology accuracy fell from 0.4" in flag["message"]


def test_perplexity_counts_an_increase_as_worse_and_a_decrease_as_better():
    (flag,) = check_catastrophic_forgetting(three_phase_history(fluency_after_2=44.0))
    assert (flag["capability"], flag["stage"], flag["metric"]) == ("fluency", "phase2", "perplexity")
    assert flag["relative_change"] == pytest.approx(0.10) and flag["lower_is_better"]
    assert check_catastrophic_forgetting(three_phase_history(fluency_after_2=30.0)) == []  # improved
    # phase1 (40.5) is within 5% of phase0 (40.0); an accuracy rise never counts as forgetting
    hist = three_phase_history(terms_after_2=0.9)
    assert check_catastrophic_forgetting(hist) == []


@pytest.mark.parametrize(
    "metric, before, at_threshold, just_over",
    [
        (ppl, 100.0, 105.0, 105.001),
        (acc, 0.8, 0.76, 0.7599),
        (acc, 0.5, 0.475, 0.4749),
        (ppl, 40.0, 42.0, 42.01),
    ],
)
def test_exactly_5_percent_is_not_flagged_but_just_over_is(metric, before, at_threshold, just_over):
    cap = "fluency" if metric is ppl else "reasoning"
    for after, flagged in ((at_threshold, False), (just_over, True)):
        hist = history(("phase0", cap, {cap: metric(before)}), ("phase1", "other", {cap: metric(after)}))
        assert bool(check_catastrophic_forgetting(hist, threshold=0.05)) is flagged, (before, after)


def test_changes_before_a_capability_is_taught_are_not_forgetting():
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
        ("phase1", "reasoning", {"reasoning": acc(0.30)}),  # re-taught, 40% worse than phase0: flagged
        ("phase2", "other", {"reasoning": acc(0.29)}),  # 3.3% worse than phase1: fine
        ("phase3", "other", {"fluency": ppl(50.0)}),  # reasoning not measured: nothing to compare
        ("phase4", "other", {"reasoning": {"score": float("nan")}}),  # no usable score
    )
    flags = check_catastrophic_forgetting(hist)
    assert [(f["stage"], f["taught_at"]) for f in flags] == [("phase1", "phase0")]


def test_a_larger_threshold_tolerates_more_and_every_later_stage_is_checked():
    hist = history(
        ("phase0", "reasoning", {"reasoning": acc(0.5)}),
        ("phase1", "a", {"reasoning": acc(0.44)}),
        ("phase2", "b", {"reasoning": acc(0.40)}),
    )
    assert [f["stage"] for f in check_catastrophic_forgetting(hist)] == ["phase1", "phase2"]
    assert [f["stage"] for f in check_catastrophic_forgetting(hist, threshold=0.15)] == ["phase2"]
    assert check_catastrophic_forgetting(hist, threshold=0.25) == []


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="threshold"):
        check_catastrophic_forgetting([], threshold=-0.1)
    with pytest.raises(ValueError, match=r"history\[1\]"):
        check_catastrophic_forgetting([{"stage": "base", "metrics": {}}, {"stage": "phase0"}])
    assert relative_worsening(0.0, 0.0, lower_better=False) == 0.0
    assert relative_worsening(0.0, 0.1, lower_better=False) == -math.inf  # from 0% accuracy only up


# ----------------------------------------------------------------------------- report


def summary_of(hist: list[dict], **extra) -> dict:
    return {
        "name": "medgemma-korean",
        "model": "embedded:gemma-3-270m",
        "device": "cpu (2 threads)",
        "phases": [
            {
                "index": k,
                "name": n,
                "capability": c,
                "adapter_dir": f"runs/x/phase{k}/lora_{k}",
                "train_losses": [3.0 - 0.1 * i - k for i in range(6)],
                "steps": 6,
                "seconds": 12.5,
                "n_examples": 24,
            }
            for k, (n, c) in enumerate(
                [
                    ("Korean fluency", "fluency"),
                    ("Medical terminology", "terminology"),
                    ("Medical reasoning", "reasoning"),
                ]
            )
        ],
        "history": hist,
        "forgetting": check_catastrophic_forgetting(hist),
        "forgetting_threshold": 0.05,
        "total_seconds": 321.0,
        **extra,
    }


def test_table_has_a_row_per_stage_and_marks_taught_retained_and_forgotten():
    hist = three_phase_history(fluency_after_2=44.0)
    hist[2]["metrics"]["terminology"] = acc(0.40, taught_accuracy=0.5, heldout_accuracy=0.3)
    table = format_table(summary_of(hist))
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows] == ["stage", "base", "phase0", "phase1", "phase2"]
    assert "fluency (perplexity, lower is better)" in rows[0] and "reasoning (accuracy)" in rows[0]
    base, p0, p1, p2 = rows[1:]
    assert "60.00" in base and "20.0%" in base
    assert "40.00 [taught]" in p0 and p0.count(" - ") == 2  # not measured before being taught
    assert "40.50 retained, 1.2% worse" in p1 and "40.0% (taught 50.0%, held-out 30.0%) [taught]" in p1
    assert (
        "44.00 FORGOTTEN, 10.0% worse" in p2 and "40.0% retained, unchanged" in p2 and "30.0% [taught]" in p2
    )
    assert "Catastrophic forgetting flagged (threshold 5.0%)" in table and "fluency perplexity rose" in table
    assert len({len(r) for r in rows}) == 1  # columns line up in the terminal


def test_table_without_history_and_verdict_without_flags():
    assert "no validation results" in format_table({"history": []})
    assert forgetting_verdict({"forgetting": [], "forgetting_threshold": 0.1}) == (
        "No catastrophic forgetting (threshold 10.0%)."
    )


def test_write_report_writes_markdown_json_and_plots_atomically(tmp_path):
    hist = three_phase_history(terms_after_2=0.30)
    hist[1]["metrics"]["fluency"]["odd"] = float("nan")
    seq_hist = three_phase_history(fluency_after_2=55.0, terms_after_2=0.25)
    seq = summary_of(seq_hist, name="medgemma-korean (sequential baseline)")
    summary = summary_of(hist, sequential=seq)
    path = write_report(tmp_path / "runs" / "medgemma-korean", summary)
    run = path.parent
    assert path.name == "report.md"
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["report.md", "metrics.json", LOSS_PLOT, CAPABILITY_PLOT]
    )
    text = path.read_text(encoding="utf-8")
    assert "# medgemma-korean: progressive LoRA report" in text and "embedded:gemma-3-270m" in text
    assert format_table(summary) in text
    assert (
        "## Baseline: one LoRA trained sequentially" in text
        and "Forgetting flags: progressive 1, sequential 2." in text
    )
    assert "fluency: base 60.00 -> final 41.00 (31.7% better)" in text
    assert "3.000 -> 2.500" in text and f"![{LOSS_PLOT}]({LOSS_PLOT})" in text
    data = json.loads((run / "metrics.json").read_text(encoding="utf-8"))  # strict JSON: NaN became null
    assert data["history"][1]["metrics"]["fluency"]["odd"] is None
    assert (
        data["forgetting"][0]["stage"] == "phase2" and data["sequential"]["history"][3]["stage"] == "phase2"
    )
    from PIL import Image

    for name in (LOSS_PLOT, CAPABILITY_PLOT):
        with Image.open(run / name) as img:
            assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200
    # rewriting (the pipeline does after every phase) replaces the files and leaves no temp files
    write_report(run, summary_of(hist[:2]))
    assert "phase2" not in format_table(summary_of(hist[:2]))
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["report.md", "metrics.json", LOSS_PLOT, CAPABILITY_PLOT]
    )


def test_report_accepts_the_compare_form_and_skips_empty_plots(tmp_path):
    seq = {"name": "seq", "history": three_phase_history(), "forgetting": [], "phases": []}
    summary = {
        "name": "r",
        "phases": [],
        "history": three_phase_history(),
        "forgetting": [],
        "compare": {"sequential": seq},
    }
    text = write_report(tmp_path, summary).read_text(encoding="utf-8")
    assert "Forgetting flags: progressive 0, sequential 0." in text
    assert not (tmp_path / LOSS_PLOT).exists() and (tmp_path / CAPABILITY_PLOT).exists()
    empty = write_report(tmp_path / "empty", {"name": "e", "phases": [], "history": [], "forgetting": []})
    assert "no validation results" in empty.read_text(encoding="utf-8")


def test_a_drop_within_sampling_noise_is_flagged_and_marked_as_such():
    def acc(credits):
        mean = sum(credits) / len(credits)
        return {"terminology": {"accuracy": mean, "score": mean, "credits": credits}}

    taught = [1.0] * 12 + [0.0] * 12
    small = [1.0] * 10 + [0.0] * 14  # 2 of the 12 right answers lost
    large = [0.0] * 24  # all 12 lost
    for after, lost, within in ((small, 2, True), (large, 12, False)):
        history = [
            {"stage": "base", "taught": None, "metrics": acc([0.0] * 24)},
            {"stage": "phase1", "taught": "terminology", "metrics": acc(taught)},
            {"stage": "phase2", "taught": "reasoning", "metrics": acc(after)},
        ]
        (flag,) = check_catastrophic_forgetting(history, threshold=0.05)
        assert (flag["within_noise"], flag["items"], flag["net_items_lost"]) == (within, 24, lost)
        assert ("within sampling noise" if within else "beyond sampling noise") in flag["message"]
        table = format_table({"name": "t", "phases": [], "forgetting": [flag], "history": history})
        assert ("FORGOTTEN (within noise)" in table) is within and "FORGOTTEN" in table


def test_a_perplexity_rise_is_judged_against_text_to_text_noise():
    def fluency(per_text):
        nll, tokens = sum(v for v, _ in per_text), sum(k for _, k in per_text)
        ppl = math.exp(nll / tokens)
        return {"fluency": {"perplexity": ppl, "score": ppl, "per_text_nll": [list(x) for x in per_text]}}

    taught = [(30.0, 10), (40.0, 10), (25.0, 10), (35.0, 10)]
    steady = [(v + 1.0, k) for v, k in taught]  # every text 0.1 nats/token worse: a real rise
    noisy = [(v + d, k) for (v, k), d in zip(taught, (6.0, -4.0, 5.0, -3.0))]  # the same rise, up and down
    for after, within in ((steady, False), (noisy, True)):
        history = [
            {"stage": "base", "taught": None, "metrics": fluency([(v + 20, k) for v, k in taught])},
            {"stage": "phase0", "taught": "fluency", "metrics": fluency(taught)},
            {"stage": "phase1", "taught": "terminology", "metrics": fluency(after)},
        ]
        (flag,) = check_catastrophic_forgetting(history, threshold=0.05)
        assert flag["metric"] == "perplexity" and flag["items"] == 4 and flag["within_noise"] is within
        assert ("within sampling noise" if within else "beyond sampling noise") in flag["message"]
        assert "of perplexity" in flag["message"] and "net_items_lost" not in flag
