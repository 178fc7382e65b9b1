"""Forgetting flags on hand-made histories, and the run report (table, metrics.json, PNGs)."""

from __future__ import annotations

import json
import math

from puredl.finetune.forgetting import check_catastrophic_forgetting, forgotten
from puredl.finetune.report import (
    CAPABILITY_PLOT,
    LOSS_PLOT,
    forgetting_verdict,
    format_table,
    write_report,
)


def ppl(x: float, texts: int = 36, tokens: int = 10) -> dict:
    """A fluency entry of perplexity exactly ``x``, with per-text NLLs for the forgetting verdicts."""
    spread = [0.3, -0.1, -0.2, 0.25, -0.15, -0.1]  # sums to 0
    rows = [[tokens * (math.log(x) + spread[i % 6]), tokens] for i in range(texts)]
    return {"perplexity": x, "nll_per_token": math.log(x), "score": x, "per_text_nll": rows}


def acc(x: float, n: int = 200, **extra: float) -> dict:
    """An accuracy entry whose first round(x * n) items are right (per-item credits for the verdicts)."""
    right = round(x * n)
    return {"accuracy": x, "score": x, "credits": [1] * right + [0] * (n - right), **extra}


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


# forgetting verdicts themselves: tests/test_finetune_forgetting.py


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
        # report.py marks every record it is given as FORGOTTEN: it gets those (test_finetune_forgetting)
        "forgetting": forgotten(check_catastrophic_forgetting(hist)),
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
