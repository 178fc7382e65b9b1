"""The training loop on a tiny Gemma 3: masking, exact accumulation, schedule, log, SIGKILL + resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from finetune_helpers import (  # noqa: E402
    TINY_CORPUS,
    run_tiny_pipeline,
    save_tiny_model,
    tiny_config_text,
    tiny_gemma3,
    tiny_gemma3_multimodal,
    tiny_plan,  # noqa: E402
    tiny_tokenizer,
)
from puredl.finetune.batching import IGNORE_INDEX, collate, encode_example, micro_batches  # noqa: E402
from puredl.finetune.lora import LoRAConfig, add_lora  # noqa: E402
from puredl.finetune.schedule import lr_factor, warmup_steps_for  # noqa: E402
from puredl.finetune.trainer import batch_loss_sum, token_loss_sum, train_adapter  # noqa: E402

HERE = Path(__file__).resolve().parent


plan = tiny_plan  # one-step constant-LR plan (tests/finetune_helpers.py)


def encoded(n: int = 8, max_length: int = 40):
    tok = tiny_tokenizer()
    return [encode_example(tok, TINY_CORPUS[i], "질문:" if i % 2 else "", max_length) for i in range(n)]


def test_prompt_and_padding_are_masked():
    tok = tiny_tokenizer()
    ex = encode_example(tok, "B. 골절", "질문: 뼈가 부러진 상태는? 정답:", 64)
    prompt_ids = tok("질문: 뼈가 부러진 상태는? 정답:")["input_ids"]
    text_ids = tok("B. 골절", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ex.input_ids == prompt_ids + text_ids
    assert ex.labels == [IGNORE_INDEX] * len(prompt_ids) + text_ids
    short = encode_example(tok, "감기", "", 64)
    batch = collate([ex, short], pad_id=tok.pad_token_id)
    n = len(short.input_ids)
    assert batch["labels"][1, n:].eq(IGNORE_INDEX).all() and batch["attention_mask"][1, n:].eq(0).all()
    assert batch["input_ids"][1, n:].eq(tok.pad_token_id).all()


def test_long_prompts_lose_their_start_not_the_answer():
    tok = tiny_tokenizer()
    ex = encode_example(tok, "정답 B", "아주 긴 질문 " * 30, max_length=24)
    answer = tok("정답 B", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert len(ex.input_ids) == 24 and ex.input_ids[-len(answer) :] == answer
    assert [t for t in ex.labels if t != IGNORE_INDEX] == answer


@pytest.mark.parametrize("make", [tiny_gemma3, tiny_gemma3_multimodal])
def test_loss_matches_transformers_and_selected_logits(make):
    model = make().eval()
    batch = collate(encoded(4), pad_id=0)
    with torch.no_grad():
        out = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        )
        n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        ours = token_loss_sum(out.logits, batch["labels"]) / n
        selected = batch_loss_sum(model, batch) / n
    torch.testing.assert_close(ours, out.loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(selected, out.loss, rtol=1e-5, atol=1e-5)


def adapter_after(tmp_path: Path, name: str, dtype: torch.dtype = torch.float32, **kw):
    torch.manual_seed(0)
    model = add_lora(
        tiny_gemma3().to(dtype),
        LoRAConfig(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "embeddings"]),
    )
    train_adapter(model, encoded(8), plan(**kw), adapter_name="lora_0", pad_id=0, work_dir=tmp_path / name)
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    # float64: Adam divides by sqrt(v), so a float32 rounding difference in a near-zero gradient
    # (two half batches summed vs one batch) can move an update by 4e-5 relative; the claim under
    # test is the arithmetic of accumulation, which float64 shows to 1e-12
    big = adapter_after(tmp_path, "big", torch.float64, batch_size=4, grad_accum=1, total_steps=2)
    accumulated = adapter_after(tmp_path, "acc", torch.float64, batch_size=2, grad_accum=2, total_steps=2)
    assert any((v != 0).any() for k, v in big.items() if "lora_B" in k)  # it trained
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], atol=1e-12, rtol=1e-10)


def test_schedule_values():
    assert [lr_factor(s, 4, 0, "linear") for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert [lr_factor(s, 5, 2, "constant") for s in range(5)] == [1 / 3, 2 / 3, 1.0, 1.0, 1.0]
    assert lr_factor(2, 6, 2, "cosine") == 1.0
    assert lr_factor(4, 6, 2, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_steps_for(100, 0, 0.05) == 5 and warmup_steps_for(3, 10, 0.0) == 2
    with pytest.raises(ValueError, match="unknown scheduler"):
        lr_factor(0, 3, 0, "step")


def test_log_follows_schedule_and_steps(tmp_path):
    adapter_after(tmp_path, "run", batch_size=2, grad_accum=1, total_steps=4, scheduler="linear", warmup=1)
    rows = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["lr"] for r in rows] == pytest.approx([1e-2 * lr_factor(s, 4, 1, "linear") for s in range(4)])
    assert all(math.isfinite(r["loss"]) and r["tokens"] > 0 for r in rows)


def test_micro_batches_cover_every_example_each_epoch():
    batches = micro_batches(7, 3, seed=1, epochs=2)
    assert [len(b) for _, b in batches] == [3, 3, 1, 3, 3, 1]
    for epoch in (0, 1):
        assert sorted(i for e, b in batches if e == epoch for i in b) == list(range(7))


def adapters(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for k in range(3):
        for key, value in load_file(
            str(run_dir / f"phase{k}" / f"lora_{k}" / "adapter_model.safetensors")
        ).items():
            out[f"{k}:{key}"] = value
    return out


def test_resume_after_sigkill_mid_phase_matches_an_uninterrupted_run(tmp_path):
    model_dir = save_tiny_model(tmp_path / "model")
    cfg_text = tiny_config_text(model_dir, tmp_path / "killed", epochs=4, checkpoint_every=2)
    cfg = tmp_path / "killed.sdn"
    cfg.write_text(cfg_text)
    phase0 = tmp_path / "killed" / "tiny" / "phase0"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
    child = subprocess.Popen(
        [sys.executable, str(HERE / "finetune_helpers.py"), str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    try:
        while not list((phase0 / "checkpoints").glob("step_*/trainer_state.json")):
            assert child.poll() is None, "the child finished or failed before its first checkpoint"
            assert time.time() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not (phase0 / "lora_0").exists(), "killed too late: phase 0 had already finished"

    summary = run_tiny_pipeline(str(cfg), resume=True)
    assert summary["phases"][0]["resumed_from"] >= 2
    steps = [json.loads(line)["step"] for line in (phase0 / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, summary["phases"][0]["steps"] + 1))  # every step logged exactly once

    ref_cfg = tmp_path / "ref.sdn"
    ref_cfg.write_text(tiny_config_text(model_dir, tmp_path / "ref", epochs=4, checkpoint_every=2))
    run_tiny_pipeline(str(ref_cfg))
    got, want = adapters(tmp_path / "killed" / "tiny"), adapters(tmp_path / "ref" / "tiny")
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=1e-5, msg=key)


def test_nan_loss_stops_with_the_last_checkpoint_intact(tmp_path, monkeypatch):
    from puredl.finetune import trainer
    from puredl.finetune.checkpoint import latest_checkpoint
    from puredl.finetune.errors import TrainingDivergedError

    calls = {"n": 0}
    real = trainer.batch_loss_sum

    def poisoned(model, batch):
        calls["n"] += 1
        loss = real(model, batch)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(trainer, "batch_loss_sum", poisoned)
    model = add_lora(tiny_gemma3(), LoRAConfig(r=2, alpha=4, dropout=0.0))
    with pytest.raises(TrainingDivergedError, match="step 3.*intact"):
        train_adapter(
            model,
            encoded(8),
            plan(batch_size=2, total_steps=4, checkpoint_every=1),
            adapter_name="lora_0",
            pad_id=0,
            work_dir=tmp_path,
        )
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step_000002"


@pytest.mark.gpu
def test_bf16_training_on_a_gpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    model = add_lora(tiny_gemma3().to("cuda", torch.bfloat16), LoRAConfig(r=4, alpha=8, dropout=0.0))
    result = train_adapter(
        model,
        encoded(8),
        plan(batch_size=4, total_steps=3),
        adapter_name="lora_0",
        pad_id=0,
        work_dir=tmp_path,
        device="cuda:0",
        amp_dtype=torch.bfloat16,
    )
    assert len(result.losses) == 3 and all(math.isfinite(x) for x in result.losses)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)  # adapters stay fp32


def test_gradient_checkpointing_gives_the_same_update(tmp_path):
    plain = adapter_after(tmp_path, "plain", batch_size=4, total_steps=2)
    checkpointed = adapter_after(tmp_path, "ckpt", batch_size=4, total_steps=2, gradient_checkpointing=True)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)
