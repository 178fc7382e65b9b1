"""The bundled pure examples reach what they promise, print seed-style output, and run from the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from puredl.examples import (
    autograd_example,
    complete_demo,
    digits_classifier,
    iris_classification,
    nn_layers_example,
    simple_regression,
    training_demo,
    xor_training,
)

EXAMPLES = [
    "autograd_example",
    "complete_demo",
    "digits_classifier",
    "iris_classification",
    "nn_layers_example",
    "simple_regression",
    "training_demo",
    "xor_training",
]


def test_xor_reaches_100_percent_and_prints_like_the_seed(capsys):
    assert xor_training.main([]) == 0
    out = capsys.readouterr().out
    assert "Architecture:\n  Sequential(\n    (0): Linear(2 -> 4, bias=True)\n    (1): ReLU()" in out
    assert "\nTotal parameters: 17\n" in out
    epochs = re.findall(r"^Epoch (\d+)/100 - Loss: \d\.\d{4} - Acc: (\d+\.\d\d)%$", out, re.M)
    assert [e for e, _ in epochs] == [str(i) for i in range(10, 101, 10)]
    assert epochs[-1][1] == "100.00"
    assert out.count("Correct:    Yes") == 4 and "Final accuracy: 100.00%" in out
    result = xor_training.run(verbose=False)
    assert result["accuracy"] == 1.0
    assert all((p >= 0.5) == bool(t) for p, t in zip(result["predictions"], [0, 1, 1, 0]))


def test_regression_learns_w_2_and_b_1():
    result = simple_regression.run(verbose=False)
    assert abs(result["weight"] - 2) < 0.1 and abs(result["bias"] - 1) < 0.1


def test_iris_test_accuracy_at_least_93_percent(capsys):
    result = iris_classification.run(verbose=True)
    assert result["test_accuracy"] >= 0.93
    assert sum(map(sum, result["confusion"])) == 30
    out = capsys.readouterr().out
    assert "Test accuracy:" in out and "Confusion matrix" in out


def test_digits_test_accuracy_at_least_95_percent():
    result = digits_classifier.run(epochs=5, seed=0, verbose=False)
    assert result["test_accuracy"] >= 0.95
    assert len(result["history"].epochs) == 5


def test_autograd_example_gradients_match_formulas(capsys):
    assert autograd_example.main([]) == 0
    errors = autograd_example.run(verbose=False)
    assert set(errors) == {"scalar", "chain", "elementwise", "activations", "mse", "gradcheck"}
    assert max(errors.values()) < 1e-5
    assert "Example 1: Basic operation (y = x * 2)" in capsys.readouterr().out


def test_nn_layers_example_facts():
    facts = nn_layers_example.run(verbose=False)
    assert facts["softmax_sum"] == pytest.approx(1.0)
    assert facts["linear_params"] == 18 and facts["model_params"] == 5 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2
    assert facts["dropout_eval_identity"]
    assert abs(facts["layernorm_mean"]) < 1e-6


def test_training_demo_optimizers_learn_two_moons():
    results = training_demo.run(epochs=30, verbose=False)
    assert results["SGD+momentum"] >= 0.9 and results["Adam"] >= 0.9
    assert results["early_stopping"] >= 0.9


def test_complete_demo_trains_saves_and_reloads(tmp_path):
    result = complete_demo.run(verbose=False, workdir=str(tmp_path))
    assert result["accuracy"] == 1.0
    assert (tmp_path / "xor_best.safetensors").exists()
    assert result["reloaded_equal"] == (result["best_epoch"] == complete_demo.EPOCHS)


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=env)


def test_example_command_lists_and_runs_examples(capsys):
    # the `puredl example` subcommand's module, called as the CLI calls it
    import argparse

    from puredl.examples import cli

    assert set(EXAMPLES) <= set(cli.available_examples())
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["--list"])) == 0
    listing = capsys.readouterr().out
    for name in EXAMPLES:
        assert name in listing
    assert cli.run(parser.parse_args(["simple_regression", "--epochs", "100"])) == 0
    assert "Learned: y = " in capsys.readouterr().out


def test_examples_run_as_modules():
    proc = _run("-m", "puredl.examples.xor_training", "--epochs", "100")
    assert proc.returncode == 0, proc.stderr
    assert "Final accuracy: 100.00%" in proc.stdout
