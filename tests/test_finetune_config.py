"""Run configs: the shipped files, strict keys and types, defaults, per-phase overrides."""

from __future__ import annotations

import dataclasses
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
