"""The torch-backend examples, `puredl accel` and `puredl bench`: they run, and what they print is true."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import puredl as pd  # noqa: E402
from puredl import accel  # noqa: E402
from puredl.cli import main as cli_main  # noqa: E402


def test_tensor_creation_matches_torch_factories(capsys):
    from puredl.examples import tensor_creation

    out = tensor_creation.run(verbose=True)
    assert out["_matches_torch"] is True
    assert out["eye(3)"].tolist() == torch.eye(3).tolist()
    assert out["from_torch"][0].item() == 100.0  # the write through torch is visible
    text = capsys.readouterr().out
    assert "Values equal torch's factories: yes" in text and "storage=torch" in text


def test_tensor_operations_all_agree_with_torch():
    from puredl.examples import tensor_operations

    out = tensor_operations.run(verbose=False)
    assert out["mismatches"] == [] and out["checked"] >= 38
    assert out["stats"].torch_count > 0 and out["stats"].pure_count == 0


def test_device_selection_runs_without_a_gpu(capsys):
    from puredl.examples import device_selection

    out = device_selection.run(verbose=True)
    text = capsys.readouterr().out
    assert out["devices"][0] == "cpu" and "Using device:" in text
    if not torch.cuda.is_available():
        assert out["device"] == "cpu" and "CUDA is not available" in out["cuda_error"]


def test_xor_torch_learns_xor_on_torch():
    from puredl.examples import xor_torch

    out = xor_torch.run(epochs=300, verbose=False)
    assert out["accuracy"] == 1.0 and out["loss"] < 0.01
    assert out["stats"].pure_count == 0 and out["stats"].torch_count > 1000


def test_digits_torch_trains_and_loss_falls():
    from puredl.examples import digits_torch

    out = digits_torch.run(epochs=2, verbose=False)
    assert out["losses"][1] < out["losses"][0]
    assert out["test_accuracy"] > 0.8  # two epochs of Adam at lr 1e-3; the full run reaches ~95%
    assert out["stats"].fallback_count == 0


def test_acceleration_demo_reports_auto_statistics(capsys):
    from puredl.examples import acceleration_demo

    out = acceleration_demo.run(epochs=1, log_steps=1, limit=256, verbose=True)
    text = capsys.readouterr().out
    assert out["mode"] == "auto"
    s = out["stats"]
    assert s.torch_count + s.pure_count > 0 and math.isclose(out["torch_fraction"], s.torch_count / s.total())
    assert "[accel] linear 64x64 @ (256x64).T + 256 -> torch" in text
    assert "Acceleration statistics (mode auto)" in text and "One epoch: PURE" in text


def test_examples_are_listed_by_the_cli(capsys):
    assert cli_main(["example", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in ("tensor_creation", "tensor_operations", "device_selection", "xor_torch", "digits_torch"):
        assert name in listed
    assert "acceleration_demo" in listed


def test_accel_info_reports_mode_thresholds_and_devices(capsys):
    assert cli_main(["accel", "info"]) == 0
    text = capsys.readouterr().out
    assert f"mode:            {accel.get_current_mode().value}" in text
    assert f"torch:           {torch.__version__}" in text and "devices: cpu" in text
    for cat in accel.CATEGORIES:
        assert cat in text
    assert "config file:" in text


def test_accel_calibrate_cli_saves_where_asked(tmp_path, monkeypatch, capsys):
    from puredl.accel import calibration

    monkeypatch.setattr(
        calibration, "CALIBRATION_SIZES", {**calibration.CALIBRATION_SIZES, "elementwise": [8, 4096]}
    )
    cfg = tmp_path / "accel.json"
    png = tmp_path / "cal.png"
    with accel.using():
        rc = cli_main(
            [
                "accel",
                "calibrate",
                "--config",
                str(cfg),
                "--plot",
                str(png),
                "--categories",
                "elementwise",
                "--min-time",
                "0.002",
            ]
        )
    assert rc == 0 and cfg.exists()
    text = capsys.readouterr().out
    assert "elementwise" in text and f"saved thresholds to {cfg}" in text


def test_accel_reset_removes_the_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PUREDL_CONFIG_DIR", str(tmp_path))
    accel.save_config({"matmul": 5})
    assert (tmp_path / "accel.json").exists()
    assert cli_main(["accel", "reset"]) == 0
    assert not (tmp_path / "accel.json").exists() and "removed" in capsys.readouterr().out
    assert cli_main(["accel", "reset"]) == 0 and "no config file" in capsys.readouterr().out


def test_bench_prints_pure_torch_auto_side_by_side(capsys):
    accel.reset_thresholds()  # the defaults, whatever PUREDL_ACCEL_THRESHOLDS says (restored after)
    assert cli_main(["bench", "--ops", "add", "matmul", "--sizes", "16", "4096", "--min-time", "0.002"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines[1:-1]]
    assert [r[0] for r in rows] == ["add", "add", "matmul", "matmul"]
    assert rows[1][-1] == "torch"  # 4096 elements: far above the elementwise threshold
    assert rows[0][-1] == "pure"  # 16 elements: below it
    assert cli_main(["bench", "--ops", "conv"]) == 2


def test_puredl_import_stays_free_of_torch():
    import os
    import subprocess
    import sys

    code = "import sys, puredl, puredl.accel.cli, puredl.bench_cli; print('torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUREDL_ACCEL")}  # PURE mode
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
    assert pd.tensor([1.0]).tolist() == [1.0]
