"""Replay mixing, --compare parsing and the strategy config keys (standard library only)."""

from __future__ import annotations

import pytest

from puredl.finetune.errors import FinetuneError
from puredl.finetune.replay import mix_replay, replay_count, split_evenly
from puredl.finetune.strategies import parse_compare

# ----------------------------------------------------------------------------- replay (no torch)


def test_replay_mixes_exactly_the_configured_fraction_per_epoch_deterministically():
    new = [f"new{i}" for i in range(96)]
    earlier = [[f"p0_{i}" for i in range(96)], [f"p1_{i}" for i in range(96)]]
    mix = mix_replay(new, earlier, ratio=0.25, epochs=3, seed=42, phase=2)
    assert mix.per_epoch == 24 and mix.replayed_per_phase == [36, 36]
    assert len(mix.examples) == 3 * (96 + 24)
    for epoch in range(3):
        block = mix.examples[epoch * 120 : (epoch + 1) * 120]
        assert block[:96] == new  # every new example once per epoch
        replayed = block[96:]
        assert (
            sum(x.startswith("p0_") for x in replayed) == 12
            and sum(x.startswith("p1_") for x in replayed) == 12
        )
        assert len(set(replayed)) == 24  # drawn without replacement within an epoch
    # a pure function of (seed, phase, epoch); another seed draws other examples
    assert mix_replay(new, earlier, 0.25, 3, 42, 2).examples == mix.examples
    assert mix_replay(new, earlier, 0.25, 3, 43, 2).examples != mix.examples
    # different epochs draw different examples (fresh rehearsal each epoch)
    assert mix.examples[96:120] != mix.examples[216:240]


@pytest.mark.parametrize(
    "ratio, n, expected", [(0.0, 96, 0), (0.25, 96, 24), (0.25, 32, 8), (0.1, 5, 1), (1.0, 7, 7)]
)
def test_replay_count_rounds_half_up(ratio, n, expected):
    assert replay_count(ratio, n) == expected


def test_replay_split_and_bad_input():
    assert split_evenly(7, [2, 100, 100]) == [2, 3, 2]
    assert sum(split_evenly(24, [5, 30])) == 24 and split_evenly(24, [5, 30])[0] == 5
    with pytest.raises(ValueError, match="cannot draw 5 replay examples"):
        split_evenly(5, [2, 2])
    with pytest.raises(ValueError, match=r"replay ratio must be in \[0, 1\]"):
        replay_count(1.5, 10)
    assert mix_replay(["a"], [], 0.5, 2, 0, 0).examples == ["a", "a"]  # phase 0 has nothing to replay


def test_compare_parsing_names_the_choices():
    assert [s.name for s in parse_compare("replay, sequential")] == ["replay", "sequential"]
    assert parse_compare("replay", replay_ratio=0.1)[0].replay_ratio == 0.1
    assert parse_compare("olora")[0].olora_lambda == 0.5 and parse_compare("olora")[0].replay_ratio == 0
    assert parse_compare(None) == []
    with pytest.raises(FinetuneError, match="unknown strategy.*'ewc'.*sequential, replay, olora"):
        parse_compare("replay,ewc")
    with pytest.raises(FinetuneError, match="twice"):
        parse_compare("replay,replay")


def test_config_keys_are_checked():
    from puredl.finetune.config import ConfigError, config_from_dict

    cfg = config_from_dict({"training": {"replay_ratio": 0.25, "olora_lambda": 0.5}})
    assert (cfg.training.replay_ratio, cfg.training.olora_lambda) == (0.25, 0.5)
    with pytest.raises(ConfigError, match=r"training.replay_ratio must be in \[0, 1\], got 1.5"):
        config_from_dict({"training": {"replay_ratio": 1.5}})
    with pytest.raises(ConfigError, match="training.olora_lambda must be a finite number >= 0"):
        config_from_dict({"training": {"olora_lambda": -1}})


def test_lora_defaults_have_one_home():
    from puredl.finetune.config import ModelSection
    from puredl.finetune.lora import LoRAConfig

    m, lora = ModelSection(), LoRAConfig()
    assert (m.lora_r, m.lora_alpha, m.lora_dropout, m.use_rslora, m.target_modules) == (
        lora.r,
        lora.alpha,
        lora.dropout,
        lora.use_rslora,
        lora.target_modules,
    )
