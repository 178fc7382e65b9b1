"""Fault injection (issue 14): kill a tiny-model run at named points, resume, get the same bits.

A child process runs ``run-all`` on the tiny Gemma 3 with ``PUREDL_FAULT_AT`` naming a point
(``puredl._faults``): mid-step, mid-checkpoint, mid-adapter-save, mid-report. It dies by
SIGKILL there; ``--resume`` in a fresh process must then end with adapters and losses equal,
bit for bit, to a run that was never interrupted. Also: the advised recovery from divergence
("lower the learning rate and resume") works for ``run-all --resume`` and ``phase N --resume``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
from safetensors.torch import load_file  # noqa: E402

from finetune_helpers import run_tiny_pipeline, save_tiny_model, tiny_config_text, tiny_hooks  # noqa: E402
from puredl.finetune import pipeline  # noqa: E402
from puredl.finetune.config import load_config  # noqa: E402
from puredl.finetune.errors import TrainingDivergedError  # noqa: E402

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
CHILD = (
    "import sys; from finetune_helpers import run_tiny_pipeline\n"
    "from puredl.finetune.config import load_config\n"
    "from puredl.finetune.run_state import RunLock\n"
    "with RunLock(load_config(sys.argv[1]).run_dir):\n"
    "    run_tiny_pipeline(sys.argv[1], resume='--resume' in sys.argv)\n"
)
# (fault point, what it interrupts); each is a place where a kill once could lose or corrupt work
POINTS = [
    ("train_step@3", "mid-step: gradients made, weights not yet changed"),
    ("save_checkpoint@2", "mid-checkpoint: tensors written, state file and rename not yet"),
    ("replace_dir:lora_1", "mid-adapter-save: the adapter folder written, not yet renamed into place"),
    ("save_progress@2", "mid-report: summary written, run state and report not yet"),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def make_config(root: Path, model_dir: Path) -> Path:
    cfg = root / "tiny.sdn"
    cfg.write_text(tiny_config_text(model_dir, root / "runs", epochs=2, max_samples=6, checkpoint_every=2))
    return cfg


def child(cfg: Path, *flags: str, fault: str | None = None) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(SRC)]))
    env.pop("PUREDL_FAULT_AT", None)
    if fault:
        env["PUREDL_FAULT_AT"] = fault
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(cfg), *flags], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr[-3000:]
    return done.returncode


def outcome(cfg: Path) -> dict:
    """Every adapter tensor and every phase's losses of a finished run."""
    run_dir = load_config(cfg).run_dir
    out: dict = {}
    for k in range(3):
        for key, value in load_file(
            str(run_dir / f"phase{k}" / f"lora_{k}" / "adapter_model.safetensors")
        ).items():
            out[f"{k}:{key}"] = value
    summary = json.loads((run_dir / "summary.json").read_text())
    out["losses"] = [p["train_losses"] for p in summary["phases"]]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model_dir) -> dict:
    cfg = make_config(tmp_path_factory.mktemp("ref"), model_dir)
    assert child(cfg) == 0
    return outcome(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("point, what", POINTS, ids=[p for p, _ in POINTS])
def test_a_kill_at_any_point_resumes_bit_identical(tmp_path, model_dir, reference, point, what):
    cfg = make_config(tmp_path, model_dir)
    assert child(cfg, fault=point) == -signal.SIGKILL, f"the run never reached {point} ({what})"
    assert child(cfg, "--resume") == 0
    got = outcome(cfg)
    assert got["losses"] == reference["losses"]
    assert got.keys() == reference.keys()
    for key in reference:
        if key != "losses":
            assert torch.equal(got[key], reference[key]), key
    run_dir = load_config(cfg).run_dir
    leftovers = list(run_dir.rglob(".*"))
    assert not leftovers, leftovers  # the temporaries of the killed save were swept


# ---------------------------------------------------------------- recovery from divergence


def diverging_config(root: Path, model_dir: Path, phase1_lr: float) -> Path:
    cfg = root / "div.sdn"
    text = tiny_config_text(model_dir, root / "runs", max_samples=8, checkpoint_every=1)
    wide = 'target_modules: ["q_proj", "v_proj", "down_proj", "embeddings"]'
    text = text.replace(
        'data: "medical_terms"}', f'data: "medical_terms", learning_rate: {phase1_lr}, {wide}}}'
    )
    cfg.write_text(text)
    return cfg


def ctx_for(cfg: Path, resume: bool):
    return pipeline.make_context(load_config(cfg), resume=resume, hooks=tiny_hooks(), out=lambda s: None)


def finite_adapters(run_dir: Path, phases: range) -> bool:
    return all(
        bool(torch.isfinite(t).all())
        for k in phases
        for t in load_file(str(run_dir / f"phase{k}" / f"lora_{k}" / "adapter_model.safetensors")).values()
    )


def test_lower_the_learning_rate_and_resume_works_for_run_all(tmp_path, model_dir):
    cfg = diverging_config(tmp_path, model_dir, 1e6)
    with pytest.raises(TrainingDivergedError, match=r"phase 1: training diverged.*--resume"):
        pipeline.run_all(ctx_for(cfg, resume=False))
    run_dir = load_config(cfg).run_dir
    lora_0 = run_dir / "phase0" / "lora_0" / "adapter_model.safetensors"
    stamp = lora_0.stat().st_mtime_ns
    cfg.write_text(cfg.read_text().replace("learning_rate: 1000000.0", "learning_rate: 0.001"))
    summary, code = pipeline.run_all(ctx_for(cfg, resume=True))
    assert code == 0 and [p["index"] for p in summary["phases"]] == [0, 1, 2]
    assert lora_0.stat().st_mtime_ns == stamp  # phase 0 was not trained again
    assert finite_adapters(run_dir, range(3))
    first = summary["phases"][1]["train_losses"][0]
    assert all(math.isfinite(x) and x < 4 * first for x in summary["phases"][1]["train_losses"])


def test_lower_the_learning_rate_and_resume_works_for_one_phase(tmp_path, model_dir):
    cfg = diverging_config(tmp_path, model_dir, 1e6)
    pipeline.run_phase_only(ctx_for(cfg, resume=False), 0)
    with pytest.raises(TrainingDivergedError):
        pipeline.run_phase_only(ctx_for(cfg, resume=False), 1)
    cfg.write_text(cfg.read_text().replace("learning_rate: 1000000.0", "learning_rate: 0.001"))
    record = pipeline.run_phase_only(ctx_for(cfg, resume=True), 1)
    assert all(math.isfinite(x) for x in record["train_losses"])
    assert finite_adapters(load_config(cfg).run_dir, range(2))


def test_resume_refuses_changes_outside_the_documented_keys(tmp_path, model_dir):
    cfg = diverging_config(tmp_path, model_dir, 1e6)
    with pytest.raises(TrainingDivergedError):
        run_tiny_pipeline(str(cfg))
    cfg.write_text(cfg.read_text().replace("  batch_size: 2\n", "  batch_size: 3\n"))
    with pytest.raises(pipeline.FinetuneError, match=r"training\.batch_size.*may change on resume"):
        pipeline.run_all(ctx_for(cfg, resume=True))
