"""benchmarks/finetune_compile.py: its report from made-up runs, its argument checks, and one
eager run of its child on a tiny random Gemma 3 (the compiled side takes minutes to build; the
committed results file is its measurement)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "finetune_compile.py"


@pytest.fixture
def bench():
    spec = importlib.util.spec_from_file_location("finetune_compile", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(seconds, losses):
    return {"seconds": seconds, "losses": losses, "shapes": [], "threads": 2, "torch": "2.x"}


def test_report_ratios_first_step_and_loss_difference(bench):
    args = argparse.Namespace(config="cfg.sdn", model=None, batches=5, repeats=1)
    results = {
        1: {
            "eager": [_run([9.0, 2.0, 2.0, 2.0, 9.9], [1.0, 2.0, 3.0, 4.0, 5.0])],
            "compiled": [_run([100.0, 1.0, 1.0, 1.0, 1.5], [1.0, 2.0, 3.0, 4.0, 5.5])],
        }
    }
    text = bench.report(args, results, 60.0)
    rows = {line.split("|")[2].strip(): line for line in text.splitlines() if line.startswith("| 1 |")}
    # the median after the first two micro-batches: eager 2.0, compiled 1.0 -> 2x
    assert "| 2.000 (2.000-2.000) | 9.0 s | 1.00x | 0.0e+00 |" in rows["eager"]
    assert "| 1.000 (1.000-1.000) | 100.0 s | 2.00x | 1.0e-01 |" in rows["compiled"]


def test_too_few_batches_is_refused(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--batches", "3"])
    assert "--batches must be at least 4" in capsys.readouterr().err


def test_the_eager_child_trains_the_tiny_model(bench, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from finetune_helpers import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny")
    spec = {"config": str(ROOT / "configs" / "embedded.sdn"), "model": str(model), "phase": 1}
    out = bench.child({**spec, "batches": 2, "mode": "eager"})
    assert len(out["seconds"]) == len(out["losses"]) == len(out["shapes"]) == 2
    assert all(s > 0 for s in out["seconds"]) and all(loss > 0 for loss in out["losses"])
    assert out["shapes"][0][0] == 8  # phase 1's batch size in the embedded config
