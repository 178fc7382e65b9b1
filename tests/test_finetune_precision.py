"""``training.precision`` (fp32 | bf16 autocast on CPU and GPU) and SDPA attention on CUDA."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from finetune_helpers import TINY_CORPUS, save_tiny_model, tiny_gemma3, tiny_tokenizer  # noqa: E402
from puredl.finetune import loading  # noqa: E402
from puredl.finetune.batching import encode_example  # noqa: E402
from puredl.finetune.config import config_from_dict  # noqa: E402
from puredl.finetune.devices import amp_dtype, autocast  # noqa: E402
from puredl.finetune.errors import ConfigError  # noqa: E402
from puredl.finetune.lora import LoRAConfig, add_lora  # noqa: E402
from puredl.finetune.pipeline import _amp_dtype  # noqa: E402
from puredl.finetune.trainer import TrainPlan, train_adapter  # noqa: E402

# bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2% per value); on the tiny model the
# two step losses moved by 0.003% and 0.006% of their value. 0.2% is the documented bound
# (docs/finetune.md, "Precision"): 30x that noise, far below a real training difference.
BF16_LOSS_RTOL = 2e-3


def test_precision_defaults_to_fp32_and_bad_values_are_named():
    assert config_from_dict({}).training.precision == "fp32"
    assert config_from_dict({"training": {"precision": "bf16"}}).training.precision == "bf16"
    for bad in ("fp16", "BF16", "bfloat16", ""):
        with pytest.raises(ConfigError, match=r"training\.precision must be one of \('fp32', 'bf16'\)"):
            config_from_dict({"training": {"precision": bad}}, source="run.sdn")
    with pytest.raises(ConfigError, match=r"training\.precision must be a string"):
        config_from_dict({"training": {"precision": True}}, source="run.sdn")


def test_the_old_bf16_key_says_what_replaced_it():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"training": {"bf16": True}}, source="old.sdn")
    message = str(err.value)
    assert "'training.bf16' was replaced by training.precision" in message and "old.sdn" in message
    assert "\n" not in message


def test_precision_maps_to_autocast_and_weight_dtypes():
    assert amp_dtype("fp32") is None and amp_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="training.precision"):
        amp_dtype("fp16")
    cfg = config_from_dict({"training": {"precision": "bf16", "device": "cpu"}})
    assert _amp_dtype(SimpleNamespace(cfg=cfg, device="cpu")) is torch.bfloat16  # opt-in on CPU too
    assert _amp_dtype(SimpleNamespace(cfg=config_from_dict({}), device="cuda:0")) is None
    # the frozen base: bfloat16 storage only on a GPU; on CPU bf16 is autocast over float32 weights
    assert loading.resolve_dtype("auto", "cuda:0", "bf16") is torch.bfloat16
    assert loading.resolve_dtype("auto", "cpu", "bf16") is torch.float32
    assert loading.resolve_dtype("auto", "cuda:0", "fp32") is torch.float32
    assert loading.resolve_dtype("bfloat16", "cpu", "fp32") is torch.bfloat16


def test_cpu_autocast_runs_matmuls_in_bf16_and_fp32_is_a_no_op():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast("cpu", torch.bfloat16):
        assert torch.is_autocast_enabled("cpu") and (a @ b).dtype is torch.bfloat16
    with autocast("cpu", None), autocast("cpu", torch.float32):
        assert not torch.is_autocast_enabled("cpu") and (a @ b).dtype is torch.float32


def one_step(tmp_path, amp):
    tok = tiny_tokenizer()
    examples = [encode_example(tok, TINY_CORPUS[i], "질문:" if i % 2 else "", 40) for i in range(8)]
    torch.manual_seed(0)
    model = add_lora(
        tiny_gemma3(),
        LoRAConfig(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "embeddings"]),
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    plan = TrainPlan(
        epochs=1,
        batch_size=4,
        grad_accum=1,
        learning_rate=1e-2,
        scheduler="constant",
        warmup=0,
        total_steps=2,
        seed=0,
        max_grad_norm=1.0,
    )
    result = train_adapter(
        model, examples, plan, adapter_name="lora_0", pad_id=0, work_dir=tmp_path, device="cpu", amp_dtype=amp
    )
    return model, before, result


def test_bf16_trains_on_cpu_with_a_loss_close_to_fp32_and_float32_lora_weights(tmp_path):
    model, before, bf16 = one_step(tmp_path / "bf16", torch.bfloat16)
    _, _, fp32 = one_step(tmp_path / "fp32", None)
    assert len(bf16.losses) == 2 and all(math.isfinite(x) for x in bf16.losses)
    for low, full in zip(bf16.losses, fp32.losses):
        assert low == pytest.approx(full, rel=BF16_LOSS_RTOL)
    assert bf16.losses != fp32.losses  # autocast really ran in bfloat16
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert all(p.dtype is torch.float32 for p in trained.values())  # the master LoRA weights
    assert any(not torch.equal(p, before[n]) for n, p in trained.items())  # and they moved


def test_sdpa_is_requested_on_cuda_only_and_a_model_without_it_still_loads(tmp_path, monkeypatch):
    folder = str(save_tiny_model(tmp_path / "tiny"))
    calls = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        calls.append(kwargs.get("attn_implementation"))
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    model = loading.load_causal_lm(folder, torch.float32, "cuda:0")  # loaded on CPU here; moved later
    assert calls == ["sdpa"] and model.config._attn_implementation == "sdpa"
    calls.clear()
    loading.load_causal_lm(folder, torch.float32, "cpu")
    assert calls == [None]  # CPU keeps transformers' own choice
    calls.clear()
    monkeypatch.setattr(transformers.Gemma3ForCausalLM, "_supports_sdpa", False)
    model = loading.load_causal_lm(folder, torch.float32, "cuda:0")
    assert calls == ["sdpa", None] and model.config._attn_implementation != "sdpa"


@pytest.mark.parametrize("device, refused", [("cpu", False), ("cuda:0", True)])
def test_a_run_saved_with_the_old_bf16_key_resumes_in_the_precision_it_trained_in(tmp_path, device, refused):
    from puredl._atomic import write_json
    from puredl.finetune import pipeline, run_state
    from puredl.finetune.config import config_to_dict
    from puredl.finetune.errors import FinetuneError

    cfg = config_from_dict({"training": {"device": "cpu"}, "output": {"dir": str(tmp_path)}})
    old = config_to_dict(cfg)
    del old["training"]["precision"]
    old["training"].update(bf16=True, device=device)  # the old default: bf16 on a GPU, fp32 on CPU
    write_json(cfg.run_dir / run_state.STATE_FILE, {"config": old, "phases": []})
    ctx = pipeline.make_context(cfg, resume=True, out=lambda s: None)
    if refused:  # a GPU run trained in bf16; resuming it in fp32 is a change
        with pytest.raises(FinetuneError, match=r"training\.precision"):
            run_state.begin_run(ctx)
    else:
        assert run_state.begin_run(ctx)["config"] == old
