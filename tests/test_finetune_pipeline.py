"""The progressive pipeline and CLI on a tiny Gemma 3 saved as a model folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from finetune_helpers import (  # noqa: E402
    run_tiny_pipeline,
    save_tiny_model,
    tiny_config_text,
    tiny_gemma3,
    tiny_hooks,
    tiny_tokenizer,
)
from puredl.finetune import cli, pipeline  # noqa: E402
from puredl.finetune.config import load_config  # noqa: E402
from puredl.finetune.devices import oom_guard, resolve_device  # noqa: E402
from puredl.finetune.errors import DeviceError, ModelLoadError, OutOfMemoryError  # noqa: E402
from puredl.finetune.loading import load_model_and_tokenizer  # noqa: E402
from puredl.finetune.lora import add_lora, load_lora  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def config(tmp_path: Path, model_dir: Path, **training) -> Path:
    path = tmp_path / "tiny.sdn"
    path.write_text(tiny_config_text(model_dir, tmp_path / "runs", **training))
    return path


def logits_of(model, text: str = "감기 증상이 있습니다"):
    with torch.no_grad():
        return model.eval()(**tiny_tokenizer()([text], return_tensors="pt")).logits


def test_each_phase_trains_only_its_own_adapter(tmp_path, model_dir, monkeypatch):
    seen: list[tuple[int, set[str], bool]] = []
    original = pipeline.train_phase

    def spy(ctx, k, model, tokenizer, work_dir, adapter_name, title, examples=None, **kwargs):
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        base_frozen = all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
        seen.append((k, trainable, base_frozen))
        return original(ctx, k, model, tokenizer, work_dir, adapter_name, title, examples, **kwargs)

    monkeypatch.setattr(pipeline, "train_phase", spy)
    summary = run_tiny_pipeline(str(config(tmp_path, model_dir)))
    assert [k for k, _, _ in seen] == [0, 1, 2]
    for k, trainable, base_frozen in seen:
        assert trainable and base_frozen
        assert all(f".lora_{k}" in n for n in trainable), (k, sorted(trainable)[:3])
    assert any("embed_tokens" in n for n in seen[0][1]) and not any("embed_tokens" in n for n in seen[1][1])
    assert [h["stage"] for h in summary["history"]] == ["base", "phase0", "phase1", "phase2"]
    assert list(summary["history"][2]["metrics"]) == ["fluency", "terminology"]


def test_outputs_are_peft_adapters_that_compose(tmp_path, model_dir):
    run_tiny_pipeline(str(config(tmp_path, model_dir)))
    run = tmp_path / "runs" / "tiny"
    for k in range(3):
        assert (run / f"phase{k}" / f"lora_{k}" / "adapter_config.json").is_file()
        assert (run / f"phase{k}" / "train_log.jsonl").is_file()
        assert not (run / f"phase{k}" / "checkpoints").exists()  # removed once the adapter is saved
    summary = json.loads((run / "summary.json").read_text())
    assert [p["adapter_dir"] for p in summary["phases"]] == [
        str(run / f"phase{k}" / f"lora_{k}") for k in range(3)
    ]
    # phase 1's adapter was trained on base + LoRA_0 merged: PEFT reproduces it on that model
    base0 = pipeline.merge_adapters(tiny_gemma3(), [run / "phase0" / "lora_0"])
    with_peft = peft.PeftModel.from_pretrained(base0, str(run / "phase1" / "lora_1"))
    stacked = add_lora(
        add_lora(tiny_gemma3(), load_lora(run / "phase0" / "lora_0"), trainable=False),
        load_lora(run / "phase1" / "lora_1"),
        trainable=False,
    )
    torch.testing.assert_close(logits_of(with_peft), logits_of(stacked), atol=1e-4, rtol=1e-4)
    # `merge` writes base + all adapters as a model folder with the same outputs
    cfg = config(tmp_path, model_dir)
    args = argparse.Namespace(
        finetune_command="merge",
        config=str(cfg),
        device=None,
        model=None,
        out=str(tmp_path / "merged"),
        upto=None,
        adapter=None,
    )
    assert cli.run(args) == 0
    merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    expected = pipeline.merge_adapters(tiny_gemma3(), [run / f"phase{k}" / f"lora_{k}" for k in range(3)])
    torch.testing.assert_close(logits_of(merged), logits_of(expected), atol=1e-4, rtol=1e-4)


def test_sequential_baseline_is_reported_beside_the_progressive_run(tmp_path, model_dir):
    summary = run_tiny_pipeline(str(config(tmp_path, model_dir)), compare="sequential")
    seq = summary["compare"]["sequential"]
    assert [h["stage"] for h in seq["history"]] == ["base", "phase0", "phase1", "phase2"]
    assert seq["history"][0] == summary["history"][0]  # same base measurement
    assert (tmp_path / "runs" / "tiny" / "sequential" / "phase2" / "lora" / "adapter_config.json").is_file()
    assert isinstance(seq["forgetting"], list)


def test_phase_command_needs_the_earlier_adapters(tmp_path, model_dir):
    ctx = pipeline.make_context(
        load_config(config(tmp_path, model_dir)), hooks=tiny_hooks(), out=lambda s: None
    )
    with pytest.raises(pipeline.FinetuneError, match=r"phases \[0\].*phase 0"):
        pipeline.run_phase_only(ctx, 1)
    record = pipeline.run_phase_only(ctx, 0)
    assert Path(record["adapter_dir"]).name == "lora_0" and record["metrics"]["fluency"]["perplexity"] > 0
    assert pipeline.run_phase_only(ctx, 1)["index"] == 1


def test_cli_run_all_with_the_real_data_metrics_and_report(tmp_path, model_dir, capsys):
    pytest.importorskip("puredl.finetune.metrics")
    pytest.importorskip("puredl.finetune.report")
    cfg = tmp_path / "real.sdn"
    text = tiny_config_text(model_dir, tmp_path / "runs", max_samples=6, max_length=96)
    cfg.write_text(text + "evaluation:\n  max_eval: 3\n")
    args = argparse.Namespace(
        finetune_command="run-all", config=str(cfg), device="cpu", model=None, resume=False, compare=None
    )
    assert cli.run(args) == 0
    out = capsys.readouterr().out
    assert "Phase 2" in out and "LoRA_2 saved" in out and "Report:" in out
    assert (tmp_path / "runs" / "tiny" / "report.md").is_file()


def test_cli_reports_config_errors_cleanly(tmp_path, capsys):
    bad = tmp_path / "bad.sdn"
    bad.write_text("training:\n  batchsize: 4\n")
    args = argparse.Namespace(
        finetune_command="run-all", config=str(bad), device=None, model=None, resume=False, compare=None
    )
    assert cli.run(args) == 2
    err = capsys.readouterr().err
    assert "training.batchsize" in err and str(bad) in err and "Traceback" not in err


def test_missing_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match=r"no CUDA GPU.*--device cpu"):
        resolve_device("cuda:0")
    assert resolve_device("auto") == "cpu"
    with pytest.raises(DeviceError, match="cuda:N"):
        resolve_device("cuda:x")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")


def test_out_of_memory_names_the_remedies():
    with pytest.raises(OutOfMemoryError) as err:
        with oom_guard("cuda:0", "phase 0 step 3", batch_size=4, max_length=256, grad_accum=1):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    text = str(err.value)
    assert "batch_size: 2" in text and "grad_accum: 2" in text and "gradient_checkpointing" in text
    assert "phase 0 step 3" in text


def test_offline_hub_model_error_says_where_it_looked_and_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError) as err:
        load_model_and_tokenizer("google/medgemma-4b-it", config_path="configs/medgemma_korean.sdn")
    text = str(err.value)
    assert "google/medgemma-4b-it" in text and str(tmp_path / "hub") in text
    assert "model.name" in text and "configs/medgemma_korean.sdn" in text and "--local-dir" in text
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model_and_tokenizer(str(tmp_path / "no" / "model"))


def test_local_folder_loads_on_the_requested_device(model_dir):
    model, tok = load_model_and_tokenizer(str(model_dir), device="cpu")
    assert not model.training and tok.padding_side == "right" and tok.pad_token_id == 0
    torch.testing.assert_close(logits_of(model), logits_of(tiny_gemma3()))


def test_validate_measures_base_plus_adapters(tmp_path, model_dir):
    cfg = load_config(config(tmp_path, model_dir))
    run_tiny_pipeline(str(tmp_path / "tiny.sdn"))
    ctx = pipeline.make_context(cfg, hooks=tiny_hooks(), out=lambda s: None)
    base = pipeline.validate(ctx, [], ["fluency"])
    after = pipeline.validate(ctx, pipeline.adapters_of_run(ctx, 0), ["fluency"])
    summary = json.loads((tmp_path / "runs" / "tiny" / "summary.json").read_text())
    assert base["fluency"] == pytest.approx(summary["history"][0]["metrics"]["fluency"])
    assert after["fluency"]["perplexity"] == pytest.approx(
        summary["history"][1]["metrics"]["fluency"]["perplexity"], rel=1e-4
    )
    (tmp_path / "other").mkdir()
    other = load_config(config(tmp_path / "other", model_dir))
    with pytest.raises(pipeline.FinetuneError, match="missing adapters"):
        pipeline.adapters_of_run(pipeline.make_context(other, hooks=tiny_hooks(), out=lambda s: None))


def test_multimodal_checkpoint_folder_loads_and_trains_its_language_model(tmp_path):
    from finetune_helpers import tiny_gemma3_multimodal
    from puredl.finetune.lora import LoRAConfig, trainable_parameters

    folder = tmp_path / "medgemma-like"
    tiny_gemma3_multimodal().save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    model, _ = load_model_and_tokenizer(str(folder))
    assert type(model).__name__ == "Gemma3ForConditionalGeneration"
    model = add_lora(model, LoRAConfig(r=2, alpha=4, target_modules=["q_proj", "v_proj"]))
    names = list(trainable_parameters(model))
    assert names and all(".language_model." in n for n in names)
