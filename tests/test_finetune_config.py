"""Run configs: the shipped files, strict keys and types, defaults, per-phase overrides."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest

pytest.importorskip("yaml")

from puredl.finetune.config import (  # noqa: E402
    FinetuneConfig,
    ModelSection,
    PhaseSection,
    TrainingSection,
    config_from_dict,
    config_to_dict,
    describe_defaults,
    load_config,
)
from puredl.finetune.errors import ConfigError  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, text: str, name: str = "run.sdn") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_medgemma_config_has_the_seed_values():
    cfg = load_config(CONFIGS / "medgemma_korean.sdn")
    m, t = cfg.model, cfg.training
    assert (m.name, m.lora_r, m.lora_alpha, m.lora_dropout, m.use_rslora) == (
        "google/medgemma-4b-it",
        64,
        128.0,
        0.05,
        True,
    )
    assert (t.epochs, t.batch_size, t.learning_rate, t.max_samples, t.device) == (2, 4, 1e-4, 100, "cuda:0")
    assert [p.data for p in cfg.phases] == ["korean_text", "medical_terms", "medical_mcq"]
    assert "embeddings" in cfg.phase_lora(0)["target_modules"]  # LoRA_0 includes the embeddings
    assert "embeddings" not in cfg.phase_lora(1)["target_modules"]


def test_embedded_config_targets_the_embedded_model_on_cpu():
    cfg = load_config(CONFIGS / "embedded.sdn")
    assert cfg.model.name == "embedded:gemma-3-270m"
    assert cfg.training.device == "cpu"
    assert len(cfg.phases) == 3


@pytest.mark.parametrize("suffix", [".sdn", ".yaml", ".yml"])
def test_all_three_suffixes_read_the_same(tmp_path, suffix):
    cfg = load_config(write(tmp_path, "project: demo\ntraining:\n  epochs: 3\n", "c" + suffix))
    assert cfg.project == "demo" and cfg.training.epochs == 3 and cfg.source.endswith(suffix)


def test_unknown_key_names_the_key_the_file_and_a_suggestion(tmp_path):
    path = write(tmp_path, "training:\n  batchsize: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text and "training.batchsize" in text and "batch_size" in text


def test_unknown_top_level_and_phase_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'trainig'.*did you mean 'training'"):
        load_config(write(tmp_path, "trainig:\n  epochs: 1\n"))
    with pytest.raises(ConfigError, match=r"phases\[0\]\.dataset"):
        load_config(write(tmp_path, "phases:\n  - {name: a, dataset: korean_text}\n"))


@pytest.mark.parametrize(
    "text, key",
    [
        ("training:\n  batch_size: four\n", "training.batch_size"),
        ("training:\n  batch_size: 2.5\n", "training.batch_size"),
        ("training:\n  epochs: true\n", "training.epochs"),
        ("model:\n  use_rslora: 'yes'\n", "model.use_rslora"),
        ("model:\n  target_modules: q_proj\n", "model.target_modules"),
        ("model: [1, 2]\n", "model"),
        ("training:\n  learning_rate: fast\n", "training.learning_rate"),
    ],
)
def test_wrong_type_names_the_key_and_the_file(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert key in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize(
    "data, key",
    [
        ({"training": {"batch_size": 0}}, "training.batch_size"),
        ({"training": {"scheduler": "step"}}, "training.scheduler"),
        ({"phases": [{"data": "recipes"}]}, "phases[0].data"),
        ({"phases": []}, "phases"),
        ({"model": {"lora_dropout": 1.5}}, "lora_dropout"),
    ],
)
def test_bad_values_are_rejected(data, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(data, source="x.sdn")


def test_ints_are_accepted_for_floats_and_yaml_numbers_work(tmp_path):
    cfg = load_config(write(tmp_path, "training:\n  learning_rate: 1\nmodel:\n  lora_alpha: 128\n"))
    assert cfg.training.learning_rate == 1.0 and isinstance(cfg.model.lora_alpha, float)


def test_broken_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid SDN/YAML"):
        load_config(write(tmp_path, "training: [\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.sdn")
    with pytest.raises(ConfigError, match="suffix"):
        load_config(write(tmp_path, "{}", "c.json"))


def test_phase_overrides_inherit_the_rest():
    cfg = config_from_dict(
        {
            "model": {"lora_r": 8, "lora_alpha": 16},
            "training": {"learning_rate": 2e-4, "epochs": 2},
            "phases": [{"data": "korean_text", "lora_r": 4, "learning_rate": 5e-5}, {"data": "medical_mcq"}],
        }
    )
    assert cfg.phase_lora(0)["r"] == 4 and cfg.phase_lora(0)["alpha"] == 16.0
    assert cfg.phase_lora(1)["r"] == 8
    assert cfg.phase_training(0).learning_rate == 5e-5 and cfg.phase_training(0).epochs == 2
    assert cfg.phase_training(1).learning_rate == 2e-4


def test_defaults_are_documented_and_round_trip():
    table = describe_defaults()
    for section, cls in [("model", ModelSection), ("training", TrainingSection), ("phases[k]", PhaseSection)]:
        for f in dataclasses.fields(cls):
            assert f"`{section}.{f.name}`" in table, f.name
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no documentation"
    cfg = FinetuneConfig()
    assert config_from_dict(config_to_dict(cfg)) == dataclasses.replace(cfg, source=None)


# ---------------------------------------------------------------- issue 14: hostile and careless configs


def test_an_alias_bomb_fails_fast_with_a_short_message(tmp_path):
    # a list of levels, each 10 aliases of the one before: 10**6 leaves from about 400 bytes
    levels = ["&l0 [a, a, a, a, a, a, a, a, a, a]"]
    levels += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 7)]
    path = write(tmp_path, "project: [" + ", ".join(levels) + "]\n")
    assert path.stat().st_size < 1024
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="alias") as err:
        load_config(path)
    assert time.perf_counter() - t0 < 2 and len(str(err.value)) < 300


def test_a_recursive_alias_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="alias"):
        load_config(write(tmp_path, "training: &a [*a]\n"))


def test_bad_values_are_quoted_briefly(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, f"project: [{', '.join(['abcdefgh'] * 500)}]\n"))
    assert "project" in str(err.value) and len(str(err.value)) < 300


def test_duplicate_keys_are_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"duplicate key 'epochs' \(lines 2 and 3\)"):
        load_config(write(tmp_path, "training:\n  epochs: 1\n  epochs: 2\n"))


def test_yaml11_exponent_without_a_dot_is_a_number(tmp_path):
    cfg = load_config(
        write(tmp_path, "training:\n  learning_rate: 2e-4\nphases:\n  - {learning_rate: 5E-5}\n")
    )
    assert cfg.training.learning_rate == 2e-4 and cfg.phase_training(0).learning_rate == 5e-5


@pytest.mark.parametrize(
    "text, key",
    [
        ("model:\n  lora_alpha: -1\n", "model.lora_alpha"),
        ("training:\n  warmup_steps: -1\n", "training.warmup_steps"),
        ("training:\n  max_grad_norm: -1\n", "training.max_grad_norm"),
        ("training:\n  weight_decay: -0.1\n", "training.weight_decay"),
        ("training:\n  learning_rate: .inf\n", "training.learning_rate"),
        ("training:\n  learning_rate: .nan\n", "training.learning_rate"),
        ('project: ".."\n', "project"),
        ('project: "../../etc"\n', "project"),
        ('project: "/tmp/x"\n', "project"),
        ("evaluation:\n  max_eval: 0\n", "evaluation.max_eval"),
    ],
)
def test_out_of_range_values_are_refused(tmp_path, text, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    "override, key",
    [
        ("batch_size: 0", "phases[2] batch_size"),
        ("grad_accum: 0", "phases[2] grad_accum"),
        ("learning_rate: -0.001", "phases[2] learning_rate"),
        ("epochs: 0", "phases[2] epochs"),
        ("warmup_steps: -3", "phases[2] warmup_steps"),
        ("lora_alpha: -2", "phases[2] lora_alpha"),
    ],
)
def test_every_phase_effective_settings_are_checked_at_load(tmp_path, override, key):
    text = "phases:\n  - {data: korean_text}\n  - {data: medical_terms}\n"
    text += f"  - {{data: medical_mcq, {override}}}\n"
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(write(tmp_path, text))
