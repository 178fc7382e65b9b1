"""benchmarks/finetune_throughput.py end to end at its smallest setting, on a tiny random Gemma 3.

The numbers are not timings worth anything (a tiny model, one step); what is checked is that
the benchmark runs both tools in fresh processes, reports every column, and that puredl and
Trainer + PEFT trained the same thing: on the same batches their first-step losses agree.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "finetune_throughput.py"
CONFIG = ROOT / "configs" / "embedded.sdn"


def _bench_module():
    spec = importlib.util.spec_from_file_location("finetune_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    from finetune_helpers import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny")
    out, raw = tmp_path / "report.md", tmp_path / "runs.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, str(SCRIPT), "--config", str(CONFIG), "--model", str(model), "--phases", "0"]
    cmd += ["--steps", "1", "--warmup", "1", "--repeats", "1", "--out", str(out), "--json", str(raw), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, out, raw


def _table_rows(text: str) -> dict[str, list[str]]:
    """tool name -> the cells of its row in the phase table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 11 and cells[0] and not set(cells[0]) <= set("-"):
            rows[cells[1]] = cells
    return rows


def test_smallest_setting_runs_both_tools_and_their_first_losses_agree(tmp_path):
    done, out, raw = _run(tmp_path, "--tools", "trainer:same", "--policies", "passive")
    text = out.read_text()
    assert text in done.stdout
    for needed in ("uptime before", "uptime after", "torch 2", "Thread policies: passive", "## Phase 0"):
        assert needed in text
    rows = _table_rows(text)
    mine, theirs = rows["puredl"], rows["Trainer + PEFT (same order)"]
    for cells in (mine, theirs):
        assert float(cells[2].split()[0]) > 0  # s/step
        assert all(float(c) > 0 for c in cells[3:6])  # real, labelled, total tok/s
        assert float(cells[3]) >= float(cells[4])  # labelled positions are real positions
        assert float(cells[5]) >= float(cells[3])  # padding only adds positions
        assert cells[7].endswith("GB")
    assert re.fullmatch(r"\d+\.\d\dx", theirs[6])
    assert theirs[10].startswith("yes")
    runs = {tuple(r["key"]): r["runs"][0] for r in json.loads(raw.read_text())["results"]}
    ours, trainer = runs[(0, "passive", "puredl", "")], runs[(0, "passive", "trainer", "same")]
    # same model, batches, masking and LoRA: the same first loss (float32 rounding only)
    assert trainer["first_loss"] == pytest.approx(ours["first_loss"], rel=1e-5)
    assert ours["order"] and len(ours["order"]) == 2  # warm-up + timed step, one micro-batch each
    assert "OMP_WAIT_POLICY=PASSIVE" in ours["thread_policy"]


def test_bf16_runs_or_says_why_not(tmp_path):
    from puredl.finetune.config import TrainingSection

    done, out, _ = _run(tmp_path, "--tools", "trainer:same", "--precision", "bf16")
    text = out.read_text()
    if "precision" in {f.name for f in dataclasses.fields(TrainingSection)}:
        assert _table_rows(text)["Trainer + PEFT (same order)"][10].startswith("yes")
    else:
        assert "skipped: this puredl cannot run precision bf16" in text
        assert "skipped: needs puredl's batches" in text


def test_tool_list_always_starts_with_puredl_and_rejects_unknown_orders():
    bench = _bench_module()
    assert bench.parse_tools("trainer:grouped,sft") == [
        ("puredl", ""),
        ("trainer", "grouped"),
        ("sft", "same"),
    ]
    with pytest.raises(SystemExit, match="unknown 'trainer:sorted'"):
        bench.parse_tools("trainer:sorted")


def test_policy_table_compares_each_tool_with_the_first_policy():
    bench = _bench_module()
    results = {
        (0, "torch", "puredl", ""): [{"real_tok_s": 100.0}, {"real_tok_s": 120.0}],
        (0, "passive", "puredl", ""): [{"real_tok_s": 165.0}],
        (0, "torch", "trainer", "same"): [{"real_tok_s": 80.0}],
    }
    tools = [("puredl", ""), ("trainer", "same")]
    lines = bench.policy_table(0, ["torch", "passive"], tools, results)
    assert "| puredl | 110 (1.00x) | 165 (1.50x) |" in lines  # medians: 110 and 165
    assert "| Trainer + PEFT (same order) | 80 (1.00x) | - |" in lines
